//! Soak test: thousands of SSE subscribers of one hub topic, a quarter of them dropping and resuming with
//! `Last-Event-ID` while events are published, and at the end a check that every subscriber holds every event
//! exactly once.
//!
//! ```text
//! ulimit -n 65536; cargo bench --bench soak                   # full run: 10,000 streams, 60 s, 20 events/s
//! cargo bench --bench soak -- --streams 2000 --seconds 20     # a smaller full run
//! cargo test --bench soak                                     # quick mode: 200 streams, 3 s, 50 events/s
//! cargo bench --bench soak -- --quick                         # quick mode under `cargo bench`
//! ```
//!
//! Flags: `--streams N`, `--seconds S`, `--rate R` (events per second), `--quick`, `--threads T` (client event
//! loops, default 2), `--seed X` (who disconnects when), `--backlog N` (events the hub keeps, default 30 s of
//! them; a small one shows the checks failing), `--nodes N` (servers; 2 or more run on the Redis Streams
//! backbone, against a `redis-server` the run starts on a free loopback port, or the one `--redis-url URL`
//! names), `--resumes F` (the fraction of clients that drop and resume, default 0.25; 0 for a plain fan-out
//! measurement).
//!
//! ```text
//! cargo bench --bench soak -- --nodes 3 --streams 3000           # three nodes on Redis, 60 s
//! cargo test --bench soak -- --nodes 3                           # quick mode, as CI runs it
//! ```
//!
//! With several nodes each client opens its first stream on node `client % nodes` and every reconnection on
//! the next node, so each resume happens on a different node than the one the client left; the publisher
//! publishes through each node's hub in turn, and Redis numbers the events. Quick mode is chosen when cargo does not pass `--bench`
//! (that is, under `cargo test --benches`) or with `--quick`; explicit flags override its numbers too.
//!
//! Everything runs in this process over loopback. The server is a `Server::bind_with_hub` on 127.0.0.1:0 with
//! `/stream` → `Sse::subscribe_request`, a keep-alive of 1 s and a backlog of 30 s of events. The clients are
//! not threads: `--threads` mio event loops share them, each connection with its own `conduit::sse::Decoder`
//! behind a small chunked-coding decoder. Every stream costs two file descriptors (the server's socket and the
//! client's), so the soft `ulimit -n` must be at least 2 × streams + 100. Nothing is raised: below that the
//! stream count is reduced to fit, with a warning. **`ulimit -n 65536` before `cargo bench --bench soak` allows
//! the full 10,000.**
//!
//! The run: open every stream (at most 128 connecting per client loop), stay idle 1.5 s so that keep-alive
//! comments flow, then publish `{"n": i, "t_us": <µs since start>}` for i in 0..rate × seconds from one
//! thread, the hub numbering the events. Meanwhile a quarter of the clients each drop their connection one to
//! three times at random moments (half with a FIN, half with a RST) and reconnect after 0 to 250 ms with the
//! id of the last event they received as `Last-Event-ID`. Then it waits (30 s at most) until every client
//! has the last event, and checks per client that the `n` received are exactly 0..total, each once.
//!
//! Reported: streams, events published, resumes, lost, duplicates, reordered, `reset` events, keep-alive
//! comments, VmRSS before and after the streams open and per stream (server and client sides together, since
//! both live in this process), peak RSS (VmHWM), publish-to-receive latency of live events (events replayed on
//! resume are left out), and wall time. The exit code is non-zero if any event was lost, duplicated or
//! reordered, if an event was malformed, or if a wait timed out. `RUST_LOG=warn` shows the server's warnings.

use conduit::server::{Hub, HubConfig, PublishError, Request, Router, Server, ServerConfig, Sse};
use conduit::sse::{BacklogLimits, Decoder, Event, MessageEvent};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Deserialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const TOPIC: &str = "soak";
/// The server's keep-alive interval: short, so that comments are seen whenever a stream is idle for a second.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Idle time between "all streams open" and the first event, so that every stream gets a keep-alive.
const IDLE_BEFORE_PUBLISHING: Duration = Duration::from_millis(1500);
/// The backlog holds this many seconds of events, far more than any reconnection takes.
const BACKLOG_SECONDS: f64 = 30.0;
/// How long to wait, after the last event is published, for every client to have it.
const FINAL_WAIT: Duration = Duration::from_secs(30);
/// File descriptors left for everything but the streams.
const FD_RESERVE: usize = 100;
/// New connections in progress at once per client loop while the streams are being opened.
const CONNECTS_IN_FLIGHT: usize = 128;
/// A client reconnects this long at most after it dropped its connection.
const RECONNECT_DELAY_MAX_MS: u64 = 250;
/// After a failed connect, a refused request or a connection the server closed, try again after this long.
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// A disconnect due while the client is not streaming yet is tried again after this long.
const POSTPONE: Duration = Duration::from_millis(100);
/// Response heads longer than this are refused.
const MAX_HEAD: usize = 8 * 1024;
/// Events are small; anything larger is a malformed stream.
const MAX_EVENT: usize = 4 * 1024;
/// Not yet known (publishing start, final count).
const UNKNOWN: u64 = u64::MAX;

#[derive(Clone, Debug)]
struct Options {
    streams: usize,
    seconds: f64,
    rate: f64,
    threads: usize,
    seed: u64,
    /// Overrides the backlog size (events), to see the checks fail when it is too small.
    backlog: Option<usize>,
    quick: bool,
    /// Servers; more than one share a Redis backbone.
    nodes: usize,
    /// An existing Redis for `nodes > 1`, instead of starting one.
    redis_url: Option<String>,
    /// The fraction of clients that drop their connection and resume.
    resumes: f64,
}

impl Options {
    fn total_events(&self) -> u64 {
        (self.rate * self.seconds).round() as u64
    }
}

