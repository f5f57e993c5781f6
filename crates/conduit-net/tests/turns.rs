//! How the loop paces its work: bounded message batches per turn, and a deadline on graceful closes.

mod common;

use common::{Msg, connect_small_rcvbuf, control, poll_until, start};
use conduit_net::{CloseReason, ConnId, Context, Handler, LoopConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records, for each message, the turn it was handled in (the turn's time stands for the turn).
struct Recorder {
    seen: Arc<Mutex<Vec<(Instant, u32)>>>,
}

enum App {
    /// Blocks the loop for a while, so that messages pile up in the mailbox.
    Stall(Duration),
    Number(u32),
}

impl Handler for Recorder {
    type Message = Msg<App>;
    fn on_connect(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId) {}
    fn on_data(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId, _: &[u8]) {}
    fn on_message(&mut self, cx: &mut Context<'_, Self::Message>, msg: Self::Message) {
        match control(cx, msg) {
            Some(App::Stall(d)) => std::thread::sleep(d),
            Some(App::Number(n)) => self.seen.lock().unwrap().push((cx.now(), n)),
            None => {}
        }
    }
    fn on_close(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId, _: CloseReason) {}
}

#[test]
fn a_burst_of_messages_is_handled_in_bounded_batches_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = LoopConfig { messages_per_turn: 100, ..LoopConfig::default() };
    let server = start(config, Recorder { seen: Arc::clone(&seen) });
    server.send(App::Stall(Duration::from_millis(300)));
    for n in 0..2000 {
        server.send(App::Number(n));
    }
    poll_until("all messages are handled", || seen.lock().unwrap().len() == 2000);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(_, n)| *n).collect::<Vec<_>>(), (0..2000).collect::<Vec<_>>());
    let mut per_turn: BTreeMap<Instant, usize> = BTreeMap::new();
    for (turn, _) in &seen {
        *per_turn.entry(*turn).or_default() += 1;
    }
    let largest = per_turn.values().max().copied().unwrap_or(0);
    assert!(largest <= 100, "a turn handled {largest} messages");
    assert!(per_turn.len() >= 20, "{} turns for 2000 messages", per_turn.len());
    server.stop();
}

/// Queues a lot of output on every connection, then closes it gracefully; records why each connection closed.
struct Flooder {
    closes: Arc<Mutex<Vec<CloseReason>>>,
}

impl Handler for Flooder {
    type Message = Msg<()>;
    fn on_connect(&mut self, cx: &mut Context<'_, Self::Message>, conn: ConnId) {
        cx.write_vec(conn, vec![b'x'; 16 << 20]).unwrap();
        cx.close_after_flush(conn);
    }
    fn on_data(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId, _: &[u8]) {}
    fn on_message(&mut self, cx: &mut Context<'_, Self::Message>, msg: Self::Message) {
        control(cx, msg);
    }
    fn on_close(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId, reason: CloseReason) {
        self.closes.lock().unwrap().push(reason);
    }
}

#[test]
fn a_graceful_close_to_a_client_that_never_reads_ends_at_the_flush_timeout() {
    let config =
        LoopConfig { flush_timeout: Duration::from_secs(1), write_queue_limit: 32 << 20, ..LoopConfig::default() };
    let closes = Arc::new(Mutex::new(Vec::new()));
    let server = start(config, Flooder { closes: Arc::clone(&closes) });
    let client = connect_small_rcvbuf(server.addr, 64 * 1024);
    let opened = Instant::now();
    // Open (with its close deadline armed) until the deadline, then gone: the client never read a byte more
    // than its buffers took, so nothing else could have ended it.
    poll_until("the connection is accepted", || server.counts() == (1, 1));
    poll_until("the closing connection is given up", || server.counts() == (0, 0));
    let held = opened.elapsed();
    assert!(held >= Duration::from_millis(900) && held < Duration::from_secs(5), "held for {held:?}");
    assert_eq!(*closes.lock().unwrap(), [CloseReason::WriteTimeout], "told apart from an ordinary close");
    drop(client);
    server.stop();
}

