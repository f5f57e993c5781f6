//! Integration tests of the event loop over real sockets on 127.0.0.1.
//!
//! Every server binds an ephemeral port on the loopback interface, runs on its own thread and stops when told
//! to (or at a deadline); every client has read and write timeouts, so a bug fails a test instead of hanging it.

mod common;

use common::{
    Msg, assert_counter_pattern, connect, connect_small_rcvbuf, control, counter_bytes, poll_until, read_to_eof, recv,
    round_trip, start,
};
use conduit_net::{
    CloseReason, ConnId, Context, EventLoop, Handler, LoopConfig, QueueFull, SendError, TimerId, WriteError,
};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// An echo server that keeps statistics.
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct EchoStats {
    connects: usize,
    data_calls: usize,
    largest_slice: usize,
    /// The largest backlog seen in the queue when new input arrived: above zero means a flush left bytes
    /// behind (a partial write) and a later one, woken by WRITABLE, finished them.
    largest_backlog: usize,
    write_errors: Vec<WriteError>,
    closes: Vec<(ConnId, CloseReason)>,
}

struct Echo {
    stats: Arc<Mutex<EchoStats>>,
}

impl Echo {
    fn new() -> (Self, Arc<Mutex<EchoStats>>) {
        let stats = Arc::new(Mutex::new(EchoStats::default()));
        (Echo { stats: Arc::clone(&stats) }, stats)
    }
}

impl Handler for Echo {
    type Message = Msg<()>;

    fn on_connect(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId) {
        self.stats.lock().unwrap().connects += 1;
    }

    fn on_data(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId, data: &[u8]) {
        let mut stats = self.stats.lock().unwrap();
        stats.data_calls += 1;
        stats.largest_slice = stats.largest_slice.max(data.len());
        stats.largest_backlog = stats.largest_backlog.max(cx.queued(conn).unwrap_or(0));
        if let Err(e) = cx.write(conn, data) {
            stats.write_errors.push(e);
            cx.close(conn);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, conn: ConnId, reason: CloseReason) {
        self.stats.lock().unwrap().closes.push((conn, reason));
    }
}

/// (1) Several clients at once, small messages and a 1 MiB one, all echoed intact.
#[test]
fn echo_many_clients_and_a_large_payload() {
    let (echo, stats) = Echo::new();
    let config = LoopConfig {
        read_buffer_size: 16 * KIB,
        read_budget: 32 * KIB,
        write_queue_limit: 4 * MIB,
        ..LoopConfig::default()
    };
    let server = start(config, echo);
    let addr = server.addr;

    let small: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut s = connect(addr);
                for round in 0..100 {
                    let msg = format!("client {i} round {round};").repeat(round % 7 + 1);
                    assert_eq!(round_trip(&mut s, msg.as_bytes()), msg.as_bytes());
                }
            })
        })
        .collect();

    // The large client sends all of 1 MiB before reading a byte, and its receive buffer is small: the echo
    // must back up in the server's queue and go out in pieces as the client reads.
    let big = thread::spawn(move || {
        let payload = counter_bytes(0, MIB);
        let mut s = connect_small_rcvbuf(addr, 32 * KIB);
        let mut writer = s.try_clone().unwrap();
        let to_send = payload.clone();
        let sender = thread::spawn(move || writer.write_all(&to_send).expect("write 1 MiB"));
        sender.join().unwrap();
        let mut back = vec![0u8; MIB];
        s.read_exact(&mut back).expect("read 1 MiB back");
        assert_counter_pattern(&back, MIB);
    });

    for t in small {
        t.join().unwrap();
    }
    big.join().unwrap();
    server.wait_counts((0, 0), "all clients gone");

    let _ = server.stop();
    let stats = stats.lock().unwrap();
    assert_eq!(stats.connects, 9);
    assert!(stats.write_errors.is_empty(), "{:?}", stats.write_errors);
    assert!(stats.largest_slice <= 16 * KIB, "on_data got {} bytes, more than the read buffer", stats.largest_slice);
    assert!(stats.data_calls >= MIB / (16 * KIB), "1 MiB arrived in only {} reads", stats.data_calls);
    assert!(stats.largest_backlog > 0, "the echo never backed up: no partial write was exercised");
    assert_eq!(stats.closes.len(), 9);
    assert!(stats.closes.iter().all(|(_, r)| *r == CloseReason::Local), "{:?}", stats.closes);
}

// ---------------------------------------------------------------------------------------------------------
// Backpressure: a client that never reads.
// ---------------------------------------------------------------------------------------------------------

const FLOOD_CHUNK: usize = 16 * KIB;
const FLOOD_LIMIT: usize = 64 * KIB;

#[derive(Debug)]
enum FloodEvent {
    Full { conn: ConnId, full: QueueFull, had_room: bool, accepted: usize, largest_queue: usize },
    Close(ConnId, CloseReason),
}

struct Flood {
    events: Sender<FloodEvent>,
    conn: Option<ConnId>,
    timer: Option<TimerId>,
    accepted: usize,
    largest_queue: usize,
}

impl Handler for Flood {
    type Message = Msg<()>;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        self.conn = Some(conn);
        self.timer = Some(cx.set_interval(Duration::from_millis(1), 1));
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId, _data: &[u8]) {}

    fn on_timer(&mut self, cx: &mut Context<'_, Msg<()>>, _timer: TimerId, _key: u64) {
        let Some(conn) = self.conn else { return };
        // Two chunks a tick: each turn's flush moves what the socket takes, so the queue only fills once
        // the kernel's buffers are full.
        for _ in 0..2 {
            let had_room = cx.has_room(conn, FLOOD_CHUNK);
            match cx.write(conn, &[0xAB; FLOOD_CHUNK]) {
                Ok(()) => {
                    self.accepted += FLOOD_CHUNK;
                    self.largest_queue = self.largest_queue.max(cx.queued(conn).unwrap());
                }
                Err(WriteError::Full(full)) => {
                    assert_eq!(cx.queued(conn), Some(full.queued), "a refused write queued bytes");
                    let _ = self.events.send(FloodEvent::Full {
                        conn,
                        full,
                        had_room,
                        accepted: self.accepted,
                        largest_queue: self.largest_queue,
                    });
                    cx.close(conn);
                    cx.cancel_timer(self.timer.take().unwrap());
                    self.conn = None;
                    return;
                }
                Err(WriteError::Closed) => panic!("the connection closed under the flood"),
            }
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, conn: ConnId, reason: CloseReason) {
        let _ = self.events.send(FloodEvent::Close(conn, reason));
    }
}

