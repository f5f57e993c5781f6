//! The event loop: accepts, reads, writes, timers and cross-thread messages on one thread.

use crate::send::Sender;
use crate::slab::{ConnId, Slab};
use crate::timer::{TimerId, Timers};
#[cfg(feature = "tls")]
use crate::tls::TlsConfig;
use crate::tls::{self, TlsFailure, TlsSession};
use crate::write_queue::{QueueFull, WriteQueue};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Connections accepted per turn before the loop lets other work run; the rest are taken next turn.
const ACCEPTS_PER_TURN: usize = 256;

/// Tunables of the event loop. Every buffer and queue it keeps is bounded by one of these.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// Open connections at most; past it new connections get `overload_response` and are closed.
    pub max_connections: usize,
    /// Bytes written (best effort) to a connection refused because `max_connections` was reached.
    pub overload_response: Vec<u8>,
    /// Pending output per connection, in bytes (see [`WriteQueue`]).
    pub write_queue_limit: usize,
    /// A connection that asked with [`Context::notify_drained`] is told once its queue is at or below this.
    pub low_water: usize,
    /// The loop's one read buffer, shared by all connections.
    pub read_buffer_size: usize,
    /// Bytes read from one connection per turn before others get their turn.
    pub read_budget: usize,
    /// Readiness events taken from the OS per poll.
    pub events_capacity: usize,
    /// After a graceful close, how long to wait for the peer's EOF before closing anyway. Reading until EOF
    /// keeps the kernel from answering unread input with a reset that could destroy the response in flight.
    pub linger: Duration,
    /// How long to stop accepting after the process ran out of file descriptors or memory.
    pub accept_backoff: Duration,
    /// `TCP_NODELAY` on accepted sockets: events are small and must not wait for Nagle's algorithm.
    pub nodelay: bool,
    /// TCP keepalive probes after this much idle time, to find peers that vanished without a FIN or RST.
    pub tcp_keepalive: Option<Duration>,
    /// Messages waiting in the loop's mailbox at most; [`Remote::send`] fails with `Full` past it.
    pub mailbox_limit: usize,
    /// Messages handled per turn at most. Output is flushed between batches, so a burst of messages (hub
    /// events, say) reaches sockets as it is handled instead of all at the end.
    pub messages_per_turn: usize,
    /// A connection closing gracefully must have sent its output within this time, or it is closed anyway:
    /// a client that never reads cannot hold a closing connection open.
    pub flush_timeout: Duration,
    /// An open connection with output waiting whose socket accepts none of it for this long is closed: a client
    /// that stays connected but stops reading cannot hold its connection for ever. `None` never closes.
    pub write_timeout: Option<Duration>,
    /// Serve every accepted connection over TLS with this configuration; `None` serves plain TCP. Handlers see
    /// plaintext either way. On a TLS connection the write queue holds plaintext not yet handed to the TLS
    /// session, so `write_queue_limit`, `low_water`, [`Context::queued`] and [`Handler::on_drained`] count
    /// plaintext; the session holds at most 32 KiB of records beyond it. A connection refused at
    /// `max_connections` is closed without `overload_response`, which would not be TLS.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConfig>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            max_connections: 16_384,
            overload_response: Vec::new(),
            write_queue_limit: 1024 * 1024,
            low_water: 16 * 1024,
            read_buffer_size: 64 * 1024,
            read_budget: 256 * 1024,
            events_capacity: 1024,
            linger: Duration::from_secs(2),
            accept_backoff: Duration::from_millis(100),
            nodelay: true,
            tcp_keepalive: None,
            mailbox_limit: 1 << 16,
            messages_per_turn: 256,
            flush_timeout: Duration::from_secs(10),
            write_timeout: Some(Duration::from_secs(60)),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The handler asked for it (directly, or after a graceful flush).
    Local,
    /// A read or write failed: reset by the peer, broken pipe, and the like.
    Io(io::ErrorKind),
    /// Output waited too long: nothing of it was taken for `write_timeout` on an open connection, or a
    /// graceful close had not sent it all within `flush_timeout`. The client is connected but not reading.
    WriteTimeout,
    /// The loop is stopping.
    Shutdown,
    /// The connection's TLS handshake or session failed (TLS listeners only).
    Tls(TlsFailure),
}

/// A write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The connection is closed or closing.
    Closed,
    /// Its write queue is full; nothing was queued.
    Full(QueueFull),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Closed => f.write_str("connection is closed"),
            WriteError::Full(full) => full.fmt(f),
        }
    }
}

impl std::error::Error for WriteError {}

/// What an application does with a loop's connections. Every call runs on the loop's thread and must not
/// block: a slow callback delays every connection.
pub trait Handler {
    /// Messages other threads send through a [`Remote`].
    type Message: Send + 'static;

