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

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
const MAX_EVENTS: u64 = 10_000_000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    let mut pool = Vec::new();
    for _ in 0..threads.max(1) {
        let listener = listener.try_clone().expect("clone the listener");
        pool.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || accept_loop(&listener))
                .expect("spawn a worker"),
        );
    }
    eprintln!("floor listening on http://{addr}/ with {threads} threads");
    for worker in pool {
        let _ = worker.join();
    }
}

fn accept_loop(listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve(stream),
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

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("GET "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/stream" => {
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
        "/idle" => {
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
