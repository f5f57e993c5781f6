//! Driving one stream: producing events from its source, writing them, keep-alive comments, and its end.
//!
//! A stream's events come from a timer callback ([`Source::Interval`]), an iterator or a writing function the
//! loop pulls ([`Source::Iter`], [`Source::Write`]) or a channel fed by other threads ([`Source::Channel`]). Subscriptions to hub topics are
//! fed by the fan-out instead (see `fanout`). Nothing here decides what a connection does after its stream:
//! the functions say what the source wants next ([`After`]) and the dispatcher acts on it.

use crate::access_log::peer;
use crate::framing::{write_batch, write_body};
use crate::message::LoopContext;
use crate::metrics::StreamMeter;
use crate::sse::{Source, Ticker};
use conduit_http::LAST_CHUNK;
use conduit_net::{ConnId, TimerId, WriteError};
use conduit_sse::EventSink;
use conduit_sse::{Event, KEEP_ALIVE_COMMENT, KeepAlive};
use std::borrow::Cow;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// What a stream's source wants after producing a batch of events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// It failed (the text says how, for the log): end the stream with an `error` event.
    Failed(Cow<'static, str>),
    /// It is exhausted: end the stream.
    End,
    /// It has more: produce again once the client has read.
    More,
    /// It has nothing now; a timer or another thread brings the next events.
    Wait,
}

/// A connection's open event stream.
pub(crate) struct Stream {
    pub(crate) source: Source,
    /// An interval source's ticks so far; its [`Ticker`] is made for each tick, so a stream between ticks
    /// keeps no room for events.
    ticks: u64,
    /// HTTP/1.1 streams are chunked, so the end of a finite stream is visible and the connection reusable;
    /// HTTP/1.0 streams end by closing.
    pub(crate) chunked: bool,
    /// The client allows the connection to be reused after a finite stream.
    pub(crate) reuse: bool,
    pub(crate) keep_alive: KeepAlive,
    keep_alive_timer: Option<TimerId>,
    tick_timer: Option<TimerId>,
    /// What the stream has sent.
    pub(crate) meter: StreamMeter,
    /// Events produced into the batch being written, counted once it is queued.
    pub(crate) unsent_events: u64,
    /// The stream was cut off because its client did not keep up.
    pub(crate) cut_off: bool,
}

impl Stream {
    /// A stream starting now, with its keep-alive and tick timers armed under `id`.
    pub(crate) fn start(
        cx: &mut LoopContext<'_>,
        id: ConnId,
        source: Source,
        chunked: bool,
        reuse: bool,
        keep_alive: KeepAlive,
        meter: StreamMeter,
    ) -> Stream {
        let keep_alive_timer = keep_alive.next_deadline().map(|at| cx.set_timer(at, id.to_u64()));
        let tick_timer = match &source {
            Source::Interval { period, .. } => Some(cx.set_interval(*period, id.to_u64())),
            _ => None,
        };
        if let Source::Channel(channel) = &source {
            channel.attach(cx.remote(), id);
        }
        Stream {
            source,
            ticks: 0,
            chunked,
            reuse,
            keep_alive,
            keep_alive_timer,
            tick_timer,
            meter,
            unsent_events: 0,
            cut_off: false,
        }
    }

    /// Writes encoded events (framed as one chunk on chunked streams; `unsent_events` of them) and clears
    /// `body`. A client too slow to take them is disconnected. Returns false if the connection is gone.
    pub(crate) fn emit(&mut self, cx: &mut LoopContext<'_>, id: ConnId, body: &mut Vec<u8>) -> bool {
        let events = std::mem::take(&mut self.unsent_events);
        if body.is_empty() {
            return true;
        }
        self.keep_alive.record_activity(cx.now());
        let len = body.len();
        match write_batch(cx, id, self.chunked, body) {
            Ok(()) => {
                self.meter.sent(events, len);
                true
            }
            Err(WriteError::Full(full)) => {
                log::warn!(
                    "closing stream {id} to {}: the client is not reading ({} bytes queued)",
                    peer(cx.peer_addr(id)),
                    full.queued
                );
                self.cut(cx, id);
                false
            }
            // Closed earlier in this turn (the client left, or a write failed): nothing to say here, the close
            // itself is reported with its reason.
            Err(WriteError::Closed) => false,
        }
    }

    /// Disconnects a client that does not keep up with the stream.
    pub(crate) fn cut(&mut self, cx: &mut LoopContext<'_>, id: ConnId) {
        self.cut_off = true;
        cx.close(id);
    }