/// (2) The queue limit holds against a client that does not read, and a full queue is reported, not hidden.
#[test]
fn write_queue_limit_refuses_writes_to_a_client_that_does_not_read() {
    let (tx, events) = mpsc::channel();
    let config = LoopConfig { write_queue_limit: FLOOD_LIMIT, ..LoopConfig::default() };
    let server = start(config, Flood { events: tx, conn: None, timer: None, accepted: 0, largest_queue: 0 });
    let mut client = connect_small_rcvbuf(server.addr, 4 * KIB);

    let FloodEvent::Full { conn, full, had_room, accepted, largest_queue } = recv(&events, "a full queue") else {
        panic!("expected a full queue first");
    };
    assert!(!had_room, "has_room said yes to a write that was refused");
    assert_eq!(full.limit, FLOOD_LIMIT);
    assert_eq!(full.attempted, FLOOD_CHUNK);
    assert!(full.queued <= FLOOD_LIMIT && full.queued + FLOOD_CHUNK > FLOOD_LIMIT, "{full:?}");
    assert!(largest_queue <= FLOOD_LIMIT, "the queue held {largest_queue} bytes, over its limit");
    assert!(accepted > FLOOD_LIMIT, "only {accepted} bytes were accepted");
    let FloodEvent::Close(closed, reason) = recv(&events, "the close") else {
        panic!("expected the close");
    };
    assert_eq!(closed, conn);
    assert_eq!(reason, CloseReason::Local);
    server.wait_counts((0, 0), "the flooded connection closed");

    // What the kernel had already taken still arrives, then EOF; what was queued was dropped by the close.
    let received = read_to_eof(&mut client, accepted).expect("read the flood");
    assert!(received.iter().all(|&b| b == 0xAB));
    assert_eq!(
        received.len(),
        accepted - full.queued,
        "everything written to the socket and nothing that was still queued"
    );
    let _ = server.stop();
}

// ---------------------------------------------------------------------------------------------------------
// notify_drained.
// ---------------------------------------------------------------------------------------------------------

const LOW_WATER: usize = 16 * KIB;
/// More than loopback send buffers take (they grow to megabytes), so the queue must back up.
const DRAIN_PAYLOAD: usize = 8 * MIB;

#[derive(Debug)]
enum DrainEvent {
    Drained { queued: usize },
}

struct BigWrite {
    events: Sender<DrainEvent>,
    drained: usize,
    conn: Option<ConnId>,
}

enum DrainQuery {
    /// Replies with (on_drained calls so far, bytes queued).
    State(Sender<(usize, usize)>),
}

impl Handler for BigWrite {
    type Message = Msg<DrainQuery>;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg<DrainQuery>>, conn: ConnId) {
        self.conn = Some(conn);
        cx.write_vec(conn, counter_bytes(0, DRAIN_PAYLOAD)).unwrap();
        cx.notify_drained(conn);
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<DrainQuery>>, _conn: ConnId, _data: &[u8]) {}

    fn on_drained(&mut self, cx: &mut Context<'_, Msg<DrainQuery>>, conn: ConnId) {
        self.drained += 1;
        let _ = self.events.send(DrainEvent::Drained { queued: cx.queued(conn).unwrap() });
        cx.close_after_flush(conn);
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<DrainQuery>>, msg: Msg<DrainQuery>) {
        if let Some(DrainQuery::State(reply)) = control(cx, msg) {
            let queued = self.conn.and_then(|c| cx.queued(c)).unwrap_or(0);
            let _ = reply.send((self.drained, queued));
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<DrainQuery>>, _conn: ConnId, _r: CloseReason) {}
}

/// (3a) on_drained comes only once the client has read enough, with the queue at or below low water.
#[test]
fn notify_drained_waits_for_the_client_to_read() {
    let (tx, events) = mpsc::channel();
    let config = LoopConfig { low_water: LOW_WATER, ..LoopConfig::default() };
    let server = start(config, BigWrite { events: tx, drained: 0, conn: None });
    let mut client = connect_small_rcvbuf(server.addr, 16 * KIB);
    // Wait until the loop has taken the connection and flushed what the socket would take.
    poll_until("the connection to be accepted", || server.ask(DrainQuery::State).1 > 0);
    let (drained, queued) = server.ask(DrainQuery::State);
    assert_eq!(drained, 0, "drained before the client read anything");
    assert!(queued > LOW_WATER, "the queue was {queued} bytes: the test needs it above low water");
    assert!(events.try_recv().is_err());

    let data = read_to_eof(&mut client, DRAIN_PAYLOAD).expect("read the payload");
    assert_counter_pattern(&data, DRAIN_PAYLOAD);
    let DrainEvent::Drained { queued } = recv(&events, "on_drained");
    assert!(queued <= LOW_WATER, "on_drained with {queued} bytes queued");
    drop(client);
    server.wait_counts((0, 0), "the drained connection closed");
    let event_loop = server.stop();
    assert_eq!(event_loop.handler().drained, 1, "on_drained more than once");
}

/// Asks for on_drained twice while its queue is empty, and reports the calls after a while.
struct AskTwice {
    drained: usize,
    report: Sender<usize>,
}

