//! A deliberately small raw HTTP/1.1 client for tests: it shows the exact bytes a server sends.
#![allow(dead_code)]

use conduit::server::{Hub, Router, Server, ServerConfig, SpawnedServer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `router` on 127.0.0.1 with a free port; the server stops when the value is dropped.
pub fn spawn(router: Router) -> SpawnedServer {
    spawn_with(ServerConfig::new("127.0.0.1:0".parse().unwrap()), router)
}

pub fn spawn_with(config: ServerConfig, router: Router) -> SpawnedServer {
    let _ = env_logger::builder().is_test(true).try_init();
    Server::bind(config, router).expect("bind").spawn().expect("spawn")
}

/// Starts `router` serving `hub`'s topics.
pub fn spawn_with_hub(config: ServerConfig, router: Router, hub: &Hub) -> SpawnedServer {
    let _ = env_logger::builder().is_test(true).try_init();
    Server::bind_with_hub(config, router, hub).expect("bind").spawn().expect("spawn")
}

pub fn local_config() -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().unwrap())
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Polls `cond` until it holds or `TIMEOUT` passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The value of the metric line `series` (name and labels exactly as rendered).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The numeric ids of the events in a decoded stream body, in order.
pub fn ids(body: &[u8]) -> Vec<u64> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect()
}

/// One event of a decoded stream body, as the tests read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The `event:` name, `message` if there is none.
    pub event: String,
    pub id: Option<String>,
    /// The first `data:` line.
    pub data: String,
}

/// The events of a decoded stream body whose events have one data line each, in order; comments and blocks
/// without data are skipped.
pub fn events(body: impl AsRef<[u8]>) -> Vec<Block> {
    std::str::from_utf8(body.as_ref())
        .unwrap()
        .split_terminator("\n\n")
        .filter_map(|block| {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
            Some(Block {
                event: field("event: ").unwrap_or_else(|| "message".to_owned()),
                id: field("id: "),
                data: field("data: ")?,
            })
        })
        .collect()
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    /// The raw head, status line and headers, up to and including the blank line.
    pub raw: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A connection reading one response at a time, keeping bytes that arrive early.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn { stream: connect(addr), buf: Vec::new() }
    }

    /// Wraps a stream connected some other way (say, with socket options set before connecting).
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn { stream, buf: Vec::new() }
    }

    /// The stream and the bytes already read from it but not consumed.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    pub fn get(&mut self, target: &str) {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n").as_bytes());
    }

    /// Reads more bytes; false at EOF.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    fn take_line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..pos].to_vec()).expect("utf-8 line");
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    pub fn read_head(&mut self) -> Head {
        let mut raw = String::new();
        let status_line = self.take_line().expect("status line");
        raw.push_str(&status_line);
        raw.push_str("\r\n");
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
        let mut headers = Vec::new();
        loop {
            let line = self.take_line().expect("header line");
            raw.push_str(&line);
            raw.push_str("\r\n");
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header colon");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        Head { status, raw, headers }
    }

    /// Reads one chunk's data; `None` after the terminating zero-length chunk.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.take_line().expect("chunk size line");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).expect("hex chunk size");
        if size == 0 {
            assert_eq!(self.take_line().as_deref(), Some(""), "blank line after the last chunk");
            return None;
        }
        while self.buf.len() < size + 2 {
            assert!(self.fill(), "EOF inside a chunk");
        }
        let data = self.buf[..size].to_vec();
        assert_eq!(&self.buf[size..size + 2], b"\r\n", "CRLF after chunk data");
        self.buf.drain(..size + 2);
        Some(data)
    }

    /// Reads a whole chunked body.
    pub fn read_chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(chunk) = self.read_chunk() {
            body.extend_from_slice(&chunk);
        }
        body
    }

    /// Reads chunks until the decoded body contains `n` complete blocks (events or comments ended by a blank
    /// line), counting as it goes so long streams stay linear.
    pub fn read_events(&mut self, n: usize) -> String {
        let mut body = String::new();
        let (mut blocks, mut newline_before) = (0, false);
        while blocks < n {
            let chunk = self.read_chunk().expect("stream ended early");
            for &b in &chunk {
                if b == b'\n' && newline_before {
                    blocks += 1;
                    newline_before = false;
                } else {
                    newline_before = b == b'\n';
                }
            }
            body.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
        }
        body
    }

    pub fn read_exact_body(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            assert!(self.fill(), "EOF inside a body");
        }
        self.buf.drain(..len).collect()
    }

    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Reads a response with a Content-Length body.
    pub fn read_response(&mut self) -> (Head, Vec<u8>) {
        let head = self.read_head();
        let len = head.header("content-length").map_or(0, |v| v.parse().unwrap());
        let body = self.read_exact_body(len);
        (head, body)
    }
}

/// Sends one raw request on a new connection and reads the response (Content-Length body).
pub fn roundtrip(addr: SocketAddr, raw: &[u8]) -> (Head, Vec<u8>) {
    let mut conn = Conn::open(addr);
    conn.send(raw);
    conn.read_response()
}

/// `cargo` in this package's directory, for building and running its examples from a test. Cargo gives a test
/// process its package's `CARGO_MANIFEST_*` and `CARGO_PKG_*` variables; build scripts that watch them (ring's
/// does) would see them changed and rebuild, here and again in the next plain `cargo` command, so they are
/// removed.
pub fn cargo() -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_MANIFEST_") || name.starts_with("CARGO_PKG_") {
            command.env_remove(&*name);
        }
    }
    command
}

/// An example server as a process on a free loopback port (`--addr 127.0.0.1:0` and `args`), found from the
/// address it logs. It is killed with SIGKILL when dropped, so it never outlives the test.
pub struct ExampleProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// `http`, or `https` when it serves TLS.
    pub scheme: String,
}

impl ExampleProcess {
    /// `examples/sse_simple_server`.
    pub fn start(args: &[&str]) -> ExampleProcess {
        // `Conn` names the host `test`, raw requests in tests `t`.
        ExampleProcess::launch("sse_simple_server", "Conduit demo on ", &["--allowed-host", "t,test"], args)
    }

    /// `examples/mcp_server` (its endpoint is `/mcp` at `addr`).
    pub fn start_mcp(args: &[&str]) -> ExampleProcess {
        ExampleProcess::launch("mcp_server", "MCP endpoint on ", &[], args)
    }

    /// Runs the example `name` with `extra` and `args`, and waits for the log line that has `marker` before its
    /// URL (`scheme://address/...`).
    fn launch(name: &str, marker: &str, extra: &[&str], args: &[&str]) -> ExampleProcess {
        let mut child = cargo()
            .args(["run", "--quiet", "--example", name, "--", "--addr", "127.0.0.1:0"])
            .args(extra)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the example");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (scheme, addr) = loop {
            let line = lines.next().expect("the example logs its address").expect("read stderr");
            if let Some((scheme, rest)) = line.split(marker).nth(1).and_then(|url| url.split_once("://")) {
                let host_port = rest.split('/').next().unwrap_or(rest);
                break (scheme.to_owned(), host_port.trim().parse().expect("address"));
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ExampleProcess { child, addr, scheme }
    }

    /// SIGKILL, and wait for it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ExampleProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}
