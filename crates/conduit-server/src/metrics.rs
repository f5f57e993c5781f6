//! Prometheus metrics on `prometheus-client`: a [`Metrics`] registry the server counts into, rendered as
//! OpenMetrics text by a handler the application mounts where it likes.
//!
//! Counting stays off the hot path's shared cache lines: each event loop counts into its own
//! [`LoopCounters`], which only that loop writes (a plain load and store, no locked instruction), and a
//! collector registered in the registry adds the loops' counters up when the registry is scraped. Gauges the
//! loops already share (connections, streams) and what the hub holds are read at scrape time too.

use crate::hub::Hub;
use crate::response::Response;
use crate::stats::Stats;
use conduit_http::{Request, StatusCode};
use conduit_net::CloseReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The content type of the OpenMetrics text format that [`Metrics::response`] answers with.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a connection ended: the `reason` label of `conduit_disconnects_total`, and the `end` of a stream in the
/// access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disconnect {
    /// The client closed or reset the connection, or vanished (TCP keepalive gave up).
    ClientGone,
    /// The client did not keep up: its write queue filled, or its stream fell behind the backlog it reads.
    SlowClient,
    /// Output waited and the client took none of it for `write_timeout` (or `flush_timeout` when closing).
    WriteTimeout,
    /// A request did not arrive whole within `request_timeout`.
    RequestTimeout,
    /// A keep-alive connection sat idle for `idle_timeout`.
    IdleTimeout,
    /// The server shut down.
    Shutdown,
    /// The server closed it after its last response (`Connection: close`, an HTTP/1.0 stream's end).
    Completed,
    /// A protocol error (a bad request, too much input) or an I/O error other than the client leaving.
    Error,
    /// The TLS handshake failed or did not finish in time (plaintext sent to a TLS port, a certificate the
    /// client refused, a stalled handshake).
    TlsHandshake,
}

impl Disconnect {
    /// Every reason, in label order.
    pub(crate) const ALL: [Disconnect; 9] = [
        Disconnect::ClientGone,
        Disconnect::SlowClient,
        Disconnect::WriteTimeout,
        Disconnect::RequestTimeout,
        Disconnect::IdleTimeout,
        Disconnect::Shutdown,
        Disconnect::Completed,
        Disconnect::Error,
        Disconnect::TlsHandshake,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Disconnect::ClientGone => "client_gone",
            Disconnect::SlowClient => "slow_client",
            Disconnect::WriteTimeout => "write_timeout",
            Disconnect::RequestTimeout => "request_timeout",
            Disconnect::IdleTimeout => "idle_timeout",
            Disconnect::Shutdown => "shutdown",
            Disconnect::Completed => "completed",
            Disconnect::Error => "error",
            Disconnect::TlsHandshake => "tls_handshake",
        }
    }

    /// Why a connection closed, from the loop's reason, what the server meant when it closed it (`intended`),
    /// and whether its stream was cut off for not keeping up.
    pub(crate) fn of(reason: CloseReason, intended: Option<Disconnect>, cut_off: bool) -> Disconnect {
        match reason {
            CloseReason::Shutdown => Disconnect::Shutdown,
            CloseReason::WriteTimeout => Disconnect::WriteTimeout,
            CloseReason::Io(kind) if peer_gone(kind) => Disconnect::ClientGone,
            CloseReason::Io(_) => Disconnect::Error,
            CloseReason::Local if cut_off => Disconnect::SlowClient,
            CloseReason::Local => intended.unwrap_or(Disconnect::Completed),
            CloseReason::Tls(failure) if failure.during_handshake() => Disconnect::TlsHandshake,
            // A session that broke after the handshake: a peer's alert or a bad record.
            CloseReason::Tls(_) => Disconnect::Error,
        }
    }
}

/// I/O errors that mean the peer has gone (closed, reset, or unreachable) rather than that something broke.
fn peer_gone(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(kind, ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected | TimedOut)
}

/// How a resume (a subscription with `Last-Event-ID`) went: the `outcome` label of `conduit_resumes_total`.
const RESUME_OUTCOMES: [&str; 2] = ["lossless", "reset"];