    /// A connection was accepted.
    fn on_connect(&mut self, cx: &mut Context<'_, Self::Message>, conn: ConnId);

    /// Bytes arrived. `data` is only valid for this call: keep what you need.
    fn on_data(&mut self, cx: &mut Context<'_, Self::Message>, conn: ConnId, data: &[u8]);

    /// The peer will send nothing more (EOF). By default the connection is closed.
    fn on_read_closed(&mut self, cx: &mut Context<'_, Self::Message>, conn: ConnId) {
        cx.close(conn);
    }

    /// The write queue fell to the low-water mark after [`Context::notify_drained`]: a good time to produce more.
    fn on_drained(&mut self, _cx: &mut Context<'_, Self::Message>, _conn: ConnId) {}

    /// A timer armed through the context fired; `key` is the value given when it was armed.
    fn on_timer(&mut self, _cx: &mut Context<'_, Self::Message>, _timer: TimerId, _key: u64) {}

    /// A message arrived from another thread.
    fn on_message(&mut self, _cx: &mut Context<'_, Self::Message>, _msg: Self::Message) {}

    /// The turn's work is done and its output flushed: a place to publish what the turn changed (gauges such
    /// as [`Context::queued_total`]) once per turn instead of once per event.
    fn on_turn_end(&mut self, _cx: &mut Context<'_, Self::Message>) {}

    /// The connection is gone; `conn` will not be seen again. Free what belongs to it.
    fn on_close(&mut self, cx: &mut Context<'_, Self::Message>, conn: ConnId, reason: CloseReason);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopTimer {
    Handler(u64),
    Linger(ConnId),
    /// Checks that a blocked connection's socket has taken some output since the timer was armed.
    Stall(ConnId),
    /// A TLS connection's handshake deadline.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Handshake(ConnId),
    ResumeAccept,
}

/// Where a connection is in its life. Output may be pending in every phase but `Lingering`.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Write what is queued, then shut down the write side; closed anyway when the timer fires.
    FlushThenClose(TimerId),
    /// Write side shut; reading and discarding until EOF or the timer.
    Lingering(TimerId),
    /// Scheduled for removal at the end of the current step.
    Closing,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    queue: WriteQueue,
    phase: Phase,
    writable_registered: bool,
    dirty: bool,
    want_drained: bool,
    read_closed: bool,
    /// Bytes the socket has accepted, so a stall check can tell whether any output moved.
    written: u64,
    /// While output waits on an open connection: the stall timer and `written` when it was armed.
    stall: Option<(TimerId, u64)>,
    /// The TLS session of a connection accepted by a TLS listener.
    tls: Option<Box<TlsSession>>,
}

impl Conn {
    /// True while output waits: queued, or (with TLS) records the session has not written yet.
    fn has_output(&self) -> bool {
        !self.queue.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }
}

#[derive(Debug)]
struct Mailbox<M> {
    queue: Mutex<Vec<M>>,
    waker: Waker,
    notified: AtomicBool,
    open: AtomicBool,
    limit: usize,
}

/// Why [`Remote::send`] failed; the message is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError<M> {
    /// The loop has stopped.
    Closed(M),
    /// The mailbox holds `mailbox_limit` messages already.
    Full(M),
}

impl<M> SendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Closed(m) | SendError::Full(m) => m,
        }
    }
}

impl<M> std::fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("event loop has stopped"),
            SendError::Full(_) => f.write_str("event loop mailbox is full"),
        }
    }
}

impl<M: std::fmt::Debug> std::error::Error for SendError<M> {}

/// A handle other threads use to send messages to the loop. Cheap to clone.
#[derive(Debug)]
pub struct Remote<M> {
    mailbox: Arc<Mailbox<M>>,
}

impl<M> Clone for Remote<M> {
    fn clone(&self) -> Self {
        Remote { mailbox: Arc::clone(&self.mailbox) }
    }
}

impl<M> Remote<M> {
    /// Queues `msg` for the loop and wakes it. Many sends between two turns cost one wake-up.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the loop has stopped, [`SendError::Full`] when its mailbox is full.
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        if !self.mailbox.open.load(Ordering::Acquire) {
            return Err(SendError::Closed(msg));
        }
        {
            let mut queue = self.mailbox.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.len() >= self.mailbox.limit {
                return Err(SendError::Full(msg));
            }
            queue.push(msg);
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        if !self.mailbox.notified.swap(true, Ordering::AcqRel)
            && let Err(e) = self.mailbox.waker.wake()
        {
            log::error!("waking the event loop failed: {e}");
        }
    }

    /// True while the loop runs.
    pub fn is_open(&self) -> bool {
        self.mailbox.open.load(Ordering::Acquire)
    }