fn parse_options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then a quick run is enough.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let mut options = Options {
        streams: 10_000,
        seconds: 60.0,
        rate: 20.0,
        threads: 2,
        seed: 0x5eed,
        backlog: None,
        quick,
        nodes: 1,
        redis_url: None,
        resumes: 0.25,
    };
    if quick {
        (options.streams, options.seconds, options.rate) = (200, 3.0, 50.0);
    }
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args.get(i).cloned().ok_or_else(|| format!("{name} needs a value"))?;
            i += 1;
            Ok(v)
        };
        let bad = |v: &str| format!("{name}: bad value {v:?}");
        match name {
            "--streams" => {
                let v = value()?;
                options.streams = v.parse().map_err(|_| bad(&v))?;
            }
            "--seconds" => {
                let v = value()?;
                options.seconds = v.parse().map_err(|_| bad(&v))?;
            }
            "--rate" => {
                let v = value()?;
                options.rate = v.parse().map_err(|_| bad(&v))?;
            }
            "--threads" => {
                let v = value()?;
                options.threads = v.parse().map_err(|_| bad(&v))?;
            }
            "--seed" => {
                let v = value()?;
                options.seed = v.parse().map_err(|_| bad(&v))?;
            }
            "--backlog" => {
                let v = value()?;
                options.backlog = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--nodes" => {
                let v = value()?;
                options.nodes = v.parse().map_err(|_| bad(&v))?;
            }
            "--redis-url" => options.redis_url = Some(value()?),
            "--resumes" => {
                let v = value()?;
                options.resumes = v.parse().ok().filter(|f: &f64| (0.0..=1.0).contains(f)).ok_or_else(|| bad(&v))?;
            }
            "--quick" | "--bench" => {}
            other => eprintln!("soak: ignoring unknown argument {other:?}"),
        }
    }
    if options.streams == 0 {
        return Err("--streams must be at least 1".into());
    }
    if !(options.seconds > 0.0 && options.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    if !(options.rate > 0.0 && options.rate <= 100_000.0) {
        return Err("--rate must be in (0, 100000]".into());
    }
    if options.total_events() == 0 {
        return Err("--rate × --seconds must be at least 1 event".into());
    }
    if !(1..=16).contains(&options.threads) {
        return Err("--threads must be 1 to 16".into());
    }
    if !(1..=8).contains(&options.nodes) {
        return Err("--nodes must be 1 to 8".into());
    }
    Ok(options)
}

/// The soft "Max open files" limit from /proc/self/limits (`None` if unreadable, `u64::MAX` if unlimited).
fn soft_fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

/// A `kB` field of /proc/self/status (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds from a `stat` line of /proc (clock ticks of 1/100 s, Linux's USER_HZ), and the
/// thread's name.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((stat.get(open + 1..close)?.to_owned(), (ticks(11)? + ticks(12)?) as f64 / 100.0))
}

/// CPU seconds so far of the server's threads (its event loops, and on Redis the node's reader, which encodes
/// each event once for the node) and of the client loops together (live threads only).
fn thread_cpu() -> (f64, f64) {
    let (mut server, mut clients) = (0.0, 0.0);
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Some((name, cpu)) = std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(parse_stat)
        else {
            continue;
        };
        if name.starts_with("conduit-loop") || name.starts_with("conduit-redis") {
            server += cpu;
        } else if name.starts_with("soak-clients") {
            clients += cpu;
        }
    }
    (server, clients)
}

/// CPU seconds of the whole process, exited threads included.
fn process_cpu() -> Option<f64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|(_, cpu)| cpu)
}

/// The 1-minute load average: the machine is shared, so it says how noisy the numbers are.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// xorshift64*: reproducible schedules without a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0), near enough.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Latencies in µs, log-linear: exact below 128, then 64 buckets per power of two (under 1.6 % error).
#[derive(Debug)]
struct Histogram {
    counts: Vec<u64>,
    samples: u64,
    max: u64,
}

impl Histogram {
    const LINEAR: u64 = 128;
    const SUB_BITS: u32 = 6;

    fn new() -> Self {
        Histogram { counts: vec![0; Self::index(u64::MAX) + 1], samples: 0, max: 0 }
    }

    fn index(v: u64) -> usize {
        if v < Self::LINEAR {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // at least 7
        let sub = (v >> (exp - Self::SUB_BITS)) & ((1 << Self::SUB_BITS) - 1);
        (Self::LINEAR + u64::from(exp - 7) * (1 << Self::SUB_BITS) + sub) as usize
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < Self::LINEAR {
            return i;
        }
        let exp = (i - Self::LINEAR) >> Self::SUB_BITS;
        let sub = (i - Self::LINEAR) & ((1 << Self::SUB_BITS) - 1);
        let lower = ((1 << Self::SUB_BITS) + sub) << (exp + 1);
        lower + (1 << (exp + 1)) - 1
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.samples += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.samples += other.samples;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), to within the bucket width.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

/// What the threads share.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// When publishing started, in µs since `epoch` (`UNKNOWN` before).
    publish_start_us: AtomicU64,
    /// Events published so far: every `n` below it exists.
    published: AtomicU64,
    /// Events published in all, once the publisher is done (`UNKNOWN` before).
    total: AtomicU64,
    /// Set to end the client loops.
    stop: std::sync::atomic::AtomicBool,
    /// Clients whose first stream is open.
    opened: AtomicUsize,
    /// Clients that have received the last event.
    done: AtomicUsize,
    /// Streams reopened with `Last-Event-ID`.
    resumes: AtomicU64,
}

impl Shared {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// The event data.
#[derive(Deserialize)]
struct Payload {
    n: u64,
    t_us: u64,
}

// ---------------------------------------------------------------------------------------------------------
// The chunked transfer coding, just as much of it as reading an event stream needs.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size.
    Size {
        size: u64,
        digits: u8,
    },
    /// The rest of the size line (extensions, CR) up to its LF.
    SizeLine {
        size: u64,
    },
    Data {
        left: u64,
    },
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last chunk arrived: the stream is over.
    End,
}

#[derive(Debug)]
struct Chunked {
    state: ChunkState,
    /// Framing bytes in the current line, bounded.
    line: usize,
}

impl Chunked {
    fn new() -> Self {
        Chunked { state: ChunkState::Size { size: 0, digits: 0 }, line: 0 }
    }

    fn ended(&self) -> bool {
        self.state == ChunkState::End
    }