impl Handler for AskTwice {
    type Message = Msg<()>;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        cx.notify_drained(conn);
        cx.notify_drained(conn);
        cx.write(conn, b"hello").unwrap();
        cx.notify_drained(conn);
        cx.set_timer(cx.now() + Duration::from_millis(100), 0);
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId, _data: &[u8]) {}

    fn on_drained(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId) {
        self.drained += 1;
    }

    fn on_timer(&mut self, _cx: &mut Context<'_, Msg<()>>, _timer: TimerId, _key: u64) {
        let _ = self.report.send(self.drained);
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId, _r: CloseReason) {}
}

/// (3c) Asking again while a notification is pending does not make a second one.
#[test]
fn notify_drained_twice_gives_one_call() {
    let (tx, report) = mpsc::channel();
    let server = start(LoopConfig::default(), AskTwice { drained: 0, report: tx });
    let mut client = connect(server.addr);
    let mut hello = [0u8; 5];
    client.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    assert_eq!(recv(&report, "the report"), 1, "on_drained calls");
    let _ = server.stop();
}

const PRODUCER_CHUNK: usize = 8 * KIB;
const PRODUCER_BATCH: usize = 16;
const PRODUCER_ROUNDS: usize = 40;

/// Writes a batch of chunks each time it is drained, then finishes with close_after_flush.
struct Producer {
    rounds: usize,
    offset: usize,
    over_low_water: Vec<usize>,
}

impl Handler for Producer {
    type Message = Msg<()>;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        // The queue is empty: on_drained comes at the start of the next turn.
        cx.notify_drained(conn);
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId, _data: &[u8]) {}

    fn on_drained(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        let queued = cx.queued(conn).unwrap();
        if queued > LOW_WATER {
            self.over_low_water.push(queued);
        }
        for _ in 0..PRODUCER_BATCH {
            cx.write_vec(conn, counter_bytes(self.offset, PRODUCER_CHUNK)).expect("the producer's write was refused");
            self.offset += PRODUCER_CHUNK;
        }
        self.rounds += 1;
        if self.rounds < PRODUCER_ROUNDS {
            cx.notify_drained(conn);
        } else {
            cx.close_after_flush(conn);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId, _r: CloseReason) {}
}

/// (3b) A producer paced by on_drained delivers exactly what it produced, in order.
#[test]
fn producer_paced_by_on_drained_delivers_everything_in_order() {
    let config = LoopConfig { low_water: LOW_WATER, write_queue_limit: 256 * KIB, ..LoopConfig::default() };
    let server = start(config, Producer { rounds: 0, offset: 0, over_low_water: Vec::new() });
    let total = PRODUCER_ROUNDS * PRODUCER_BATCH * PRODUCER_CHUNK;
    let mut client = connect_small_rcvbuf(server.addr, 32 * KIB);
    let data = read_to_eof(&mut client, total).expect("read the stream");
    assert_counter_pattern(&data, total);
    drop(client);
    server.wait_counts((0, 0), "the producer's connection closed");
    let event_loop = server.stop();
    let producer = event_loop.handler();
    assert_eq!(producer.rounds, PRODUCER_ROUNDS);
    assert!(producer.over_low_water.is_empty(), "on_drained above low water: {:?}", producer.over_low_water);
}

// ---------------------------------------------------------------------------------------------------------
// close_after_flush and lingering.
// ---------------------------------------------------------------------------------------------------------

const RESPONSE: usize = 200 * KIB;
/// More than a loopback socket's send buffer can grow to: the server is certainly still flushing when the
/// client's extra bytes or EOF arrive.
const LARGE_RESPONSE: usize = 6 * MIB;

#[derive(Debug, PartialEq)]
enum RespEvent {
    LateWrite(Result<(), WriteError>),
    Close(CloseReason),
}

/// Answers the first bytes of a connection with `size` bytes and close_after_flush; ignores the rest.
struct Responder {
    events: Sender<RespEvent>,
    size: usize,
    answered: HashMap<ConnId, usize>,
}

impl Handler for Responder {
    type Message = Msg<()>;

    fn on_connect(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId) {}

    fn on_data(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId, data: &[u8]) {
        let seen = self.answered.entry(conn).or_insert(0);
        if *seen == 0 {
            cx.write_vec(conn, counter_bytes(0, self.size)).unwrap();
            cx.close_after_flush(conn);
            assert!(!cx.is_open(conn));
            let _ = self.events.send(RespEvent::LateWrite(cx.write(conn, b"late")));
        }
        *seen += data.len();
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, conn: ConnId, reason: CloseReason) {
        self.answered.remove(&conn);
        let _ = self.events.send(RespEvent::Close(reason));
    }
}

fn responder(linger: Duration, size: usize) -> (common::Server<Responder>, mpsc::Receiver<RespEvent>) {
    let (tx, events) = mpsc::channel();
    let config = LoopConfig { linger, ..LoopConfig::default() };
    let server = start(config, Responder { events: tx, size, answered: HashMap::new() });
    (server, events)
}

/// (4a) Everything queued arrives before EOF even though the client sends more that the server never wants;
/// the connection then lingers until the client closes, and is gone with its timer.
#[test]
fn close_after_flush_delivers_everything_then_eof() {
    for size in [RESPONSE, LARGE_RESPONSE] {
        // A long linger: the close below must come from the client's EOF, not from the timer.
        let (server, events) = responder(Duration::from_secs(30), size);
        let mut client = connect_small_rcvbuf(server.addr, 16 * KIB);
        client.write_all(b"go").unwrap();
        let mut first = [0u8; 1];
        client.read_exact(&mut first).unwrap();
        assert_eq!(recv(&events, "the late write"), RespEvent::LateWrite(Err(WriteError::Closed)));
        // The server is flushing (or lingering); what the client sends now is never read by the handler.
        client.write_all(&[b'x'; 64 * KIB]).unwrap();
        let rest = read_to_eof(&mut client, size - 1).expect("read the response");
        let mut all = first.to_vec();
        all.extend_from_slice(&rest);
        assert_counter_pattern(&all, size);
        assert_eq!(client.read(&mut first).unwrap(), 0, "EOF is sticky");

        // Write side shut, lingering for our EOF: the connection and its linger timer are still there.
        assert_eq!(server.counts(), (1, 1), "{size} bytes");
        drop(client);
        assert_eq!(recv(&events, "the close"), RespEvent::Close(CloseReason::Local));
        server.wait_counts((0, 0), "the lingering connection closed");
        let _ = server.stop();
    }
}

