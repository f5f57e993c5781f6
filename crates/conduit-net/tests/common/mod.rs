//! Shared harness for the loopback tests: a server whose event loop runs on its own thread and always stops,
//! bounded blocking clients, and polling with deadlines.

#![allow(dead_code)]

#[cfg(feature = "tls")]
pub mod pki;
#[cfg(feature = "tls")]
pub mod tls;

use conduit_net::{Context, EventLoop, Handler, LoopConfig, Remote};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Read and write timeout of every client socket: a bug fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any awaited condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// A server loop stops by itself after this long even if nobody asks it to.
pub const LOOP_DEADLINE: Duration = Duration::from_secs(60);
/// Upper bound of one `turn`, so the loop thread checks its deadline now and then.
const TURN_WAIT: Duration = Duration::from_millis(200);

/// The message type of every test handler: control messages plus the test's own.
#[derive(Debug)]
pub enum Msg<T> {
    /// Call `cx.stop()`.
    Stop,
    /// Reply with `(cx.connection_count(), cx.timer_count())`.
    Counts(Sender<(usize, usize)>),
    /// The test's own message.
    App(T),
}

/// Handles the control messages; returns the test's own message, if that is what arrived.
pub fn control<T>(cx: &mut Context<'_, Msg<T>>, msg: Msg<T>) -> Option<T> {
    match msg {
        Msg::Stop => {
            cx.stop();
            None
        }
        Msg::Counts(reply) => {
            let _ = reply.send((cx.connection_count(), cx.timer_count()));
            None
        }
        Msg::App(app) => Some(app),
    }
}

/// What the loop thread hands back when it ends.
pub struct Stopped<H: Handler> {
    pub event_loop: EventLoop<H>,
    /// True if it ended because of [`LOOP_DEADLINE`] rather than `cx.stop()`.
    pub timed_out: bool,
}

/// An event loop bound to 127.0.0.1 on an ephemeral port, running on its own thread.
pub struct Server<H: Handler> {
    pub addr: SocketAddr,
    pub remote: Remote<H::Message>,
    done: Receiver<()>,
    thread: Option<JoinHandle<Stopped<H>>>,
    stopper: Box<dyn Fn() + Send>,
}

/// Binds 127.0.0.1:0 and runs `handler` with `config` on a new thread.
pub fn start<H, T>(config: LoopConfig, handler: H) -> Server<H>
where
    H: Handler<Message = Msg<T>> + Send + 'static,
    T: Send + 'static,
{
    let listener = conduit_net::bind("127.0.0.1:0".parse().unwrap(), 128, false).unwrap();
    let event_loop = EventLoop::new(listener, config, handler).unwrap();
    let addr = event_loop.local_addr().unwrap();
    assert!(addr.ip().is_loopback(), "bound to {addr}");
    let remote = event_loop.remote();
    let (done_tx, done) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("event-loop".into())
        .spawn(move || {
            let mut event_loop = event_loop;
            let deadline = Instant::now() + LOOP_DEADLINE;
            let mut timed_out = false;
            while !event_loop.is_stopping() {
                if Instant::now() >= deadline {
                    timed_out = true;
                    break;
                }
                event_loop.turn(Some(TURN_WAIT)).expect("poll failed");
            }
            event_loop.close_all();
            let _ = done_tx.send(());
            Stopped { event_loop, timed_out }
        })
        .unwrap();
    let stop_remote = remote.clone();
    Server {
        addr,
        remote,
        done,
        thread: Some(thread),
        stopper: Box::new(move || {
            let _ = stop_remote.send(Msg::Stop);
        }),
    }
}

