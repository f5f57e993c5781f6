//! The server: one event loop, a router, and a state machine per connection.

use crate::config::ServerConfig;
use crate::cors;
use crate::hub::{Hub, HubState, valid_topic};
use crate::response::{Reply, Response};
use crate::router::Router;
use crate::stream::{Source, Sse, Subscription, Ticker};
use conduit_http::{
    BodyFraming, CHUNK_END, LAST_CHUNK, Method, ParseError, Request, RequestParser, ResponseHead, Status, StatusCode,
    Version, write_chunk_header,
};
use conduit_net::{CloseReason, ConnId, Context, EventLoop, Handler, LoopConfig, Remote, TimerId};
use conduit_sse::{
    Backlog, Event, KEEP_ALIVE_COMMENT, KeepAlive, ResumePlan, STREAM_HEADERS, SharedEvent, plan_resume,
};
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// Messages other threads send to the loop.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A channel-fed stream has events buffered.
    ChannelReady(ConnId),
    /// Begin a graceful shutdown.
    Shutdown,
    /// A hub event, numbered and encoded by the publisher.
    Publish { topic: Arc<str>, event: SharedEvent },
}

/// Timer key of the shutdown grace period; connection timers use [`ConnId::to_u64`], which never equals it in
/// practice (it would need index and generation both at `u32::MAX`).
const SHUTDOWN_KEY: u64 = u64::MAX;

/// Counters the server keeps up to date for monitoring and tests.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicUsize,
    streams: AtomicUsize,
    requests: AtomicU64,
}

