//! Fault injection over loopback: a stalled subscriber in a burst, clients that reset, half-close, vanish or
//! send garbage, connection churn, running out of file descriptors, slowloris, and a pipelining flood from a
//! client that never reads. Each test checks that the server stays bounded, frees what the fault held, and
//! goes on serving.
//!
//! Some checks measure the whole process (resident memory, open descriptors), so the tests of this file run
//! one at a time: each holds `serial()` for its whole run.

mod common;

use common::{Conn, TIMEOUT, connect, local_config, roundtrip, spawn_with, spawn_with_hub};
use conduit::server::{Hub, HubConfig, PublishError, Request, Response, Router, Sse};
use conduit::sse::{BacklogLimits, Event};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for a whole test: process-wide measurements must not see another test's sockets or allocations.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `cond` every few milliseconds until it holds; panics with `what` (and `state()`) after `limit`.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool, state: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}; {}", state());
        thread::sleep(Duration::from_millis(5));
    }
}

/// Resident memory of this process (the servers under test run in it).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: usize = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a VmRSS value");
    kib * 1024
}

/// Open file descriptors of a process (listing the directory opens one more, the same every time).
fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// What this process's descriptors point to, for failure messages.
fn fd_targets() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .map(|e| {
            format!(
                "{}: {}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).map_or_else(|e| e.to_string(), |p| p.display().to_string())
            )
        })
        .collect()
}

/// Samples this process's RSS every few milliseconds on a thread; `finish` returns the peak.
struct RssSampler {
    running: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

impl RssSampler {
    fn start(limit: Duration) -> RssSampler {
        let running = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&running);
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut peak = rss_bytes();
            while flag.load(Ordering::Acquire) && Instant::now() < deadline {
                peak = peak.max(rss_bytes());
                thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss_bytes())
        });
        RssSampler { running, thread }
    }

    fn finish(self) -> usize {
        self.running.store(false, Ordering::Release);
        self.thread.join().expect("the RSS sampler panicked")
    }
}

/// A client socket whose receive buffer is set before connecting, so the window it advertises is small from
/// the handshake on. 64 KiB and not less: loopback's MSS is 64 KiB, and smaller windows bring silly-window
/// delays instead of a plain full buffer.
fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Makes dropping `stream` send a reset instead of a FIN.
fn reset_on_drop(stream: &TcpStream) {
    SockRef::from(stream).set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
}

/// Reads and discards until the peer closes (EOF or reset); an error if more than `max_bytes` arrive or it
/// takes longer than `limit`, i.e. the server did not close.
fn drain_until_closed(stream: &mut TcpStream, max_bytes: usize, limit: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while Instant::now() < deadline && total <= max_bytes {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read failed after {total} bytes: {e}")),
        }
    }
    Err(format!("still open after {total} bytes and {limit:?}"))
}

/// Decodes a chunked hub stream whose events are `id: N\ndata: N <payload>\n\n`, checking that the ids run
/// 1, 2, 3... with nothing missing, repeated or damaged. Comments (keep-alives) are skipped.
struct IdReader {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    /// The id of the last complete event.
    last: u32,
    payload_len: usize,
}

impl IdReader {
    /// Bytes read at once. With whole chunks consumed after every read, the buffer never holds more than
    /// this and one partial chunk, so it is allocated once, up front.
    const READ_SIZE: usize = 16 * 1024;

    /// Takes over a connection whose response head has been read.
    fn new(conn: Conn, payload_len: usize) -> IdReader {
        let (stream, early) = conn.into_parts();
        // Touched now, so that the memory the test measures later is the server's, not this buffer's.
        let mut buf = vec![0u8; Self::READ_SIZE + 2 * (payload_len + 64) + early.len()];
        buf.clear();
        buf.extend_from_slice(&early);
        IdReader { stream, buf, pos: 0, last: 0, payload_len }
    }

