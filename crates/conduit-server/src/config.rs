//! Server configuration: every limit the server enforces, with the defaults documented in the README.

use crate::cors::{CorsConfig, PublicScheme, Scheme};
use crate::health::HealthConfig;
use crate::metrics::Metrics;
use conduit_http::{AllowedHosts, Limits};
use std::net::SocketAddr;
use std::time::Duration;

/// How a [`Server`](crate::Server) listens and what it tolerates.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen. Port 0 picks a free port ([`Server::local_addr`](crate::Server::local_addr) tells which).
    pub addr: SocketAddr,
    /// The listen backlog: connections the kernel holds before they are accepted.
    pub backlog: u32,
    /// Event loops, each on its own thread with its own listener on the same port (`SO_REUSEPORT`; the kernel
    /// spreads connections over them). One suits most servers; one per core lets CPU-bound loads such as
    /// large broadcasts use every core. Every loop receives every hub event, so ordering and resume hold on
    /// each. `max_connections` is shared out between them.
    pub workers: usize,
    /// Request size bounds: head, header count, URI and body (431, 414 and 413 past them).
    pub limits: Limits,
    /// Bytes that request bodies being read may hold on the whole server. A request is admitted from its head
    /// (route, guard, the route's [body limit](crate::Router::body_limit)); its announced length (or the
    /// route's limit, for a chunked body) is then reserved from this budget before any of the body is read, and
    /// a request that does not fit gets `503` with `Retry-After`. A flood of large unfinished bodies therefore
    /// holds at most this much, whatever the number of connections.
    pub max_body_memory: usize,
    /// Host names (and optionally ports) requests may name in `Host`; empty allows any. A request naming
    /// another host gets `421 Misdirected Request`. Set it when the server answers on names you control: a
    /// DNS-rebinding page reaches the server under its own name and is refused.
    pub allowed_hosts: AllowedHosts,
    /// Open connections at most; past it a new connection gets `503 Service Unavailable` and is closed.
    pub max_connections: usize,
    /// Pending output per connection in bytes. A stream whose client stops reading is closed when it fills.
    pub write_queue_limit: usize,
    /// Pulled and channel-fed streams produce events until this much output is pending, then wait for the client
    /// to read: memory per stream is bounded by this, not by the number of events.
    pub stream_high_water: usize,
    /// A keep-alive comment is sent on a stream idle for this long; `None` disables it.
    pub keep_alive: Option<Duration>,
    /// If set, every stream starts with a `retry:` field telling clients how long to wait before reconnecting.
    pub retry: Option<Duration>,
    /// A request's head and body must arrive within this time of its first byte (or of the connection opening),
    /// or the connection gets `408 Request Timeout`.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// How long [`ServerHandle::shutdown`](crate::ServerHandle::shutdown) lets open streams flush before the
    /// server closes them regardless.
    pub shutdown_grace: Duration,
    /// TCP keepalive probes on idle sockets, to find peers that vanished without closing.
    pub tcp_keepalive: Option<Duration>,
    /// A connection being closed after its last response must have sent it within this time, or it is closed
    /// anyway (a client that never reads cannot hold it open).
    pub flush_timeout: Duration,
    /// After the last response is sent, how long to wait for the client to close its side before closing
    /// regardless; reading until then keeps unread input from turning the close into a reset.
    pub linger: Duration,
    /// A connection with output waiting whose client takes none of it for this long is closed, so a client
    /// that stays connected but stops reading cannot hold its connection (and a stream) for ever. Idle
    /// streams have nothing waiting and are unaffected. `None` never closes.
    pub write_timeout: Option<Duration>,
    /// Which other origins' pages may use the server; `None` adds no CORS headers (same-origin only).
    pub cors: Option<CorsConfig>,
    /// The scheme of the server's origin as browsers see it, which CORS's same-origin test compares with a
    /// page's `Origin`: the listener's by default (`https` with `tls`, `http` otherwise). Behind
    /// a proxy that terminates TLS, set [`PublicScheme::Https`], or [`PublicScheme::XForwardedProto`] when
    /// only the proxy can reach the server.
    pub public_scheme: PublicScheme,
    /// Serve TLS (rustls, ALPN `http/1.1`) with this certificate and key on every connection; `None` serves
    /// plain HTTP. A handshake that fails or is not complete within the configuration's handshake timeout
    /// closes that connection alone, counted as `tls_handshake` in `conduit_disconnects_total`.
    #[cfg(feature = "tls")]
    pub tls: Option<conduit_net::TlsConfig>,
    /// Sent to every open stream when the server shuts down, before the stream ends: for example an event
    /// with a `retry:` telling clients when to reconnect.
    pub shutdown_event: Option<conduit_sse::Event>,
    /// After [`ServerHandle::shutdown`](crate::ServerHandle::shutdown), how long the server goes on serving
    /// (without keep-alive, and with its readiness check answering `503 shutting down`) before it stops
    /// accepting and ends its streams, so that load balancers stop sending it clients first.
    pub shutdown_delay: Duration,
    /// The registry the server counts into ([`Metrics`]); each configuration made by `default()` has a
    /// registry of its own, and clones of it share that one. `None` counts nothing.
    pub metrics: Option<Metrics>,
    /// Liveness and readiness checks, answered by the event loop ahead of the router (off by default).
    pub health: HealthConfig,
    /// The level of the access log (`log` target `conduit::access`, one line per request); `None` turns it
    /// off. Health checks are logged one level lower.
    pub access_log: Option<log::Level>,
    /// How long a [deferred reply](crate::Reply::deferred) may take; past it the request gets `504`.
    pub deferred_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            backlog: 1024,
            workers: 1,
            limits: Limits::default(),
            max_body_memory: 64 * 1024 * 1024,
            allowed_hosts: AllowedHosts::default(),
            max_connections: 16_384,
            write_queue_limit: 1024 * 1024,
            stream_high_water: 64 * 1024,
            keep_alive: Some(Duration::from_secs(15)),
            retry: None,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            tcp_keepalive: None,
            flush_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            write_timeout: Some(Duration::from_secs(60)),
            cors: None,
            public_scheme: PublicScheme::Listener,
            #[cfg(feature = "tls")]
            tls: None,
            shutdown_event: None,
            shutdown_delay: Duration::ZERO,
            metrics: Some(Metrics::new()),
            health: HealthConfig::default(),
            access_log: Some(log::Level::Info),
            deferred_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// The default configuration listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        ServerConfig { addr, ..ServerConfig::default() }
    }

    /// The scheme the listener speaks: `https` when it serves TLS.
    pub(crate) fn listener_scheme(&self) -> Scheme {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return Scheme::Https;
        }
        Scheme::Http
    }
}