    /// Pulls events from an iterator or channel source into `body` until `queued` bytes plus the batch reach
    /// `high_water`. Timer-driven and hub sources produce nothing here.
    pub(crate) fn pull(&mut self, queued: usize, high_water: usize, body: &mut Vec<u8>) -> After {
        match &mut self.source {
            // One unwinding guard for the whole batch: what was encoded before a panic is still sent.
            Source::Iter(events) => {
                let unsent = &mut self.unsent_events;
                catch_unwind(AssertUnwindSafe(|| {
                    loop {
                        if queued + body.len() >= high_water {
                            break After::More;
                        }
                        match events.next() {
                            Some(event) => {
                                event.encode(body);
                                *unsent += 1;
                            }
                            None => break After::End,
                        }
                    }
                }))
                .unwrap_or(After::Failed(Cow::Borrowed("its event iterator panicked")))
            }
            // As for an iterator; a half-written event is taken back by its writer, even on a panic.
            Source::Write(write) => {
                let mut sink = EventSink::new(body);
                let after = catch_unwind(AssertUnwindSafe(|| {
                    loop {
                        if queued + sink.len() >= high_water {
                            break After::More;
                        }
                        let before = sink.events();
                        match write(&mut sink) {
                            Ok(ControlFlow::Break(())) => break After::End,
                            Ok(ControlFlow::Continue(())) if sink.events() == before => {
                                break After::Failed(Cow::Borrowed(
                                    "its event function returned Continue without writing an event",
                                ));
                            }
                            Ok(ControlFlow::Continue(())) => {}
                            Err(e) => break After::Failed(Cow::Owned(format!("its event function failed: {e}"))),
                        }
                    }
                }))
                .unwrap_or(After::Failed(Cow::Borrowed("its event function panicked")));
                self.unsent_events += sink.events();
                after
            }
            Source::Channel(channel) => {
                let unsent = &mut self.unsent_events;
                let pulled = channel.pull(|event| {
                    body.extend_from_slice(event);
                    *unsent += 1;
                    queued + body.len() < high_water
                });
                if pulled.finished {
                    After::End
                } else if pulled.more {
                    After::More
                } else {
                    After::Wait
                }
            }
            Source::Interval { .. } | Source::Subscription(_) => After::Wait,
        }
    }

    /// True if `timer` is this stream's tick timer.
    pub(crate) fn is_tick(&self, timer: TimerId) -> bool {
        self.tick_timer == Some(timer)
    }

    /// True if `timer` is this stream's keep-alive timer.
    pub(crate) fn is_keep_alive(&self, timer: TimerId) -> bool {
        self.keep_alive_timer == Some(timer)
    }

    /// Runs an interval source's callback once, encoding what it sent into `body`.
    pub(crate) fn tick(&mut self, now: Instant, body: &mut Vec<u8>) -> After {
        let Source::Interval { tick, .. } = &mut self.source else {
            return After::Wait;
        };
        let mut ticker = Ticker::new(self.ticks, now);
        let failed = catch_unwind(AssertUnwindSafe(|| tick(&mut ticker))).is_err();
        self.ticks += 1;
        self.unsent_events += ticker.events.len() as u64;
        for event in &ticker.events {
            event.encode(body);
        }
        if failed {
            After::Failed(Cow::Borrowed("its interval callback panicked"))
        } else if ticker.end {
            After::End
        } else {
            After::Wait
        }
    }

    /// The keep-alive timer fired: send a comment if the stream has been quiet, and arm the next check.
    pub(crate) fn keep_alive(&mut self, cx: &mut LoopContext<'_>, id: ConnId) {
        let now = cx.now();
        self.keep_alive_timer = None;
        if self.keep_alive.poll(now) {
            match write_body(cx, id, self.chunked, KEEP_ALIVE_COMMENT) {
                Ok(()) => {}
                Err(WriteError::Full(_)) => return self.cut(cx, id),
                Err(WriteError::Closed) => return,
            }
        }
        if let Some(at) = self.keep_alive.next_deadline() {
            self.keep_alive_timer = Some(cx.set_timer(at, id.to_u64()));
        }
    }

    /// Frees the stream's timers and fails its channel's senders.
    pub(crate) fn release(&self, cx: &mut LoopContext<'_>) {
        for timer in [self.keep_alive_timer, self.tick_timer].into_iter().flatten() {
            cx.cancel_timer(timer);
        }
        if let Source::Channel(channel) = &self.source {
            channel.close();
        }
    }

    /// Writes the stream's end: an `error` event when `error` is given, then the chunked terminator. False if
    /// the connection's queue refused the terminator.
    pub(crate) fn write_end(&mut self, cx: &mut LoopContext<'_>, id: ConnId, error: Option<&str>) -> bool {
        if let Some(message) = error {
            let mut body = Vec::new();
            if let Ok(event) =
                Event::new().event("error").and_then(|e| e.json(&serde_json::json!({ "error": message })))
            {
                event.encode(&mut body);
            }
            if write_body(cx, id, self.chunked, &body).is_ok() {
                self.meter.sent(1, body.len());
            }
        }
        !self.chunked || cx.write(id, LAST_CHUNK).is_ok()
    }
}
