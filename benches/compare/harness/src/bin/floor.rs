//! The floor: the least a server can do to answer the benchmark's requests, with std only.
//!
//! ```text
//! floor --addr 127.0.0.1:18400 [--threads 128]
//! ```
//!
//! `/stream?n=N`: read the request, format the whole response at once (an HTTP/1.1 head with
//! `Connection: close` and no length, then the N events), write it with one `write_all`, close. Requests are
//! served by a fixed pool of threads blocked in `accept`, so no thread is created per request (and CPU time read
//! from `/proc` is not lost with exiting threads).
//!
//! `/idle`: the connection is handed to a thread of its own (64 KiB stack) that sends one event, then a comment
//! every 15 s until the client leaves: the thread-per-connection way to hold a stream.
//!
//! `/broadcast`: the response head is written and the socket joins the subscriber list.
//! `POST /broadcast/start?rate=R&seconds=S` answers `{"events": R*S, "subscribers": N}` at once and hands the
//! broadcast to one publisher thread, which formats event `i` once at `start + i / R` and writes it to every
//! subscriber's socket in turn: a `write` system call per subscriber per event, the kernel's cost of a broadcast
//! and nothing else. A subscriber whose socket will not take an event whole (its kernel buffer is full) or
//! whose write fails is dropped, as the other servers cut off a subscriber that falls behind; the harness
//! would then see the missing events. Between broadcasts the same thread reaps subscribers that have closed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n";
const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nConnection: close\r\n\r\nunavailable\n";
const MAX_EVENTS: u64 = 10_000_000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const MAX_RATE: u64 = 10_000;
const MAX_SECONDS: u64 = 3600;
/// How often the publisher looks for subscribers that have left while no broadcast runs.
const REAP_EVERY: Duration = Duration::from_millis(250);

/// A broadcast to run: `rate` events a second for `seconds` seconds.
#[derive(Clone, Copy, Debug)]
struct Broadcast {
    rate: u64,
    seconds: u64,
}

/// What the accepting threads share with the publisher.
struct Shared {
    /// Subscribers' sockets (non-blocking), in the order they subscribed.
    subscribers: Mutex<Vec<TcpStream>>,
    start: Mutex<Sender<Broadcast>>,
}

impl Shared {
    fn subscribers(&self) -> MutexGuard<'_, Vec<TcpStream>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:18400".parse().expect("literal");
    let mut threads = 128usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value) {
            ("--addr", Some(v)) => v.parse().map(|a| addr = a).map_err(|e| e.to_string()),
            ("--threads", Some(v)) => v.parse().map(|t| threads = t).map_err(|e| e.to_string()),
            (other, _) => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = parsed {
            eprintln!("floor: {e}\nusage: floor [--addr HOST:PORT] [--threads N]");
            std::process::exit(2);
        }
    }
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let (start, starts) = mpsc::channel();
    let shared = Arc::new(Shared { subscribers: Mutex::new(Vec::new()), start: Mutex::new(start) });
    let publisher = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || publish_loop(&publisher, &starts))
        .expect("spawn the publisher");
    let mut pool = Vec::new();
    for _ in 0..threads.max(1) {
        let listener = listener.try_clone().expect("clone the listener");
        let shared = Arc::clone(&shared);
        pool.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn a worker"),
        );
    }
    eprintln!("floor listening on http://{addr}/ with {threads} threads");
    for worker in pool {
        let _ = worker.join();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Shared) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve(stream, shared),
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                eprintln!("floor: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The request head, at most 8 KiB, or `None` if the client left or sent too much.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while buf.len() < 8192 {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).ok();
        }
    }
    None
}