/// What a stream's source wants after producing a batch of events.
enum After {
    /// It panicked (the name says which kind of source): end the stream with an `error` event.
    Failed(&'static str),
    /// It is exhausted: end the stream.
    End,
    /// It has more: produce again once the client has read.
    More,
    /// It has nothing now; a timer or another thread brings the next events.
    Wait,
}

/// A connection's place in the HTTP exchange.
enum State {
    /// Waiting for (the rest of) a request head or body.
    Reading,
    /// Sending an event stream.
    Streaming(Box<Stream>),
    /// The last response is queued; the connection closes once it is sent.
    Closing,
}

struct Stream {
    source: Source,
    ticker: Ticker,
    /// HTTP/1.1 streams are chunked, so the end of a finite stream is visible and the connection reusable;
    /// HTTP/1.0 streams end by closing.
    chunked: bool,
    /// The client allows the connection to be reused after a finite stream.
    reuse: bool,
    keep_alive: KeepAlive,
    keep_alive_timer: Option<TimerId>,
    tick_timer: Option<TimerId>,
}

struct Conn {
    id: ConnId,
    input: Vec<u8>,
    parser: RequestParser,
    state: State,
    /// Request or idle deadline, armed while `Reading`.
    deadline: Option<TimerId>,
    /// The deadline is the idle one (no byte of a next request yet).
    deadline_idle: bool,
}

/// The [`Handler`] the server runs on its event loop.
pub(crate) struct Service {
    router: Arc<Router>,
    config: ServerConfig,
    conns: Vec<Option<Conn>>,
    /// Reused buffer for encoding events.
    scratch: Vec<u8>,
    stats: Arc<Stats>,
    hub: HubState,
    shutting_down: bool,
}

/// The response header naming the oldest event a subscription's topics still hold.
pub const OLDEST_EVENT_ID_HEADER: &str = "Conduit-Oldest-Event-Id";

type Cx<'a, 'b> = &'a mut Context<'b, Msg>;

impl Service {
    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.index())?.as_mut().filter(|c| c.id == id)
    }

    fn arm_deadline(&mut self, cx: Cx<'_, '_>, id: ConnId, idle: bool) {
        let after = if idle { self.config.idle_timeout } else { self.config.request_timeout };
        let Some(c) = self.conn_mut(id) else { return };
        if let Some(t) = c.deadline.take() {
            cx.cancel_timer(t);
        }
        c.deadline = Some(cx.set_timer(cx.now() + after, id.to_u64()));
        c.deadline_idle = idle;
    }

    fn disarm_deadline(&mut self, cx: Cx<'_, '_>, id: ConnId) {
        if let Some(t) = self.conn_mut(id).and_then(|c| c.deadline.take()) {
            cx.cancel_timer(t);
        }
    }

    /// Parses and answers every complete request buffered on the connection.
    fn process_input(&mut self, cx: Cx<'_, '_>, id: ConnId) {
        loop {
            // A connection being closed (its write queue overflowed, say) answers nothing more: running the
            // requests pipelined behind would do work nobody sees, and clients retry unanswered requests.
            if !cx.is_open(id) {
                break;
            }
            let Some(c) = self.conn_mut(id) else { return };
            if !matches!(c.state, State::Reading) || c.input.is_empty() {
                break;
            }
            match c.parser.parse(&c.input) {
                Ok(Status::Complete(req, consumed)) => {
                    c.input.drain(..consumed);
                    self.disarm_deadline(cx, id);
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                    self.dispatch(cx, id, req);
                }
                Ok(Status::Partial) => {
                    if c.parser.take_continue() {
                        let _ = cx.write(id, b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    break;
                }
                Err(e) => {
                    log::debug!("connection {id}: bad request: {e}");
                    self.reject(cx, id, &e);
                    break;
                }
            }
        }
        if let Some(c) = self.conn_mut(id) {
            if c.input.is_empty() && c.input.capacity() > 0 {
                // Idle connections are the common case: keep them small.
                c.input = Vec::new();
            }
        }
    }

    fn reject(&mut self, cx: Cx<'_, '_>, id: ConnId, error: &ParseError) {
        self.respond(cx, id, Version::Http11, Response::error(error.status(), error), false, false);
    }

    fn dispatch(&mut self, cx: Cx<'_, '_>, id: ConnId, req: Request) {
        let head_only = req.method() == &Method::Head;
        let keep_alive = req.keep_alive() && !self.shutting_down;
        let router = Arc::clone(&self.router);
        let verdict = match req.header("origin") {
            Some(_) => cors::check(self.config.cors.as_ref(), &req, &router.allowed(req.path())),
            None => cors::Verdict::SameOrigin,
        };
        let run = || match catch_unwind(AssertUnwindSafe(|| router.handle(&req))) {
            Ok(reply) => reply,
            Err(_) => {
                log::error!("handler for {} {} panicked", req.method(), req.path());
                Reply::Response(Response::error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"))
            }
        };
        let reply = match verdict {
            cors::Verdict::Answer(response) => Reply::Response(response),
            cors::Verdict::SameOrigin => run(),
            cors::Verdict::Allowed(headers) => match run() {
                Reply::Response(mut r) => {
                    r.headers.extend(headers);
                    Reply::Response(r)
                }
                Reply::Stream(mut sse) => {
                    sse.headers.extend(headers);
                    Reply::Stream(sse)
                }
            },
        };
        match reply {
            Reply::Response(r) => self.respond(cx, id, req.version(), r, keep_alive, head_only),
            Reply::Stream(sse) => self.start_stream(cx, id, req.version(), keep_alive, head_only, sse),
        }
    }

    /// After a complete response: wait for the next request, or close once it is sent.
    fn after_response(&mut self, cx: Cx<'_, '_>, id: ConnId, keep_alive: bool) {
        let Some(c) = self.conn_mut(id) else { return };
        if keep_alive {
            c.state = State::Reading;
            self.arm_deadline(cx, id, true);
        } else {
            c.state = State::Closing;
            cx.close_after_flush(id);
        }
    }

    fn respond(
        &mut self,
        cx: Cx<'_, '_>,
        id: ConnId,
        version: Version,
        r: Response,
        keep_alive: bool,
        head_only: bool,
    ) {
        let has_body = r.status.allows_body();
        let framing = if has_body { BodyFraming::Length(r.body.len() as u64) } else { BodyFraming::None };
        let head = build_head(r.status, version, framing, keep_alive, &r.headers);
        let mut buf = Vec::with_capacity(128 + r.body.len());
        head.write(&mut buf);
        if has_body && !head_only {
            buf.extend_from_slice(&r.body);
        }
        if cx.write_vec(id, buf).is_err() {
            cx.close(id);
            return;
        }
        self.after_response(cx, id, keep_alive);
    }

    fn start_stream(
        &mut self,
        cx: Cx<'_, '_>,
        id: ConnId,
        version: Version,
        keep_alive: bool,
        head_only: bool,
        sse: Sse,
    ) {
        let chunked = version == Version::Http11;
        let reuse = chunked && keep_alive;
        let framing = if chunked { BodyFraming::Chunked } else { BodyFraming::Close };
        let mut headers: Vec<(String, String)> = STREAM_HEADERS
            .iter()
            // `Connection` follows from the framing: keep-alive only where the stream can end cleanly.
            .filter(|(name, _)| !name.eq_ignore_ascii_case("connection") || reuse)
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        headers.extend(sse.headers.iter().cloned());
        let mut sse = sse;
        let mut reset_event = None;
        if let Source::Subscription(sub) = &mut sse.source {
            match self.plan_subscription(sub) {
                Ok((plan, oldest)) => {
                    if let ResumePlan::Reset { reason, .. } = plan {
                        reset_event =
                            Some(reset_notice(reason.as_str(), sub.last_event_id.as_deref(), oldest.as_deref()));
                    }
                    if let Some(oldest) = oldest {
                        headers.push((OLDEST_EVENT_ID_HEADER.to_owned(), oldest));
                    }
                }
                Err(response) => return self.respond(cx, id, version, response, keep_alive, head_only),
            }
        }
        let mut head_bytes = Vec::with_capacity(256);
        build_head(StatusCode::OK, version, framing, reuse, &headers).write(&mut head_bytes);
        if cx.write_vec(id, head_bytes).is_err() {
            cx.close(id);
            return;
        }
        if head_only {
            return self.after_response(cx, id, reuse);
        }

        let now = cx.now();
        let keep_alive_interval = sse.keep_alive.unwrap_or(self.config.keep_alive);
        let keep_alive = match keep_alive_interval {
            Some(interval) => KeepAlive::new(interval, now),
            None => KeepAlive::disabled(),
        };
        let keep_alive_timer = keep_alive.next_deadline().map(|at| cx.set_timer(at, id.to_u64()));
        let tick_timer = match &sse.source {
            Source::Interval { period, .. } => Some(cx.set_interval(*period, id.to_u64())),
            _ => None,
        };
        if let Source::Channel(channel) = &sse.source {
            channel.attach(cx.remote(), id);
        }
        let interval = matches!(sse.source, Source::Interval { .. });
        if let Source::Subscription(sub) = &mut sse.source {
            for topic in &sub.topics {
                if let Some(t) = self.hub.topics.get_mut(topic) {
                    t.catching_up.insert(id);
                }
            }
            sub.following = true;
        }
        let retry = sse.retry.or(self.config.retry);
        let Some(c) = self.conn_mut(id) else { return };
        c.state = State::Streaming(Box::new(Stream {
            source: sse.source,
            ticker: Ticker::new(),
            chunked,
            reuse,
            keep_alive,
            keep_alive_timer,
            tick_timer,
        }));
        self.stats.streams.fetch_add(1, Ordering::Relaxed);
        if retry.is_some() || reset_event.is_some() {
            let mut body = std::mem::take(&mut self.scratch);
            if let Some(retry) = retry {
                Event::new().retry(retry).encode(&mut body);
            }
            if let Some(reset) = reset_event {
                reset.encode(&mut body);
            }
            self.emit(cx, id, &mut body);
            self.scratch = body;
        }
        if interval {
            self.tick(cx, id);
        } else {
            self.pump(cx, id);
        }
    }

    fn stream_mut(&mut self, id: ConnId) -> Option<&mut Stream> {
        match &mut self.conn_mut(id)?.state {
            State::Streaming(s) => Some(s),
            _ => None,
        }
    }

    /// Writes encoded events (framed as one chunk on chunked streams) and clears `body`. A client too slow to
    /// take them is disconnected. Returns false if the connection is gone.
    fn emit(&mut self, cx: Cx<'_, '_>, id: ConnId, body: &mut Vec<u8>) -> bool {
        if body.is_empty() {
            return true;
        }
        let now = cx.now();
        let Some(stream) = self.stream_mut(id) else {
            body.clear();
            return false;
        };
        stream.keep_alive.record_activity(now);
        let ok = write_body(cx, id, stream.chunked, body);
        body.clear();
        if !ok {
            log::warn!(
                "closing stream {id} to {:?}: the client is not reading ({} bytes queued)",
                cx.peer_addr(id),
                cx.queued(id).unwrap_or(0)
            );
            cx.close(id);
        }
        ok
    }

    /// Pulls events from an iterator or channel source until the write queue reaches the high-water mark.
    fn pump(&mut self, cx: Cx<'_, '_>, id: ConnId) {
        let high_water = self.config.stream_high_water;
        let Some(queued) = cx.queued(id) else { return };
        let mut body = std::mem::take(&mut self.scratch);
        let Some(stream) = self.stream_mut(id) else {
            self.scratch = body;
            return;
        };
        let after = match &mut stream.source {
            Source::Iter(events) => loop {
                if queued + body.len() >= high_water {
                    break After::More;
                }
                match catch_unwind(AssertUnwindSafe(|| events.next())) {
                    Ok(Some(event)) => event.encode(&mut body),
                    Ok(None) => break After::End,
                    Err(_) => break After::Failed("event source"),
                }
            },
            Source::Channel(channel) => {
                let pulled = channel.pull(|event| {
                    body.extend_from_slice(event);
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
            Source::Interval { .. } => After::Wait,
            Source::Subscription(_) => {
                self.scratch = body;
                return self.pump_subscription(cx, id);
            }
        };
        self.send_and_continue(cx, id, body, after);
    }

    /// Runs an interval source's callback once.
    fn tick(&mut self, cx: Cx<'_, '_>, id: ConnId) {
        let now = cx.now();
        let mut body = std::mem::take(&mut self.scratch);
        let Some(stream) = self.stream_mut(id) else {
            self.scratch = body;
            return;
        };
        let Source::Interval { tick, .. } = &mut stream.source else {
            self.scratch = body;
            return;
        };
        let ticker = &mut stream.ticker;
        ticker.now = now;
        ticker.events.clear();
        let failed = catch_unwind(AssertUnwindSafe(|| tick(ticker))).is_err();
        ticker.tick += 1;
        for event in ticker.events.drain(..) {
            event.encode(&mut body);
        }
        let after = if failed {
            After::Failed("interval callback")
        } else if ticker.end {
            After::End
        } else {
            After::Wait
        };
        self.send_and_continue(cx, id, body, after);
    }

    /// Sends what a source produced (returning the buffer for reuse), then does what the source asked next.
    fn send_and_continue(&mut self, cx: Cx<'_, '_>, id: ConnId, mut body: Vec<u8>, after: After) {
        let alive = self.emit(cx, id, &mut body);
        self.scratch = body;
        if !alive {
            return;
        }
        match after {
            After::Failed(what) => {
                log::error!("{what} of stream {id} panicked");
                self.finish_stream(cx, id, Some("internal error"));
            }
            After::End => self.finish_stream(cx, id, None),
            After::More => cx.notify_drained(id),
            After::Wait => {}
        }
    }

    fn keep_alive(&mut self, cx: Cx<'_, '_>, id: ConnId) {
        let now = cx.now();
        let Some(stream) = self.stream_mut(id) else {
            return;
        };
        stream.keep_alive_timer = None;
        if stream.keep_alive.poll(now) && !write_body(cx, id, stream.chunked, KEEP_ALIVE_COMMENT) {
            cx.close(id);
            return;
        }
        if let Some(at) = stream.keep_alive.next_deadline() {
            stream.keep_alive_timer = Some(cx.set_timer(at, id.to_u64()));
        }
    }

    fn release_stream(&mut self, cx: Cx<'_, '_>, id: ConnId, stream: &Stream) {
        for timer in [stream.keep_alive_timer, stream.tick_timer].into_iter().flatten() {
            cx.cancel_timer(timer);
        }
        match &stream.source {
            Source::Channel(channel) => channel.close(),
            Source::Subscription(sub) if sub.following => {
                for topic in &sub.topics {
                    if let Some(t) = self.hub.topics.get_mut(topic) {
                        t.live.remove(&id);
                        t.catching_up.remove(&id);
                    }
                }
            }
            _ => {}
        }
        self.stats.streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// Checks a subscription against the hub's limits and decides where it starts. Returns the plan and the
    /// id of the oldest event its topics hold, or the response refusing it.
    fn plan_subscription(&mut self, sub: &mut Subscription) -> Result<(ResumePlan, Option<String>), Response> {
        let config = &self.hub.config;
        if sub.topics.is_empty() || sub.topics.len() > config.max_topics_per_stream {
            return Err(Response::error(
                StatusCode::BAD_REQUEST,
                format_args!("a stream follows 1 to {} topics", config.max_topics_per_stream),
            ));
        }
        if let Some(bad) = sub.topics.iter().find(|t| !valid_topic(t, config.max_topic_len)) {
            return Err(Response::error(
                StatusCode::BAD_REQUEST,
                format_args!(
                    "invalid topic {:?}: 1 to {} bytes without control characters",
                    bad.as_ref(),
                    config.max_topic_len
                ),
            ));
        }
        for topic in &sub.topics {
            if self.hub.topic(topic).is_none() {
                return Err(Response::error(StatusCode::SERVICE_UNAVAILABLE, "too many topics; try again later")
                    .header("Retry-After", "5"));
            }
        }
        let backlogs: Vec<&Backlog> =
            sub.topics.iter().filter_map(|t| self.hub.topics.get(t)).map(|t| &t.backlog).collect();
        let plan = plan_resume(&backlogs, sub.last_event_id.as_deref(), self.hub.published);
        if matches!(plan, ResumePlan::Reset { .. }) {
            sub.announced_gap = backlogs.iter().map(|b| b.evicted_through()).max().unwrap_or(0);
        }
        let oldest = backlogs.iter().filter_map(|b| b.oldest()).min_by_key(|e| e.seq()).map(|e| e.id().to_owned());
        sub.cursor = plan.cursor();
        Ok((plan, oldest))
    }

    /// Feeds a subscription that is catching up from its topics' backlogs, up to the high-water mark, and
    /// makes it live once it has read everything held.
    fn pump_subscription(&mut self, cx: Cx<'_, '_>, id: ConnId) {
        let high_water = self.config.stream_high_water;
        let now = cx.now();
        let Some(mut queued) = cx.queued(id) else { return };
        let Service { hub, conns, .. } = self;
        let Some(conn) = conns.get_mut(id.index()).and_then(Option::as_mut).filter(|c| c.id == id) else {
            return;
        };
        let State::Streaming(stream) = &mut conn.state else { return };
        let Source::Subscription(sub) = &mut stream.source else { return };
        if sub.live {
            return;
        }
        loop {
            if queued >= high_water {
                cx.notify_drained(id);
                return;
            }
            let topics = sub.topics.iter().filter_map(|t| hub.topics.get(t));
            if !topics.clone().all(|t| t.backlog.complete_after(sub.cursor.max(sub.announced_gap))) {
                log::warn!("stream {id} fell behind the backlog of its topics; closing it so that it resumes");
                cx.close(id);
                return;
            }
            let Some(next) = topics.filter_map(|t| t.backlog.next_after(sub.cursor)).min_by_key(|e| e.seq()) else {
                for topic in &sub.topics {
                    if let Some(t) = hub.topics.get_mut(topic) {
                        t.catching_up.remove(&id);
                        t.live.insert(id);
                    }
                }
                sub.live = true;
                return;
            };
            let range = frame_range(next, stream.chunked);
            let len = range.len();
            if cx.write_shared(id, next.bytes(), range).is_err() {
                cx.close(id);
                return;
            }
            queued += len;
            sub.cursor = next.seq();
            stream.keep_alive.record_activity(now);
        }
    }

    /// Delivers a published event to its topic's live subscribers. One that cannot take it now drops back to
    /// catching up from the backlog, so a slow client never holds up the others or grows its queue.
    fn publish(&mut self, cx: Cx<'_, '_>, topic: Arc<str>, event: SharedEvent) {
        let high_water = self.config.stream_high_water;
        let now = cx.now();
        let Some(t) = self.hub.topic(&topic) else {
            log::error!("dropping event {} for {topic:?}: every topic has followers", event.id());
            return;
        };
        let evicted = match t.backlog.push(event.clone()) {
            Ok(evicted) => evicted,
            Err(e) => {
                log::error!("dropping event for {topic:?}: {e}");
                return;
            }
        };
        self.hub.published = event.seq();
        let Service { hub, conns, .. } = self;
        let Some(t) = hub.topics.get_mut(&topic) else { return };
        if evicted > 0 {
            // A subscriber still catching up whose next events were just evicted can never be served
            // losslessly: cut it off now, so that it resumes and is told, rather than when it next reads.
            let through = t.backlog.evicted_through();
            for &id in &t.catching_up {
                let behind = conns.get(id.index()).and_then(Option::as_ref).filter(|c| c.id == id).is_some_and(|c| {
                    matches!(&c.state, State::Streaming(s) if matches!(&s.source,
                        Source::Subscription(sub) if sub.cursor.max(sub.announced_gap) < through))
                });
                if behind {
                    log::warn!("stream {id} fell behind the backlog of {topic:?}; closing it so that it resumes");
                    cx.close(id);
                }
            }
        }
        let mut behind = Vec::new();
        for &id in &t.live {
            let Some(conn) = conns.get_mut(id.index()).and_then(Option::as_mut).filter(|c| c.id == id) else {
                continue;
            };
            let State::Streaming(stream) = &mut conn.state else { continue };
            let Source::Subscription(sub) = &mut stream.source else { continue };
            let range = frame_range(&event, stream.chunked);
            let fits = |cx: &mut Context<'_, Msg>| cx.queued(id).is_some_and(|q| q + range.len() <= high_water);
            // Output waits for the end of the turn; a subscriber is only behind if its socket will not take
            // what is queued now.
            let fits = fits(cx) || {
                cx.flush(id);
                fits(cx)
            };
            if fits && cx.write_shared(id, event.bytes(), range).is_ok() {
                sub.cursor = event.seq();
                stream.keep_alive.record_activity(now);
            } else {
                sub.live = false;
                behind.push(id);
            }
        }
        for id in behind {
            let Some(Source::Subscription(sub)) = self.stream_mut(id).map(|s| &s.source) else { continue };
            for topic in sub.topics.clone() {
                if let Some(t) = self.hub.topics.get_mut(&topic) {
                    t.live.remove(&id);
                    t.catching_up.insert(id);
                }
            }
            cx.notify_drained(id);
        }
    }

    /// Ends a stream: an optional `error` event, the chunked terminator, then the next request or a close.
    fn finish_stream(&mut self, cx: Cx<'_, '_>, id: ConnId, error: Option<&str>) {
        let Some(c) = self.conn_mut(id) else { return };
        let State::Streaming(stream) = std::mem::replace(&mut c.state, State::Closing) else {
            return;
        };
        self.release_stream(cx, id, &stream);
        if let Some(message) = error {
            let mut body = Vec::new();
            if let Ok(event) =
                Event::new().event("error").and_then(|e| e.json(&serde_json::json!({ "error": message })))
            {
                event.encode(&mut body);
            }
            let _ = write_body(cx, id, stream.chunked, &body);
        }
        if stream.chunked && cx.write(id, LAST_CHUNK).is_err() {
            cx.close(id);
            return;
        }
        if stream.reuse && error.is_none() && !self.shutting_down {
            self.after_response(cx, id, true);
            self.process_input(cx, id);
        } else {
            cx.close_after_flush(id);
        }
    }

    fn begin_shutdown(&mut self, cx: Cx<'_, '_>) {
        if self.shutting_down {
            return;
        }
        log::info!("shutting down: {} connections open", cx.connection_count());
        self.shutting_down = true;
        cx.stop_accepting();
        let mut farewell = Vec::new();
        if let Some(event) = &self.config.shutdown_event {
            event.encode(&mut farewell);
        }
        for id in cx.connections() {
            let Some(c) = self.conn_mut(id) else { continue };
            match c.state {
                State::Streaming(_) => {
                    let mut body = farewell.clone();
                    self.emit(cx, id, &mut body);
                    self.finish_stream(cx, id, None);
                }
                State::Reading if c.input.is_empty() => cx.close(id),
                State::Reading | State::Closing => cx.close_after_flush(id),
            }
        }
        if cx.connection_count() == 0 {
            cx.stop();
        } else {
            let at = cx.now() + self.config.shutdown_grace;
            cx.set_timer(at, SHUTDOWN_KEY);
        }
    }
}

/// The part of a shared event a stream sends: all of it (chunk framing included) on chunked streams.
fn frame_range(event: &SharedEvent, chunked: bool) -> std::ops::Range<usize> {
    if chunked { 0..event.bytes().len() } else { event.body_range() }
}

/// The event that opens a stream whose resume was not lossless.
fn reset_notice(reason: &str, last_event_id: Option<&str>, oldest_id: Option<&str>) -> Event {
    let data = serde_json::json!({ "reason": reason, "last_event_id": last_event_id, "oldest_id": oldest_id });
    match Event::new().event("reset").and_then(|e| e.json(&data)) {
        Ok(event) => event,
        // "reset" has no line break and JSON values always serialize: unreachable, but never worth a panic.
        Err(_) => Event::new().data(reason),
    }
}

/// Frames `bytes` as one chunk when `chunked`, and queues it whole or not at all.
fn write_body(cx: Cx<'_, '_>, id: ConnId, chunked: bool, bytes: &[u8]) -> bool {
    if !chunked {
        return cx.write(id, bytes).is_ok();
    }
    if bytes.is_empty() {
        return true;
    }
    let mut header = Vec::with_capacity(18);
    write_chunk_header(&mut header, bytes.len());
    cx.write_parts(id, &[&header, bytes, CHUNK_END]).is_ok()
}

fn build_head(
    status: StatusCode,
    version: Version,
    framing: BodyFraming,
    keep_alive: bool,
    headers: &[(String, String)],
) -> ResponseHead {
    let mut head = ResponseHead::new(status).version(version).framing(framing).keep_alive(keep_alive);
    for (name, value) in headers {
        match head.clone().header(name, value) {
            Ok(h) => head = h,
            // Responses validate headers as they are set, so this is a bug in the server; never send it.
            Err(e) => log::error!("dropping invalid response header {name:?}: {e}"),
        }
    }
    head
}

impl Handler for Service {
    type Message = Msg;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg>, id: ConnId) {
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || None);
        }
        self.conns[id.index()] = Some(Conn {
            id,
            input: Vec::new(),
            parser: RequestParser::new(self.config.limits.clone()),
            state: State::Reading,
            deadline: None,
            deadline_idle: false,
        });
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.arm_deadline(cx, id, false);
    }

    fn on_data(&mut self, cx: &mut Context<'_, Msg>, id: ConnId, data: &[u8]) {
        let max_buffered = self.config.limits.max_head_bytes;
        let Some(c) = self.conn_mut(id) else { return };
        match c.state {
            State::Reading => {
                let starts_request = c.input.is_empty() && c.deadline_idle;
                c.input.extend_from_slice(data);
                if starts_request {
                    self.arm_deadline(cx, id, false);
                }
                self.process_input(cx, id);
            }
            State::Streaming(_) => {
                // Clients have nothing to say during a stream except, after a finite one, their next request;
                // hold that much and no more.
                if c.input.len() + data.len() > max_buffered {
                    log::debug!("connection {id}: too much input during a stream; closing");
                    cx.close(id);
                } else {
                    c.input.extend_from_slice(data);
                }
            }
            State::Closing => {}
        }
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_, Msg>, id: ConnId) {
        match self.conn_mut(id).map(|c| matches!(c.state, State::Streaming(_))) {
            // The client of a stream has nothing more to send, so EOF means it left.
            Some(true) => cx.close(id),
            // A client may half-close after its request: answer it, then close.
            _ => cx.close_after_flush(id),
        }
    }

    fn on_drained(&mut self, cx: &mut Context<'_, Msg>, id: ConnId) {
        self.pump(cx, id);
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Msg>, timer: TimerId, key: u64) {
        if key == SHUTDOWN_KEY {
            log::warn!("shutdown grace period over: closing {} connections", cx.connection_count());
            cx.stop();
            return;
        }
        let id = ConnId::from_u64(key);
        let Some(c) = self.conn_mut(id) else { return };
        if c.deadline == Some(timer) {
            c.deadline = None;
            if c.input.is_empty() && !c.parser.in_body() {
                cx.close(id);
            } else {
                log::debug!("connection {id}: request not received in time");
                let timeout = Response::error(StatusCode::REQUEST_TIMEOUT, "request not received in time");
                self.respond(cx, id, Version::Http11, timeout, false, false);
            }
            return;
        }
        let Some(stream) = self.stream_mut(id) else {
            return;
        };
        if stream.tick_timer == Some(timer) {
            self.tick(cx, id);
        } else if stream.keep_alive_timer == Some(timer) {
            self.keep_alive(cx, id);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg>, msg: Msg) {
        match msg {
            Msg::ChannelReady(id) => self.pump(cx, id),
            Msg::Shutdown => self.begin_shutdown(cx),
            Msg::Publish { topic, event } => self.publish(cx, topic, event),
        }
    }

    fn on_close(&mut self, cx: &mut Context<'_, Msg>, id: ConnId, reason: CloseReason) {
        log::trace!("connection {id} closed: {reason:?}");
        let Some(slot) = self.conns.get_mut(id.index()) else {
            return;
        };
        let Some(c) = slot.take_if(|c| c.id == id) else {
            return;
        };
        if let Some(t) = c.deadline {
            cx.cancel_timer(t);
        }
        if let State::Streaming(stream) = &c.state {
            self.release_stream(cx, id, stream);
        }
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        if self.shutting_down && cx.connection_count() == 0 {
            cx.stop();
        }
    }
}

/// An SSE server: one event loop serving a [`Router`].
pub struct Server {
    /// One loop per worker; all share the listening port.
    event_loops: Vec<EventLoop<Service>>,
    handle: ServerHandle,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.handle.addr).finish_non_exhaustive()
    }
}

fn overload_response() -> Vec<u8> {
    let mut buf = Vec::new();
    let r = Response::error(StatusCode::SERVICE_UNAVAILABLE, "server is at its connection limit; retry shortly")
        .header("Retry-After", "1");
    build_head(r.status, Version::Http11, BodyFraming::Length(r.body.len() as u64), false, &r.headers).write(&mut buf);
    buf.extend_from_slice(&r.body);
    buf
}

impl Server {
    /// Binds the listener and prepares the loop; nothing is served until [`run`](Self::run) or
    /// [`spawn`](Self::spawn).
    ///
    /// # Errors
    /// Binding the address or creating the poller failed.
    pub fn bind(config: ServerConfig, router: Router) -> io::Result<Server> {
        Server::bind_with_hub(config, router, &Hub::new(crate::HubConfig::default()))
    }

    /// Like [`bind`](Self::bind), serving `hub`'s topics: events published through it reach the streams
    /// this server's handlers opened with [`Sse::subscribe`].
    ///
    /// # Errors
    /// As for [`bind`](Self::bind), and `AlreadyExists` if the hub serves another running server.
    pub fn bind_with_hub(config: ServerConfig, router: Router, hub: &Hub) -> io::Result<Server> {
        let workers = config.workers.max(1);
        let loop_config = LoopConfig {
            // The kernel spreads connections over the loops, so each takes its share of the limit.
            max_connections: config.max_connections.div_ceil(workers),
            overload_response: overload_response(),
            write_queue_limit: config.write_queue_limit,
            low_water: config.stream_high_water / 2,
            tcp_keepalive: config.tcp_keepalive,
            flush_timeout: config.flush_timeout,
            linger: config.linger,
            write_timeout: config.write_timeout,
            ..LoopConfig::default()
        };
        let router = Arc::new(router);
        let stats = Arc::new(Stats::default());
        let mut addr = config.addr;
        let mut event_loops = Vec::with_capacity(workers);
        for _ in 0..workers {
            // With several loops each has its own listener on the same port (SO_REUSEPORT); the first one
            // settles the port when the configuration asked for port 0.
            let listener = conduit_net::bind(addr, config.backlog, workers > 1)?;
            addr = listener.local_addr()?;
            let service = Service {
                router: Arc::clone(&router),
                config: config.clone(),
                conns: Vec::new(),
                scratch: Vec::new(),
                stats: Arc::clone(&stats),
                hub: HubState::new(hub.config().clone()),
                shutting_down: false,
            };
            event_loops.push(EventLoop::new(listener, loop_config.clone(), service)?);
        }
        let remotes: Vec<Remote<Msg>> = event_loops.iter().map(EventLoop::remote).collect();
        hub.attach(remotes.clone()).map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e))?;
        let handle = ServerHandle { addr, remotes, stats, hub: hub.clone() };
        Ok(Server { event_loops, handle })
    }

    /// The bound address (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// A handle to stop the server and read its counters from other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until [`ServerHandle::shutdown`] completes: the first loop on this thread, any others on threads
    /// of their own.
    ///
    /// # Errors
    /// Polling the OS failed, or a worker thread could not be started or panicked.
    pub fn run(self) -> io::Result<()> {
        let Server { mut event_loops, handle } = self;
        log::info!("serving on http://{} with {} event loop(s)", handle.addr, event_loops.len());
        let mut first = event_loops.remove(0);
        let mut workers = Vec::new();
        for (i, mut event_loop) in event_loops.into_iter().enumerate() {
            let spawned =
                std::thread::Builder::new().name(format!("conduit-loop-{}", i + 1)).spawn(move || event_loop.run());
            match spawned {
                Ok(thread) => workers.push(thread),
                Err(e) => {
                    handle.shutdown();
                    drop(first);
                    join_all(workers)?;
                    return Err(e);
                }
            }
        }
        let result = first.run();
        if result.is_err() {
            // One loop failing takes the server down rather than leaving it half-served.
            handle.shutdown();
        }
        let joined = join_all(workers);
        result.and(joined)
    }

    /// Serves on a new thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(self) -> io::Result<SpawnedServer> {
        let handle = self.handle.clone();
        let thread = std::thread::Builder::new().name("conduit-loop".into()).spawn(move || self.run())?;
        Ok(SpawnedServer { handle, thread: Some(thread) })
    }
}