/// Queues a lot of output on every connection and keeps it open; publishes the loop's queued total each turn.
struct Holder {
    closes: Closes,
    queued_total: Arc<Mutex<usize>>,
}

impl Handler for Holder {
    type Message = Msg<()>;
    fn on_connect(&mut self, cx: &mut Context<'_, Self::Message>, conn: ConnId) {
        cx.write_vec(conn, vec![b'x'; 16 << 20]).unwrap();
    }
    fn on_data(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId, _: &[u8]) {}
    fn on_message(&mut self, cx: &mut Context<'_, Self::Message>, msg: Self::Message) {
        control(cx, msg);
    }
    fn on_close(&mut self, _: &mut Context<'_, Self::Message>, _: ConnId, reason: CloseReason) {
        self.closes.lock().unwrap().push(reason);
    }
    fn on_turn_end(&mut self, cx: &mut Context<'_, Self::Message>) {
        *self.queued_total.lock().unwrap() = cx.queued_total();
    }
}

/// Why each connection closed, as the handler was told.
type Closes = Arc<Mutex<Vec<CloseReason>>>;

fn holder(write_timeout: Duration) -> (common::Server<Holder>, Closes, Arc<Mutex<usize>>) {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let queued_total = Arc::new(Mutex::new(0));
    let handler = Holder { closes: Arc::clone(&closes), queued_total: Arc::clone(&queued_total) };
    let config =
        LoopConfig { write_timeout: Some(write_timeout), write_queue_limit: 32 << 20, ..LoopConfig::default() };
    (start(config, handler), closes, queued_total)
}

#[test]
fn an_open_connection_whose_client_stops_reading_is_closed_after_the_write_timeout() {
    let (server, closes, _) = holder(Duration::from_millis(800));
    let client = connect_small_rcvbuf(server.addr, 64 * 1024);
    let opened = Instant::now();
    poll_until("the connection is accepted", || server.counts() == (1, 1));
    poll_until("the stalled connection is closed", || server.counts() == (0, 0));
    let held = opened.elapsed();
    assert!(held >= Duration::from_millis(700) && held < Duration::from_secs(5), "held for {held:?}");
    assert_eq!(*closes.lock().unwrap(), [CloseReason::WriteTimeout]);
    drop(client);
    server.stop();
}

#[test]
fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
    use std::io::Read;
    let (server, _, _) = holder(Duration::from_millis(800));
    let mut client = connect_small_rcvbuf(server.addr, 64 * 1024);
    poll_until("the connection is accepted", || server.counts().0 == 1);
    // Well past the write timeout, reading a little every 100 ms: output keeps moving, so it stays.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut buf = vec![0u8; 16 * 1024];
    let mut read = 0;
    while Instant::now() < until {
        read += client.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(read > 0);
    assert_eq!(server.counts().0, 1, "the slow reader was cut off");
    drop(client);
    poll_until("the connection is freed", || server.counts() == (0, 0));
    server.stop();
}

#[test]
fn the_loop_keeps_a_total_of_queued_output_that_falls_as_it_is_sent_and_when_connections_close() {
    use std::io::Read;
    let (server, _, queued_total) = holder(Duration::from_secs(30));
    let total = || *queued_total.lock().unwrap();
    let sixteen_mib = 16usize << 20;
    let mut reader = connect_small_rcvbuf(server.addr, 64 * 1024);
    let idle = connect_small_rcvbuf(server.addr, 64 * 1024);
    poll_until("both connections queued their output", || server.counts().0 == 2 && total() > sixteen_mib);
    // The kernel took some of each 16 MiB; the rest waits in the loop's queues.
    assert!(total() < 2 * sixteen_mib, "{}", total());
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    while read < sixteen_mib {
        read += reader.read(&mut buf).unwrap();
    }
    poll_until("what the reader took is no longer counted", || total() < sixteen_mib);
    drop(reader);
    drop(idle);
    poll_until("closing the connections drops what they held", || server.counts().0 == 0 && total() == 0);
    server.stop();
}
