//! Scenario 4's subscribers: thousands of `/broadcast` streams held open by a few threads, each with a mio
//! `Poll` (epoll) over its share of nonblocking sockets, so that holding 10,000 of them costs a few threads
//! and no polling loop. Every event is checked byte for byte, in order, exactly once, and its latency taken as
//! the time the read that brought it returned (`SystemTime`, the same clock the server stamped `t_us` with,
//! on the same machine) minus `t_us`.
//!
//! The sequence for one server: open the subscribers (at most `WINDOW` per thread waiting for their response
//! head at a time, so the listen backlog never overflows), wait until every one has its head (which each
//! server sends after registering the subscriber), read the server's CPU time, `POST /broadcast/start`, wait
//! until every subscriber has every event (or the time limit), read the CPU time again, then close them all.

use crate::client::{self, Decoder, Framing};
use crate::procfs;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Connections per thread that may be waiting for their response head at once.
const WINDOW: usize = 64;
/// How long a thread waits in `poll` before it looks at the shared flags again.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);
/// Bytes of undelivered body a subscriber may hold (a partial event); more means the stream is not SSE.
const MAX_PENDING: usize = 64 * 1024;
/// Full-buffer reads in a row from one socket (64 MiB) before it is given up on as flooding.
const MAX_READS: usize = 1024;

#[derive(Clone, Debug)]
pub struct Params {
    pub subscribers: usize,
    pub rate: u64,
    pub seconds: u64,
    pub threads: usize,
    /// Opening every subscriber must finish within this.
    pub open_limit: Duration,
    /// After the last event is due, how long to wait for the deliveries still missing.
    pub grace: Duration,
    /// Pause between the last subscriber opening and the start, so the server's accept work is over.
    pub settle: Duration,
    /// For the start request.
    pub io_timeout: Duration,
}

impl Params {
    pub fn events(&self) -> u64 {
        self.rate * self.seconds
    }
}

/// What one server did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Subscribers whose response head (200) arrived before the start.
    pub opened: usize,
    pub open_s: f64,
    /// The start route's answer (its body), or why it failed.
    pub start_reply: Option<Result<String, String>>,
    /// Events received in order, counted over every subscriber.
    pub delivered: u64,
    pub expected: u64,
    /// Subscribers that received every event.
    pub complete: usize,
    /// Publish-to-receive latency of every delivery, in µs.
    pub latencies_us: Vec<u64>,
    /// The highest latency of each event, by seq, in µs.
    pub max_by_seq_us: Vec<u64>,
    /// The `t_us` of the first and the last event, as received.
    pub first_publish_us: Option<u64>,
    pub last_publish_us: Option<u64>,
    /// When the last delivery was received (unix µs).
    pub last_receive_us: Option<u64>,
    /// From the start request to the last delivery, or to the time limit.
    pub window_s: f64,
    pub timed_out: bool,
    pub cpu_before: procfs::Cpu,
    pub cpu_after: procfs::Cpu,
    /// The harness's own CPU time over the same window (its subscriber threads are still alive at the end).
    pub client_cpu_before: procfs::Cpu,
    pub client_cpu_after: procfs::Cpu,
    pub vm_rss_kib: Option<u64>,
    /// Distinct failures: a kind, how many subscribers had it, and one example.
    pub failures: BTreeMap<&'static str, (usize, String)>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.expected > 0 && self.delivered == self.expected && self.failures.is_empty()
    }
}

#[derive(Default)]
struct Shared {
    /// Subscribers with their response head.
    heads: AtomicUsize,
    /// Subscribers that failed, at any point.
    failed: AtomicUsize,
    /// Subscribers with every event.
    complete: AtomicUsize,
    /// The start was sent: open no more.
    started: AtomicBool,
    /// Measuring is over: return.
    stop: AtomicBool,
}

