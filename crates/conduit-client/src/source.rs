//! [`EventSource`] and its builder: the reconnecting stream.

use crate::conn::{BodyError, Connection, Pumped, RequestSpec, check_header};
use crate::error::ClientError;
#[cfg(feature = "tls")]
use crate::tls::Trust;
use crate::transport::{Connector, Timeouts};
use crate::url::Url;
use conduit_http::Method;
use conduit_sse::{Decoder, MessageEvent};
use std::fmt;
use std::iter::FusedIterator;
use std::time::Duration;
#[cfg(feature = "tls")]
use std::{path::PathBuf, sync::Arc};

/// Size of the buffer each socket read fills.
const READ_BUFFER: usize = 16 * 1024;
/// The smallest timeout the OS accepts is above zero; zero is taken to mean "as short as possible".
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Connection and reconnection settings.
#[derive(Clone, Debug)]
struct Config {
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    reconnect: bool,
    max_reconnects: Option<u32>,
    default_retry: Duration,
    max_backoff: Duration,
    max_event_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(60)),
            reconnect: true,
            max_reconnects: None,
            default_retry: Duration::from_secs(3),
            max_backoff: Duration::from_secs(30),
            max_event_size: None,
        }
    }
}

impl Config {
    fn timeouts(&self) -> Timeouts {
        Timeouts { connect: self.connect_timeout.max(MIN_TIMEOUT), read: self.read_timeout.map(|t| t.max(MIN_TIMEOUT)) }
    }

    /// Whether a dropped stream is followed by reconnection attempts.
    fn reconnects(&self) -> bool {
        self.reconnect && self.max_reconnects != Some(0)
    }
}

/// An open Server-Sent Events stream that reconnects by itself, as a browser's `EventSource` does.
///
/// Build one with [`EventSource::get`] or [`EventSource::post`], then read events with
/// [`next_event`](EventSource::next_event) or by iterating. Everything is blocking: each call waits for the next
/// event, reconnecting (after the retry delay) when the server ends the stream or the connection drops.
///
/// ```no_run
/// use conduit_client::EventSource;
/// use std::time::Duration;
///
/// let mut events = EventSource::get("http://127.0.0.1:8000/count?n=5")
///     .read_timeout(Some(Duration::from_secs(30)))
///     .connect()?;
/// while let Some(event) = events.next_event()? {
///     println!("{} #{}: {}", event.event_type, event.last_event_id, event.data);
/// }
/// # Ok::<(), conduit_client::ClientError>(())
/// ```
pub struct EventSource {
    request: RequestSpec,
    config: Config,
    connector: Connector,
    decoder: Decoder,
    conn: Option<Connection>,
    /// Set when the stream is over for good; queued events are still handed out first.
    over: bool,
    /// The final error, returned once after the queued events.
    error: Option<ClientError>,
    /// The last event id as of the last event handed out (the decoder's may be ahead of it).
    last_event_id: String,
    reconnects: u32,
    buf: Box<[u8]>,
}

impl EventSource {
    /// Starts building a `GET` stream from `url` (`http://host[:port]/path?query`, or `https://`).
    ///
    /// The request carries `Accept: text/event-stream` and `Cache-Control: no-cache`. An invalid URL is reported
    /// by [`connect`](EventSourceBuilder::connect).
    pub fn get(url: &str) -> EventSourceBuilder {
        EventSourceBuilder::new(Method::Get, url, None)
    }

    /// Starts building a `POST` stream from `url` with `body`, sent with a `Content-Length` on the first
    /// connection and again on every reconnection. Set its type with
    /// [`header("Content-Type", ..)`](EventSourceBuilder::header).
    ///
    /// ```no_run
    /// use conduit_client::EventSource;
    ///
    /// let reply = EventSource::post("http://127.0.0.1:8000/chat", r#"{"prompt":"hello"}"#)
    ///     .header("Content-Type", "application/json")
    ///     .header("Authorization", "Bearer secret")
    ///     .reconnect(false)
    ///     .connect()?;
    /// for event in reply {
    ///     print!("{}", event?.data);
    /// }
    /// # Ok::<(), conduit_client::ClientError>(())
    /// ```
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> EventSourceBuilder {
        EventSourceBuilder::new(Method::Post, url, Some(body.into()))
    }

