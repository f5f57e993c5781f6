//! What the hand-written test servers share: taking their connections in order, and reading request heads.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The next connection on the non-blocking `listener`, or `None` once `deadline` passes. The socket comes back
/// blocking, with read and write timeouts of `timeout`.
pub fn accept_before(listener: &TcpListener, deadline: Instant, timeout: Duration) -> Option<TcpStream> {
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return None,
        }
    };
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    Some(stream)
}

/// Reads a request head up to its blank line, a byte at a time so nothing after it is consumed; `None` if
/// the stream ends or fails first, or the head is not UTF-8.
pub fn read_request_head(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8(head).ok()
}