/// Measures one server: see the module's documentation.
pub fn run(addr: SocketAddr, pid: Option<u32>, p: &Params, deadline: Instant) -> Outcome {
    let shared = Arc::new(Shared::default());
    let threads = p.threads.clamp(1, p.subscribers.max(1));
    let open_until = deadline.min(Instant::now() + p.open_limit);
    let mut handles = Vec::new();
    let mut out = Outcome { expected: p.subscribers as u64 * p.events(), ..Outcome::default() };
    let opening = Instant::now();
    for t in 0..threads {
        let share = p.subscribers / threads + usize::from(t < p.subscribers % threads);
        let worker = Worker::new(addr, share, p.events(), Arc::clone(&shared), open_until);
        let spawned = std::thread::Builder::new().name(format!("subscribers-{t}")).spawn(move || worker.run());
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                note(&mut out.failures, "client", 0, format!("cannot spawn a subscriber thread: {e}"));
                shared.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    // Every subscriber has its head or has failed, or the time is up.
    while shared.heads.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < p.subscribers
        && Instant::now() < open_until
        && !shared.stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    out.open_s = opening.elapsed().as_secs_f64();
    out.opened = shared.heads.load(Ordering::Relaxed);
    std::thread::sleep(p.settle);
    out.vm_rss_kib = pid.and_then(procfs::vm_rss_kib);

    out.cpu_before = pid.map(procfs::cpu).unwrap_or_default();
    out.client_cpu_before = procfs::cpu(std::process::id());
    shared.started.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let path = format!("/broadcast/start?rate={}&seconds={}", p.rate, p.seconds);
    let reply = match client::post(addr, &path, p.io_timeout) {
        Ok((200, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Ok((status, body)) => Err(format!("status {status}: {}", String::from_utf8_lossy(&body).trim())),
        Err(e) => Err(e.to_string()),
    };
    if reply.is_err() || shared.stop.load(Ordering::Relaxed) {
        shared.stop.store(true, Ordering::Relaxed);
    }
    out.start_reply = Some(reply);
    let until = deadline.min(started + Duration::from_secs(p.seconds) + p.grace);
    while shared.complete.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < p.subscribers
        && !shared.stop.load(Ordering::Relaxed)
    {
        if Instant::now() >= until {
            out.timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    out.window_s = started.elapsed().as_secs_f64();
    out.cpu_after = pid.map(procfs::cpu).unwrap_or_default();
    out.client_cpu_after = procfs::cpu(std::process::id());
    shared.stop.store(true, Ordering::Relaxed);

    // The sockets close when the workers' results are dropped, after the CPU time is read.
    let mut held = Vec::new();
    for h in handles {
        match h.join() {
            Ok(r) => {
                out.delivered += r.delivered;
                out.latencies_us.extend(r.latencies_us);
                out.max_by_seq_us.resize(r.max_by_seq_us.len().max(out.max_by_seq_us.len()), 0);
                for (all, mine) in out.max_by_seq_us.iter_mut().zip(&r.max_by_seq_us) {
                    *all = (*all).max(*mine);
                }
                out.first_publish_us = min_opt(out.first_publish_us, r.first_publish_us);
                out.last_publish_us = out.last_publish_us.max(r.last_publish_us);
                out.last_receive_us = out.last_receive_us.max(r.last_receive_us);
                for (kind, (count, example)) in r.failures {
                    note(&mut out.failures, kind, count, example);
                }
                held.push(r.subs);
            }
            Err(_) => note(&mut out.failures, "client", 0, "a subscriber thread panicked".into()),
        }
    }
    out.complete = shared.complete.load(Ordering::Relaxed);
    if out.timed_out {
        let missing = p.subscribers.saturating_sub(out.complete).saturating_sub(shared.failed.load(Ordering::Relaxed));
        note(
            &mut out.failures,
            "time limit",
            missing,
            format!("still missing events {:.0} s after the start", out.window_s),
        );
    }
    drop(held);
    out
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn note(failures: &mut BTreeMap<&'static str, (usize, String)>, kind: &'static str, count: usize, example: String) {
    let entry = failures.entry(kind).or_insert((0, example));
    entry.0 += count;
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

enum State {
    /// Connecting, then writing the request (`written` bytes of it so far).
    Connecting { written: usize },
    /// Reading the response head.
    Head(Vec<u8>),
    /// Reading events: `body` holds the de-chunked bytes of the event not yet complete.
    Events { decoder: Decoder, body: Vec<u8> },
    /// Failed, or the stream ended: nothing more is read.
    Finished,
}

struct Sub {
    stream: TcpStream,
    state: State,
    /// The seq of the next event expected; equal to the events received in order.
    next: u64,
}

struct WorkerResult {
    delivered: u64,
    latencies_us: Vec<u64>,
    max_by_seq_us: Vec<u64>,
    first_publish_us: Option<u64>,
    last_publish_us: Option<u64>,
    last_receive_us: Option<u64>,
    failures: BTreeMap<&'static str, (usize, String)>,
    /// Returned so that the sockets stay open until the caller has read the server's CPU time.
    subs: Vec<Sub>,
}

struct Worker {
    addr: SocketAddr,
    share: usize,
    events: u64,
    shared: Arc<Shared>,
    open_until: Instant,
    request: Vec<u8>,
    subs: Vec<Sub>,
    /// Subscribers opened and not yet past their head.
    pending: usize,
    /// Subscribers finished: all events, or failed.
    finished: usize,
    result: WorkerResult,
    /// The expected start of the next event, rebuilt per event.
    prefix: String,
}

impl Worker {
    fn new(addr: SocketAddr, share: usize, events: u64, shared: Arc<Shared>, open_until: Instant) -> Worker {
        Worker {
            addr,
            share,
            events,
            shared,
            open_until,
            request: client::request("/broadcast"),
            subs: Vec::with_capacity(share),
            pending: 0,
            finished: 0,
            result: WorkerResult {
                delivered: 0,
                latencies_us: Vec::with_capacity(share * events as usize),
                max_by_seq_us: vec![0; events as usize],
                first_publish_us: None,
                last_publish_us: None,
                last_receive_us: None,
                failures: BTreeMap::new(),
                subs: Vec::new(),
            },
            prefix: String::with_capacity(64),
        }
    }

    fn run(mut self) -> WorkerResult {
        let mut poll = match Poll::new() {
            Ok(poll) => poll,
            Err(e) => {
                self.fail_unopened(&format!("cannot create a poll: {e}"));
                return self.into_result();
            }
        };
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let opening = !self.shared.started.load(Ordering::Relaxed) && Instant::now() < self.open_until;
            while opening && self.subs.len() < self.share && self.pending < WINDOW {
                self.open_one(&poll);
            }
            if !opening && self.subs.len() < self.share {
                self.fail_unopened("not opened: the time to open the subscribers ran out");
            }
            if self.subs.len() == self.share && self.finished == self.share {
                break;
            }
            if let Err(e) = poll.poll(&mut events, Some(POLL_TIMEOUT))
                && e.kind() != io::ErrorKind::Interrupted
            {
                note(&mut self.result.failures, "client", 0, format!("poll: {e}"));
                break;
            }
            for event in &events {
                let index = event.token().0;
                if index < self.subs.len() {
                    self.on_ready(index, &mut buf);
                }
            }
        }
        for sub in &mut self.subs {
            let _ = poll.registry().deregister(&mut sub.stream);
        }
        self.into_result()
    }

    fn into_result(mut self) -> WorkerResult {
        self.result.subs = std::mem::take(&mut self.subs);
        self.result
    }

    /// Counts the subscribers never opened as failed.
    fn fail_unopened(&mut self, why: &str) {
        let missing = self.share - self.subs.len();
        if missing > 0 {
            note(&mut self.result.failures, "open", missing, why.to_owned());
            self.shared.failed.fetch_add(missing, Ordering::Relaxed);
            self.share = self.subs.len();
        }
    }

    fn open_one(&mut self, poll: &Poll) {
        let index = self.subs.len();
        let opened = TcpStream::connect(self.addr).and_then(|mut stream| {
            poll.registry().register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.subs.push(Sub { stream, state: State::Connecting { written: 0 }, next: 0 });
                self.pending += 1;
            }
            Err(e) => {
                // Nothing to hold: count it and leave this share one short.
                note(&mut self.result.failures, "connect", 1, format!("connect: {e}"));
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                self.share -= 1;
            }
        }
    }

    fn fail(&mut self, index: usize, kind: &'static str, why: String) {
        let sub = &mut self.subs[index];
        if matches!(sub.state, State::Finished) {
            return;
        }
        if matches!(sub.state, State::Connecting { .. } | State::Head(_)) {
            self.pending -= 1;
        }
        let was_complete = sub.next == self.events;
        sub.state = State::Finished;
        if was_complete {
            // It had everything and then something more arrived (or the read failed): no longer complete.
            self.shared.complete.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.finished += 1;
        }
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        note(&mut self.result.failures, kind, 1, why);
    }

    fn on_ready(&mut self, index: usize, buf: &mut [u8]) {
        if let State::Connecting { written } = self.subs[index].state {
            match self.connect_and_send(index, written) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(index, "connect", format!("connect or send: {e}")),
            }
        }
        for _ in 0..MAX_READS {
            let sub = &mut self.subs[index];
            if matches!(sub.state, State::Finished | State::Connecting { .. }) {
                return;
            }
            let n = match sub.stream.read(buf) {
                Ok(0) => return self.ended(index),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(index, "read", format!("read: {e}")),
            };
            let now_us = unix_micros();
            self.take(index, &buf[..n], now_us);
            // A short read emptied the socket; the next data brings a new edge.
            if n < buf.len() {
                return;
            }
        }
        self.fail(index, "bytes", format!("more than {} MiB arrived at once", MAX_READS * 64 / 1024));
    }

    /// Finishes connecting and writes the request. `Ok(false)`: not connected yet, or the write is incomplete.
    fn connect_and_send(&mut self, index: usize, mut written: usize) -> io::Result<bool> {
        let sub = &mut self.subs[index];
        if let Some(e) = sub.stream.take_error()? {
            return Err(e);
        }
        match sub.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
        while written < self.request.len() {
            match sub.stream.write(&self.request[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sub.state = State::Connecting { written };
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        sub.state = State::Head(Vec::new());
        Ok(true)
    }

    fn ended(&mut self, index: usize) {
        let sub = &self.subs[index];
        match sub.state {
            State::Finished => {}
            _ if sub.next == self.events && !matches!(sub.state, State::Head(_)) => {
                // Everything arrived; a close afterwards is no failure, but nothing more is read.
                self.subs[index].state = State::Finished;
            }
            State::Connecting { .. } | State::Head(_) => {
                self.fail(index, "closed", "closed before the response head".into());
            }
            State::Events { .. } => {
                let why = format!("the stream ended after {} of {} events", sub.next, self.events);
                self.fail(index, "ended early", why);
            }
        }
    }

    fn take(&mut self, index: usize, bytes: &[u8], now_us: u64) {
        match self.subs[index].state {
            State::Head(_) => {
                if let Some(rest) = self.head(index, bytes)
                    && !rest.is_empty()
                {
                    self.decode_or_fail(index, &rest, now_us);
                }
            }
            State::Events { .. } => self.decode_or_fail(index, bytes, now_us),
            State::Connecting { .. } | State::Finished => {}
        }
    }

    /// Adds bytes to the response head; once it is complete and a 200 for a stream, returns the bytes after it.
    fn head(&mut self, index: usize, bytes: &[u8]) -> Option<Vec<u8>> {
        let State::Head(head) = &mut self.subs[index].state else { return None };
        head.extend_from_slice(bytes);
        let Some(at) = client::find(head, b"\r\n\r\n") else {
            if head.len() > 16 * 1024 {
                self.fail(index, "response", "response head larger than 16 KiB".into());
            }
            return None;
        };
        let parsed = std::str::from_utf8(&head[..at])
            .map_err(|_| "response head is not UTF-8".to_owned())
            .and_then(|h| client::parse_head(h).map_err(|e| e.to_string()));
        let framing = match parsed {
            Ok((200, Framing::Length(_))) => {
                self.fail(index, "response", "a Content-Length body, not a stream".into());
                return None;
            }
            Ok((200, framing)) => framing,
            Ok((status, _)) => {
                self.fail(index, "response", format!("status {status}"));
                return None;
            }
            Err(e) => {
                self.fail(index, "response", e);
                return None;
            }
        };
        let rest = head.split_off(at + 4);
        self.subs[index].state = State::Events { decoder: Decoder::new(framing), body: Vec::new() };
        self.pending -= 1;
        self.shared.heads.fetch_add(1, Ordering::Relaxed);
        Some(rest)
    }

    fn decode_or_fail(&mut self, index: usize, bytes: &[u8], now_us: u64) {
        if let Err((kind, why)) = self.decode(index, bytes, now_us) {
            self.fail(index, kind, why);
        }
    }

    /// Feeds body bytes through the subscriber's decoder and takes every complete event.
    fn decode(&mut self, index: usize, bytes: &[u8], now_us: u64) -> Result<(), (&'static str, String)> {
        let sub = &mut self.subs[index];
        let State::Events { decoder, body } = &mut sub.state else { return Ok(()) };
        // Events before a framing error still count: take them first, then report it.
        let framing = decoder.feed(bytes, body).map_err(|e| ("bytes", format!("body framing: {e}")));
        let mut at = 0;
        while let Some(len) = client::find(&body[at..], b"\n\n") {
            let block = &body[at..at + len];
            at += len + 2;
            if block.first() == Some(&b':') {
                continue; // a comment: the keep-alive
            }
            let seq = sub.next;
            if seq >= self.events {
                let text = String::from_utf8_lossy(block);
                return Err(("extra event", format!("an event after the last one: {text:?}")));
            }
            self.prefix.clear();
            let _ = write!(self.prefix, "event: update\nid: {seq}\ndata: {{\"seq\": {seq}, \"t_us\": ");
            let t_us = block
                .strip_prefix(self.prefix.as_bytes())
                .and_then(|rest| rest.strip_suffix(b"}"))
                .filter(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
                .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok());
            let Some(t_us) = t_us else {
                let text = String::from_utf8_lossy(block);
                return Err(("order or bytes", format!("expected event {seq} ({:?}...), got {text:?}", self.prefix)));
            };
            sub.next += 1;
            self.result.delivered += 1;
            let latency = now_us.saturating_sub(t_us);
            self.result.latencies_us.push(latency);
            let slot = &mut self.result.max_by_seq_us[seq as usize];
            *slot = (*slot).max(latency);
            if seq == 0 {
                self.result.first_publish_us = min_opt(self.result.first_publish_us, Some(t_us));
            }
            if seq + 1 == self.events {
                self.result.last_publish_us = self.result.last_publish_us.max(Some(t_us));
                self.shared.complete.fetch_add(1, Ordering::Relaxed);
                self.finished += 1;
            }
            self.result.last_receive_us = self.result.last_receive_us.max(Some(now_us));
        }
        body.drain(..at);
        framing?;
        if body.len() > MAX_PENDING {
            return Err(("bytes", format!("{} bytes without an event boundary", body.len())));
        }
        if decoder.done() && sub.next < self.events {
            return Err(("ended early", format!("the stream ended after {} of {} events", sub.next, self.events)));
        }
        Ok(())
    }
}

/// The `q`-quantile (0 to 1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A stand-in server: takes `subscribers` subscriptions and the start request, then sends each
    /// subscriber the seqs `order(subscriber)` gives, chunked, and ends the streams.
    fn fake_server(subscribers: usize, order: fn(usize) -> Vec<u64>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut subs = Vec::new();
            for _ in 0..=subscribers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET /broadcast ") {
                    stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
                    subs.push(stream);
                } else {
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
                }
            }
            for (k, sub) in subs.iter_mut().enumerate() {
                let mut out = Vec::new();
                for seq in order(k) {
                    let event =
                        format!("event: update\nid: {seq}\ndata: {{\"seq\": {seq}, \"t_us\": {}}}\n\n", unix_micros());
                    out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
                }
                out.extend_from_slice(b"e\r\n: keep-alive\n\n\r\n0\r\n\r\n");
                sub.write_all(&out).unwrap();
            }
        });
        addr
    }

    fn params(subscribers: usize) -> Params {
        Params {
            subscribers,
            rate: 3,
            seconds: 1,
            threads: 2,
            open_limit: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            settle: Duration::ZERO,
            io_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn counts_every_delivery() {
        let addr = fake_server(3, |_| vec![0, 1, 2]);
        let out = run(addr, None, &params(3), Instant::now() + Duration::from_secs(20));
        assert_eq!((out.opened, out.delivered, out.expected, out.complete), (3, 9, 9, 3), "{:?}", out.failures);
        assert!(out.passed(), "{:?}", out.failures);
        assert_eq!(out.latencies_us.len(), 9);
        assert_eq!(out.max_by_seq_us.len(), 3);
    }

    #[test]
    fn a_gap_fails_the_subscriber() {
        let addr = fake_server(2, |k| if k == 0 { vec![0, 2] } else { vec![0, 1, 2] });
        let out = run(addr, None, &params(2), Instant::now() + Duration::from_secs(20));
        assert_eq!((out.delivered, out.expected, out.complete), (4, 6, 1));
        assert!(!out.passed());
        assert!(out.failures.contains_key("order or bytes"), "{:?}", out.failures);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