    /// The next event, reconnecting as needed.
    ///
    /// Blocks until an event arrives. When the server ends the stream or the connection drops (an I/O error, or
    /// no byte within the read timeout), the partial event is discarded, and, if reconnecting is on, the client
    /// waits [`retry`](EventSource::retry) (doubled for every consecutive failed attempt, up to the
    /// [`max_backoff`](EventSourceBuilder::max_backoff)) and reconnects, sending `Last-Event-ID`. Comments and
    /// keep-alives never show up here.
    ///
    /// `Ok(None)` means the stream is over for good: the server answered a reconnection with `204 No Content`,
    /// or it ended the stream while reconnecting is off, or an error was already returned. Every event that
    /// arrived complete before the end is returned first.
    ///
    /// # Errors
    ///
    /// Errors are final; later calls return `Ok(None)`.
    ///
    /// - [`ClientError::Http`] or [`ClientError::ContentType`] when a reconnection is refused, and with TLS
    ///   `ClientError::Certificate` or `ClientError::Tls` when its handshake fails;
    /// - [`ClientError::ReconnectsExhausted`] after [`max_reconnects`](EventSourceBuilder::max_reconnects)
    ///   consecutive failed attempts;
    /// - [`ClientError::Decode`] when an event exceeds the size limit;
    /// - [`ClientError::Io`] or [`ClientError::Protocol`] when the connection breaks while reconnecting is off.
    pub fn next_event(&mut self) -> Result<Option<MessageEvent>, ClientError> {
        loop {
            if let Some(event) = self.decoder.next_event() {
                self.last_event_id.clone_from(&event.last_event_id);
                return Ok(Some(event));
            }
            // Everything decoded so far has been handed out, including `id`-only blocks.
            if self.last_event_id != self.decoder.last_event_id() {
                self.last_event_id.clear();
                self.last_event_id.push_str(self.decoder.last_event_id());
            }
            if let Some(err) = self.error.take() {
                return Err(err);
            }
            if self.over {
                return Ok(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                self.reconnect();
                continue;
            };
            match conn.pump(&mut self.buf, &mut self.decoder) {
                Ok(Pumped::More) => {}
                Ok(Pumped::End) => self.connection_ended(None),
                Err(BodyError::Broken(err)) => self.connection_ended(Some(err)),
                Err(BodyError::Decode(err)) => {
                    self.drop_connection();
                    self.stop(Some(ClientError::Decode(err)));
                }
            }
        }
    }

    /// The last event id as of the last event returned: what a reconnection would send as `Last-Event-ID`
    /// (nothing when empty) if everything read so far were handled, so it is the id to persist for resuming
    /// later with [`EventSourceBuilder::last_event_id`].
    ///
    /// It starts as the builder's id and follows the stream's `id:` fields, including blocks with an id and no
    /// data (which update it without an event), but never runs ahead of the events handed out: events received
    /// in the same read and not yet returned do not count.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The current reconnection delay: the server's last `retry:`, or the
    /// [`default_retry`](EventSourceBuilder::default_retry) until it sends one.
    pub fn retry(&self) -> Duration {
        self.decoder.retry().unwrap_or(self.config.default_retry)
    }

    /// How many times the stream was successfully reopened after the first connection.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// Whether a connection is open now. It is closed between a drop and the next successful reconnection
    /// (which happens inside [`next_event`](EventSource::next_event)), and after the stream is over.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Closes the connection. Events already received but not yet read are dropped.
    pub fn close(mut self) {
        self.drop_connection();
    }

    /// The connection ended, cleanly (`cause` is `None`) or not: discard the partial event, then either prepare
    /// to reconnect or end the stream.
    fn connection_ended(&mut self, cause: Option<ClientError>) {
        self.drop_connection();
        if !self.config.reconnects() {
            self.stop(cause);
        }
    }

    fn drop_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.shutdown();
        }
        self.decoder.finish();
    }

    fn stop(&mut self, error: Option<ClientError>) {
        self.over = true;
        self.error = error;
    }

    /// Waits and reconnects until a connection opens, the server says stop, or the attempts run out.
    fn reconnect(&mut self) {
        let mut failures: u32 = 0;
        loop {
            std::thread::sleep(self.backoff(failures));
            match self.open() {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.reconnects += 1;
                    return;
                }
                Err(ClientError::NoContent) => return self.stop(None),
                Err(err) if err.is_retryable() => {
                    failures += 1;
                    if self.config.max_reconnects.is_some_and(|max| failures >= max) {
                        return self
                            .stop(Some(ClientError::ReconnectsExhausted { attempts: failures, last: Box::new(err) }));
                    }
                }
                Err(err) => return self.stop(Some(err)),
            }
        }
    }

    /// The delay before a reconnection attempt after `failures` consecutive failed ones: the retry time,
    /// doubled per failure, capped by the maximum backoff (but never below the retry time the server asked for).
    fn backoff(&self, failures: u32) -> Duration {
        let retry = self.retry();
        if failures == 0 {
            return retry;
        }
        let factor = 1u32 << failures.min(31);
        retry.checked_mul(factor).unwrap_or(Duration::MAX).min(self.config.max_backoff.max(retry))
    }

    fn open(&mut self) -> Result<Connection, ClientError> {
        self.decoder.reset_stream();
        Connection::open(&self.request, self.decoder.last_event_id(), &self.connector, &mut self.buf)
    }
}

