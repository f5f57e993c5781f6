//! The example server as a process: SIGTERM with 500 open streams ends every stream cleanly within the grace
//! period, and the process exits 0.

mod common;

use common::Conn;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server if the test fails before it exits, so it never outlives the test.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example on a free loopback port and returns it with the address it logged.
fn start_example() -> (ServerProcess, SocketAddr) {
    let mut child = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--example", "sse_simple_server", "--", "--addr", "127.0.0.1:0", "--token", "t"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the example");
    let stderr = child.stderr.take().unwrap();
    let process = ServerProcess(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("the example logs its address").expect("read stderr");
        if let Some(rest) = line.split("Conduit demo on http://").nth(1) {
            break rest.trim_end_matches('/').parse().expect("address");
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (process, addr)
}

#[test]
fn sigterm_ends_500_streams_cleanly_and_exits_zero() {
    let (mut server, addr) = start_example();
    let mut streams: Vec<Conn> = (0..500).map(|_| Conn::open(addr)).collect();
    for (i, conn) in streams.iter_mut().enumerate() {
        conn.get(if i % 2 == 0 { "/time" } else { "/stream?topic=news" });
    }
    for conn in &mut streams {
        assert_eq!(conn.read_head().status, 200);
    }
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().expect("run kill");
    assert!(status.success());
    for conn in &mut streams {
        // Whatever came before, every stream ends with the farewell event and the chunked terminator.
        let body = String::from_utf8(conn.read_chunked_body()).unwrap();
        let last = body.split_terminator("\n\n").last().unwrap_or_default();
        assert!(last.starts_with("event: shutdown\n"), "{body:?}");
        assert!(last.contains("\nretry: 2000\n"), "{last:?}");
        drop(conn.stream.shutdown(std::net::Shutdown::Both));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    // The default grace period is 5 s; clients that read their streams to the end let it finish sooner.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
