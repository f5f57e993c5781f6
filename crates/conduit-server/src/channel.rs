//! The cross-thread source of a stream: [`SseSender`] on any thread, the loop pulling what it buffered.
//!
//! A sender with no room waits in one of two ways: a blocking [`SseSender::send`] sleeps on a condition
//! variable, an [`SseSender::send_async`] future leaves its [`Waker`] in the channel. The loop wakes both when
//! it takes events out (room) and when the stream closes (the client left), so neither needs a runtime.

use crate::message::Msg;
use conduit_net::{ConnId, Remote, SendError};
use conduit_sse::Event;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Events a channel-fed stream buffers by default before [`SseSender::send`] waits.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 1024;

pub(crate) struct Channel {
    state: Mutex<ChannelState>,
    not_full: Condvar,
    capacity: usize,
}

struct ChannelState {
    /// Events already encoded by the sending thread, so the loop only copies bytes.
    events: VecDeque<Vec<u8>>,
    senders: usize,
    /// The stream is over: the client left or the stream ended. Senders fail from now on.
    closed: bool,
    /// Set once the stream is attached to a connection: where to say that events are waiting.
    link: Option<(Remote<Msg>, ConnId)>,
    /// A wake-up is on its way to the loop, so further sends need not send another.
    notified: bool,
    /// Futures of [`SseSender::send_async`] waiting for room, by their key; each removes its entry when it
    /// completes or is dropped, so the list never holds more than the futures pending.
    waiters: Vec<(u64, Waker)>,
    /// The key the next waiting future gets.
    next_waiter: u64,
}

impl ChannelState {
    /// Takes the wakers of every waiting future, to be woken once the lock is released (a waker may poll
    /// its future at once, which would take the lock again).
    fn take_waiters(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.waiters).into_iter().map(|(_, waker)| waker).collect()
    }

    /// True while the buffer has room for another event.
    fn has_room(&self, capacity: usize) -> bool {
        self.events.len() < capacity
    }
}

/// What the loop took from a channel in one pull.
pub(crate) struct Pulled {
    /// More events are buffered than fitted.
    pub(crate) more: bool,
    /// No sender is left and nothing is buffered: the stream is complete.
    pub(crate) finished: bool,
}

impl Channel {
    /// A channel with room for `capacity` buffered events (at least 1), and its first sender.
    pub(crate) fn new(capacity: usize) -> (Arc<Channel>, SseSender) {
        let channel = Arc::new(Channel {
            state: Mutex::new(ChannelState {
                events: VecDeque::new(),
                senders: 1,
                closed: false,
                link: None,
                notified: false,
                waiters: Vec::new(),
                next_waiter: 0,
            }),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
        });
        let sender = SseSender { channel: Arc::clone(&channel) };
        (channel, sender)
    }

    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn attach(&self, remote: Remote<Msg>, conn: ConnId) {
        let mut state = self.lock();
        state.link = Some((remote, conn));
        // The loop pulls right after attaching, so no wake-up is needed for what is already buffered.
        state.notified = true;
    }

    /// Hands buffered encoded events to `take`, which consumes each one it is given and returns whether it has
    /// room for another.
    pub(crate) fn pull(&self, mut take: impl FnMut(&[u8]) -> bool) -> Pulled {
        let mut state = self.lock();
        let mut taken = false;
        while let Some(event) = state.events.pop_front() {
            taken = true;
            if !take(&event) {
                break;
            }
        }
        let more = !state.events.is_empty();
        if !more {
            state.notified = false;
        }
        let finished = !more && state.senders == 0;
        if finished {
            state.closed = true;
        }
        let waiters = if taken || finished { state.take_waiters() } else { Vec::new() };
        drop(state);
        if taken {
            self.not_full.notify_all();
        }
        waiters.into_iter().for_each(Waker::wake);
        Pulled { more, finished }
    }