    /// True if the mailbox is below its limit now.
    pub fn has_room(&self) -> bool {
        self.mailbox.queue.lock().unwrap_or_else(|e| e.into_inner()).len() < self.mailbox.limit
    }

    /// Queues `msg` even past the mailbox limit. For a message several loops must all receive once the caller
    /// has checked [`has_room`](Self::has_room) on each: refusing it on one loop after others accepted it would
    /// leave them disagreeing. The caller's check keeps the excess small.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the loop has stopped.
    pub fn send_past_limit(&self, msg: M) -> Result<(), SendError<M>> {
        if !self.mailbox.open.load(Ordering::Acquire) {
            return Err(SendError::Closed(msg));
        }
        self.mailbox.queue.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
        self.wake();
        Ok(())
    }
}

/// Everything the loop owns except the handler, so the handler can be given a [`Context`] over it.
#[derive(Debug)]
struct Core<M> {
    poll: Poll,
    listener: Option<TcpListener>,
    accept_paused: bool,
    accept_pending: bool,
    conns: Slab<Conn>,
    timers: Timers<LoopTimer>,
    mailbox: Arc<Mailbox<M>>,
    /// Connections with output written this turn, flushed together at its end.
    dirty: Vec<ConnId>,
    /// Connections whose queue reached low water, told at the start of the next turn.
    drained: Vec<ConnId>,
    /// Connections that used up their read budget and still have input.
    pending_reads: Vec<ConnId>,
    to_close: Vec<(ConnId, CloseReason)>,
    /// Bytes waiting in all the connections' write queues together.
    queued_total: usize,
    config: LoopConfig,
    now: Instant,
    stopping: bool,
}

/// The handler's view of the loop during a callback.
#[derive(Debug)]
pub struct Context<'a, M> {
    core: &'a mut Core<M>,
}