impl Iterator for EventSource {
    type Item = Result<MessageEvent, ClientError>;

    /// [`next_event`](EventSource::next_event) as an iterator: it ends when the stream is over, right after
    /// yielding a final error if there was one.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

impl FusedIterator for EventSource {}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("method", &self.request.method)
            .field("url", &self.request.url.to_string())
            .field("connected", &self.conn.is_some())
            .field("over", &self.over)
            .field("last_event_id", &self.last_event_id())
            .field("retry", &self.retry())
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

/// Configures and opens an [`EventSource`]; made by [`EventSource::get`] or [`EventSource::post`].
///
/// ```no_run
/// use conduit_client::EventSource;
/// use std::time::Duration;
///
/// let events = EventSource::get("http://[::1]:8000/updates")
///     .header("Authorization", "Bearer secret")
///     .last_event_id("1041")               // resume where an earlier run stopped
///     .connect_timeout(Duration::from_secs(2))
///     .read_timeout(Some(Duration::from_secs(45)))
///     .max_reconnects(Some(5))
///     .default_retry(Duration::from_millis(500))
///     .max_backoff(Duration::from_secs(10))
///     .max_event_size(1 << 20)
///     .connect()?;
/// # Ok::<(), conduit_client::ClientError>(())
/// ```
pub struct EventSourceBuilder {
    method: Method,
    url: Result<Url, String>,
    headers: Vec<(String, String)>,
    /// The first invalid header, reported by `connect`.
    header_error: Option<String>,
    body: Option<Vec<u8>>,
    last_event_id: String,
    config: Config,
    #[cfg(feature = "tls")]
    trust: Trust,
}

impl EventSourceBuilder {
    fn new(method: Method, url: &str, body: Option<Vec<u8>>) -> Self {
        EventSourceBuilder {
            method,
            url: Url::parse(url),
            headers: Vec::new(),
            header_error: None,
            body,
            last_event_id: String::new(),
            config: Config::default(),
            #[cfg(feature = "tls")]
            trust: Trust::default(),
        }
    }

    /// Adds a request header, sent on every connection (for example `Authorization`).
    ///
    /// `Host`, `Accept` and `Cache-Control` replace the client's defaults. `Content-Length`,
    /// `Transfer-Encoding` and `Last-Event-ID` are managed by the client and refused, as are invalid names and
    /// values with control characters: [`connect`](Self::connect) then fails with
    /// [`ClientError::InvalidHeader`].
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match check_header(name, value) {
            Ok(value) => self.headers.push((name.to_owned(), value)),
            Err(message) => {
                self.header_error.get_or_insert(message);
            }
        }
        self
    }