/// (4b) A client that half-closes right after its request still gets the whole response: its EOF arriving
/// while the loop flushes must not cut the flush short.
#[test]
fn close_after_flush_survives_the_clients_early_eof() {
    for size in [RESPONSE, LARGE_RESPONSE] {
        let (server, events) = responder(Duration::from_secs(30), size);
        let mut client = connect_small_rcvbuf(server.addr, 16 * KIB);
        client.write_all(b"go").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let data = read_to_eof(&mut client, size).expect("read the response");
        assert_counter_pattern(&data, size);
        assert_eq!(recv(&events, "the late write"), RespEvent::LateWrite(Err(WriteError::Closed)));
        // Its EOF came already, so there is no lingering: closed as soon as the flush is done.
        assert_eq!(recv(&events, "the close"), RespEvent::Close(CloseReason::Local));
        server.wait_counts((0, 0), "the connection closed");
        let _ = server.stop();
    }
}

/// (4c) A client that never closes is closed when the linger time is up.
#[test]
fn linger_ends_by_timer_when_the_client_stays() {
    let (server, events) = responder(Duration::from_millis(200), RESPONSE);
    let mut client = connect(server.addr);
    client.write_all(b"go").unwrap();
    let data = read_to_eof(&mut client, RESPONSE).expect("read the response");
    let eof_at = Instant::now();
    assert_counter_pattern(&data, RESPONSE);
    assert_eq!(recv(&events, "the late write"), RespEvent::LateWrite(Err(WriteError::Closed)));
    assert_eq!(recv(&events, "the close"), RespEvent::Close(CloseReason::Local));
    // The linger started before our EOF was read; allow for that, but not for closing at once.
    assert!(
        eof_at.elapsed() >= Duration::from_millis(100),
        "closed {:?} after EOF, before the linger ended",
        eof_at.elapsed()
    );
    server.wait_counts((0, 0), "the lingering connection closed");
    assert_eq!(client.read(&mut [0u8; 16]).unwrap(), 0);
    let _ = server.stop();
}

// ---------------------------------------------------------------------------------------------------------
// Disconnects.
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum ConnEvent {
    Connect(ConnId),
    ReadClosed(ConnId),
    Close(ConnId, CloseReason),
}

/// What [`Recorder`] does when a peer's EOF arrives.
#[derive(Clone, Copy)]
enum OnEof {
    /// What the default `on_read_closed` does.
    Close,
    /// Half-close: the peer is done sending, but still reads this answer.
    Reply(&'static [u8]),
    /// Nothing: the connection stays open for writing.
    KeepOpen,
}

/// Records the life of connections; optionally writes 16 KiB to each of them every 2 ms.
struct Recorder {
    events: Sender<ConnEvent>,
    spam: bool,
    conns: Vec<ConnId>,
    on_eof: OnEof,
}

impl Recorder {
    fn new(events: Sender<ConnEvent>) -> Self {
        Recorder { events, spam: false, conns: Vec::new(), on_eof: OnEof::Close }
    }
}

impl Handler for Recorder {
    type Message = Msg<()>;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        if self.spam && self.conns.is_empty() {
            cx.set_interval(Duration::from_millis(2), 0);
        }
        self.conns.push(conn);
        let _ = self.events.send(ConnEvent::Connect(conn));
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<()>>, _conn: ConnId, _data: &[u8]) {}