    /// Consumes framing at the front of `input` and returns the next run of data after it; `None` once `input`
    /// is used up or the body has ended.
    fn data<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
        loop {
            if let ChunkState::Data { left } = self.state {
                if input.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                let (data, rest) = input.split_at(take);
                *input = rest;
                let left = left - take as u64;
                self.state = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data { left } };
                return Ok(Some(data));
            }
            if self.state == ChunkState::End {
                return Ok(None);
            }
            let Some((&b, rest)) = input.split_first() else {
                return Ok(None);
            };
            *input = rest;
            self.line += 1;
            if self.line > 256 {
                return Err("chunk framing line too long");
            }
            let digit = char::from(b).to_digit(16);
            self.state = match (self.state, digit, b) {
                (ChunkState::Size { size, digits }, Some(d), _) => {
                    if digits == 15 {
                        return Err("chunk size too large");
                    }
                    ChunkState::Size { size: size << 4 | u64::from(d), digits: digits + 1 }
                }
                (ChunkState::Size { digits: 0, .. }, None, _) => return Err("missing chunk size"),
                (ChunkState::Size { size, .. } | ChunkState::SizeLine { size }, _, b'\n') => {
                    self.line = 0;
                    if size == 0 { ChunkState::End } else { ChunkState::Data { left: size } }
                }
                (ChunkState::Size { size, .. } | ChunkState::SizeLine { size }, _, _) => ChunkState::SizeLine { size },
                (ChunkState::DataEnd, _, b'\r') => ChunkState::DataEnd,
                (ChunkState::DataEnd, _, b'\n') => {
                    self.line = 0;
                    ChunkState::Size { size: 0, digits: 0 }
                }
                (ChunkState::DataEnd, _, _) => return Err("chunk data longer than its size"),
                (state @ (ChunkState::Data { .. } | ChunkState::End), _, _) => state,
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The clients.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No connection: waiting for a (re)connect timer.
    Idle,
    /// Connecting, or sending the request.
    Connecting,
    /// Reading the response head.
    Head,
    /// Reading events.
    Body,
}

/// One subscriber and everything it has received.
#[derive(Debug)]
struct Client {
    stream: Option<TcpStream>,
    phase: Phase,
    request: Vec<u8>,
    sent: usize,
    head: Vec<u8>,
    chunked: Chunked,
    decoder: Decoder,
    /// The body decoded so far ends a line: a `:` next starts a comment.
    line_start: bool,
    /// Bit `n` set once event `n` has arrived.
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    reordered: u64,
    malformed: u64,
    last_n: Option<u64>,
    /// The id of event `last_n`.
    last_id: u64,
    resets: u64,
    keep_alives: u64,
    resumes: u64,
    disconnects: u64,
    server_closes: u64,
    /// The current connection sent `Last-Event-ID`.
    resuming: bool,
    /// Connections opened so far: the next goes to node `(client + connects) % nodes`.
    connects: usize,
    /// Events numbered below this were published before the current stream opened (replays on resume).
    live_from: u64,
    opened: bool,
    done: bool,
}

impl Client {
    fn new(expected_events: u64) -> Self {
        Client {
            stream: None,
            phase: Phase::Idle,
            request: Vec::new(),
            sent: 0,
            head: Vec::new(),
            chunked: Chunked::new(),
            decoder: Decoder::with_max_event_size(MAX_EVENT),
            line_start: true,
            seen: vec![0; expected_events.div_ceil(64) as usize],
            received: 0,
            duplicates: 0,
            reordered: 0,
            malformed: 0,
            last_n: None,
            last_id: 0,
            resets: 0,
            keep_alives: 0,
            resumes: 0,
            disconnects: 0,
            server_closes: 0,
            resuming: false,
            connects: 0,
            live_from: 0,
            opened: false,
            done: false,
        }
    }

    fn has(&self, n: u64) -> bool {
        self.seen.get((n / 64) as usize).is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    /// Distinct events received with `n` below `total`, and all distinct events.
    fn unique(&self, total: u64) -> (u64, u64) {
        let mut below = 0;
        let mut all = 0;
        for (i, &w) in self.seen.iter().enumerate() {
            let first = i as u64 * 64;
            all += u64::from(w.count_ones());
            if first + 64 <= total {
                below += u64::from(w.count_ones());
            } else if first < total {
                let mask = (1u64 << (total - first)) - 1;
                below += u64::from((w & mask).count_ones());
            }
        }
        (below, all)
    }

    /// The first few `n` below `total` never received.
    fn missing(&self, total: u64, at_most: usize) -> Vec<u64> {
        (0..total).filter(|&n| !self.has(n)).take(at_most).collect()
    }

    /// Counts comment lines (the server's only comments are keep-alives) in decoded body bytes.
    fn count_comments(&mut self, data: &[u8]) {
        for &b in data {
            if self.line_start && b == b':' {
                self.keep_alives += 1;
            }
            self.line_start = b == b'\n' || b == b'\r';
        }
    }

    /// Records one event: a `reset`, or a message whose `n` is checked against what arrived before.
    fn on_event(&mut self, event: &MessageEvent, now_us: u64, hist: &mut Histogram, limit: u64) {
        match event.event_type.as_str() {
            "message" => {}
            "reset" => {
                self.resets += 1;
                return;
            }
            _ => {
                self.malformed += 1;
                return;
            }
        }
        let Ok(payload) = serde_json::from_str::<Payload>(&event.data) else {
            self.malformed += 1;
            return;
        };
        let n = payload.n;
        // The hub numbers events with one increasing sequence and nothing else is published, so ids are
        // numbers that grow with n.
        let Ok(id) = event.last_event_id.parse::<u64>() else {
            self.malformed += 1;
            return;
        };
        if n >= limit || self.last_n.is_some_and(|last| n > last && id <= self.last_id) {
            self.malformed += 1;
            return;
        }
        self.received += 1;
        let word = (n / 64) as usize;
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let bit = 1u64 << (n % 64);
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= bit;
            if self.last_n.is_some_and(|last| n < last) {
                self.reordered += 1;
            }
        }
        self.last_n = Some(n);
        self.last_id = id;
        if n >= self.live_from {
            hist.record(now_us.saturating_sub(payload.t_us));
        }
    }
}

/// Why a connection's input ended the connection.
#[derive(Debug)]
enum Outcome {
    Fine,
    /// The server answered with something other than `200` (`503` at its connection limit, say).
    Refused,
    /// The stream ended with the last chunk.
    Ended,
    Protocol(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Connect,
    Disconnect,
}

/// What one client loop found, merged over loops at the end.
#[derive(Debug)]
struct Tally {
    clients: usize,
    complete: usize,
    lost: u64,
    clients_with_loss: usize,
    duplicates: u64,
    reordered: u64,
    malformed: u64,
    received: u64,
    resets: u64,
    keep_alives: u64,
    clients_with_keep_alive: usize,
    resumes: u64,
    disconnects: u64,
    clients_disconnecting: usize,
    server_closes: u64,
    refused: u64,
    connect_errors: u64,
    protocol_errors: u64,
    hist: Histogram,
    /// (client, lost, first missing `n`, resumes, phase) of a few clients that lost events or never finished.
    examples: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            clients: 0,
            complete: 0,
            lost: 0,
            clients_with_loss: 0,
            duplicates: 0,
            reordered: 0,
            malformed: 0,
            received: 0,
            resets: 0,
            keep_alives: 0,
            clients_with_keep_alive: 0,
            resumes: 0,
            disconnects: 0,
            clients_disconnecting: 0,
            server_closes: 0,
            refused: 0,
            connect_errors: 0,
            protocol_errors: 0,
            hist: Histogram::new(),
            examples: Vec::new(),
        }
    }