impl<H, T> Server<H>
where
    H: Handler<Message = Msg<T>>,
    T: Send + 'static,
{
    /// Sends one of the test's own messages.
    pub fn send(&self, msg: T) {
        if self.remote.send(Msg::App(msg)).is_err() {
            panic!("the server's mailbox refused a message");
        }
    }

    /// Sends a message carrying a reply channel and waits (bounded) for the reply.
    pub fn ask<R>(&self, make: impl FnOnce(Sender<R>) -> T) -> R {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx));
        rx.recv_timeout(WAIT).expect("the loop did not reply")
    }

    /// `(connection_count, timer_count)` as the loop sees them now.
    pub fn counts(&self) -> (usize, usize) {
        let (tx, rx) = mpsc::channel();
        if self.remote.send(Msg::Counts(tx)).is_err() {
            panic!("the server's mailbox refused a message");
        }
        rx.recv_timeout(WAIT).expect("the loop did not reply")
    }

    /// Polls the counts until they equal `expected`; fails the test after [`WAIT`].
    pub fn wait_counts(&self, expected: (usize, usize), what: &str) {
        let mut last = self.counts();
        let deadline = Instant::now() + WAIT;
        while last != expected {
            assert!(Instant::now() < deadline, "{what}: (connections, timers) stayed {last:?}, expected {expected:?}");
            thread::sleep(Duration::from_millis(5));
            last = self.counts();
        }
    }

    /// Asks the loop to stop, waits (bounded) for it and returns it, handler included.
    pub fn stop(mut self) -> EventLoop<H> {
        (self.stopper)();
        let stopped = self.join();
        assert!(!stopped.timed_out, "the loop ran into its deadline");
        stopped.event_loop
    }
}

impl<H: Handler> Server<H> {
    fn join(&mut self) -> Stopped<H> {
        match self.done.recv_timeout(WAIT) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => panic!("the event loop did not stop"),
        }
        let thread = self.thread.take().expect("joined twice");
        match thread.join() {
            Ok(stopped) => stopped,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<H: Handler> Drop for Server<H> {
    fn drop(&mut self) {
        // A test that failed half-way must not leave its loop running (it would stop at its deadline anyway).
        if self.thread.is_some() {
            (self.stopper)();
            if !thread::panicking() {
                let _ = self.join();
            }
        }
    }
}

/// A blocking client connected to `addr` with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    assert!(addr.ip().is_loopback());
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    configure(&stream);
    stream
}

/// A client whose receive buffer is set small before connecting, so the server's output backs up quickly.
pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    assert!(addr.ip().is_loopback());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.connect_timeout(&addr.into(), IO_TIMEOUT).expect("connect");
    let stream: TcpStream = socket.into();
    configure(&stream);
    stream
}

fn configure(stream: &TcpStream) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
}

/// Reads until EOF; fails if more than `limit` bytes arrive or it takes longer than [`WAIT`].
pub fn read_to_eof(stream: &mut TcpStream, limit: usize) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        assert!(Instant::now() < deadline, "no EOF after {} bytes", out.len());
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        assert!(out.len() <= limit, "received {} bytes, more than the {limit} expected", out.len());
    }
}

/// Writes `bytes` and reads the same number back.
pub fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).expect("write");
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back).expect("read echo");
    back
}

/// Waits until `condition` holds; fails the test after [`WAIT`].
pub fn poll_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Receives from a test channel with a deadline.
pub fn recv<E>(rx: &Receiver<E>, what: &str) -> E {
    match rx.recv_timeout(WAIT) {
        Ok(e) => e,
        Err(e) => panic!("waiting for {what}: {e}"),
    }
}

/// Bytes `[start, start + len)` of an endless stream of little-endian u64 words 0, 1, 2, ...: any lost,
/// repeated or reordered stretch shows up as a wrong word.
pub fn counter_bytes(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(|i| ((i / 8) as u64).to_le_bytes()[i % 8]).collect()
}

/// Checks `data` against [`counter_bytes`] from 0, reporting the first wrong offset.
pub fn assert_counter_pattern(data: &[u8], expected_len: usize) {
    let expected = counter_bytes(0, expected_len);
    if let Some(at) = data.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!("stream differs at byte {at} of {}", data.len());
    }
    assert_eq!(data.len(), expected_len, "stream length");
}
