//! One SSE stream of 1000 events, from connect to the chunked terminator, over loopback.
//!
//! ```text
//! cargo bench --bench stream_1000        # measure
//! cargo test --benches                   # run each benchmark once, as a smoke test
//! ```
//!
//! The server runs in this process on its own thread (`Server::spawn`) and streams the same 1000 `update`
//! events three ways, one benchmark each: built with the setters that copy their values (`Sse::from_iter`, the
//! plainest code), built with the ones that allocate nothing, and written straight into the connection's buffer
//! (`Sse::from_fn`). The client is a plain blocking `TcpStream`, so each number is Conduit's cost plus a minimal
//! client's, with no HTTP library in between. Throughput is reported in events.

use conduit::server::{Request, Router, Server, ServerConfig, SpawnedServer, Sse};
use conduit::sse::{Event, EventSink};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const EVENTS: u64 = 1000;
/// (benchmark, route)
const ROUTES: [(&str, &str); 3] = [
    ("stream_1000_events", "/stream"),
    ("stream_1000_events_cheap_setters", "/stream/cheap"),
    ("stream_1000_events_written", "/stream/written"),
];
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
const TIMEOUT: Duration = Duration::from_secs(10);

/// `event: update`, `id: i`, `data: {"count": i, "time": <unix seconds>}`.
fn update(i: u64) -> Event {
    Event::new()
        .event("update")
        .and_then(|e| e.id(i.to_string()))
        .expect("a literal name and a decimal id are valid")
        .data(format!(r#"{{"count": {i}, "time": {}}}"#, now()))
}

/// The same event from the setters that allocate nothing.
fn cheap_update(i: u64) -> Event {
    let named = Event::new().event_static("update").expect("a literal name is valid");
    named.id_u64(i).data_fmt(format_args!(r#"{{"count": {i}, "time": {}}}"#, now()))
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// The same events written straight into the connection's buffer.
fn written_updates() -> Sse {
    let mut i = 0;
    Sse::from_fn(move |out: &mut EventSink<'_>| {
        if i == EVENTS {
            return Ok(ControlFlow::Break(()));
        }
        out.event().event("update")?.id_u64(i).data_fmt(format_args!(r#"{{"count": {i}, "time": {}}}"#, now()));
        i += 1;
        Ok(ControlFlow::Continue(()))
    })
}

fn start_server() -> SpawnedServer {
    let router = Router::new()
        .get("/stream", |_: &Request| Sse::from_iter((0..EVENTS).map(update)))
        .get("/stream/cheap", |_: &Request| Sse::from_iter((0..EVENTS).map(cheap_update)))
        .get("/stream/written", |_: &Request| written_updates());
    Server::bind(ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))), router)
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("spawn the server thread")
}

/// Connects, asks for the stream and reads until the chunked terminator ends the received bytes. Returns the
/// bytes received, head included.
fn fetch(addr: SocketAddr, request: &[u8], buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.write_all(request).expect("send the request");
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).expect("read the stream");
        assert!(n > 0, "the server closed the connection before the terminator");
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(LAST_CHUNK) {
            return buf.len();
        }
    }
}

fn stream_1000(c: &mut Criterion) {
    let server = start_server();
    let addr = server.local_addr();

    let mut buf = Vec::with_capacity(128 * 1024);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Elements(EVENTS));
    for (name, route) in ROUTES {
        let request = format!("GET {route} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        // Check once, outside the measurement, that the whole stream arrives, the same events every way.
        fetch(addr, &request, &mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200 "), "{route}: unexpected head: {text:.80}");
        let events = text.matches("event: update\n").count() as u64;
        assert_eq!(events, EVENTS, "{route}: events received");
        assert!(text.contains(&format!("\nid: {}\ndata: {{\"count\": {0}, \"time\": ", EVENTS - 1)), "{route}");
        group.bench_function(name, |b| b.iter(|| std::hint::black_box(fetch(addr, &request, &mut buf))));
    }
    group.finish();
    server.shutdown().expect("server shutdown");
}

criterion_group!(benches, stream_1000);
criterion_main!(benches);