    fn merge(&mut self, o: Tally) {
        self.clients += o.clients;
        self.complete += o.complete;
        self.lost += o.lost;
        self.clients_with_loss += o.clients_with_loss;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.malformed += o.malformed;
        self.received += o.received;
        self.resets += o.resets;
        self.keep_alives += o.keep_alives;
        self.clients_with_keep_alive += o.clients_with_keep_alive;
        self.resumes += o.resumes;
        self.disconnects += o.disconnects;
        self.clients_disconnecting += o.clients_disconnecting;
        self.server_closes += o.server_closes;
        self.refused += o.refused;
        self.connect_errors += o.connect_errors;
        self.protocol_errors += o.protocol_errors;
        self.hist.merge(&o.hist);
        let room = 8usize.saturating_sub(self.examples.len());
        self.examples.extend(o.examples.into_iter().take(room));
    }
}

/// One client event loop, serving its share of the clients.
struct ClientLoop {
    shared: Arc<Shared>,
    /// One per node.
    addrs: Vec<SocketAddr>,
    poll: Poll,
    /// Global number of `clients[0]`, for reports.
    first: usize,
    clients: Vec<Client>,
    timers: BinaryHeap<Reverse<(Instant, usize, Action)>>,
    /// (ms after publishing starts, client), armed once publishing starts.
    disconnect_plan: Vec<(u64, usize)>,
    plan_armed: bool,
    rng: Rng,
    hist: Histogram,
    /// Clients not opened yet, and first connections in progress.
    next_to_open: usize,
    opening: usize,
    /// Events published in all, once known.
    total: Option<u64>,
    /// `n` beyond this is malformed (keeps a broken stream from growing the bitsets).
    limit: u64,
    refused: u64,
    connect_errors: u64,
    protocol_errors: u64,
}

impl ClientLoop {
    fn new(
        shared: Arc<Shared>,
        addrs: Vec<SocketAddr>,
        first: usize,
        count: usize,
        disconnect_plan: Vec<(u64, usize)>,
        expected_events: u64,
        seed: u64,
    ) -> io::Result<Self> {
        Ok(ClientLoop {
            shared,
            addrs,
            poll: Poll::new()?,
            first,
            clients: (0..count).map(|_| Client::new(expected_events)).collect(),
            timers: BinaryHeap::new(),
            disconnect_plan,
            plan_armed: false,
            rng: Rng::new(seed),
            hist: Histogram::new(),
            next_to_open: 0,
            opening: 0,
            total: None,
            limit: expected_events.saturating_mul(4).max(1024),
            refused: 0,
            connect_errors: 0,
            protocol_errors: 0,
        })
    }