    /// Starts as if resuming after the event with this id: the first request already sends `Last-Event-ID`.
    #[must_use]
    pub fn last_event_id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.last_event_id);
        self
    }

    /// How long to wait for a TCP connection to open (per address the host resolves to). Default 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a read may wait for data before the connection counts as dropped (and is reopened, if
    /// reconnecting is on). Default 60 s, well above the usual 15 s keep-alive; `None` waits forever. Also
    /// bounds writing the request.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.read_timeout = timeout;
        self
    }

    /// Whether to reconnect when the stream ends or drops. Default true. When false, a clean end makes
    /// [`next_event`](EventSource::next_event) return `Ok(None)` and a broken connection returns its error.
    #[must_use]
    pub fn reconnect(mut self, enabled: bool) -> Self {
        self.config.reconnect = enabled;
        self
    }

    /// How many consecutive reconnection attempts may fail before giving up with
    /// [`ClientError::ReconnectsExhausted`]. Default `None`: keep trying. `Some(0)` is the same as
    /// [`reconnect(false)`](Self::reconnect). The count starts again after every successful connection, even
    /// one the server ends at once: as with browsers, only a `204` (or an error status) stops a client for good.
    #[must_use]
    pub fn max_reconnects(mut self, attempts: Option<u32>) -> Self {
        self.config.max_reconnects = attempts;
        self
    }

    /// The reconnection delay used until the server sends `retry:`. Default 3 s, as in browsers.
    #[must_use]
    pub fn default_retry(mut self, delay: Duration) -> Self {
        self.config.default_retry = delay;
        self
    }

    /// The cap on the delay as it doubles over consecutive failed reconnection attempts. Default 30 s. A server's
    /// `retry:` above the cap is still honoured for the first attempt, and then acts as the cap.
    #[must_use]
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        self.config.max_backoff = cap;
        self
    }

    /// The largest event the decoder buffers, in bytes; a larger one ends the stream with
    /// [`ClientError::Decode`]. Default: the decoder's own limit.
    #[must_use]
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.config.max_event_size = Some(bytes);
        self
    }

    /// Trusts the CA certificates in the PEM file at `path` for `https`, instead of Mozilla's roots
    /// (webpki-roots, the default). The file is read by [`connect`](Self::connect). Replaces any trust set
    /// before.
    ///
    /// ```no_run
    /// use conduit_client::EventSource;
    ///
    /// let events = EventSource::get("https://sse.internal:8443/stream?topic=jobs")
    ///     .tls_ca_file("/etc/conduit/internal-ca.pem")
    ///     .connect()?; // a certificate not issued by that CA: ClientError::Certificate
    /// # Ok::<(), conduit_client::ClientError>(())
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust = Trust::CaFile(path.into());
        self
    }

    /// Trusts these root certificates for `https`, instead of Mozilla's roots. Replaces any trust set before.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_roots(mut self, roots: rustls::RootCertStore) -> Self {
        self.trust = Trust::Roots(Arc::new(roots));
        self
    }

    /// Uses this rustls configuration for `https` as it is (its roots, client certificate, protocol versions).
    /// Its ALPN list should offer `http/1.1` or nothing: a server that picks another protocol is refused with
    /// [`ClientError::Protocol`]. Replaces any trust set before.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.trust = Trust::Config(config);
        self
    }

    /// Opens the first connection and checks the response.
    ///
    /// Nothing is retried here: whatever goes wrong is returned at once, so a misconfigured client fails fast.
    ///
    /// # Errors
    ///
    /// - [`ClientError::InvalidUrl`] or [`ClientError::InvalidHeader`] for a bad URL or header (an `https` URL
    ///   without the `tls` feature included);
    /// - with `https`: `ClientError::TlsConfig` if the CA file cannot be used, `ClientError::Certificate` if the
    ///   server's certificate is refused, `ClientError::Tls` if the handshake fails otherwise;
    /// - [`ClientError::Io`] if the host cannot be resolved or reached, or does not answer in time;
    /// - [`ClientError::NoContent`] if the server answers 204 (nothing to stream);
    /// - [`ClientError::Http`] for any other status but 200;
    /// - [`ClientError::ContentType`] if the response is not `text/event-stream`;
    /// - [`ClientError::Protocol`] if the response is not valid HTTP.
    pub fn connect(self) -> Result<EventSource, ClientError> {
        let url = self.url.map_err(ClientError::InvalidUrl)?;
        if let Some(message) = self.header_error {
            return Err(ClientError::InvalidHeader(message));
        }
        #[cfg(not(feature = "tls"))]
        if url.is_https() {
            return Err(ClientError::InvalidUrl(format!("{url}: https needs conduit-client's `tls` feature")));
        }
        let connector = Connector {
            timeouts: self.config.timeouts(),
            #[cfg(feature = "tls")]
            tls: if url.is_https() { Some(self.trust.client_config()?) } else { None },
        };
        let mut decoder = match self.config.max_event_size {
            Some(max) => Decoder::with_max_event_size(max),
            None => Decoder::new(),
        };
        decoder.set_last_event_id(&self.last_event_id);
        let mut source = EventSource {
            last_event_id: self.last_event_id,
            request: RequestSpec { method: self.method, url, headers: self.headers, body: self.body },
            config: self.config,
            connector,
            decoder,
            conn: None,
            over: false,
            error: None,
            reconnects: 0,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
        };
        source.conn = Some(source.open()?);
        Ok(source)
    }
}