/// Status classes, `1xx` to `5xx`: the `class` label of `conduit_requests_total`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds (seconds) of `conduit_publish_to_write_seconds`; a last bucket takes the rest.
const LATENCY_BOUNDS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Adds to a counter that only one thread writes: a load and a store, which unlike `fetch_add` need no locked
/// instruction. Readers on other threads see every update, possibly a moment late.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One event loop's counters. Only that loop writes them (see [`bump`]); the collector reads them at scrape
/// time.
#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    requests: [AtomicU64; STATUS_CLASSES.len()],
    events_sent: AtomicU64,
    hub_deliveries: AtomicU64,
    resumes: [AtomicU64; RESUME_OUTCOMES.len()],
    disconnects: [AtomicU64; Disconnect::ALL.len()],
    write_queue_bytes: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_nanos: AtomicU64,
}

impl LoopCounters {
    /// A response (or a stream's head) with `status` was queued.
    pub(crate) fn response(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        bump(&self.requests[class], 1);
    }

    /// `n` events were queued to streams (hub deliveries included).
    pub(crate) fn events_sent(&self, n: u64) {
        bump(&self.events_sent, n);
    }

    /// A hub event was queued to one subscriber.
    pub(crate) fn hub_delivery(&self) {
        bump(&self.events_sent, 1);
        bump(&self.hub_deliveries, 1);
    }

    /// A subscription resumed from a `Last-Event-ID`; `lossless` unless it had to start with a `reset`.
    pub(crate) fn resume(&self, lossless: bool) {
        bump(&self.resumes[usize::from(!lossless)], 1);
    }

    pub(crate) fn disconnect(&self, why: Disconnect) {
        let index = Disconnect::ALL.iter().position(|d| *d == why).unwrap_or(Disconnect::ALL.len() - 1);
        bump(&self.disconnects[index], 1);
    }