impl<M> Context<'_, M> {
    /// The time this turn of the loop started; use it instead of reading the clock.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    fn open_conn(&mut self, conn: ConnId) -> Result<&mut Conn, WriteError> {
        match self.core.conns.get_mut(conn) {
            Some(c) if matches!(c.phase, Phase::Open) => Ok(c),
            _ => Err(WriteError::Closed),
        }
    }

    /// Queues output with `push` on an open connection and marks it for the end-of-turn flush, looking the
    /// connection up once (a broadcast does this for every subscriber). If the queue would refuse `additional`
    /// bytes, what the socket takes now is written first: output is otherwise flushed at the end of the turn,
    /// so without this a second response to pipelined requests could find the queue "full" of a first one the
    /// client never had the chance to read.
    fn queue(
        &mut self,
        conn: ConnId,
        additional: usize,
        push: impl FnOnce(&mut WriteQueue) -> Result<(), QueueFull>,
    ) -> Result<(), WriteError> {
        if !self.open_conn(conn)?.queue.has_room(additional) {
            self.core.flush(conn);
        }
        let c = self.open_conn(conn)?;
        push(&mut c.queue).map_err(WriteError::Full)?;
        if !c.dirty {
            c.dirty = true;
            self.core.dirty.push(conn);
        }
        self.core.queued_total += additional;
        Ok(())
    }

    fn mark_dirty(core: &mut Core<M>, conn: ConnId) {
        if let Some(c) = core.conns.get_mut(conn)
            && !c.dirty
        {
            c.dirty = true;
            core.dirty.push(conn);
        }
    }

    /// Queues a copy of `bytes`; it is written at the end of this turn, together with anything else queued.
    ///
    /// # Errors
    /// [`WriteError::Closed`] if the connection is closed or closing; [`WriteError::Full`] if its queue is full.
    pub fn write(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), WriteError> {
        self.queue(conn, bytes.len(), |q| q.push_slice(bytes))
    }

    /// Queues several pieces as one message, whole or not at all (a chunk header, its data and its CRLF).
    ///
    /// # Errors
    /// As for [`write`](Self::write), judged on the pieces' total length.
    pub fn write_parts(&mut self, conn: ConnId, parts: &[&[u8]]) -> Result<(), WriteError> {
        self.queue(conn, parts.iter().map(|p| p.len()).sum(), |q| q.push_parts(parts))
    }

    /// Queues an owned buffer without copying it.
    ///
    /// # Errors
    /// As for [`write`](Self::write).
    pub fn write_vec(&mut self, conn: ConnId, bytes: Vec<u8>) -> Result<(), WriteError> {
        self.queue(conn, bytes.len(), |q| q.push_vec(bytes))
    }

    /// Queues a range of bytes shared with other connections: one encoding, many readers, no copies.
    ///
    /// # Errors
    /// As for [`write`](Self::write).
    pub fn write_shared(&mut self, conn: ConnId, bytes: &Arc<[u8]>, range: Range<usize>) -> Result<(), WriteError> {
        // A range outside the bytes queues nothing, and counts as nothing.
        let len = if range.end <= bytes.len() { range.len() } else { 0 };
        self.queue(conn, len, |q| q.push_shared(Arc::clone(bytes), range))
    }

    /// Writes what the socket takes now instead of waiting for the end of the turn, for a caller deciding
    /// whether a connection keeps up.
    pub fn flush(&mut self, conn: ConnId) {
        if self.core.conns.get(conn).is_some_and(|c| matches!(c.phase, Phase::Open)) {
            self.core.flush(conn);
        }
    }

    /// Pending output of a connection, or `None` if it is closed. On a TLS connection: plaintext not yet
    /// handed to its session, which holds at most 32 KiB of records beyond it.
    pub fn queued(&self, conn: ConnId) -> Option<usize> {
        self.core.conns.get(conn).map(|c| c.queue.len())
    }

    /// Bytes waiting in all the loop's write queues together.
    pub fn queued_total(&self) -> usize {
        self.core.queued_total
    }

    /// True while the loop accepts new connections: it has not stopped accepting and is not pausing after
    /// running out of file descriptors.
    pub fn is_accepting(&self) -> bool {
        self.core.listener.is_some() && !self.core.accept_paused
    }

    /// True if `additional` bytes would be accepted by the connection's queue now.
    pub fn has_room(&self, conn: ConnId, additional: usize) -> bool {
        self.core.conns.get(conn).is_some_and(|c| matches!(c.phase, Phase::Open) && c.queue.has_room(additional))
    }

    /// The peer's address.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.core.conns.get(conn).map(|c| c.peer)
    }

    /// True while the connection is open for writing.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.core.conns.get(conn).is_some_and(|c| matches!(c.phase, Phase::Open))
    }

    /// Asks for one [`Handler::on_drained`] call once the queue is at or below the low-water mark (at the start
    /// of the next turn if it already is).
    pub fn notify_drained(&mut self, conn: ConnId) {
        let low_water = self.core.config.low_water;
        let Some(c) = self.core.conns.get_mut(conn) else {
            return;
        };
        if !matches!(c.phase, Phase::Open) || c.want_drained {
            return;
        }
        // Pending from here until on_drained is due, so asking again meanwhile is the no-op the check above
        // makes it. A queue already low is flushed at the end of this turn, which queues the call for the next.
        c.want_drained = true;
        if c.queue.len() <= low_water {
            Self::mark_dirty(self.core, conn);
        }
    }

    /// Closes the connection at once, dropping unsent output. [`Handler::on_close`] follows after this callback.
    pub fn close(&mut self, conn: ConnId) {
        self.core.schedule_close(conn, CloseReason::Local);
    }

    /// Sends what is queued, shuts down the write side, waits briefly for the peer's EOF, then closes.
    /// Nothing more may be written.
    pub fn close_after_flush(&mut self, conn: ConnId) {
        let Some(c) = self.core.conns.get_mut(conn) else {
            return;
        };
        if matches!(c.phase, Phase::Open) {
            let timer = self.core.timers.once(self.core.now + self.core.config.flush_timeout, LoopTimer::Linger(conn));
            c.phase = Phase::FlushThenClose(timer);
            c.want_drained = false;
            // The flush deadline now bounds how long output may wait.
            if let Some((stall, _)) = c.stall.take() {
                self.core.timers.cancel(stall);
            }
            Self::mark_dirty(self.core, conn);
        }
    }

    /// Arms a one-shot timer; [`Handler::on_timer`] gets `key` when it fires.
    pub fn set_timer(&mut self, deadline: Instant, key: u64) -> TimerId {
        self.core.timers.once(deadline, LoopTimer::Handler(key))
    }

    /// Arms a timer that fires every `period` from now.
    pub fn set_interval(&mut self, period: Duration, key: u64) -> TimerId {
        let now = self.core.now;
        self.core.timers.interval(now, period, LoopTimer::Handler(key))
    }

    /// Disarms a timer; true if it was armed.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.timers.cancel(timer).is_some()
    }

    /// Armed timers, the loop's own included (lingering closes, accept back-off).
    pub fn timer_count(&self) -> usize {
        self.core.timers.len()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.core.conns.len()
    }

    /// Ids of all open connections.
    pub fn connections(&self) -> Vec<ConnId> {
        self.core.conns.ids().collect()
    }

    /// A handle for other threads.
    pub fn remote(&self) -> Remote<M> {
        Remote { mailbox: Arc::clone(&self.core.mailbox) }
    }

    /// Closes the listening socket: new connections are refused by the OS, open ones go on.
    pub fn stop_accepting(&mut self) {
        if let Some(mut listener) = self.core.listener.take() {
            let _ = self.core.poll.registry().deregister(&mut listener);
        }
    }

    /// Ends [`EventLoop::run`] after this turn; open connections are then closed with
    /// [`CloseReason::Shutdown`].
    pub fn stop(&mut self) {
        self.core.stopping = true;
    }
}