impl fmt::Debug for EventSourceBuilder {
    /// Header values are left out: they often hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("EventSourceBuilder")
            .field("method", &self.method)
            .field("url", &self.url.as_ref().map(ToString::to_string))
            .field("headers", &header_names)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("last_event_id", &self.last_event_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(config: Config) -> EventSource {
        EventSource {
            request: RequestSpec {
                method: Method::Get,
                url: Url::parse("http://127.0.0.1/").unwrap(),
                headers: Vec::new(),
                body: None,
            },
            connector: Connector {
                timeouts: config.timeouts(),
                #[cfg(feature = "tls")]
                tls: None,
            },
            config,
            decoder: Decoder::new(),
            conn: None,
            over: false,
            error: None,
            last_event_id: String::new(),
            reconnects: 0,
            buf: Box::new([]),
        }
    }

    #[test]
    fn can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<EventSource>();
        assert_send::<EventSourceBuilder>();
        assert_send::<ClientError>();
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        let s = source(Config { default_retry: ms(100), max_backoff: ms(1000), ..Config::default() });
        let delays: Vec<Duration> = (0..7).map(|f| s.backoff(f)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000].map(ms));
        assert_eq!(s.backoff(u32::MAX), ms(1000));

        // A retry above the cap is honoured and becomes the cap.
        let s = source(Config { default_retry: ms(5000), max_backoff: ms(1000), ..Config::default() });
        assert_eq!(s.backoff(0), ms(5000));
        assert_eq!(s.backoff(3), ms(5000));

        let s = source(Config { default_retry: Duration::ZERO, ..Config::default() });
        assert_eq!(s.backoff(5), Duration::ZERO);
    }

    #[test]
    fn zero_max_reconnects_means_no_reconnecting() {
        assert!(Config::default().reconnects());
        assert!(!Config { max_reconnects: Some(0), ..Config::default() }.reconnects());
        assert!(!Config { reconnect: false, ..Config::default() }.reconnects());
        let timeouts =
            Config { connect_timeout: Duration::ZERO, read_timeout: Some(Duration::ZERO), ..Config::default() }
                .timeouts();
        assert_eq!(timeouts.connect, MIN_TIMEOUT);
        assert_eq!(timeouts.read, Some(MIN_TIMEOUT));
    }

    #[test]
    fn builder_reports_bad_input_without_connecting() {
        #[cfg(not(feature = "tls"))]
        {
            let err = EventSource::get("https://example.com/").connect().unwrap_err();
            assert!(matches!(err, ClientError::InvalidUrl(ref m) if m.contains("`tls` feature")), "{err}");
        }
        let err = EventSource::get("http://127.0.0.1:1/")
            .header("X-Ok", "1")
            .header("X Bad", "1")
            .header("Content-Length", "1")
            .connect()
            .unwrap_err();
        assert!(matches!(err, ClientError::InvalidHeader(ref m) if m.contains("X Bad")), "{err}");
        let builder = EventSource::post("http://h/", "body").header("Authorization", "Bearer secret");
        let debug = format!("{builder:?}");
        assert!(debug.contains("Authorization") && !debug.contains("secret"), "{debug}");
    }
}
