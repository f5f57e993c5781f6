//! The cross-thread source of a stream: [`SseSender`] on any thread, the loop pulling what it buffered.

use crate::message::Msg;
use conduit_net::{ConnId, Remote, SendError};
use conduit_sse::Event;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
        drop(state);
        if taken {
            self.not_full.notify_all();
        }
        Pulled { more, finished }
    }

    /// The client is gone or the stream ended: fail all senders from now on.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.events.clear();
        state.link = None;
        drop(state);
        self.not_full.notify_all();
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
/// Sending fails once the client has gone, so producers know to stop.
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

    fn send_inner(&self, event: Event, timeout: Option<Duration>) -> Result<(), TrySendError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut encoded = Vec::with_capacity(event.encoded_len());
        event.encode(&mut encoded);
        let mut state = self.channel.lock();
        loop {
            if state.closed {
                return Err(TrySendError::Disconnected(event));
            }
            if state.events.len() < self.channel.capacity {
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