    /// One read into the buffer; `Ok(0)` at EOF.
    fn fill(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let len = Self::READ_SIZE.min(scratch.len());
        let scratch = &mut scratch[..len];
        let n = self.stream.read(scratch)?;
        self.buf.extend_from_slice(&scratch[..n]);
        Ok(n)
    }

    /// Consumes every complete chunk buffered.
    fn parse(&mut self) -> Result<(), String> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(eol) = rest.windows(2).take(16).position(|w| w == b"\r\n") else {
                if rest.len() >= 16 {
                    return Err(format!("no chunk size line after event {}", self.last));
                }
                break;
            };
            let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| format!("chunk size: {e}"))?;
            let size = usize::from_str_radix(size_text.trim(), 16).map_err(|e| format!("chunk size: {e}"))?;
            if size == 0 {
                return Err(format!("the stream ended after event {}", self.last));
            }
            let start = eol + 2;
            if rest.len() < start + size + 2 {
                break;
            }
            let body = &rest[start..start + size];
            if &rest[start + size..start + size + 2] != b"\r\n" {
                return Err(format!("no CRLF after the chunk following event {}", self.last));
            }
            if body.first() != Some(&b':') {
                let want = self.last + 1;
                let prefix = format!("id: {want}\ndata: {want} ");
                let ok = body.starts_with(prefix.as_bytes())
                    && body.len() == prefix.len() + self.payload_len + 2
                    && body.ends_with(b"\n\n");
                if !ok {
                    let shown = String::from_utf8_lossy(&body[..body.len().min(48)]);
                    return Err(format!("expected event {want}, got {} bytes: {shown:?}", body.len()));
                }
                self.last = want;
            }
            self.pos += start + size + 2;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(())
    }
}