    /// The client is gone or the stream ended: fail all senders from now on.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.events.clear();
        state.link = None;
        let waiters = state.take_waiters();
        drop(state);
        self.not_full.notify_all();
        waiters.into_iter().for_each(Waker::wake);
    }

    fn wake(&self, mut state: MutexGuard<'_, ChannelState>) {
        if state.notified {
            return;
        }
        let Some((remote, conn)) = state.link.clone() else {
            return;
        };
        state.notified = true;
        drop(state);
        match remote.send(Msg::ChannelReady(conn)) {
            Ok(()) => {}
            Err(SendError::Closed(_)) => self.close(),
            Err(SendError::Full(_)) => {
                // The next send tries again; the events stay buffered meanwhile.
                log::warn!("event loop mailbox full: stream {conn} will resume on its next event");
                self.lock().notified = false;
            }
        }
    }
}

/// Sends events into one stream from any thread. Clone it to share it between producers.
///
/// Sending fails once the client has gone, so producers know to stop. Blocking code uses
/// [`send`](Self::send), [`send_timeout`](Self::send_timeout) or [`try_send`](Self::try_send); async code uses
/// [`send_async`](Self::send_async), which waits without blocking a thread and works under any executor.
pub struct SseSender {
    channel: Arc<Channel>,
}

impl std::fmt::Debug for SseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.channel.lock();
        f.debug_struct("SseSender")
            .field("buffered", &state.events.len())
            .field("capacity", &self.channel.capacity)
            .field("closed", &state.closed)
            .finish()
    }
}

/// The client has gone (or the stream was closed); the event is handed back.
#[derive(Debug)]
pub struct Disconnected(pub Event);

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event stream is closed: its client has gone")
    }
}

impl std::error::Error for Disconnected {}

/// Why [`SseSender::try_send`] did not send; the event is handed back.
#[derive(Debug)]
pub enum TrySendError {
    /// The stream's buffer is full: the client reads slower than events are produced.
    Full(Event),
    /// The client has gone.
    Disconnected(Event),
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the event stream's buffer is full"),
            TrySendError::Disconnected(_) => f.write_str("the event stream is closed: its client has gone"),
        }
    }
}

impl std::error::Error for TrySendError {}

// Failed sends hand the event back by value, as `std::sync::mpsc::SendError` does; boxing it would cost an
// allocation on every send to make the rare failure smaller.
#[allow(clippy::result_large_err)]
impl SseSender {
    /// Sends an event, waiting while the stream's buffer is full (the client reading slower than events come).
    ///
    /// # Errors
    /// [`Disconnected`] once the client has gone or the stream was closed.
    pub fn send(&self, event: Event) -> Result<(), Disconnected> {
        match self.send_inner(event, None) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(e) | TrySendError::Full(e)) => Err(Disconnected(e)),
        }
    }

    /// Sends an event, waiting at most `timeout` for room in the buffer.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if there was no room in time, [`TrySendError::Disconnected`] if the client has gone.
    pub fn send_timeout(&self, event: Event, timeout: Duration) -> Result<(), TrySendError> {
        self.send_inner(event, Some(timeout))
    }

    /// Sends an event if there is room now.
    ///
    /// # Errors
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn try_send(&self, event: Event) -> Result<(), TrySendError> {
        self.send_inner(event, Some(Duration::ZERO))
    }

    /// Sends an event from async code: the future completes once the event is buffered, waiting (without
    /// blocking its thread) while the stream's buffer is full. It needs no particular runtime: its
    /// [`Waker`] is kept in the channel and woken by the event loop when the client has taken events, or when
    /// the client has gone. Dropping the future before it completes sends nothing.
    ///
    /// ```
    /// use conduit_server::{Disconnected, SseSender};
    /// use conduit_sse::Event;
    ///
    /// async fn produce(sender: SseSender, words: Vec<String>) -> Result<(), Disconnected> {
    ///     for word in words {
    ///         sender.send_async(Event::new().event("token").unwrap().data(word)).await?;
    ///     }
    ///     Ok(())
    /// }
    /// # let _ = produce;
    /// ```
    ///
    /// (For topics, [`Hub::publish`](crate::Hub::publish) never waits for subscribers, so async code can
    /// call it directly.)
    ///
    /// # Errors
    /// [`Disconnected`] (with the event) once the client has gone or the stream was closed. Polled again
    /// after it completed, the future repeats its outcome, with an empty event in the error.
    pub fn send_async(&self, event: Event) -> SendFuture<'_> {
        SendFuture { sender: self, event: Some(event), encoded: None, key: None, sent: false }
    }

    fn send_inner(&self, event: Event, timeout: Option<Duration>) -> Result<(), TrySendError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let encoded = encode(&event);
        let mut state = self.channel.lock();
        loop {
            if state.closed {
                return Err(TrySendError::Disconnected(event));
            }
            if state.has_room(self.channel.capacity) {
                break;
            }
            state = match deadline {
                None => self.channel.not_full.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(TrySendError::Full(event));
                    }
                    self.channel.not_full.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        state.events.push_back(encoded);
        self.channel.wake(state);
        Ok(())
    }

    /// True once the client has gone or the stream ended.
    pub fn is_closed(&self) -> bool {
        self.channel.lock().closed
    }

    /// Ends the stream once the events already sent are delivered, whatever other senders exist.
    pub fn close(&self) {
        let mut state = self.channel.lock();
        state.senders = 0;
        self.channel.wake(state);
    }
}