    /// Bytes waiting in the loop's write queues now.
    pub(crate) fn set_write_queue_bytes(&self, bytes: usize) {
        self.write_queue_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// A published event reached this loop's live subscribers `elapsed` after it was published.
    pub(crate) fn publish_to_write(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BOUNDS.len());
        bump(&self.latency_buckets[bucket], 1);
        bump(&self.latency_nanos, u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// What one stream has sent, for its access-log line, counted on the loop's counters as well when metrics are
/// on.
#[derive(Debug)]
pub(crate) struct StreamMeter {
    pub(crate) events: u64,
    /// Event-stream bytes (without HTTP chunk framing).
    pub(crate) bytes: u64,
    counters: Option<Arc<LoopCounters>>,
}

impl StreamMeter {
    pub(crate) fn new(counters: Option<Arc<LoopCounters>>) -> Self {
        StreamMeter { events: 0, bytes: 0, counters }
    }

    /// `events` events of `bytes` bytes in all were queued.
    pub(crate) fn sent(&mut self, events: u64, bytes: usize) {
        self.events += events;
        self.bytes += bytes as u64;
        if let Some(counters) = &self.counters {
            counters.events_sent(events);
        }
    }

    /// One hub event of `bytes` bytes was queued.
    pub(crate) fn delivered(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes as u64;
        if let Some(counters) = &self.counters {
            counters.hub_delivery();
        }
    }
}

/// One server's counters as the collector reads them.
#[derive(Debug)]
struct Source {
    stats: Arc<Stats>,
    loops: Vec<Arc<LoopCounters>>,
    hub: Hub,
}

/// Reads every attached server's counters at scrape time.
#[derive(Debug)]
struct ConduitCollector {
    sources: Arc<Mutex<Vec<Source>>>,
}

/// Sums of every attached server's counters, taken at one scrape.
#[derive(Debug, Default)]
struct Totals {
    connections: u64,
    streams: u64,
    requests: [u64; STATUS_CLASSES.len()],
    events_sent: u64,
    hub_published: u64,
    hub_deliveries: u64,
    hub_topics: u64,
    backlog_events: u64,
    backlog_bytes: u64,
    resumes: [u64; RESUME_OUTCOMES.len()],
    disconnects: [u64; Disconnect::ALL.len()],
    write_queue_bytes: u64,
    latency_buckets: [u64; LATENCY_BOUNDS.len() + 1],
    latency_nanos: u64,
    /// `Some(up)` once any attached hub's backbone has reported; down if any is down.
    backbone_up: Option<bool>,
}

fn add_all(into: &mut [u64], from: &[AtomicU64]) {
    for (total, counter) in into.iter_mut().zip(from) {
        *total += read(counter);
    }
}

impl Totals {
    fn of(sources: &[Source]) -> Totals {
        let mut t = Totals::default();
        for source in sources {
            t.connections += source.stats.connections.load(Ordering::Relaxed) as u64;
            t.streams += source.stats.streams.load(Ordering::Relaxed) as u64;
            let hub = source.hub.stats();
            t.hub_published += hub.published;
            t.hub_topics += hub.topics as u64;
            t.backlog_events += hub.backlog_events as u64;
            t.backlog_bytes += hub.backlog_bytes as u64;
            t.backbone_up = match (t.backbone_up, source.hub.backbone_state()) {
                (Some(a), Some(b)) => Some(a && b),
                (a, b) => a.or(b),
            };
            for l in &source.loops {
                add_all(&mut t.requests, &l.requests);
                t.events_sent += read(&l.events_sent);
                t.hub_deliveries += read(&l.hub_deliveries);
                add_all(&mut t.resumes, &l.resumes);
                add_all(&mut t.disconnects, &l.disconnects);
                t.write_queue_bytes += read(&l.write_queue_bytes);
                add_all(&mut t.latency_buckets, &l.latency_buckets);
                t.latency_nanos += read(&l.latency_nanos);
            }
        }
        t
    }
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter with one label, one series per value.
fn labelled_counter(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, label): (&str, &str, &str),
    values: impl IntoIterator<Item = (&'static str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ConduitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let t = Totals::of(&self.sources.lock().unwrap_or_else(|e| e.into_inner()));
        let e = &mut encoder;
        gauge(e, "conduit_connections", "Open connections.", t.connections)?;
        gauge(e, "conduit_streams", "Open event streams.", t.streams)?;
        labelled_counter(
            e,
            ("conduit_requests", "Responses and stream heads sent, by status class.", "class"),
            STATUS_CLASSES.into_iter().zip(t.requests),
        )?;
        counter(e, "conduit_events_sent", "Events queued to streams, hub deliveries included.", t.events_sent)?;
        counter(e, "conduit_hub_published", "Events accepted by Hub::publish.", t.hub_published)?;
        counter(
            e,
            "conduit_hub_deliveries",
            "Hub events queued to subscribers (one per subscriber per event).",
            t.hub_deliveries,
        )?;
        gauge(e, "conduit_hub_topics", "Topics the hub knows.", t.hub_topics)?;
        gauge(
            e,
            "conduit_backlog_events",
            "Events held in the topics' backlogs for resuming clients.",
            t.backlog_events,
        )?;
        gauge(e, "conduit_backlog_bytes", "Bytes held in the topics' backlogs.", t.backlog_bytes)?;
        labelled_counter(
            e,
            ("conduit_resumes", "Subscriptions resumed from a Last-Event-ID, by outcome.", "outcome"),
            RESUME_OUTCOMES.into_iter().zip(t.resumes),
        )?;
        labelled_counter(
            e,
            ("conduit_disconnects", "Connections ended, by reason.", "reason"),
            Disconnect::ALL.iter().map(|d| d.as_str()).zip(t.disconnects),
        )?;
        gauge(
            e,
            "conduit_write_queue_bytes",
            "Bytes waiting in write queues for clients to read.",
            t.write_queue_bytes,
        )?;
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS.iter().copied().zip(t.latency_buckets).collect();
        buckets.push((f64::INFINITY, t.latency_buckets[LATENCY_BOUNDS.len()]));
        let count = t.latency_buckets.iter().sum();
        let sum = Duration::from_nanos(t.latency_nanos).as_secs_f64();
        e.encode_descriptor(
            "conduit_publish_to_write_seconds",
            "Time from Hub::publish until an event loop has queued the event to its live subscribers (one \
             observation per event per loop).",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
        if let Some(up) = t.backbone_up {
            gauge(
                e,
                "conduit_backbone_up",
                "1 while the hub's backbone is reachable, 0 when it is not.",
                u64::from(up),
            )?;
        }
        Ok(())
    }
}

/// A metrics registry a server counts into, rendered in the OpenMetrics text format. Cheap to clone; clones
/// share the registry.
///
/// A [`ServerConfig`](crate::ServerConfig) holds one by default; set its `metrics` to `None` to count nothing.
/// The application mounts the rendering on a route of its choice, and may register metrics of its own in the
/// same registry:
///
/// ```
/// use conduit_server::{Metrics, Router, ServerConfig};
/// use prometheus_client::metrics::counter::Counter;
///
/// let metrics = Metrics::new();
/// let jobs: Counter = Counter::default();
/// metrics.registry().register("myapp_jobs", "Jobs started.", jobs.clone());
/// let router = Router::new().get("/metrics", metrics.handler());
/// let config = ServerConfig { metrics: Some(metrics.clone()), ..ServerConfig::default() };
/// # let _ = (router, config);
/// jobs.inc();
/// assert!(metrics.render().contains("myapp_jobs_total 1"));
/// ```
///
/// Conduit's metrics (no topic names in labels, so series stay few however many topics there are):
///
/// | metric | type | meaning |
/// |---|---|---|
/// | `conduit_connections` | gauge | open connections |
/// | `conduit_streams` | gauge | open event streams |
/// | `conduit_requests_total{class}` | counter | responses and stream heads sent, by status class `1xx`..`5xx` |
/// | `conduit_events_sent_total` | counter | events queued to streams, hub deliveries included |
/// | `conduit_hub_published_total` | counter | events accepted by `Hub::publish` |
/// | `conduit_hub_deliveries_total` | counter | hub events queued to subscribers |
/// | `conduit_hub_topics` | gauge | topics the hub knows |
/// | `conduit_backlog_events`, `conduit_backlog_bytes` | gauge | what the topics' backlogs hold |
/// | `conduit_resumes_total{outcome}` | counter | resumes from `Last-Event-ID`: `lossless` or `reset` |
/// | `conduit_disconnects_total{reason}` | counter | connections ended: `client_gone`, `slow_client`, `write_timeout`, `request_timeout`, `idle_timeout`, `shutdown`, `completed`, `error` |
/// | `conduit_write_queue_bytes` | gauge | output waiting for clients to read it |
/// | `conduit_publish_to_write_seconds` | histogram | publish until queued to a loop's live subscribers |
/// | `conduit_backbone_up` | gauge | 1 or 0 once the hub's backbone has reported (see [`BackboneHealth`](crate::BackboneHealth)) |
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    sources: Arc<Mutex<Vec<Source>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers = self.sources.lock().map_or(0, |s| s.len());
        f.debug_struct("Metrics").field("servers", &servers).finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A new registry holding Conduit's metrics.
    pub fn new() -> Metrics {
        Metrics::with_registry(Registry::default())
    }

    /// Conduit's metrics added to an application's registry (one made with a prefix or constant labels, or
    /// already holding the application's metrics).
    pub fn with_registry(mut registry: Registry) -> Metrics {
        let sources = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(ConduitCollector { sources: Arc::clone(&sources) }));
        Metrics { registry: Arc::new(Mutex::new(registry)), sources }
    }

    /// The registry, for registering the application's own metrics. Hold the guard briefly: rendering waits
    /// for it.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every metric in the OpenMetrics text format, `# EOF` included.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, and Conduit's collector always encodes; an application metric
        // that fails to encode ends the text early, which a scraper reports.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry()) {
            log::error!("encoding the metrics failed: {e}");
        }
        out
    }