#[test]
fn a_stalled_subscriber_is_cut_off_while_a_hundred_others_get_every_event_of_a_burst() {
    const ACTIVE: usize = 100;
    const READER_THREADS: usize = 4;
    const EVENTS: u32 = 6000;
    const PAYLOAD: usize = 2000;
    const BACKLOG: usize = 200;
    /// The publisher stays at most this many events ahead of the slowest active reader. A burst is published
    /// as fast as the readers take it, not faster: a backlog of 200 cannot make up for readers that are
    /// further behind than that, however fast they are (the server would rightly cut them off too).
    const WINDOW: u32 = 64;
    let _serial = serial();
    let hub = Hub::new(HubConfig {
        backlog: BacklogLimits { max_events: BACKLOG, max_bytes: 1 << 20 },
        ..HubConfig::default()
    });
    let router = Router::new().get("/stream", |req: &Request| Sse::subscribe_request(req));
    let server = spawn_with_hub(local_config(), router, &hub);
    let addr = server.local_addr();
    let handle = server.handle().clone();

    // The stalled subscriber: a 64 KiB receive buffer, and it never reads after the head.
    let mut stalled = Conn::from_stream(connect_small_window(addr));
    stalled.get("/stream?topic=burst");
    assert_eq!(stalled.read_head().status, 200);
    let active: Vec<IdReader> = (0..ACTIVE)
        .map(|_| {
            let mut conn = Conn::open(addr);
            conn.get("/stream?topic=burst");
            assert_eq!(conn.read_head().status, 200);
            IdReader::new(conn, PAYLOAD)
        })
        .collect();
    wait_for(
        "every subscription is registered",
        TIMEOUT,
        || handle.streams() == ACTIVE + 1,
        || format!("{} streams", handle.streams()),
    );

    let payload = "p".repeat(PAYLOAD);
    let baseline_rss = rss_bytes();
    let sampler = RssSampler::start(Duration::from_secs(60));
    let progress: Arc<Vec<AtomicU32>> = Arc::new((0..ACTIVE).map(|_| AtomicU32::new(0)).collect());
    let failed = Arc::new(AtomicBool::new(false));
    let burst_limit = Duration::from_secs(30);
    let mut groups: Vec<Vec<(usize, IdReader)>> = (0..READER_THREADS).map(|_| Vec::new()).collect();
    for (i, reader) in active.into_iter().enumerate() {
        groups[i % READER_THREADS].push((i, reader));
    }
    // Each thread hands its connections back, still open, with its result.
    type Group = Vec<(usize, IdReader)>;
    let readers: Vec<thread::JoinHandle<(Group, Result<(), String>)>> = groups
        .into_iter()
        .map(|mut group| {
            let progress = Arc::clone(&progress);
            let failed = Arc::clone(&failed);
            thread::spawn(move || {
                let result = read_group(&mut group, &progress, &failed, EVENTS, burst_limit);
                if result.is_err() {
                    failed.store(true, Ordering::Release);
                }
                (group, result)
            })
        })
        .collect();

    // The burst: 6000 events of 2 KB, 12 MB in all, far more than the stalled client's buffers and the
    // server socket's send buffer (4 MiB at most here) take.
    let started = Instant::now();
    let mut slowest = 0u32;
    'publish: for i in 1..=EVENTS {
        while i > slowest + WINDOW {
            if failed.load(Ordering::Acquire) || started.elapsed() > burst_limit {
                break 'publish;
            }
            slowest = progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0);
            if i > slowest + WINDOW {
                thread::sleep(Duration::from_micros(200));
            }
        }
        loop {
            // Ids of our own, 1, 2, 3..., so the readers can check for gaps (the hub's own ids come from the clock).
            let event = Event::new().id(i.to_string()).unwrap().data(format!("{i} {payload}"));
            match hub.publish("burst", event) {
                Ok(id) => {
                    assert_eq!(id, i.to_string());
                    break;
                }
                Err(PublishError::Busy) if started.elapsed() < burst_limit => thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("publishing event {i}: {e}"),
            }
        }
    }
    let mut active: Vec<(usize, IdReader)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for reader in readers {
        let (group, result) = reader.join().expect("reader thread");
        active.extend(group);
        errors.extend(result.err());
    }
    let peak_rss = sampler.finish();
    let burst_time = started.elapsed();
    assert!(errors.is_empty(), "active subscribers failed: {errors:?}");
    assert!(active.iter().all(|(_, r)| r.last == EVENTS), "every active subscriber got every event");
    // Memory stayed bounded. What the server needs here: the backlog (200 x 2 KB = 0.4 MB), the events in
    // flight between publisher and loop (at most WINDOW = 64 of them, 128 KB), and per subscriber a write
    // queue of at most stream_high_water (64 KiB) of references to those shared events: about 1 MB (1.5 MiB
    // measured; the readers' buffers are allocated before the baseline). Keeping the stalled subscriber
    // instead of cutting it off means keeping every event it has not taken: 8 MB of this 12 MB burst beyond
    // what its socket buffers hold, growing with every event of a longer one (13 MiB of growth measured with
    // a backlog large enough that it is never cut off). 6 MiB lies well between the two.
    let growth = peak_rss.saturating_sub(baseline_rss);
    assert!(growth < 6 << 20, "RSS grew by {} KiB during the burst", growth >> 10);
    eprintln!(
        "burst of {EVENTS} events to {ACTIVE} subscribers in {burst_time:?}; RSS {} KiB -> peak {} KiB",
        baseline_rss >> 10,
        peak_rss >> 10
    );

    // The stalled one fell out of the backlog and was cut off; the others are still there.
    wait_for(
        "the stalled subscriber is disconnected",
        Duration::from_secs(5),
        || handle.streams() == ACTIVE,
        || format!("{} streams", handle.streams()),
    );
    let mut stalled = IdReader::new(stalled, PAYLOAD);
    let mut scratch = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + TIMEOUT;
    let mut total = 0;
    loop {
        assert!(Instant::now() < deadline, "the stalled subscriber's socket never reached EOF");
        assert!(total < 64 << 20, "the stalled subscriber's socket does not end ({total} bytes)");
        match stalled.fill(&mut scratch) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                if let Err(e) = stalled.parse() {
                    panic!("the stalled subscriber's events: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading what the stalled subscriber was sent: {e}"),
        }
    }
    assert!(stalled.last > 0, "the stalled subscriber got the start of the burst");
    assert!(stalled.last < EVENTS, "the stalled subscriber was cut off, not sent everything");

    drop(stalled);
    assert_eq!(handle.streams(), ACTIVE, "the active subscriptions are still open");
    // Closing the others frees every stream and connection.
    drop(active);
    wait_for(
        "every stream and connection is gone",
        Duration::from_secs(5),
        || handle.streams() == 0 && handle.connections() == 0,
        || format!("{} streams, {} connections", handle.streams(), handle.connections()),
    );
}