/// Controls a running server from any thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    /// One per event loop.
    remotes: Vec<Remote<Msg>>,
    stats: Arc<Stats>,
    hub: Hub,
}

impl ServerHandle {
    /// Begins a graceful shutdown: stop accepting, end every stream cleanly, let the output flush for up to
    /// the configured grace period, then stop. Returns false if the server had already stopped.
    pub fn shutdown(&self) -> bool {
        // Every loop is told, even after one refused (so no short-circuiting `any`).
        let mut told = false;
        for remote in &self.remotes {
            told |= remote.send_past_limit(Msg::Shutdown).is_ok();
        }
        told
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub whose topics this server serves.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Open event streams.
    pub fn streams(&self) -> usize {
        self.stats.streams.load(Ordering::Relaxed)
    }

    /// Requests parsed since the server started.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// True while the server runs.
    pub fn is_running(&self) -> bool {
        self.remotes.iter().any(Remote::is_open)
    }
}

/// Waits for worker threads, returning the first error.
fn join_all(threads: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut result = Ok(());
    for thread in threads {
        let outcome = thread.join().unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")));
        result = result.and(outcome);
    }
    result
}

/// A server running on its own thread. Dropping it shuts the server down and waits for the thread.
#[derive(Debug)]
pub struct SpawnedServer {
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SpawnedServer {
    /// The control handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Shuts down gracefully and waits for the loop's thread to end.
    ///
    /// # Errors
    /// The loop failed, or its thread panicked.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.join_thread()
    }

    /// Waits for the server to stop by itself (after another handle's `shutdown`).
    ///
    /// # Errors
    /// As for [`shutdown`](Self::shutdown).
    pub fn join(mut self) -> io::Result<()> {
        self.join_thread()
    }

    fn join_thread(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(io::Error::other("the event loop thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
            if let Err(e) = self.join_thread() {
                log::error!("server stopped with an error: {e}");
            }
        }
    }
}