fn encode(event: &Event) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(event.encoded_len());
    event.encode(&mut encoded);
    encoded
}

/// The future of [`SseSender::send_async`].
#[must_use = "a future does nothing unless polled"]
pub struct SendFuture<'a> {
    sender: &'a SseSender,
    /// The event, until it is sent or handed back.
    event: Option<Event>,
    /// The event encoded, on the first poll (the encoding is done once however often the future waits).
    encoded: Option<Vec<u8>>,
    /// Its entry among the channel's waiters while it waits.
    key: Option<u64>,
    sent: bool,
}

impl std::fmt::Debug for SendFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture").field("waiting", &self.key.is_some()).field("sent", &self.sent).finish()
    }
}

impl SendFuture<'_> {
    fn forget_waker(&mut self, state: &mut ChannelState) {
        if let Some(key) = self.key.take() {
            state.waiters.retain(|(k, _)| *k != key);
        }
    }
}

impl Future for SendFuture<'_> {
    type Output = Result<(), Disconnected>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(event) = this.event.take() else {
            return Poll::Ready(if this.sent { Ok(()) } else { Err(Disconnected(Event::new())) });
        };
        let channel = &this.sender.channel;
        let encoded = this.encoded.take().unwrap_or_else(|| encode(&event));
        let mut state = channel.lock();
        if state.closed {
            this.forget_waker(&mut state);
            return Poll::Ready(Err(Disconnected(event)));
        }
        if state.has_room(channel.capacity) {
            this.forget_waker(&mut state);
            state.events.push_back(encoded);
            this.sent = true;
            channel.wake(state);
            return Poll::Ready(Ok(()));
        }
        let waker = cx.waker();
        match this.key {
            Some(key) => {
                if let Some((_, kept)) = state.waiters.iter_mut().find(|(k, _)| *k == key) {
                    kept.clone_from(waker);
                } else {
                    // Woken (its entry taken) but still no room: wait again.
                    state.waiters.push((key, waker.clone()));
                }
            }
            None => {
                let key = state.next_waiter;
                state.next_waiter += 1;
                state.waiters.push((key, waker.clone()));
                this.key = Some(key);
            }
        }
        drop(state);
        this.event = Some(event);
        this.encoded = Some(encoded);
        Poll::Pending
    }
}

impl Drop for SendFuture<'_> {
    fn drop(&mut self) {
        if self.key.is_some() {
            let mut state = self.sender.channel.lock();
            self.forget_waker(&mut state);
        }
    }
}

impl Clone for SseSender {
    fn clone(&self) -> Self {
        self.channel.lock().senders += 1;
        SseSender { channel: Arc::clone(&self.channel) }
    }
}