    fn on_read_closed(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        let _ = self.events.send(ConnEvent::ReadClosed(conn));
        match self.on_eof {
            OnEof::Close => cx.close(conn),
            OnEof::Reply(reply) => {
                cx.write(conn, reply).unwrap();
                cx.close_after_flush(conn);
            }
            OnEof::KeepOpen => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Msg<()>>, _timer: TimerId, _key: u64) {
        for &conn in &self.conns {
            // A full queue is the client's business; a closed one (failed earlier in this turn, on_close
            // still to come) is fine too.
            let _ = cx.write(conn, &[7u8; 16 * KIB]);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, conn: ConnId, reason: CloseReason) {
        self.conns.retain(|&c| c != conn);
        let _ = self.events.send(ConnEvent::Close(conn, reason));
    }
}

/// (5a) A client that connects and goes away is noticed: read closed, then closed.
#[test]
fn a_client_that_disconnects_is_detected() {
    let (tx, events) = mpsc::channel();
    let server = start(LoopConfig::default(), Recorder::new(tx));
    let client = connect(server.addr);
    let ConnEvent::Connect(id) = recv(&events, "the connect") else {
        panic!("expected a connect");
    };
    assert_eq!(server.counts(), (1, 0));
    drop(client);
    assert_eq!(recv(&events, "read closed"), ConnEvent::ReadClosed(id));
    assert_eq!(recv(&events, "the close"), ConnEvent::Close(id, CloseReason::Local));
    server.wait_counts((0, 0), "the connection closed");
    let _ = server.stop();
}

/// (5b) A client that resets while the server writes to it is closed, and nothing else is disturbed.
#[test]
fn a_client_that_resets_while_being_written_to_is_closed() {
    let (tx, events) = mpsc::channel();
    let mut recorder = Recorder::new(tx);
    recorder.spam = true;
    let server = start(LoopConfig { write_queue_limit: 64 * KIB, ..LoopConfig::default() }, recorder);
    let mut bystander = connect(server.addr);
    let ConnEvent::Connect(bystander_id) = recv(&events, "the bystander") else {
        panic!("expected a connect");
    };
    let mut client = connect(server.addr);
    let ConnEvent::Connect(id) = recv(&events, "the connect") else {
        panic!("expected a connect");
    };
    // Data is flowing to it.
    let mut some = [0u8; 1024];
    client.read_exact(&mut some).unwrap();
    assert!(some.iter().all(|&b| b == 7));
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);

    let close = loop {
        match recv(&events, "the close of the reset connection") {
            ConnEvent::Close(c, reason) => break (c, reason),
            ConnEvent::ReadClosed(c) => assert_eq!(c, id, "read closed on the wrong connection"),
            other @ ConnEvent::Connect(_) => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.0, id);
    assert!(matches!(close.1, CloseReason::Io(_) | CloseReason::Local), "{:?}", close.1);
    // One connection left (the bystander) and the spam interval.
    server.wait_counts((1, 1), "the reset connection closed");
    bystander.read_exact(&mut some).unwrap();
    assert!(some.iter().all(|&b| b == 7));
    drop(bystander);
    let event_loop = server.stop();
    assert!(event_loop.handler().conns.is_empty());
    let mut rest = Vec::new();
    while let Ok(e) = events.try_recv() {
        rest.push(e);
    }
    // Dropped with unread data, the bystander resets too (or is closed by the stop): either way it is closed.
    assert!(rest.iter().any(|e| matches!(e, ConnEvent::Close(c, _) if *c == bystander_id)), "{rest:?}");
}

/// (5c) A half-closed client can still read the answer; no linger is needed since its EOF already came.
#[test]
fn a_half_closed_client_gets_its_answer() {
    let (tx, events) = mpsc::channel();
    let mut recorder = Recorder::new(tx);
    recorder.on_eof = OnEof::Reply(b"goodbye\n");
    let server = start(LoopConfig { linger: Duration::from_secs(30), ..LoopConfig::default() }, recorder);
    let mut client = connect(server.addr);
    let ConnEvent::Connect(id) = recv(&events, "the connect") else {
        panic!("expected a connect");
    };
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut client, 8).unwrap(), b"goodbye\n");
    assert_eq!(recv(&events, "read closed"), ConnEvent::ReadClosed(id));
    assert_eq!(recv(&events, "the close"), ConnEvent::Close(id, CloseReason::Local));
    server.wait_counts((0, 0), "the connection closed");
    let _ = server.stop();
}

/// (5d) A half-closed connection kept open by the handler is still closed when the peer then resets it, even
/// though nothing is written to it: the reset shows only as a socket error.
#[test]
fn a_half_closed_client_that_resets_is_detected() {
    let (tx, events) = mpsc::channel();
    let mut recorder = Recorder::new(tx);
    recorder.on_eof = OnEof::KeepOpen;
    let server = start(LoopConfig::default(), recorder);
    let client = connect(server.addr);
    let ConnEvent::Connect(id) = recv(&events, "the connect") else {
        panic!("expected a connect");
    };
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(recv(&events, "read closed"), ConnEvent::ReadClosed(id));
    assert_eq!(server.counts(), (1, 0), "kept open after EOF");
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    let ConnEvent::Close(closed, reason) = recv(&events, "the close after the reset") else {
        panic!("expected the close");
    };
    assert_eq!(closed, id);
    assert!(matches!(reason, CloseReason::Io(_)), "{reason:?}");
    server.wait_counts((0, 0), "the reset connection closed");
    let _ = server.stop();
}

