//! Several event loops on one port: every loop serves streams, every subscriber on any loop gets every hub
//! event in order, resume works wherever the client lands, and shutdown stops them all.

mod common;

use common::{Conn, local_config, wait_until};
use conduit::server::{Hub, HubConfig, Request, Router, Server, Sse};
use conduit::sse::Event;
use std::time::Duration;

#[test]
fn two_loops_share_the_port_the_hub_and_the_shutdown() {
    let hub = Hub::new(HubConfig::default());
    let router = Router::new()
        .get("/stream", |req: &Request| Sse::subscribe_request(req))
        .get("/n", |_: &Request| Sse::from_iter((1..=50u32).map(|i| Event::new().id(i.to_string()).unwrap().data("x"))))
        .get("/feed", |_: &Request| {
            let (sender, sse) = Sse::channel();
            std::thread::spawn(move || {
                for i in 1..=20u32 {
                    sender.send(Event::new().data(i.to_string())).unwrap();
                }
            });
            sse
        });
    let mut config = local_config();
    config.workers = 2;
    let server = Server::bind_with_hub(config, router, &hub).unwrap().spawn().unwrap();
    let addr = server.local_addr();

    // Plain streams and channel-fed ones work whichever loop takes the connection.
    for target in ["/n", "/feed"].repeat(10) {
        let mut conn = Conn::open(addr);
        conn.get(target);
        assert_eq!(conn.read_head().status, 200);
        let body = String::from_utf8(conn.read_chunked_body()).unwrap();
        assert_eq!(body.matches("\n\n").count(), if target == "/n" { 50 } else { 20 }, "{target}");
    }

    // Forty subscribers, spread over both loops by the kernel, each get every event in order.
    let mut subscribers: Vec<Conn> = (0..40).map(|_| Conn::open(addr)).collect();
    for s in &mut subscribers {
        s.get("/stream?topic=t");
        assert_eq!(s.read_head().status, 200);
    }
    let ids: Vec<String> = (0..200).map(|i| hub.publish("t", Event::new().data(i.to_string())).unwrap()).collect();
    for s in &mut subscribers {
        let body = s.read_events(200);
        let got: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
        assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    }

    // Resuming works on whichever loop the new connection lands: each holds the whole backlog.
    for _ in 0..8 {
        let mut again = Conn::open(addr);
        again
            .send(format!("GET /stream?topic=t HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n", ids[189]).as_bytes());
        assert_eq!(again.read_head().status, 200);
        let body = again.read_events(10);
        let got: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
        assert_eq!(got, ids[190..].iter().map(String::as_str).collect::<Vec<_>>());
    }

    let handle = server.handle().clone();
    wait_until("the counters see every subscriber", || handle.streams() >= 40);
    server.shutdown().unwrap();
    assert!(!handle.is_running(), "every loop stopped");
    for s in &mut subscribers {
        while s.read_chunk().is_some() {}
    }
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "no loop still listens");
}