    /// A `200` response with [`render`](Self::render)'s text and the OpenMetrics content type.
    pub fn response(&self) -> Response {
        Response::new(StatusCode::OK)
            .with_body(OPENMETRICS_CONTENT_TYPE, self.render())
            .header("Cache-Control", "no-store")
    }

    /// A handler answering every request with [`response`](Self::response), for a route such as
    /// `GET /metrics`.
    pub fn handler(&self) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
        let metrics = self.clone();
        move |_: &Request| metrics.response()
    }

    /// Makes the collector read a server's counters: its shared stats, one set per event loop, its hub.
    pub(crate) fn attach(&self, stats: Arc<Stats>, loops: Vec<Arc<LoopCounters>>, hub: Hub) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).push(Source { stats, loops, hub });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HubConfig;
    use std::io::ErrorKind;

    #[test]
    fn close_reasons_map_to_disconnect_reasons() {
        use Disconnect::*;
        let cases = [
            (CloseReason::Shutdown, None, false, Shutdown),
            (CloseReason::WriteTimeout, Some(Completed), false, WriteTimeout),
            (CloseReason::Io(ErrorKind::ConnectionReset), None, false, ClientGone),
            (CloseReason::Io(ErrorKind::BrokenPipe), Some(Shutdown), false, ClientGone),
            (CloseReason::Io(ErrorKind::TimedOut), None, false, ClientGone),
            (CloseReason::Io(ErrorKind::PermissionDenied), None, false, Error),
            (CloseReason::Local, Some(ClientGone), true, SlowClient),
            (CloseReason::Local, Some(IdleTimeout), false, IdleTimeout),
            (CloseReason::Local, None, false, Completed),
        ];
        for (reason, intended, cut_off, want) in cases {
            assert_eq!(Disconnect::of(reason, intended, cut_off), want, "{reason:?} {intended:?} {cut_off}");
        }
    }

    #[test]
    fn loops_counters_are_summed_at_scrape_time() {
        let metrics = Metrics::new();
        let stats = Arc::new(Stats::default());
        let loops = vec![Arc::new(LoopCounters::default()), Arc::new(LoopCounters::default())];
        metrics.attach(Arc::clone(&stats), loops.clone(), Hub::new(HubConfig::default()));
        stats.connections.store(3, Ordering::Relaxed);
        loops[0].response(StatusCode::OK);
        loops[1].response(StatusCode::OK);
        loops[1].response(StatusCode::NOT_FOUND);
        loops[0].events_sent(5);
        loops[1].hub_delivery();
        loops[0].resume(false);
        loops[0].disconnect(Disconnect::SlowClient);
        loops[1].set_write_queue_bytes(100);
        loops[0].set_write_queue_bytes(20);
        loops[0].publish_to_write(Duration::from_micros(300));
        loops[1].publish_to_write(Duration::from_secs(10));
        let text = metrics.render();
        for line in [
            "conduit_connections 3",
            "conduit_requests_total{class=\"2xx\"} 2",
            "conduit_requests_total{class=\"4xx\"} 1",
            "conduit_requests_total{class=\"5xx\"} 0",
            "conduit_events_sent_total 6",
            "conduit_hub_deliveries_total 1",
            "conduit_resumes_total{outcome=\"reset\"} 1",
            "conduit_resumes_total{outcome=\"lossless\"} 0",
            "conduit_disconnects_total{reason=\"slow_client\"} 1",
            "conduit_write_queue_bytes 120",
            "conduit_publish_to_write_seconds_count 2",
            "conduit_publish_to_write_seconds_bucket{le=\"0.00025\"} 0",
            "conduit_publish_to_write_seconds_bucket{le=\"0.0005\"} 1",
            "conduit_publish_to_write_seconds_bucket{le=\"2.5\"} 1",
            "conduit_publish_to_write_seconds_bucket{le=\"+Inf\"} 2",
            "# TYPE conduit_disconnects counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        assert!(!text.contains("conduit_backbone_up"), "no backbone, no gauge");
    }

    #[test]
    fn the_backbone_gauge_appears_once_the_backbone_reports() {
        let metrics = Metrics::new();
        let hub = Hub::new(HubConfig::default());
        metrics.attach(Arc::new(Stats::default()), Vec::new(), hub.clone());
        hub.backbone_health().set_up(true);
        assert!(metrics.render().lines().any(|l| l == "conduit_backbone_up 1"));
        hub.backbone_health().set_up(false);
        assert!(metrics.render().lines().any(|l| l == "conduit_backbone_up 0"));
    }

    #[test]
    fn the_response_carries_the_openmetrics_content_type() {
        let response = Metrics::new().response();
        let content_type = response.headers().iter().find(|(k, _)| k == "Content-Type").map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some(OPENMETRICS_CONTENT_TYPE));
        assert!(response.body().ends_with(b"# EOF\n"));
    }
}