/// Stopping the loop closes the open connections with `Shutdown` and the clients see EOF.
#[test]
fn stopping_closes_open_connections() {
    let (tx, events) = mpsc::channel();
    let server = start(LoopConfig::default(), Recorder::new(tx));
    let mut clients: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    let ids: Vec<ConnId> = (0..3)
        .map(|_| match recv(&events, "a connect") {
            ConnEvent::Connect(id) => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let remote = server.remote.clone();
    let event_loop = server.stop();
    assert_eq!(event_loop.connection_count(), 0);
    let mut closed: Vec<ConnId> = events
        .try_iter()
        .map(|e| match e {
            ConnEvent::Close(id, CloseReason::Shutdown) => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    closed.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(closed, ids);
    for c in &mut clients {
        assert_eq!(read_to_eof(c, 0).unwrap(), b"");
    }
    assert!(!remote.is_open());
}

// ---------------------------------------------------------------------------------------------------------
// Remote.
// ---------------------------------------------------------------------------------------------------------

const SENDERS: usize = 4;
const PER_SENDER: u64 = 10_000;

#[derive(Debug, PartialEq)]
enum RemoteMsg {
    Seq(usize, u64),
    Stop,
}

struct Tally {
    next: [u64; SENDERS],
    received: u64,
    out_of_order: Vec<(usize, u64, u64)>,
}

impl Handler for Tally {
    type Message = RemoteMsg;

    fn on_connect(&mut self, cx: &mut Context<'_, RemoteMsg>, conn: ConnId) {
        cx.close(conn);
    }

    fn on_data(&mut self, _cx: &mut Context<'_, RemoteMsg>, _conn: ConnId, _data: &[u8]) {}

    fn on_message(&mut self, cx: &mut Context<'_, RemoteMsg>, msg: RemoteMsg) {
        match msg {
            RemoteMsg::Seq(sender, n) => {
                self.received += 1;
                if self.next[sender] != n {
                    self.out_of_order.push((sender, self.next[sender], n));
                }
                self.next[sender] = n + 1;
            }
            RemoteMsg::Stop => cx.stop(),
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_, RemoteMsg>, _conn: ConnId, _r: CloseReason) {}
}

/// (6a) Messages from several threads all arrive, each thread's in order; a stopped loop refuses more.
#[test]
fn remote_messages_from_many_threads_arrive_in_order() {
    let listener = conduit_net::bind("127.0.0.1:0".parse().unwrap(), 128, false).unwrap();
    let event_loop = EventLoop::new(
        listener,
        LoopConfig::default(),
        Tally { next: [0; SENDERS], received: 0, out_of_order: Vec::new() },
    )
    .unwrap();
    let remote = event_loop.remote();
    let (done_tx, done) = mpsc::channel();
    let runner = thread::spawn(move || {
        let mut event_loop = event_loop;
        let result = event_loop.run();
        let _ = done_tx.send(());
        (event_loop, result)
    });

    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let remote = remote.clone();
            thread::spawn(move || {
                for n in 0..PER_SENDER {
                    if let Err(e) = remote.send(RemoteMsg::Seq(t, n)) {
                        panic!("send {n} of thread {t} failed: {e}");
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    remote.send(RemoteMsg::Stop).unwrap();
    done.recv_timeout(common::WAIT).expect("the loop did not stop");
    let (event_loop, result) = runner.join().unwrap();
    result.unwrap();

    let tally = event_loop.handler();
    assert_eq!(tally.received, SENDERS as u64 * PER_SENDER);
    assert!(tally.out_of_order.is_empty(), "{:?}", &tally.out_of_order[..]);
    assert_eq!(tally.next, [PER_SENDER; SENDERS]);
    assert!(!remote.is_open());
    assert_eq!(remote.send(RemoteMsg::Seq(0, 0)), Err(SendError::Closed(RemoteMsg::Seq(0, 0))));
    drop(event_loop);
    assert!(matches!(remote.send(RemoteMsg::Stop), Err(SendError::Closed(RemoteMsg::Stop))));
}

struct Inbox {
    got: Vec<u32>,
}

impl Handler for Inbox {
    type Message = u32;
    fn on_connect(&mut self, cx: &mut Context<'_, u32>, conn: ConnId) {
        cx.close(conn);
    }
    fn on_data(&mut self, _cx: &mut Context<'_, u32>, _conn: ConnId, _data: &[u8]) {}
    fn on_message(&mut self, _cx: &mut Context<'_, u32>, msg: u32) {
        self.got.push(msg);
    }
    fn on_close(&mut self, _cx: &mut Context<'_, u32>, _conn: ConnId, _r: CloseReason) {}
}

/// (6b) The mailbox is bounded: past `mailbox_limit` sends fail with `Full` and hand the message back.
#[test]
fn mailbox_limit_refuses_sends_past_it() {
    let listener = conduit_net::bind("127.0.0.1:0".parse().unwrap(), 128, false).unwrap();
    let config = LoopConfig { mailbox_limit: 3, ..LoopConfig::default() };
    let mut event_loop = EventLoop::new(listener, config, Inbox { got: Vec::new() }).unwrap();
    let remote = event_loop.remote();
    for n in 0..3 {
        assert_eq!(remote.send(n), Ok(()));
    }
    let refused = remote.send(3).unwrap_err();
    assert_eq!(refused, SendError::Full(3));
    assert_eq!(refused.into_inner(), 3);
    assert_eq!(remote.send(4), Err(SendError::Full(4)));

    // Turns are bounded in number and each in time.
    for _ in 0..50 {
        if event_loop.handler().got.len() == 3 {
            break;
        }
        event_loop.turn(Some(Duration::from_millis(100))).unwrap();
    }
    assert_eq!(event_loop.handler().got, [0, 1, 2]);
    assert_eq!(remote.send(5), Ok(()), "the mailbox has room again");
    for _ in 0..50 {
        if event_loop.handler().got.len() == 4 {
            break;
        }
        event_loop.turn(Some(Duration::from_millis(100))).unwrap();
    }
    assert_eq!(event_loop.handler().got, [0, 1, 2, 5]);
    drop(event_loop);
    assert_eq!(remote.send(6), Err(SendError::Closed(6)));
}

// ---------------------------------------------------------------------------------------------------------
// Timers.
// ---------------------------------------------------------------------------------------------------------

const SENTINEL: u64 = 1000;

#[derive(Debug)]
enum TimerCmd {
    Once { delay: Duration, key: u64 },
    Interval { period: Duration, key: u64, ticks: usize },
    OnceCancelled { delay: Duration, key: u64 },
}

#[derive(Debug, PartialEq)]
enum TimerEvent {
    Armed { key: u64, at: Instant, count: usize },
    Fired { key: u64, at: Instant },
    Cancelled { first: bool, again: bool, count: usize },
    RefireCancel(bool),
    Sentinel,
}

struct Clock {
    events: Sender<TimerEvent>,
    timers: HashMap<u64, TimerId>,
    interval_ticks: HashMap<u64, (usize, usize)>,
}

impl Clock {
    fn sentinel(&mut self, cx: &mut Context<'_, Msg<TimerCmd>>, after: Duration) {
        cx.set_timer(cx.now() + after, SENTINEL);
    }
}

impl Handler for Clock {
    type Message = Msg<TimerCmd>;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg<TimerCmd>>, conn: ConnId) {
        cx.close(conn);
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<TimerCmd>>, _conn: ConnId, _data: &[u8]) {}

    fn on_message(&mut self, cx: &mut Context<'_, Msg<TimerCmd>>, msg: Msg<TimerCmd>) {
        let Some(cmd) = control(cx, msg) else { return };
        let at = cx.now();
        match cmd {
            TimerCmd::Once { delay, key } => {
                let id = cx.set_timer(at + delay, key);
                self.timers.insert(key, id);
                let count = cx.timer_count();
                let _ = self.events.send(TimerEvent::Armed { key, at, count });
            }
            TimerCmd::Interval { period, key, ticks } => {
                let id = cx.set_interval(period, key);
                self.timers.insert(key, id);
                self.interval_ticks.insert(key, (0, ticks));
                let count = cx.timer_count();
                let _ = self.events.send(TimerEvent::Armed { key, at, count });
            }
            TimerCmd::OnceCancelled { delay, key } => {
                let id = cx.set_timer(at + delay, key);
                let armed = cx.timer_count();
                let first = cx.cancel_timer(id);
                let again = cx.cancel_timer(id);
                let count = cx.timer_count();
                let _ = self.events.send(TimerEvent::Armed { key, at, count: armed });
                let _ = self.events.send(TimerEvent::Cancelled { first, again, count });
                self.sentinel(cx, delay * 3);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Msg<TimerCmd>>, timer: TimerId, key: u64) {
        if key == SENTINEL {
            let _ = self.events.send(TimerEvent::Sentinel);
            return;
        }
        assert_eq!(self.timers.get(&key), Some(&timer), "fired with a foreign id");
        let _ = self.events.send(TimerEvent::Fired { key, at: cx.now() });
        match self.interval_ticks.get_mut(&key) {
            None => {
                // A one-shot that fired is no longer armed.
                let _ = self.events.send(TimerEvent::RefireCancel(cx.cancel_timer(timer)));
                self.sentinel(cx, Duration::from_millis(100));
            }
            Some((seen, wanted)) => {
                *seen += 1;
                if *seen == *wanted {
                    let first = cx.cancel_timer(timer);
                    let again = cx.cancel_timer(timer);
                    let count = cx.timer_count();
                    let _ = self.events.send(TimerEvent::Cancelled { first, again, count });
                    self.sentinel(cx, Duration::from_millis(100));
                }
            }
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<TimerCmd>>, _conn: ConnId, _r: CloseReason) {}
}

/// Collects timer events up to and including the sentinel.
fn until_sentinel(events: &mpsc::Receiver<TimerEvent>) -> Vec<TimerEvent> {
    let mut out = Vec::new();
    loop {
        let e = recv(events, "timer events");
        let done = e == TimerEvent::Sentinel;
        out.push(e);
        if done || out.len() > 1000 {
            return out;
        }
    }
}

/// (7) Timers through the context: set_timer fires once, set_interval repeats until cancelled, a cancelled
/// timer never fires, and the count of armed timers follows.
#[test]
fn timers_through_the_context() {
    let (tx, events) = mpsc::channel();
    let server =
        start(LoopConfig::default(), Clock { events: tx, timers: HashMap::new(), interval_ticks: HashMap::new() });

    // One-shot.
    server.send(TimerCmd::Once { delay: Duration::from_millis(50), key: 7 });
    let got = until_sentinel(&events);
    let [
        TimerEvent::Armed { key: 7, at, count: 1 },
        TimerEvent::Fired { key: 7, at: fired },
        TimerEvent::RefireCancel(false),
        TimerEvent::Sentinel,
    ] = got[..]
    else {
        panic!("one-shot: {got:?}");
    };
    assert!(fired >= at + Duration::from_millis(50), "fired early");
    server.wait_counts((0, 0), "the one-shot is gone");

    // Interval: five ticks, then cancelled; the sentinel 100 ms later sees no more ticks.
    let period = Duration::from_millis(10);
    server.send(TimerCmd::Interval { period, key: 8, ticks: 5 });
    let got = until_sentinel(&events);
    assert_eq!(got.len(), 1 + 5 + 1 + 1, "{got:?}");
    let TimerEvent::Armed { key: 8, at, count: 1 } = got[0] else {
        panic!("interval: {got:?}");
    };
    let mut previous = at;
    for (k, e) in got[1..6].iter().enumerate() {
        let &TimerEvent::Fired { key: 8, at: tick } = e else {
            panic!("tick {k}: {got:?}");
        };
        assert!(tick >= at + period * (k as u32 + 1), "tick {k} came early");
        assert!(tick >= previous);
        previous = tick;
    }
    assert_eq!(got[6], TimerEvent::Cancelled { first: true, again: false, count: 0 });
    assert_eq!(got[7], TimerEvent::Sentinel);
    server.wait_counts((0, 0), "the interval is gone");

    // A one-shot cancelled at once never fires.
    server.send(TimerCmd::OnceCancelled { delay: Duration::from_millis(30), key: 9 });
    let got = until_sentinel(&events);
    assert!(
        matches!(
            got[..],
            [
                TimerEvent::Armed { key: 9, count: 1, .. },
                TimerEvent::Cancelled { first: true, again: false, count: 0 },
                TimerEvent::Sentinel
            ]
        ),
        "cancelled one-shot: {got:?}"
    );
    server.wait_counts((0, 0), "no timer left");
    let _ = server.stop();
}

// ---------------------------------------------------------------------------------------------------------
// max_connections.
// ---------------------------------------------------------------------------------------------------------

/// (8) Past `max_connections` a client gets the overload response and EOF; the admitted ones are unaffected.
#[test]
fn max_connections_answers_the_overflow_with_the_overload_response() {
    let (echo, stats) = Echo::new();
    let config = LoopConfig { max_connections: 2, overload_response: b"busy\n".to_vec(), ..LoopConfig::default() };
    let server = start(config, echo);
    let mut first = connect(server.addr);
    assert_eq!(round_trip(&mut first, b"one"), b"one");
    let mut second = connect(server.addr);
    assert_eq!(round_trip(&mut second, b"two"), b"two");
    assert_eq!(server.counts(), (2, 0));

    let mut third = connect(server.addr);
    assert_eq!(read_to_eof(&mut third, 5).expect("read busy"), b"busy\n");
    assert_eq!(server.counts(), (2, 0));
    assert_eq!(stats.lock().unwrap().connects, 2, "the third was admitted");

    assert_eq!(round_trip(&mut first, b"still one"), b"still one");
    assert_eq!(round_trip(&mut second, b"still two"), b"still two");

    // A free place admits a new client.
    drop(first);
    server.wait_counts((1, 0), "the first client gone");
    let mut fourth = connect(server.addr);
    assert_eq!(round_trip(&mut fourth, b"four"), b"four");
    drop((second, fourth));
    server.wait_counts((0, 0), "all clients gone");
    let _ = server.stop();
    assert_eq!(stats.lock().unwrap().connects, 3);
}

// ---------------------------------------------------------------------------------------------------------
// Generations.
// ---------------------------------------------------------------------------------------------------------

enum GenCmd {
    WriteTo(ConnId, &'static [u8], Sender<Result<(), WriteError>>),
    Queued(ConnId, Sender<Option<usize>>),
}

struct Generations {
    events: Sender<ConnEvent>,
}

impl Handler for Generations {
    type Message = Msg<GenCmd>;

    fn on_connect(&mut self, _cx: &mut Context<'_, Msg<GenCmd>>, conn: ConnId) {
        let _ = self.events.send(ConnEvent::Connect(conn));
    }

    fn on_data(&mut self, _cx: &mut Context<'_, Msg<GenCmd>>, _conn: ConnId, _data: &[u8]) {}

    fn on_message(&mut self, cx: &mut Context<'_, Msg<GenCmd>>, msg: Msg<GenCmd>) {
        match control(cx, msg) {
            Some(GenCmd::WriteTo(conn, bytes, reply)) => {
                let _ = reply.send(cx.write(conn, bytes));
            }
            Some(GenCmd::Queued(conn, reply)) => {
                let _ = reply.send(cx.queued(conn));
            }
            None => {}
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<GenCmd>>, conn: ConnId, reason: CloseReason) {
        let _ = self.events.send(ConnEvent::Close(conn, reason));
    }
}

/// (9) A stale id is refused even when a new connection has taken its slot.
#[test]
fn a_stale_conn_id_never_reaches_the_slots_new_occupant() {
    let (tx, events) = mpsc::channel();
    let server = start(LoopConfig::default(), Generations { events: tx });

    let mut a = connect(server.addr);
    let ConnEvent::Connect(old) = recv(&events, "the first connect") else {
        panic!("expected a connect");
    };
    assert_eq!(server.ask(|r| GenCmd::WriteTo(old, b"to-a", r)), Ok(()));
    let mut buf = [0u8; 4];
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"to-a");
    drop(a);
    assert_eq!(recv(&events, "the first close"), ConnEvent::Close(old, CloseReason::Local));
    server.wait_counts((0, 0), "the first connection gone");

    let mut b = connect(server.addr);
    let ConnEvent::Connect(new) = recv(&events, "the second connect") else {
        panic!("expected a connect");
    };
    assert_eq!(new.index(), old.index(), "the slot was not reused");
    assert_ne!(new.generation(), old.generation());
    assert_ne!(new, old);

    assert_eq!(server.ask(|r| GenCmd::WriteTo(old, b"stale", r)), Err(WriteError::Closed));
    assert_eq!(server.ask(|r| GenCmd::Queued(old, r)), None);
    assert_eq!(server.ask(|r| GenCmd::WriteTo(new, b"fresh", r)), Ok(()));
    let mut buf = [0u8; 5];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"fresh", "the stale write reached the new connection");
    drop(b);
    server.wait_counts((0, 0), "the second connection gone");
    let _ = server.stop();
}

// ---------------------------------------------------------------------------------------------------------
// Many clients.
// ---------------------------------------------------------------------------------------------------------

const CLIENTS: usize = 200;

/// (10) 200 clients connected at once each exchange a message with the one loop.
#[test]
fn two_hundred_concurrent_clients() {
    let (echo, stats) = Echo::new();
    let server = start(LoopConfig::default(), echo);
    let addr = server.addr;
    let (ready_tx, ready) = mpsc::channel();
    let release = Arc::new((Mutex::new(false), Condvar::new()));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let ready_tx = ready_tx.clone();
            let release = Arc::clone(&release);
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut s = connect(addr);
                    let msg = format!("hello from client {i}\n");
                    assert_eq!(round_trip(&mut s, msg.as_bytes()), msg.as_bytes());
                    ready_tx.send(i).unwrap();
                    // Stay connected until every client has had its exchange.
                    let (lock, cvar) = &*release;
                    let guard = lock.lock().unwrap();
                    let (guard, timeout) = cvar.wait_timeout_while(guard, common::WAIT, |released| !*released).unwrap();
                    assert!(*guard && !timeout.timed_out(), "never released");
                    drop(guard);
                    assert_eq!(round_trip(&mut s, b"bye"), b"bye");
                })
                .unwrap()
        })
        .collect();
    drop(ready_tx);

    let mut seen = [false; CLIENTS];
    for _ in 0..CLIENTS {
        let i = recv(&ready, "a client's exchange");
        assert!(!seen[i]);
        seen[i] = true;
    }
    assert_eq!(server.counts(), (CLIENTS, 0));
    {
        let (lock, cvar) = &*release;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
    for c in clients {
        c.join().unwrap();
    }
    server.wait_counts((0, 0), "all clients gone");
    let _ = server.stop();
    let stats = stats.lock().unwrap();
    assert_eq!(stats.connects, CLIENTS);
    assert_eq!(stats.closes.len(), CLIENTS);
    assert!(stats.write_errors.is_empty());
}

/// A reset between accept and the first read, and a flood of short-lived connections, leave nothing behind.
#[test]
fn connection_churn_leaves_nothing_behind() {
    let (echo, stats) = Echo::new();
    let server = start(LoopConfig::default(), echo);
    for i in 0..100 {
        let mut s = connect(server.addr);
        if i % 2 == 0 {
            assert_eq!(round_trip(&mut s, b"x"), b"x");
        } else {
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        }
    }
    server.wait_counts((0, 0), "all churned connections gone");
    let _ = server.stop();
    let stats = stats.lock().unwrap();
    assert_eq!(stats.closes.len(), stats.connects);
    assert!(
        stats.closes.iter().all(|(_, r)| matches!(r, CloseReason::Local | CloseReason::Io(ErrorKind::ConnectionReset))),
        "{:?}",
        stats.closes
    );
}