impl<M> Core<M> {
    fn schedule_close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(conn)
            && c.phase != Phase::Closing
        {
            if let Phase::Lingering(timer) | Phase::FlushThenClose(timer) = c.phase {
                self.timers.cancel(timer);
            }
            if let Some((timer, _)) = c.stall.take() {
                self.timers.cancel(timer);
            }
            if let Some(timer) = c.tls.as_mut().and_then(|tls| tls.take_deadline()) {
                self.timers.cancel(timer);
            }
            c.phase = Phase::Closing;
            self.to_close.push((conn, reason));
        }
    }

    fn set_writable(&mut self, conn: ConnId, writable: bool) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.writable_registered == writable {
            return;
        }
        let interest = if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        match self.poll.registry().reregister(&mut c.stream, Token(conn.index()), interest) {
            Ok(()) => c.writable_registered = writable,
            Err(e) => self.schedule_close(conn, CloseReason::Io(e.kind())),
        }
    }

    /// Writes a connection's queue until it is empty or the socket is full, and moves it along its phases.
    fn flush(&mut self, conn: ConnId) {
        let low_water = self.config.low_water;
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.dirty = false;
        if matches!(c.phase, Phase::Closing | Phase::Lingering(_)) {
            return;
        }
        let before = c.queue.len();
        let result = match c.tls.as_mut() {
            Some(tls) => tls.flush(&mut c.queue, &mut c.stream, matches!(c.phase, Phase::FlushThenClose(_))),
            None => c.queue.write_to(&mut Sender(&c.stream)),
        };
        // Counted from the queue itself: a write that fails part-way has still consumed what it wrote.
        self.queued_total -= before - c.queue.len();
        match result {
            Ok(n) => c.written += n as u64,
            Err(e) => {
                log::debug!("connection {conn}: write failed: {e}");
                self.schedule_close(conn, CloseReason::Io(e.kind()));
                return;
            }
        }
        let empty = !c.has_output();
        match (empty, c.stall, self.config.write_timeout) {
            (true, Some((timer, _)), _) => {
                self.timers.cancel(timer);
                c.stall = None;
            }
            // A closing connection has its own deadline (flush_timeout).
            (false, None, Some(after)) if c.phase == Phase::Open => {
                let timer = self.timers.once(self.now + after, LoopTimer::Stall(conn));
                c.stall = Some((timer, c.written));
            }
            _ => {}
        }
        if c.want_drained && c.queue.len() <= low_water {
            c.want_drained = false;
            self.drained.push(conn);
        }
        let finishing = matches!(c.phase, Phase::FlushThenClose(_));
        self.set_writable(conn, !empty);
        if empty && finishing {
            self.begin_linger(conn);
        }
    }

    /// A stall timer fired: close the connection if its socket has taken nothing since the timer was armed,
    /// not even now. The write attempt matters: the kernel reports a socket writable only once a good part of
    /// its buffer is free, so a slow reader can be draining it without the loop hearing of it.
    fn check_stall(&mut self, conn: ConnId, fired: TimerId) {
        let Some(c) = self.conns.get_mut(conn) else { return };
        let Some((timer, mark)) = c.stall else { return };
        if timer != fired {
            return;
        }
        c.stall = None;
        // Writes what the socket takes now, and re-arms the check if output is still waiting.
        self.flush(conn);
        let Some(c) = self.conns.get(conn) else { return };
        let Some(after) = self.config.write_timeout else { return };
        if c.written == mark && c.has_output() && c.phase == Phase::Open {
            log::warn!(
                "closing connection {conn} to {}: {} bytes waiting and none taken for {after:?}",
                c.peer,
                c.queue.len()
            );
            self.schedule_close(conn, CloseReason::WriteTimeout);
        }
    }

    /// True if this loop's listener serves TLS.
    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Gives a connection just accepted by a TLS listener its session, and arms its handshake deadline.
    #[cfg(feature = "tls")]
    fn start_tls(&mut self, conn: ConnId) -> Result<(), rustls::Error> {
        let Some(config) = &self.config.tls else { return Ok(()) };
        let timer = self.timers.once(self.now + config.handshake_timeout(), LoopTimer::Handshake(conn));
        match TlsSession::new(config, timer) {
            Ok(session) => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.tls = Some(Box::new(session));
                }
                Ok(())
            }
            Err(e) => {
                self.timers.cancel(timer);
                Err(e)
            }
        }
    }

    /// After a TLS connection's input was read: a handshake that completed no longer needs its deadline and
    /// lets queued output flow; records the handshake produced must be written.
    fn after_tls_read(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else { return };
        let Some(tls) = c.tls.as_mut() else { return };
        let mut dirty = tls.wants_write();
        if !tls.is_handshaking()
            && let Some(timer) = tls.take_deadline()
        {
            self.timers.cancel(timer);
            dirty = true;
        }
        if dirty {
            Context::mark_dirty(self, conn);
        }
    }

    /// A handshake deadline fired: the connection is closed if its handshake is still not complete.
    fn handshake_expired(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else { return };
        let Some(tls) = c.tls.as_mut() else { return };
        if tls.take_deadline().is_some() && tls.is_handshaking() {
            log::debug!("connection {conn} to {}: TLS handshake not complete in time", c.peer);
            self.schedule_close(conn, CloseReason::Tls(TlsFailure::HandshakeTimeout));
        }
    }

    fn begin_linger(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let _ = c.stream.shutdown(Shutdown::Write);
        if c.read_closed {
            self.schedule_close(conn, CloseReason::Local);
        } else {
            if let Phase::FlushThenClose(flush_deadline) = c.phase {
                self.timers.cancel(flush_deadline);
            }
            let timer = self.timers.once(self.now + self.config.linger, LoopTimer::Linger(conn));
            c.phase = Phase::Lingering(timer);
        }
    }
}