impl Drop for SseSender {
    fn drop(&mut self) {
        let mut state = self.channel.lock();
        state.senders = state.senders.saturating_sub(1);
        if state.senders == 0 {
            self.channel.wake(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        (Arc::clone(&counter), Waker::from(counter))
    }

    fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    fn ev(n: usize) -> Event {
        Event::new().data(n.to_string())
    }

    /// Takes everything buffered, as the loop would for a client that reads it all, as decoded data lines.
    fn drain(channel: &Channel) -> Vec<String> {
        let mut taken = Vec::new();
        channel.pull(|bytes| {
            taken.push(String::from_utf8_lossy(bytes).trim_end().trim_start_matches("data: ").to_owned());
            true
        });
        taken
    }

    fn waiters(channel: &Channel) -> usize {
        channel.lock().waiters.len()
    }

    #[test]
    fn a_full_stream_makes_send_async_wait_until_the_loop_takes_events() {
        let (channel, sender) = Channel::new(1);
        let (wakes, waker) = counting_waker();
        assert!(matches!(poll(&mut sender.send_async(ev(1)), &waker), Poll::Ready(Ok(()))));
        let mut second = sender.send_async(ev(2));
        assert!(poll(&mut second, &waker).is_pending(), "no room: it waits");
        assert!(poll(&mut second, &waker).is_pending(), "polled again without room: still waiting");
        assert_eq!((waiters(&channel), wakes.0.load(Ordering::SeqCst)), (1, 0), "one entry, however often polled");
        assert_eq!(drain(&channel), ["1"]);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "taking events wakes the waiting future");
        assert!(matches!(poll(&mut second, &waker), Poll::Ready(Ok(()))));
        assert!(matches!(poll(&mut second, &waker), Poll::Ready(Ok(()))), "a completed future repeats its outcome");
        assert_eq!(drain(&channel), ["2"]);
        assert_eq!(waiters(&channel), 0);
    }

    #[test]
    fn the_client_leaving_wakes_waiting_futures_and_hands_their_events_back() {
        let (channel, sender) = Channel::new(1);
        let (wakes, waker) = counting_waker();
        let _ = poll(&mut sender.send_async(ev(1)), &waker);
        let mut waiting = sender.send_async(ev(2));
        assert!(poll(&mut waiting, &waker).is_pending());
        channel.close();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        match poll(&mut waiting, &waker) {
            Poll::Ready(Err(Disconnected(event))) => assert_eq!(event.data_str(), Some("2")),
            other => panic!("expected the event back, got {other:?}"),
        }
        assert!(matches!(poll(&mut sender.send_async(ev(3)), &waker), Poll::Ready(Err(_))), "closed stays closed");
    }

    #[test]
    fn a_dropped_future_leaves_no_waker_and_sends_nothing() {
        let (channel, sender) = Channel::new(1);
        let (wakes, waker) = counting_waker();
        let _ = poll(&mut sender.send_async(ev(1)), &waker);
        let mut abandoned = sender.send_async(ev(2));
        assert!(poll(&mut abandoned, &waker).is_pending());
        drop(abandoned);
        assert_eq!(waiters(&channel), 0);
        assert_eq!(drain(&channel), ["1"]);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert!(drain(&channel).is_empty(), "the abandoned event was never sent");
    }

    /// A minimal executor: polls `future` on this thread, parking it until the future's waker unparks it.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
                return output;
            }
            std::thread::park();
        }
    }

    #[test]
    fn an_async_producer_on_its_own_executor_delivers_every_event_in_order() {
        const EVENTS: usize = 500;
        let (channel, sender) = Channel::new(4);
        let producer = std::thread::spawn(move || {
            block_on(async {
                for n in 0..EVENTS {
                    // The event handed back on failure is dropped: only whether all went out matters here.
                    sender.send_async(ev(n)).await.map_err(drop)?;
                }
                Ok::<(), ()>(())
            })
        });
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.len() < EVENTS {
            assert!(Instant::now() < deadline, "only {} events arrived", received.len());
            // Take one event at a time, so the producer fills the buffer and waits again and again.
            channel.pull(|bytes| {
                received.push(String::from_utf8_lossy(bytes).trim_end().trim_start_matches("data: ").to_owned());
                false
            });
            std::thread::yield_now();
        }
        producer.join().unwrap().unwrap();
        let expected: Vec<String> = (0..EVENTS).map(|n| n.to_string()).collect();
        assert_eq!(received, expected);
    }
}
