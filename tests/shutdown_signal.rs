//! The example server as a process: SIGTERM with 500 open streams ends every stream cleanly within the grace
//! period, and the process exits 0.

mod common;

use common::{Conn, ExampleProcess};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigterm_ends_500_streams_cleanly_and_exits_zero() {
    let mut server = ExampleProcess::start(&["--token", "t"]);
    let addr = server.addr;
    let mut streams: Vec<Conn> = (0..500).map(|_| Conn::open(addr)).collect();
    for (i, conn) in streams.iter_mut().enumerate() {
        conn.get(if i % 2 == 0 { "/time" } else { "/stream?topic=news" });
    }
    for conn in &mut streams {
        assert_eq!(conn.read_head().status, 200);
    }
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("run kill");
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
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    // The default grace period is 5 s; clients that read their streams to the end let it finish sooner.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
