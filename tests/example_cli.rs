//! The example's command line, as a newcomer meets it: `--help`, host names in `--addr`, clear errors.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

fn example() -> Command {
    let mut command = common::cargo();
    command.args(["run", "--quiet", "--example", "sse_simple_server", "--"]);
    command
}

fn run(args: &[&str]) -> Output {
    example().args(args).env_remove("CONDUIT_ADDR").env_remove("CONDUIT_TOKEN").output().expect("run the example")
}

#[test]
fn help_prints_usage_and_exits_zero() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let usage = String::from_utf8_lossy(&out.stdout);
    for option in ["--addr", "--token", "--cors-origin", "CONDUIT_ADDR", "--tls-cert", "--tls-key", "--public-scheme"] {
        assert!(usage.contains(option), "usage mentions {option}: {usage}");
    }
}

#[test]
fn bad_arguments_are_refused_with_a_reason_and_status_2() {
    for (args, reason) in [
        (&["--addr", "no-such-host.invalid:80"][..], "cannot resolve"),
        (&["--addr", "127.0.0.1"][..], "invalid value"),
        (&["--token", "has space"][..], "without spaces"),
        (&["--bogus"][..], "unexpected argument"),
        (&["--redis", "http://127.0.0.1:6379"][..], "must start with redis://"),
        (&["--tls-cert", "cert.pem"][..], "--tls-key <FILE>"),
        (&["--tls-key", "key.pem"][..], "--tls-cert <FILE>"),
        (
            &["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"][..],
            "cannot read /nonexistent/cert.pem",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}

#[test]
fn a_host_name_in_addr_is_resolved() {
    let mut child = example()
        .args(["--addr", "localhost:0", "--token", "t"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the example");
    let stderr = child.stderr.take().unwrap();
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("Conduit demo on http://"))
        .expect("the example logs its address");
    let _ = child.kill();
    let _ = child.wait();
    let addr = line.split("http://").nth(1).unwrap().trim_end_matches('/');
    assert!(addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:"), "{addr}");
}

/// Starts the example with `args`, returns it (killed on drop) and the address it logged.
struct Example(std::process::Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Example, String) {
    let mut child = example()
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("CONDUIT_ALLOWED_HOSTS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the example");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let line = lines.find(|l| l.contains("Conduit demo on http://")).expect("the example logs its address");
    std::thread::spawn(move || lines.for_each(drop));
    (Example(child), line.split("http://").nth(1).unwrap().trim_end_matches('/').to_owned())
}

fn status_for_host(addr: &str, host: &str) -> u16 {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(socket, "GET /favicon.svg HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).expect("a status line");
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[test]
fn on_loopback_only_loopback_host_names_are_served() {
    let (_server, addr) = start(&["--addr", "127.0.0.1:0", "--token", "t"]);
    let port = addr.rsplit(':').next().unwrap();
    for (host, status) in
        [(format!("localhost:{port}"), 200), (addr.clone(), 200), ("rebinding.evil.test".to_owned(), 421)]
    {
        assert_eq!(status_for_host(&addr, &host), status, "{host}");
    }
    let (_server, addr) = start(&["--addr", "127.0.0.1:0", "--token", "t", "--allowed-host", "conduit.test"]);
    assert_eq!(status_for_host(&addr, "conduit.test"), 200);
    assert_eq!(status_for_host(&addr, "localhost"), 421, "only the hosts given");
}