/// The value of query parameter `name` as an integer from 1 to `max`, `default` when absent.
fn bounded(query: &str, name: &str, default: u64, max: u64) -> Option<u64> {
    let prefix = format!("{name}=");
    match query.split('&').find_map(|kv| kv.strip_prefix(prefix.as_str())) {
        None => Some(default),
        Some(raw) => raw.parse().ok().filter(|v| (1..=max).contains(v)),
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (request_line.next().unwrap_or(""), request_line.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("POST", "/broadcast/start") => {
            let (Some(rate), Some(seconds)) =
                (bounded(query, "rate", 10, MAX_RATE), bounded(query, "seconds", 10, MAX_SECONDS))
            else {
                let _ = stream.write_all(BAD_REQUEST);
                return;
            };
            let subscribers = shared.subscribers().len();
            let sent = shared.start.lock().unwrap_or_else(|e| e.into_inner()).send(Broadcast { rate, seconds });
            if sent.is_err() {
                let _ = stream.write_all(UNAVAILABLE);
                return;
            }
            let body = format!("{{\"events\": {}, \"subscribers\": {subscribers}}}", rate * seconds);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
        (_, "/broadcast/start") => {
            let _ = stream.write_all(NOT_FOUND);
        }
        ("GET", "/broadcast") => {
            // Registered with its head written, under the lock: a client that has the head misses no event.
            let mut subscribers = shared.subscribers();
            if stream.write_all(HEAD).is_ok() && stream.set_nonblocking(true).is_ok() {
                subscribers.push(stream);
            }
        }
        ("GET", "/stream") => {
            let n = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("n="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(MAX_EVENTS);
            let mut response = Vec::with_capacity(HEAD.len() + 80 * n as usize);
            response.extend_from_slice(HEAD);
            for i in 0..n {
                push_event(&mut response, i);
            }
            if stream.write_all(&response).is_ok() {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
        ("GET", "/idle") => {
            let spawned = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || hold(stream));
            if let Err(e) = spawned {
                eprintln!("floor: cannot spawn a thread for an idle stream: {e}");
            }
        }
        _ => {
            let _ = stream.write_all(NOT_FOUND);
        }
    }
}

/// One event, then a comment every 15 s until the client closes (a read returns) or a write fails.
fn hold(mut stream: TcpStream) {
    let mut first = Vec::with_capacity(HEAD.len() + 80);
    first.extend_from_slice(HEAD);
    push_event(&mut first, 0);
    if stream.write_all(&first).is_err() || stream.set_read_timeout(Some(KEEP_ALIVE)).is_err() {
        return;
    }
    let mut scratch = [0u8; 512];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stream.write_all(b": keep-alive\n\n").is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// `event: update\nid: {i}\ndata: {"count": {i}, "time": {unix seconds}}\n\n`
fn push_event(buf: &mut Vec<u8>, i: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let _ = write!(buf, "event: update\nid: {i}\ndata: {{\"count\": {i}, \"time\": {now}}}\n\n");
}

/// The publisher thread: runs each broadcast it is handed; in between, reaps subscribers that have left.
fn publish_loop(shared: &Shared, starts: &Receiver<Broadcast>) {
    loop {
        match starts.recv_timeout(REAP_EVERY) {
            Ok(broadcast) => publish_all(shared, broadcast),
            Err(RecvTimeoutError::Timeout) => reap(&mut shared.subscribers()),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Event `i` of `0..rate * seconds` at `start + i / rate`, formatted once and written to every subscriber.
fn publish_all(shared: &Shared, Broadcast { rate, seconds }: Broadcast) {
    let started = Instant::now();
    let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let mut event = Vec::with_capacity(128);
    for i in 0..rate * seconds {
        let due = started + period * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t_us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
        event.clear();
        let _ = write!(event, "event: update\nid: {i}\ndata: {{\"seq\": {i}, \"t_us\": {t_us}}}\n\n");
        shared.subscribers().retain_mut(|s| matches!(s.write(&event), Ok(n) if n == event.len()));
    }
}

/// Drops the subscribers whose client has closed (or sent anything: a subscriber has nothing to say).
fn reap(subscribers: &mut Vec<TcpStream>) {
    let mut scratch = [0u8; 64];
    subscribers.retain_mut(|s| matches!(s.read(&mut scratch), Err(e) if e.kind() == ErrorKind::WouldBlock));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_bounded() {
        for (query, want) in [
            ("", Some(10)),
            ("rate=7", Some(7)),
            ("seconds=2&rate=10000", Some(10_000)),
            ("rate=0", None),
            ("rate=10001", None),
            ("rate=x", None),
        ] {
            assert_eq!(bounded(query, "rate", 10, MAX_RATE), want, "{query:?}");
        }
    }

    /// A subscriber socket as the floor holds it (non-blocking), and the client's end.
    fn subscriber() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    #[test]
    fn every_subscriber_gets_every_event_and_closed_ones_are_reaped() {
        let (start, _starts) = mpsc::channel();
        let shared = Shared { subscribers: Mutex::new(Vec::new()), start: Mutex::new(start) };
        let (a, mut client_a) = subscriber();
        let (b, client_b) = subscriber();
        shared.subscribers().extend([a, b]);
        publish_all(&shared, Broadcast { rate: 100, seconds: 1 });
        drop(client_b);
        client_a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        while got.windows(2).filter(|w| w == b"\n\n").count() < 100 {
            let mut buf = [0u8; 4096];
            let n = client_a.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        for (i, event) in text.split_terminator("\n\n").enumerate() {
            assert!(
                event.starts_with(&format!("event: update\nid: {i}\ndata: {{\"seq\": {i}, \"t_us\": ")),
                "{event:?}"
            );
        }
        assert_eq!(text.matches("\n\n").count(), 100);
        // The closed subscriber is noticed by the reaper; the open one stays.
        let until = Instant::now() + Duration::from_secs(5);
        while shared.subscribers().len() > 1 && Instant::now() < until {
            reap(&mut shared.subscribers());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(shared.subscribers().len(), 1);
    }
}
