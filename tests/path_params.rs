//! Path parameters over real sockets: the parser, the router and a handler reading `req.param`, with the
//! status codes, `Allow` lists and preflights a client sees.

mod common;

use common::{Conn, local_config, roundtrip, spawn_with};
use conduit::server::{CorsConfig, Request, Response, Router, Sse};
use conduit::sse::Event;

fn router() -> Router {
    Router::new()
        .get("/items/{id}", |req: &Request| Response::text(format!("item {}", req.param("id").unwrap_or("?"))))
        .delete("/items/{id}", |req: &Request| Response::text(format!("deleted {}", req.param("id").unwrap_or("?"))))
        .get("/items/new", |_: &Request| Response::text("the form"))
        .get("/items/{id}/events", |req: &Request| {
            let id = req.param("id").unwrap_or("?").to_owned();
            Sse::from_iter([Event::new().data(id)])
        })
}

fn request(method: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").into_bytes()
}

#[test]
fn parameters_reach_handlers_and_refusals_stay_exact() {
    let mut config = local_config();
    config.cors = Some(CorsConfig::allow_origins(["http://127.0.0.1:9"]));
    let server = spawn_with(config, router());
    let addr = server.local_addr();
    // (method, target, status, body, Allow)
    let cases: &[(&str, &str, u16, &str, Option<&str>)] = &[
        ("GET", "/items/42", 200, "item 42", None),
        ("GET", "/items/a%20b%C3%A9", 200, "item a bé", None),
        ("DELETE", "/items/42", 200, "deleted 42", None),
        ("GET", "/items/new", 200, "the form", None),
        ("DELETE", "/items/new", 405, "", Some("GET, HEAD, OPTIONS")),
        ("PUT", "/items/42", 405, "", Some("GET, DELETE, HEAD, OPTIONS")),
        ("OPTIONS", "/items/42", 204, "", Some("GET, DELETE, HEAD, OPTIONS")),
        ("GET", "/items/a%2Fb", 404, "", None),
        ("GET", "/items/%2E%2E", 404, "", None),
        ("GET", "/items/..", 404, "", None),
        ("GET", "/items/", 404, "", None),
        ("GET", "/items/1/2", 404, "", None),
    ];
    for (method, target, status, body, allow) in cases {
        let (head, got) = roundtrip(addr, &request(method, target, ""));
        assert_eq!(head.status, *status, "{method} {target}");
        if *status == 200 {
            assert_eq!(String::from_utf8_lossy(&got), *body, "{method} {target}");
        }
        assert_eq!(head.header("allow"), *allow, "{method} {target}");
    }

    // HEAD runs the GET handler and sends its head only.
    let mut conn = Conn::open(addr);
    conn.send(&request("HEAD", "/items/42", ""));
    let head = conn.read_head();
    assert_eq!((head.status, head.header("content-length")), (200, Some("7")));

    // A CORS preflight is answered from the methods of the pattern's place.
    let preflight = "Origin: http://127.0.0.1:9\r\nAccess-Control-Request-Method: DELETE\r\n";
    let (head, _) = roundtrip(addr, &request("OPTIONS", "/items/42", preflight));
    assert_eq!(head.status, 204);
    let methods = head.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("DELETE") && methods.contains("GET"), "{methods}");

    // A stream opened by a pattern route.
    let mut conn = Conn::open(addr);
    conn.get("/items/7/events");
    assert_eq!(conn.read_head().status, 200);
    assert_eq!(String::from_utf8(conn.read_chunked_body()).unwrap(), "data: 7\n\n");
}