/// Reads a group of subscriptions round-robin without blocking, so none of them falls behind while another
/// is read. Returns once each has received `events` events in order.
fn read_group(
    group: &mut [(usize, IdReader)],
    progress: &[AtomicU32],
    failed: &AtomicBool,
    events: u32,
    limit: Duration,
) -> Result<(), String> {
    for (_, reader) in group.iter() {
        reader.stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let mut scratch = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    loop {
        let mut moved = false;
        let mut done = true;
        for (index, reader) in group.iter_mut() {
            if reader.last >= events {
                continue;
            }
            done = false;
            for _ in 0..8 {
                match reader.fill(&mut scratch) {
                    Ok(0) => {
                        return Err(format!("subscriber {index} was disconnected after event {}", reader.last));
                    }
                    Ok(_) => {
                        moved = true;
                        reader.parse().map_err(|e| format!("subscriber {index}: {e}"))?;
                        progress[*index].store(reader.last, Ordering::Release);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("subscriber {index} after event {}: {e}", reader.last)),
                }
            }
        }
        if done {
            return Ok(());
        }
        if failed.load(Ordering::Acquire) {
            return Err("stopped: another reader failed".into());
        }
        if Instant::now() > deadline {
            let behind: Vec<(usize, u32)> = group.iter().map(|(i, r)| (*i, r.last)).collect();
            return Err(format!("timed out after {limit:?}; (subscriber, last id): {behind:?}"));
        }
        if !moved {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// An endless event source that counts how many of its kind are alive, to show the server drops the source
/// of every stream that ends, however it ends.
struct Tracked {
    live: Arc<AtomicUsize>,
    next: u64,
    payload: Arc<str>,
}

impl Iterator for Tracked {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.next += 1;
        Some(Event::new().id(self.next.to_string()).expect("a numeric id").data(&*self.payload))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// 1 KB of reproducible noise.
fn garbage(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn resets_half_closes_partial_heads_garbage_and_churn_leave_nothing_behind() {
    const LARGE: usize = 1 << 20;
    let _serial = serial();
    let live = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let router = {
        let (live, opened) = (Arc::clone(&live), Arc::clone(&opened));
        let payload: Arc<str> = Arc::from("f".repeat(1000));
        Router::new()
            .get("/hello", |_: &Request| Response::text("hello"))
            .get("/large", |_: &Request| Response::text("x".repeat(LARGE)))
            .get("/firehose", move |_: &Request| {
                live.fetch_add(1, Ordering::AcqRel);
                opened.fetch_add(1, Ordering::AcqRel);
                Sse::from_iter(Tracked { live: Arc::clone(&live), next: 0, payload: Arc::clone(&payload) })
            })
    };
    let server = spawn_with(local_config(), router);
    let addr = server.local_addr();
    let handle = server.handle().clone();
    let baseline_fds = open_fds("self");
    assert_eq!(handle.connections(), 0);

    // (a) Clients that reset while the server is writing a fast stream to them: some after reading a little,
    // some right after asking.
    for round in 0..20 {
        let mut conn = Conn::open(addr);
        conn.get("/firehose");
        if round % 2 == 0 {
            assert_eq!(conn.read_head().status, 200);
            conn.read_events(1 + round);
        }
        reset_on_drop(&conn.stream);
    }
    wait_for(
        "the reset streams are gone and their sources dropped",
        Duration::from_secs(5),
        || handle.streams() == 0 && live.load(Ordering::Acquire) == 0,
        || format!("{} streams, {} sources alive", handle.streams(), live.load(Ordering::Acquire)),
    );
    assert!(opened.load(Ordering::Acquire) >= 10, "the streams that were read from were opened");

    // (b) Half-close after the request: an ordinary response still arrives whole (a large one too, which
    // takes many writes after the server saw the EOF), and so do pipelined ones.
    for (target, len) in [("/hello", 5), ("/large", LARGE)] {
        let mut conn = Conn::open(addr);
        conn.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        conn.stream.shutdown(Shutdown::Write).unwrap();
        let (head, body) = conn.read_response();
        assert_eq!((head.status, body.len()), (200, len), "{target}: {}", head.raw);
        assert!(conn.read_to_end().is_empty(), "{target}: the server closes after answering");
    }
    let mut conn = Conn::open(addr);
    conn.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /large HTTP/1.1\r\nHost: t\r\n\r\n");
    conn.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.read_response().1, b"hello");
    assert_eq!(conn.read_response().1.len(), LARGE);
    assert!(conn.read_to_end().is_empty());
    drop(conn);
    // For a stream, EOF from the client means it left: the server closes the stream (perhaps before its
    // head went out, if the EOF came in the same read) rather than writing the endless source to a socket
    // nobody will read.
    let mut conn = Conn::open(addr);
    conn.get("/firehose");
    conn.stream.shutdown(Shutdown::Write).unwrap();
    let (mut stream, _) = conn.into_parts();
    let drained = drain_until_closed(&mut stream, 64 << 20, TIMEOUT);
    assert!(drained.is_ok(), "a half-closed stream is ended by the server: {drained:?}");
    drop(stream);
    wait_for(
        "the half-closed stream is gone",
        Duration::from_secs(5),
        || handle.streams() == 0 && live.load(Ordering::Acquire) == 0,
        || format!("{} streams, {} sources alive", handle.streams(), live.load(Ordering::Acquire)),
    );

    // (c) A partial head (or body), then the client vanishes, with a FIN or a reset. The server must free
    // these at once, not when the request timeout (10 s) fires.
    let partials: [&[u8]; 4] = [
        b"GET /hel",
        b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Half: ",
        b"GET /hello HTTP/1.1\r\n",
        b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten b",
    ];
    for partial in partials {
        for reset in [false, true] {
            let mut stream = connect(addr);
            stream.write_all(partial).unwrap();
            if reset {
                reset_on_drop(&stream);
            }
        }
    }
    wait_for(
        "the vanished clients' connections are closed",
        Duration::from_secs(2),
        || handle.connections() == 0,
        || format!("{} connections", handle.connections()),
    );

    // (d) Garbage: 400, then the server closes.
    for seed in 1..=5 {
        let mut conn = Conn::open(addr);
        conn.send(&garbage(seed));
        let (head, _) = conn.read_response();
        assert_eq!(head.status, 400, "garbage {seed}: {}", head.raw);
        let (mut stream, _) = conn.into_parts();
        assert!(drain_until_closed(&mut stream, 1 << 20, TIMEOUT).is_ok(), "garbage {seed}: closed after the 400");
    }

    // (e) Churn: connections opened and closed as fast as possible, one in ten with a request and response,
    // one in ten ending with a reset.
    let churn = Instant::now();
    let mut completed = 0;
    for i in 0..10_000 {
        if churn.elapsed() > Duration::from_secs(8) {
            break;
        }
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        match i % 10 {
            0 => {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut conn = Conn::from_stream(stream);
                conn.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(conn.read_response().1, b"hello");
            }
            5 => reset_on_drop(&stream),
            _ => {}
        }
        completed += 1;
    }
    eprintln!("churn: {completed} connections in {:?}", churn.elapsed());
    assert!(completed >= 2000, "only {completed} connections opened and closed in {:?}", churn.elapsed());

    // Everything is freed: connections, streams, sources and descriptors. Closes that linger for the peer's
    // EOF end as soon as it comes, and every client here has closed, so this takes well under the 2 s linger.
    wait_for(
        "every connection, stream, source and descriptor is freed",
        Duration::from_secs(5),
        || {
            handle.connections() == 0
                && handle.streams() == 0
                && live.load(Ordering::Acquire) == 0
                && open_fds("self") == baseline_fds
        },
        || {
            format!(
                "{} connections, {} streams, {} sources alive, {} descriptors (baseline {baseline_fds}): {:?}",
                handle.connections(),
                handle.streams(),
                live.load(Ordering::Acquire),
                open_fds("self"),
                fd_targets()
            )
        },
    );

    // And the server still serves.
    let (head, body) = roundtrip(addr, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((head.status, body.as_slice()), (200, &b"hello"[..]));
}

/// The largest send buffer TCP autotuning gives a socket (`tcp_wmem`'s maximum).
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

/// Kills the child when dropped, so that a failing test never leaves a server behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the `sse_simple_server` example into the target directory this test binary was built in and returns
/// the executable Cargo reports.
fn example_server_binary() -> PathBuf {
    // <target dir>/<profile>/deps/faults-<hash>
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("a profile directory");
    let target_dir = profile_dir.parent().expect("a target directory");
    let mut cargo = common::cargo();
    cargo
        .args(["build", "--example", "sse_simple_server", "--message-format=json-render-diagnostics"])
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let mut child = ChildGuard(cargo.spawn().expect("spawn cargo build"));
    let mut stdout = child.0.stdout.take().expect("cargo's stdout");
    let reader = thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for cargo build") {
            break status;
        }
        assert!(Instant::now() < deadline, "cargo build --example sse_simple_server took over 10 minutes");
        thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().expect("cargo output reader");
    assert!(status.success(), "cargo build --example sse_simple_server failed: {status}");
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "sse_simple_server")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the example's executable")
}

/// user + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[test]
fn running_out_of_descriptors_pauses_accepting_without_spinning_or_dying() {
    const FD_LIMIT: usize = 64;
    const HELD: usize = 120;
    let _serial = serial();
    let binary = example_server_binary();
    let mut child = ChildGuard(
        Command::new("sh")
            .arg("-c")
            // The raw test client names the host `t` or `test`.
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" --addr 127.0.0.1:0 --token t --allowed-host t,test"))
            .arg(&binary)
            .env("RUST_LOG", "info")
            .env_remove("CONDUIT_ADDR")
            .env_remove("CONDUIT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the example server"),
    );
    let pid = child.0.id();
    let stderr = child.0.stderr.take().expect("the server's stderr");
    // Its log, line by line; read to the end so the server never blocks on a full pipe.
    let (lines_tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let port: u16 = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no address logged; log: {log:#?}"));
        let port = line
            .split_once("Conduit demo on http://127.0.0.1:")
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok());
        log.push(line);
        if let Some(port) = port {
            break port;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child_pid = pid.to_string();

    // Far more connections than the server has descriptors: it takes what it can, the rest wait in the
    // listen backlog (the kernel completes their handshakes either way).
    let mut held: Vec<TcpStream> =
        (0..HELD).map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect")).collect();
    wait_for(
        "the server has used all its descriptors",
        Duration::from_secs(5),
        || open_fds(&child_pid) >= FD_LIMIT,
        || format!("{} descriptors open", open_fds(&child_pid)),
    );

    // Out of descriptors with connections waiting: retrying accept at once would spin a core.
    let ticks_per_second = clock_ticks_per_second();
    let (cpu_before, wall_before) = (cpu_ticks(pid), Instant::now());
    thread::sleep(Duration::from_secs(1));
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_second as f64;
    let wall = wall_before.elapsed().as_secs_f64();
    log.extend(lines.try_iter());
    eprintln!("out of descriptors: {cpu:.3} s of CPU in {wall:.3} s");
    assert!(cpu / wall < 0.3, "the server used {cpu:.3} s of CPU in {wall:.3} s while out of descriptors");
    assert!(child.0.try_wait().expect("the server's status").is_none(), "the server died; log: {log:#?}");

    // Connections it did accept are still served meanwhile (the first one was accepted first).
    held[0].set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut first = Conn::from_stream(held.remove(0));
    first.send(b"GET /count?n=1&interval_ms=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(first.read_head().status, 200);
    assert!(String::from_utf8(first.read_chunked_body()).unwrap().contains("id: 1\n"));
    drop(first);

    // Freed descriptors let it accept again: what waited in the backlog (closed by now) and a new client.
    drop(held);
    let mut conn = Conn::open(addr);
    conn.get("/count?n=1&interval_ms=1");
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let body = String::from_utf8(conn.read_chunked_body()).unwrap();
    assert!(body.contains("id: 1\n") && body.contains("event: done\n"), "{body}");
    log.extend(lines.try_iter());
    assert!(child.0.try_wait().expect("the server's status").is_none(), "the server died; log: {log:#?}");
    assert!(
        log.iter().any(|l| l.contains("Too many open files")),
        "the server ran out of descriptors and said so; log: {log:#?}"
    );
}

#[test]
fn a_slowloris_client_gets_408_when_the_request_timeout_passes_even_though_it_keeps_sending() {
    let _serial = serial();
    let mut config = local_config();
    config.request_timeout = Duration::from_millis(500);
    let server = spawn_with(config, Router::new().get("/hello", |_: &Request| Response::text("hello")));
    let handle = server.handle().clone();
    let mut stream = connect(server.local_addr());
    // The read timeout paces the client: one byte, then up to 100 ms waiting for an answer.
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut request = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ".to_vec();
    request.resize(200, b'a');
    let opened = Instant::now();
    let mut sent = 0;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    while sent < request.len() && response.is_empty() && opened.elapsed() < Duration::from_secs(5) {
        stream.write_all(&request[sent..sent + 1]).expect("the server still reads");
        sent += 1;
        match stream.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed after {sent} bytes: {e}"),
        }
        if closed {
            break;
        }
    }
    let answered_after = opened.elapsed();
    // The rest of the response, then EOF: the server has shut its side.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !closed && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closed = true,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408 "), "after {sent} bytes in {answered_after:?}: {text:?}");
    assert!(sent >= 4, "the client kept sending until the timeout: {sent} bytes");
    assert!(
        answered_after >= Duration::from_millis(450) && answered_after < Duration::from_millis(1500),
        "408 after {answered_after:?}: trickling bytes must not extend the request timeout"
    );
    assert!(closed, "the server closes its side after the 408");

    // A client that goes on trickling after that still loses the connection: the server reads and discards
    // for its linger time (2 s), then closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut writes_failed = false;
    while handle.connections() != 0 {
        assert!(Instant::now() < deadline, "the server never closed the trickling connection");
        if !writes_failed {
            writes_failed = stream.write_all(b"a").is_err();
        }
        thread::sleep(Duration::from_millis(100));
    }
    let (head, body) = roundtrip(server.local_addr(), b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((head.status, body.as_slice()), (200, &b"hello"[..]));
}

#[test]
fn a_client_that_pipelines_without_reading_is_closed_at_its_queue_limit() {
    const PAGE: usize = 8 * 1024;
    const HUGE: usize = 2 << 20;
    let _serial = serial();
    let pages = Arc::new(AtomicUsize::new(0));
    let huge = Arc::new(AtomicUsize::new(0));
    let router = {
        let (pages, huge) = (Arc::clone(&pages), Arc::clone(&huge));
        Router::new()
            .get("/hello", |_: &Request| Response::text("hello"))
            .get("/page", move |_: &Request| {
                pages.fetch_add(1, Ordering::AcqRel);
                Response::text("p".repeat(PAGE))
            })
            .get("/huge", move |_: &Request| {
                huge.fetch_add(1, Ordering::AcqRel);
                Response::text("h".repeat(HUGE))
            })
    };
    let config = local_config();
    let queue_limit = config.write_queue_limit;
    assert!(HUGE > queue_limit, "a /huge response alone passes the queue limit");
    let server = spawn_with(config, router);
    let addr = server.local_addr();
    let handle = server.handle().clone();
    let baseline_rss = rss_bytes();
    let socket_buffers = max_send_buffer();

    // A flood: requests as fast as the server takes them, and not one byte read. The server answers until
    // the client's receive buffer, its own send buffer and the write queue are full, then closes.
    let mut flood = connect_small_window(addr);
    let batch = b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut write_error = None;
    for _ in 0..100_000 {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        match flood.write_all(&batch) {
            Ok(()) => sent += 64,
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    let error = write_error.unwrap_or_else(|| panic!("{sent} requests in {:?} and still open", started.elapsed()));
    assert!(
        matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        "the server closed the connection: {error}"
    );
    wait_for(
        "the flooding connection is closed",
        Duration::from_secs(5),
        || handle.connections() == 0,
        || format!("{} connections", handle.connections()),
    );
    let answered = pages.load(Ordering::Acquire);
    eprintln!("flood: {sent} requests sent, {answered} answered, in {:?}", started.elapsed());
    // Answers that can be pending for a client that never reads: the queue, the server socket's send buffer
    // and the client's receive buffer (128 KiB: twice its SO_RCVBUF), plus the one refused.
    let most = (queue_limit + socket_buffers + (256 << 10)) / PAGE + 1;
    assert!(answered <= most, "{answered} pages answered for a client that never reads (at most {most})");
    // What the server held for it: at most the write queue (1 MiB) and one read of requests (64 KiB); the
    // bound leaves room for allocator slack. Answering every request sent would have queued over 1 GB.
    let growth = rss_bytes().saturating_sub(baseline_rss);
    eprintln!("flood: RSS grew by {} KiB", growth >> 10);
    assert!(growth < 16 << 20, "RSS grew by {} KiB", growth >> 10);
    drop(flood);

    // Forty pipelined requests in one segment, each answer larger than the queue limit. An answer can only
    // be queued into an empty queue, so each one after the first needs all earlier ones taken by the socket;
    // the first that cannot be queued closes the connection. The requests after it must not be run: nobody
    // will ever see their answers, and a client retries requests a closed connection did not answer.
    let mut conn = connect_small_window(addr);
    conn.write_all(&b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n".repeat(40)).unwrap();
    wait_for(
        "the connection is closed",
        Duration::from_secs(5),
        // At least two ran: the first is always queued, the second's handler runs before its answer is
        // refused. Until then the server may not even have accepted the connection.
        || huge.load(Ordering::Acquire) >= 2 && handle.connections() == 0,
        || format!("{} connections, {} answers", handle.connections(), huge.load(Ordering::Acquire)),
    );
    // Queued ones: the first, then one more per HUGE bytes the socket buffers took; plus the refused one.
    let bound = 2 + (socket_buffers + (256 << 10)) / HUGE;
    let ran = huge.load(Ordering::Acquire);
    assert!((2..=bound).contains(&ran), "{ran} of 40 requests were run (at most {bound} could be answered)");
    drop(conn);

    // The server is healthy.
    let (head, body) = roundtrip(addr, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((head.status, body.as_slice()), (200, &b"hello"[..]));
}