/// A single-threaded `mio` event loop driving one [`Handler`].
#[derive(Debug)]
pub struct EventLoop<H: Handler> {
    core: Core<H::Message>,
    handler: H,
    events: Events,
    read_buf: Vec<u8>,
    /// Messages taken from the mailbox and not handled yet (at most `messages_per_turn` are handled a turn).
    pending_messages: VecDeque<H::Message>,
    /// Readiness of this turn's connections, kept to reuse its allocation.
    ready: Vec<(usize, bool, bool)>,
}

impl<H: Handler> EventLoop<H> {
    /// A loop that serves connections accepted from `listener` (which must be non-blocking, e.g. from
    /// [`bind`](crate::bind)).
    ///
    /// # Errors
    /// Creating the poller or the waker, or registering the listener, failed.
    pub fn new(listener: std::net::TcpListener, config: LoopConfig, handler: H) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let mailbox = Arc::new(Mailbox {
            queue: Mutex::new(Vec::new()),
            waker,
            notified: AtomicBool::new(false),
            open: AtomicBool::new(true),
            limit: config.mailbox_limit,
        });
        Ok(EventLoop {
            core: Core {
                poll,
                listener: Some(listener),
                accept_paused: false,
                accept_pending: true,
                conns: Slab::new(),
                timers: Timers::new(),
                mailbox,
                dirty: Vec::new(),
                drained: Vec::new(),
                pending_reads: Vec::new(),
                to_close: Vec::new(),
                queued_total: 0,
                config: config.clone(),
                now: Instant::now(),
                stopping: false,
            },
            handler,
            events: Events::with_capacity(config.events_capacity.max(16)),
            read_buf: vec![0; config.read_buffer_size.max(512)],
            pending_messages: VecDeque::new(),
            ready: Vec::new(),
        })
    }

    /// The address the listener is bound to (useful after binding port 0).
    ///
    /// # Errors
    /// The listener was closed by [`Context::stop_accepting`], or the OS call failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.core.listener {
            Some(l) => l.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "listener closed")),
        }
    }

    /// A handle through which other threads send messages to the handler.
    pub fn remote(&self) -> Remote<H::Message> {
        Remote { mailbox: Arc::clone(&self.core.mailbox) }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably (between turns).
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.core.conns.len()
    }

    /// Armed timers, the loop's own included.
    pub fn timer_count(&self) -> usize {
        self.core.timers.len()
    }

    /// Runs turns until a handler calls [`Context::stop`], then closes every connection.
    ///
    /// # Errors
    /// Polling failed for a reason other than an interrupted system call.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.core.stopping {
            self.turn(None)?;
        }
        self.close_all();
        Ok(())
    }

    /// True once a handler has called [`Context::stop`].
    pub fn is_stopping(&self) -> bool {
        self.core.stopping
    }

    /// Closes every connection with [`CloseReason::Shutdown`], telling the handler, and marks the mailbox
    /// closed so other threads' sends fail.
    pub fn close_all(&mut self) {
        self.core.mailbox.open.store(false, Ordering::Release);
        let ids: Vec<ConnId> = self.core.conns.ids().collect();
        for id in ids {
            self.core.schedule_close(id, CloseReason::Shutdown);
        }
        self.settle();
    }

    /// One turn: wait for readiness (at most until the next timer, and at most `max_wait` if given), then
    /// handle every ready socket, due timer and message, and flush what was written.
    ///
    /// # Errors
    /// Polling failed for a reason other than an interrupted system call.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let busy = !self.core.drained.is_empty()
            || !self.core.pending_reads.is_empty()
            || (self.core.accept_pending && !self.core.accept_paused && self.core.listener.is_some())
            || !self.pending_messages.is_empty()
            // Messages sent while a batch was being handled raise no new wake-up.
            || self.core.mailbox.notified.load(Ordering::Acquire);
        let mut timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.core.timers.next_deadline().map(|d| d.saturating_duration_since(now))
        };
        if let Some(max) = max_wait {
            timeout = Some(timeout.map_or(max, |t| t.min(max)));
        }
        match self.core.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(e) => return Err(e),
        }
        self.core.now = Instant::now();

        let mut woken = false;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        for event in self.events.iter() {
            match event.token() {
                LISTENER => self.core.accept_pending = true,
                WAKER => woken = true,
                Token(index) => {
                    let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                    let writable = event.is_writable() || event.is_error();
                    ready.push((index, readable, writable));
                }
            }
        }
        if woken || !self.pending_messages.is_empty() || self.core.mailbox.notified.load(Ordering::Acquire) {
            self.deliver_messages();
        }
        for &(index, readable, writable) in &ready {
            let Some(id) = self.core.conns.id_at(index) else {
                continue;
            };
            if writable {
                Context::mark_dirty(&mut self.core, id);
            }
            if readable {
                self.read(id);
            }
        }
        self.ready = ready;
        for id in std::mem::take(&mut self.core.pending_reads) {
            self.read(id);
        }
        if self.core.accept_pending && !self.core.accept_paused {
            self.accept();
        }
        self.fire_timers();
        for id in std::mem::take(&mut self.core.drained) {
            if self.core.conns.get(id).is_some_and(|c| matches!(c.phase, Phase::Open)) {
                let mut cx = Context { core: &mut self.core };
                self.handler.on_drained(&mut cx, id);
            }
        }
        self.settle();
        let mut cx = Context { core: &mut self.core };
        self.handler.on_turn_end(&mut cx);
        // Whatever the handler did there goes out with this turn too.
        self.settle();
        Ok(())
    }

    /// Handles up to `messages_per_turn` messages. The mailbox is emptied into the local queue only once that
    /// is empty, so a loop that falls behind leaves messages in the mailbox, whose limit then pushes back on
    /// the senders.
    fn deliver_messages(&mut self) {
        if self.pending_messages.is_empty() {
            self.core.mailbox.notified.store(false, Ordering::Release);
            let mut queue = self.core.mailbox.queue.lock().unwrap_or_else(|e| e.into_inner());
            self.pending_messages.extend(queue.drain(..));
        }
        for _ in 0..self.core.config.messages_per_turn.max(1) {
            let Some(msg) = self.pending_messages.pop_front() else { break };
            let mut cx = Context { core: &mut self.core };
            self.handler.on_message(&mut cx, msg);
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.core.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.core.accept_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_per_connection_error(&e) => {
                    log::debug!("accept: a connection failed before it was taken: {e}");
                }
                Err(e) => {
                    // Out of descriptors or memory: the connection stays in the backlog, so trying again at once
                    // would spin. Pause and let closing connections free resources.
                    log::warn!("accept failed ({e}); pausing accepts for {:?}", self.core.config.accept_backoff);
                    self.core.accept_paused = true;
                    let at = self.core.now + self.core.config.accept_backoff;
                    self.core.timers.once(at, LoopTimer::ResumeAccept);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let config = &self.core.config;
        if self.core.conns.len() >= config.max_connections {
            log::warn!("refusing {peer}: {} connections open (the maximum)", config.max_connections);
            // Best effort: a fresh socket's send buffer takes a short response whole, and this must not block.
            if !self.core.is_tls() {
                let _ = io::Write::write(&mut stream, &config.overload_response);
            }
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if config.nodelay
            && let Err(e) = stream.set_nodelay(true)
        {
            log::debug!("TCP_NODELAY on {peer}: {e}");
        }
        if let Some(idle) = config.tcp_keepalive {
            let params = socket2::TcpKeepalive::new().with_time(idle).with_interval(idle);
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&params) {
                log::debug!("TCP keepalive on {peer}: {e}");
            }
        }
        let conn = Conn {
            stream,
            peer,
            queue: WriteQueue::new(config.write_queue_limit),
            phase: Phase::Open,
            writable_registered: false,
            dirty: false,
            want_drained: false,
            read_closed: false,
            written: 0,
            stall: None,
            tls: None,
        };
        let id = self.core.conns.insert(conn);
        let c = self.core.conns.get_mut(id).expect("just inserted");
        if let Err(e) = self.core.poll.registry().register(&mut c.stream, Token(id.index()), Interest::READABLE) {
            log::warn!("registering {peer} failed: {e}");
            self.core.conns.remove(id);
            return;
        }
        #[cfg(feature = "tls")]
        if let Err(e) = self.core.start_tls(id) {
            log::warn!("starting TLS with {peer} failed: {e}");
            if let Some(mut c) = self.core.conns.remove(id) {
                let _ = self.core.poll.registry().deregister(&mut c.stream);
            }
            return;
        }
        let mut cx = Context { core: &mut self.core };
        self.handler.on_connect(&mut cx, id);
    }

    fn read(&mut self, id: ConnId) {
        self.read_input(id);
        if self.core.is_tls() {
            self.core.after_tls_read(id);
        }
    }

    fn read_input(&mut self, id: ConnId) {
        let mut budget = self.core.config.read_budget;
        loop {
            let Some(c) = self.core.conns.get_mut(id) else {
                return;
            };
            if c.phase == Phase::Closing {
                return;
            }
            if c.read_closed {
                // Nothing more to read, but a reset (or a keepalive timeout) after the peer's FIN shows only as a
                // socket error; without this check an idle half-closed connection would never be closed.
                if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                    log::debug!("connection {id}: socket error after EOF: {e}");
                    self.core.schedule_close(id, CloseReason::Io(e.kind()));
                }
                return;
            }
            let lingering = matches!(c.phase, Phase::Lingering(_));
            // A lingering connection's input is discarded unread, TLS or not.
            let result = match c.tls.as_mut() {
                Some(tls) if !lingering => tls.read(&mut c.stream, &mut self.read_buf),
                _ => c.stream.read(&mut self.read_buf),
            };
            match result {
                Ok(0) => {
                    c.read_closed = true;
                    if lingering {
                        self.core.schedule_close(id, CloseReason::Local);
                    } else if matches!(c.phase, Phase::FlushThenClose(_)) {
                        // close_after_flush already settled this connection's end; the peer's EOF must not
                        // cut the flush short (the default on_read_closed would close it at once, dropping the
                        // output). The flush finishes, then begin_linger sees read_closed and closes.
                    } else {
                        let mut cx = Context { core: &mut self.core };
                        self.handler.on_read_closed(&mut cx, id);
                    }
                    return;
                }
                Ok(n) => {
                    if !lingering {
                        let mut cx = Context { core: &mut self.core };
                        self.handler.on_data(&mut cx, id, &self.read_buf[..n]);
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.core.pending_reads.push(id);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("connection {id}: read failed: {e}");
                    let reason = tls::failure_of(&e).map_or(CloseReason::Io(e.kind()), CloseReason::Tls);
                    self.core.schedule_close(id, reason);
                    return;
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.core.now;
        while let Some((timer, payload)) = self.core.timers.poll(now) {
            match payload {
                LoopTimer::Handler(key) => {
                    let mut cx = Context { core: &mut self.core };
                    self.handler.on_timer(&mut cx, timer, key);
                }
                LoopTimer::Linger(conn) => {
                    // Past the flush deadline with output unsent, the client was not reading; after it, the
                    // linger simply ended.
                    let unsent = self.core.conns.get(conn).is_some_and(|c| matches!(c.phase, Phase::FlushThenClose(_)));
                    let reason = if unsent { CloseReason::WriteTimeout } else { CloseReason::Local };
                    self.core.schedule_close(conn, reason);
                }
                LoopTimer::Stall(conn) => self.core.check_stall(conn, timer),
                LoopTimer::Handshake(conn) => self.core.handshake_expired(conn),
                LoopTimer::ResumeAccept => {
                    self.core.accept_paused = false;
                    self.core.accept_pending = true;
                }
            }
        }
    }

    /// Flushes dirty connections and removes closed ones until neither is left: closing one connection may
    /// write to others (a broadcast hub forgetting a subscriber, say).
    fn settle(&mut self) {
        loop {
            let closing = std::mem::take(&mut self.core.to_close);
            let dirty = std::mem::take(&mut self.core.dirty);
            if closing.is_empty() && dirty.is_empty() {
                return;
            }
            for (id, reason) in closing {
                if let Some(mut c) = self.core.conns.remove(id) {
                    self.core.queued_total -= c.queue.len();
                    let _ = self.core.poll.registry().deregister(&mut c.stream);
                    drop(c);
                    let mut cx = Context { core: &mut self.core };
                    self.handler.on_close(&mut cx, id, reason);
                }
            }
            for id in dirty {
                self.core.flush(id);
            }
        }
    }
}

impl<H: Handler> Drop for EventLoop<H> {
    fn drop(&mut self) {
        self.core.mailbox.open.store(false, Ordering::Release);
    }
}

/// Accept errors that concern one incoming connection, not the listener or the process.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::PermissionDenied
    ) || matches!(e.raw_os_error(), Some(code) if code == libc_eproto())
}

/// `EPROTO` on Linux: the handshake of a queued connection failed.
const fn libc_eproto() -> i32 {
    71
}