    fn run(mut self) -> io::Result<Tally> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        while !self.shared.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            while self.next_to_open < self.clients.len() && self.opening < CONNECTS_IN_FLIGHT {
                self.opening += 1;
                self.next_to_open += 1;
                self.connect(self.next_to_open - 1, now);
            }
            self.arm_disconnects();
            while let Some(&Reverse((at, idx, action))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                match action {
                    Action::Connect => self.connect(idx, now),
                    Action::Disconnect => {
                        if !self.disconnect(idx, now) {
                            self.timers.push(Reverse((now + POSTPONE, idx, Action::Disconnect)));
                        }
                    }
                }
            }
            self.learn_total();
            let timeout = match self.timers.peek() {
                Some(Reverse((at, _, _))) => at.saturating_duration_since(now).min(Duration::from_millis(20)),
                None => Duration::from_millis(20),
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let idx = event.token().0;
                if idx >= self.clients.len() {
                    continue;
                }
                if self.clients[idx].phase == Phase::Connecting && (event.is_writable() || event.is_error()) {
                    self.send_request(idx);
                }
                if matches!(self.clients[idx].phase, Phase::Head | Phase::Body)
                    && (event.is_readable() || event.is_read_closed() || event.is_error())
                {
                    // A short read empties the socket, and more data brings a new edge; only a close or an error
                    // needs reading to the end now, or it would go unnoticed.
                    let drain = event.is_read_closed() || event.is_error();
                    self.read(idx, &mut buf, drain);
                }
            }
        }
        Ok(self.tally())
    }

    fn arm_disconnects(&mut self) {
        if self.plan_armed {
            return;
        }
        let start = self.shared.publish_start_us.load(Ordering::Acquire);
        if start == UNKNOWN {
            return;
        }
        self.plan_armed = true;
        let base = self.shared.epoch + Duration::from_micros(start);
        for &(after_ms, idx) in &self.disconnect_plan {
            self.timers.push(Reverse((base + Duration::from_millis(after_ms), idx, Action::Disconnect)));
        }
    }

    fn learn_total(&mut self) {
        if self.total.is_some() {
            return;
        }
        let total = self.shared.total.load(Ordering::Acquire);
        if total == UNKNOWN {
            return;
        }
        self.total = Some(total);
        for idx in 0..self.clients.len() {
            self.check_done(idx);
        }
    }

    fn check_done(&mut self, idx: usize) {
        let Some(total) = self.total else { return };
        let c = &mut self.clients[idx];
        if !c.done && total > 0 && c.has(total - 1) {
            c.done = true;
            self.shared.done.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn connect(&mut self, idx: usize, now: Instant) {
        let c = &mut self.clients[idx];
        debug_assert!(c.stream.is_none());
        // Each reconnection goes to the next node: a resume never returns to the node the client left.
        let addr = self.addrs[(self.first + idx + c.connects) % self.addrs.len()];
        c.connects += 1;
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                self.connect_errors += 1;
                if self.connect_errors <= 3 {
                    eprintln!("soak: connect failed: {e}; retrying");
                }
                self.timers.push(Reverse((now + RETRY_DELAY, idx, Action::Connect)));
                return;
            }
        };
        if let Err(e) = self.poll.registry().register(&mut stream, Token(idx), Interest::READABLE | Interest::WRITABLE)
        {
            self.connect_errors += 1;
            eprintln!("soak: registering a socket failed: {e}");
            self.timers.push(Reverse((now + RETRY_DELAY, idx, Action::Connect)));
            return;
        }
        let last = c.decoder.last_event_id();
        c.resuming = !last.is_empty();
        let resume = if c.resuming { format!("Last-Event-ID: {last}\r\n") } else { String::new() };
        c.request = format!(
            "GET /stream?topic={TOPIC} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .into_bytes();
        c.sent = 0;
        c.stream = Some(stream);
        c.phase = Phase::Connecting;
    }

    /// Once connected, writes the request (it fits any socket buffer, but a partial write waits for the next
    /// writable edge all the same).
    fn send_request(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        let Some(stream) = c.stream.as_mut() else { return };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.connection_failed(idx, &format!("connect: {e}")),
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.connection_failed(idx, &format!("connect: {e}")),
        }
        while c.sent < c.request.len() {
            match stream.write(&c.request[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.connection_failed(idx, &format!("sending the request: {e}")),
            }
        }
        c.request = Vec::new();
        c.phase = Phase::Head;
    }

    fn read(&mut self, idx: usize, buf: &mut [u8], drain: bool) {
        loop {
            let Some(stream) = self.clients[idx].stream.as_mut() else { return };
            match stream.read(buf) {
                Ok(0) => {
                    self.clients[idx].server_closes += 1;
                    return self.drop_connection(idx, RETRY_DELAY);
                }
                Ok(n) => {
                    // Taken per read, so that latency includes time spent on other connections before this one.
                    let now_us = self.shared.micros(Instant::now());
                    match self.consume(idx, &buf[..n], now_us) {
                        Outcome::Fine => {}
                        Outcome::Refused => {
                            self.refused += 1;
                            return self.drop_connection(idx, Duration::from_secs(1));
                        }
                        Outcome::Ended => {
                            self.clients[idx].server_closes += 1;
                            return self.drop_connection(idx, RETRY_DELAY);
                        }
                        Outcome::Protocol(e) => return self.connection_failed(idx, &e),
                    }
                    if n < buf.len() && !drain {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.clients[idx].server_closes += 1;
                    return self.drop_connection(idx, RETRY_DELAY);
                }
            }
        }
    }

    fn consume(&mut self, idx: usize, mut data: &[u8], now_us: u64) -> Outcome {
        let c = &mut self.clients[idx];
        if c.phase == Phase::Head {
            let before = c.head.len();
            c.head.extend_from_slice(data);
            let Some(end) = c.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.head.len() > MAX_HEAD {
                    return Outcome::Protocol("response head too long".into());
                }
                return Outcome::Fine;
            };
            let head = String::from_utf8_lossy(&c.head[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200 ") {
                return Outcome::Refused;
            }
            if !head.contains("\r\ntransfer-encoding: chunked") || !head.contains("\r\ncontent-type: text/event-stream")
            {
                return Outcome::Protocol(format!("unexpected stream head: {head:?}"));
            }
            data = &data[end + 4 - before..];
            c.head = Vec::new();
            c.phase = Phase::Body;
            c.chunked = Chunked::new();
            c.decoder.reset_stream();
            c.line_start = true;
            c.live_from = self.shared.published.load(Ordering::Acquire);
            if c.resuming {
                c.resumes += 1;
                self.shared.resumes.fetch_add(1, Ordering::Relaxed);
            }
            if !c.opened {
                c.opened = true;
                self.opening -= 1;
                self.shared.opened.fetch_add(1, Ordering::AcqRel);
            }
        }
        loop {
            let piece = match c.chunked.data(&mut data) {
                Ok(Some(piece)) => piece,
                Ok(None) => break,
                Err(e) => return Outcome::Protocol(e.into()),
            };
            c.count_comments(piece);
            if let Err(e) = c.decoder.feed(piece) {
                c.malformed += 1;
                eprintln!("soak: client {}: {e}", self.first + idx);
            }
            while let Some(event) = c.decoder.next_event() {
                c.on_event(&event, now_us, &mut self.hist, self.limit);
            }
        }
        let ended = c.chunked.ended();
        self.check_done(idx);
        if ended { Outcome::Ended } else { Outcome::Fine }
    }

    /// Closes the connection and reconnects after `delay`; the decoder keeps the last event id.
    fn drop_connection(&mut self, idx: usize, delay: Duration) {
        let c = &mut self.clients[idx];
        c.stream = None;
        c.phase = Phase::Idle;
        c.request = Vec::new();
        c.head = Vec::new();
        self.timers.push(Reverse((Instant::now() + delay, idx, Action::Connect)));
    }

    fn connection_failed(&mut self, idx: usize, why: &str) {
        self.protocol_errors += 1;
        if self.protocol_errors <= 5 {
            eprintln!("soak: client {}: {why}; reconnecting", self.first + idx);
        }
        self.drop_connection(idx, RETRY_DELAY);
    }

    /// A planned disconnect: only from a stream that has delivered an event, so that the client has a
    /// `Last-Event-ID` to resume from. Returns false to be tried again later.
    fn disconnect(&mut self, idx: usize, now: Instant) -> bool {
        let c = &mut self.clients[idx];
        if c.phase != Phase::Body || c.decoder.last_event_id().is_empty() {
            return false;
        }
        if let Some(stream) = c.stream.take() {
            if self.rng.below(2) == 0 {
                // An abortive close: the server sees a reset instead of an end of stream.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            drop(stream);
        }
        c.phase = Phase::Idle;
        c.disconnects += 1;
        let delay = Duration::from_millis(self.rng.below(RECONNECT_DELAY_MAX_MS + 1));
        self.timers.push(Reverse((now + delay, idx, Action::Connect)));
        true
    }

    fn tally(self) -> Tally {
        let total = self.total.unwrap_or_else(|| self.shared.published.load(Ordering::Acquire));
        let mut t = Tally::new();
        t.clients = self.clients.len();
        t.refused = self.refused;
        t.connect_errors = self.connect_errors;
        t.protocol_errors = self.protocol_errors;
        for (i, c) in self.clients.iter().enumerate() {
            let (below, all) = c.unique(total);
            let lost = total - below;
            t.complete += usize::from(c.done);
            t.lost += lost;
            t.clients_with_loss += usize::from(lost > 0);
            t.duplicates += c.received - all;
            t.reordered += c.reordered;
            t.malformed += c.malformed;
            t.received += c.received;
            t.resets += c.resets;
            t.keep_alives += c.keep_alives;
            t.clients_with_keep_alive += usize::from(c.keep_alives > 0);
            t.resumes += c.resumes;
            t.disconnects += c.disconnects;
            t.clients_disconnecting += usize::from(c.disconnects > 0);
            t.server_closes += c.server_closes;
            if (lost > 0 || c.received != all || !c.done) && t.examples.len() < 8 {
                t.examples.push(format!(
                    "client {}: lost {lost} (first missing {:?}), duplicates {}, resumes {}, disconnects {}, \
                     server closes {}, resets {}, phase {:?}, last id {:?}",
                    self.first + i,
                    c.missing(total, 8),
                    c.received - all,
                    c.resumes,
                    c.disconnects,
                    c.server_closes,
                    c.resets,
                    c.phase,
                    c.decoder.last_event_id(),
                ));
            }
        }
        t.hist = self.hist;
        t
    }
}

// ---------------------------------------------------------------------------------------------------------
// The publisher.

#[derive(Debug, Default)]
struct PublishReport {
    published: u64,
    busy_retries: u64,
    /// How far behind its schedule the publisher fell at worst (a busy machine).
    max_lag: Duration,
    elapsed: Duration,
    error: Option<String>,
}

/// Publishes through each hub in turn (one per node).
fn publish_events(hubs: &[Hub], shared: &Shared, total: u64, rate: f64) -> PublishReport {
    let mut report = PublishReport::default();
    let start = Instant::now();
    shared.publish_start_us.store(shared.micros(start), Ordering::Release);
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else {
            report.max_lag = report.max_lag.max(now - due);
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let t_us = shared.micros(Instant::now());
            let event = Event::new().data(format!("{{\"n\": {n}, \"t_us\": {t_us}}}"));
            match hubs[(n % hubs.len() as u64) as usize].publish(TOPIC, event) {
                Ok(_) => break,
                Err(PublishError::Busy | PublishError::Backbone(_)) if Instant::now() < give_up => {
                    report.busy_retries += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    report.error = Some(format!("publishing event {n}: {e}"));
                    report.elapsed = start.elapsed();
                    shared.total.store(n, Ordering::Release);
                    return report;
                }
            }
        }
        report.published = n + 1;
        shared.published.store(n + 1, Ordering::Release);
    }
    report.elapsed = start.elapsed();
    shared.total.store(total, Ordering::Release);
    report
}

// ---------------------------------------------------------------------------------------------------------

/// Waits until `cond` holds or `timeout` passes, printing `progress` every `every`; true if it held.
fn wait_for(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
    mut progress: impl FnMut(Duration),
) -> bool {
    let start = Instant::now();
    let mut next_print = start + every;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= start + timeout {
            return false;
        }
        if now >= next_print {
            progress(now - start);
            next_print += every;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Disconnect plans: a quarter of the clients, each 1 to 3 times, spread over 5 %..95 % of publishing.
/// Returns per client loop the (ms after publishing starts, local client index) pairs.
fn plan_disconnects(options: &Options, shards: &[(usize, usize)], rng: &mut Rng) -> (Vec<Vec<(u64, usize)>>, usize) {
    let n = options.streams;
    let mut order: Vec<usize> = (0..n).collect();
    let chosen = (n as f64 * options.resumes) as usize;
    // A partial Fisher-Yates shuffle: the first `chosen` are a uniform sample.
    for i in 0..chosen {
        let j = i + rng.below((n - i) as u64) as usize;
        order.swap(i, j);
    }
    let window_ms = options.seconds * 1000.0;
    let mut plans = vec![Vec::new(); shards.len()];
    for &client in &order[..chosen] {
        let shard = shards.iter().position(|&(first, count)| client >= first && client < first + count).unwrap_or(0);
        for _ in 0..1 + rng.below(3) {
            let at = window_ms * (0.05 + 0.9 * (rng.below(1_000_000) as f64 / 1_000_000.0));
            plans[shard].push((at as u64, client - shards[shard].0));
        }
    }
    (plans, chosen)
}

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).try_init();
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    run(options)
}

fn run(mut options: Options) -> ExitCode {
    let wall = Instant::now();
    let requested = options.streams;
    let fd_limit = soft_fd_limit();
    match fd_limit {
        Some(limit) if limit < (requested as u64).saturating_mul(2) + FD_RESERVE as u64 => {
            let fit = (limit.saturating_sub(FD_RESERVE as u64) / 2) as usize;
            if fit == 0 {
                eprintln!("soak: the open-file limit ({limit}) leaves no room for streams");
                return ExitCode::FAILURE;
            }
            eprintln!(
                "soak: WARNING: the soft open-file limit is {limit}, below the {} that {requested} streams need \
                 (2 per stream + {FD_RESERVE}); running {fit} streams. `ulimit -n 65536` first allows the full count.",
                requested * 2 + FD_RESERVE
            );
            options.streams = fit;
        }
        Some(_) => {}
        None => eprintln!("soak: WARNING: cannot read the open-file limit; trying {requested} streams"),
    }
    let n = options.streams;
    let total = options.total_events();
    let mode = if options.quick { "quick" } else { "full" };
    println!(
        "soak ({mode}): {n} streams, {total} events ({} /s for {} s), {} client loops, seed {}",
        options.rate, options.seconds, options.threads, options.seed
    );

    let rss_start = status_kib("VmRSS");
    let load_start = load_average();
    let backlog_events = options.backlog.unwrap_or_else(|| ((options.rate * BACKLOG_SECONDS).ceil() as usize).max(100));
    let hub_config = HubConfig {
        backlog: BacklogLimits { max_events: backlog_events, max_bytes: (backlog_events * 256).max(1 << 20) },
        ..HubConfig::default()
    };
    let config = ServerConfig {
        backlog: 4096,
        max_connections: n * 2 + FD_RESERVE,
        keep_alive: Some(KEEP_ALIVE),
        shutdown_grace: Duration::from_secs(2),
        ..ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    // Several nodes share a Redis: the one named, or one started for this run (stopped when it ends).
    let mut own_redis = None;
    let redis_url = match (&options.redis_url, options.nodes) {
        (_, 1) => None,
        (Some(url), _) => Some(url.clone()),
        (None, _) => match conduit::redis::testing::RedisServer::start(conduit::redis::testing::Persistence::None) {
            Some(server) => {
                let url = server.url();
                own_redis = Some(server);
                Some(url)
            }
            None => {
                eprintln!("soak: --nodes needs redis-server (apt-get install redis-server) or --redis-url");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut servers = Vec::new();
    let mut hubs = Vec::new();
    for _ in 0..options.nodes {
        let hub = match &redis_url {
            None => Hub::new(hub_config.clone()),
            Some(url) => {
                let mut redis = match conduit::redis::RedisConfig::from_url(url) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("soak: --redis-url: {e}");
                        return ExitCode::from(2);
                    }
                };
                redis.backlog = backlog_events;
                match conduit::redis::RedisBackbone::new(redis) {
                    Ok(backbone) => Hub::with_backbone(hub_config.clone(), backbone),
                    Err(e) => {
                        eprintln!("soak: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
        };
        let router = Router::new().get("/stream", |req: &Request| Sse::subscribe_request(req));
        match Server::bind_with_hub(config.clone(), router, &hub).and_then(Server::spawn) {
            Ok(s) => servers.push(s),
            Err(e) => {
                eprintln!("soak: starting a server failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        hubs.push(hub);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.local_addr()).collect();
    let handles: Vec<_> = servers.iter().map(|s| s.handle().clone()).collect();
    let streams_open = || handles.iter().map(|h| h.streams()).sum::<usize>();
    let connections_open = || handles.iter().map(|h| h.connections()).sum::<usize>();
    if let Some(url) = &redis_url {
        println!("  {} nodes on Redis {url}: {addrs:?}", options.nodes);
    }

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        publish_start_us: AtomicU64::new(UNKNOWN),
        published: AtomicU64::new(0),
        total: AtomicU64::new(UNKNOWN),
        stop: std::sync::atomic::AtomicBool::new(false),
        opened: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        resumes: AtomicU64::new(0),
    });
    let threads = options.threads.min(n);
    let shards: Vec<(usize, usize)> =
        (0..threads).map(|t| (t * n / threads, (t + 1) * n / threads - t * n / threads)).collect();
    let mut rng = Rng::new(options.seed);
    let (plans, disconnecting) = plan_disconnects(&options, &shards, &mut rng);
    let planned_disconnects: usize = plans.iter().map(Vec::len).sum();

    let rss_before = status_kib("VmRSS");
    let mut loops = Vec::new();
    for (t, (&(first, count), plan)) in shards.iter().zip(plans).enumerate() {
        let loop_shared = Arc::clone(&shared);
        let seed = rng.next();
        let spawned = thread::Builder::new().name(format!("soak-clients-{t}")).spawn({
            let addrs = addrs.clone();
            move || ClientLoop::new(loop_shared, addrs, first, count, plan, total, seed)?.run()
        });
        match spawned {
            Ok(h) => loops.push(h),
            Err(e) => {
                eprintln!("soak: spawning a client loop failed: {e}");
                shared.stop.store(true, Ordering::Release);
                return ExitCode::FAILURE;
            }
        }
    }

    let mut failures: Vec<String> = Vec::new();
    // Opening is paced by the client loops; allow generously for a slow machine, but not forever.
    let open_timeout = Duration::from_secs(30) + Duration::from_millis(5 * n as u64);
    let open_started = Instant::now();
    let opened = wait_for(
        open_timeout,
        Duration::from_secs(5),
        || shared.opened.load(Ordering::Acquire) == n,
        |t| println!("  opening: {} of {n} streams after {:.0?}", shared.opened.load(Ordering::Acquire), t),
    );
    let open_time = open_started.elapsed();
    let rss_open = status_kib("VmRSS");
    let server_streams_open = streams_open();
    // The Redis server's own CPU, when this run started it.
    let redis_cpu = || {
        let pid = own_redis.as_ref()?.pid()?;
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, cpu)| cpu)
    };
    let redis_cpu_start = redis_cpu();
    let mut publish = PublishReport::default();
    let mut final_wait = Duration::ZERO;
    if !opened {
        failures.push(format!(
            "only {} of {n} streams opened within {open_timeout:?}",
            shared.opened.load(Ordering::Acquire)
        ));
    } else {
        println!(
            "  {n} streams open in {open_time:.2?} (server counts {server_streams_open}); idle {IDLE_BEFORE_PUBLISHING:?}, then publishing"
        );
        thread::sleep(IDLE_BEFORE_PUBLISHING);
        let publisher = {
            let (hubs, shared) = (hubs.clone(), Arc::clone(&shared));
            let rate = options.rate;
            thread::Builder::new()
                .name("soak-publisher".into())
                .spawn(move || publish_events(&hubs, &shared, total, rate))
        };
        match publisher {
            Ok(publisher) => {
                let every = if options.quick { Duration::from_secs(1) } else { Duration::from_secs(10) };
                let bound = Duration::from_secs_f64(options.seconds * 2.0 + 60.0);
                let finished = wait_for(
                    bound,
                    every,
                    || publisher.is_finished(),
                    |t| {
                        println!(
                            "  {:>5.1} s: published {} of {total}, server streams {}, resumes {}, RSS {}",
                            t.as_secs_f64(),
                            shared.published.load(Ordering::Acquire),
                            streams_open(),
                            shared.resumes.load(Ordering::Relaxed),
                            mib(status_kib("VmRSS")),
                        )
                    },
                );
                if finished {
                    match publisher.join() {
                        Ok(report) => publish = report,
                        Err(_) => failures.push("the publisher panicked".into()),
                    }
                } else {
                    failures.push(format!("publishing did not end within {bound:?}"));
                }
                if let Some(e) = &publish.error {
                    failures.push(e.clone());
                }
            }
            Err(e) => failures.push(format!("spawning the publisher failed: {e}")),
        }
        if failures.is_empty() {
            let started = Instant::now();
            let all_done = wait_for(
                FINAL_WAIT,
                Duration::from_secs(5),
                || shared.done.load(Ordering::Acquire) == n,
                |t| {
                    println!(
                        "  waiting: {} of {n} have the last event after {t:.0?}",
                        shared.done.load(Ordering::Acquire)
                    )
                },
            );
            final_wait = started.elapsed();
            if !all_done {
                failures.push(format!(
                    "after {FINAL_WAIT:?} only {} of {n} clients had received the last event",
                    shared.done.load(Ordering::Acquire)
                ));
            }
        }
    }
    let redis_cpu_used = redis_cpu().zip(redis_cpu_start).map(|(end, start)| end - start);
    let server_streams_end = streams_open();
    let server_connections_end = connections_open();
    let (server_cpu, client_cpu) = thread_cpu();
    let load_end = load_average();

    shared.stop.store(true, Ordering::Release);
    let mut tally = Tally::new();
    for h in loops {
        match h.join() {
            Ok(Ok(t)) => tally.merge(t),
            Ok(Err(e)) => failures.push(format!("a client loop failed: {e}")),
            Err(_) => failures.push("a client loop panicked".into()),
        }
    }
    for server in servers {
        if let Err(e) = server.shutdown() {
            failures.push(format!("server shutdown: {e}"));
        }
    }
    drop(hubs);
    drop(own_redis);
    let rss_peak = status_kib("VmHWM");
    let wall = wall.elapsed();

    if tally.lost > 0 {
        failures.push(format!("{} events lost by {} clients", tally.lost, tally.clients_with_loss));
    }
    if tally.duplicates > 0 {
        failures.push(format!("{} duplicate events", tally.duplicates));
    }
    if tally.reordered > 0 {
        failures.push(format!("{} events out of publish order", tally.reordered));
    }
    if tally.malformed > 0 {
        failures.push(format!("{} malformed events", tally.malformed));
    }

    let per_stream = match (rss_before, rss_open) {
        (Some(b), Some(a)) => format!("{:.1} KiB", a.saturating_sub(b) as f64 / n as f64),
        _ => "?".into(),
    };
    let verdict = |ok: bool| if ok { "ok" } else { "UNEXPECTED" };
    let fd_note = match fd_limit {
        Some(l) if n < requested => format!(" (of {requested} asked; soft fd limit {l})"),
        _ => String::new(),
    };
    println!();
    println!("soak report ({mode}, {} node{})", options.nodes, if options.nodes == 1 { "" } else { "s on Redis" });
    println!("  streams               {n}{fd_note}, {threads} client loops, opened in {open_time:.2?}");
    println!(
        "  events published      {} of {total} in {:.2?} ({} /s asked; worst publisher lag {:.1?}, busy retries {})",
        publish.published, publish.elapsed, options.rate, publish.max_lag, publish.busy_retries
    );
    println!("  events received       {} (all clients)", tally.received);
    println!(
        "  resumes performed     {} ({} planned disconnects of {disconnecting} clients, {} done by {} clients)",
        tally.resumes, planned_disconnects, tally.disconnects, tally.clients_disconnecting
    );
    println!("  lost                  {:<10} {}", tally.lost, verdict(tally.lost == 0));
    println!("  duplicates            {:<10} {}", tally.duplicates, verdict(tally.duplicates == 0));
    println!("  reordered             {:<10} {}", tally.reordered, verdict(tally.reordered == 0));
    println!("  malformed             {:<10} {}", tally.malformed, verdict(tally.malformed == 0));
    println!(
        "  resets                {:<10} {} (expected 0: the backlog holds {backlog_events} events)",
        tally.resets,
        verdict(tally.resets == 0)
    );
    println!(
        "  keep-alive comments   {:<10} {} ({} of {n} streams saw one)",
        tally.keep_alives,
        verdict(tally.keep_alives > 0),
        tally.clients_with_keep_alive
    );
    println!(
        "  closed by the server  {} connections; refused {}, connect errors {}, protocol errors {}",
        tally.server_closes, tally.refused, tally.connect_errors, tally.protocol_errors
    );
    println!(
        "  clients complete      {} of {n} (final wait {final_wait:.2?}); server streams at the end {server_streams_end}, connections {server_connections_end}",
        tally.complete
    );
    println!(
        "  latency (live events) p50 {}, p99 {}, p99.9 {}, max {} over {} events",
        ms(tally.hist.quantile(0.5)),
        ms(tally.hist.quantile(0.99)),
        ms(tally.hist.quantile(0.999)),
        ms((tally.hist.samples > 0).then_some(tally.hist.max)),
        tally.hist.samples
    );
    println!(
        "  memory                VmRSS at start {}, before the streams {}, with them open {}; {per_stream} per stream (server + client side)",
        mib(rss_start),
        mib(rss_before),
        mib(rss_open)
    );
    println!("  peak RSS (VmHWM)      {}", mib(rss_peak));
    println!(
        "  CPU                   server loop {server_cpu:.1} s, client loops {client_cpu:.1} s, whole process {} s",
        process_cpu().map_or_else(|| "?".into(), |c| format!("{c:.1}"))
    );
    let per =
        |cpu: f64, count: u64| if count == 0 { "?".to_owned() } else { format!("{:.2} µs", cpu * 1e6 / count as f64) };
    println!("  server CPU / delivery {} ({} deliveries)", per(server_cpu, tally.received), tally.received);
    if let Some(cpu) = redis_cpu_used {
        println!(
            "  Redis CPU / event     {} ({cpu:.2} s for {} events)",
            per(cpu, publish.published),
            publish.published
        );
    }
    println!("  wall time             {wall:.2?} (load average {load_start} at the start, {load_end} at the end)");
    for example in &tally.examples {
        println!("  {example}");
    }
    if failures.is_empty() {
        println!("PASS");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        ExitCode::FAILURE
    }
}
