//! The [`Handler`] the server runs on each event loop: it takes the loop's callbacks (bytes in, timers, drained
//! queues, messages, closes) and moves each connection through its states, handing requests to
//! [`dispatch`](crate::dispatch), streams to [`streaming`](crate::streaming) and hub events to
//! [`fanout`](crate::fanout).

use crate::access_log::{self, RequestLog, peer};
use crate::config::ServerConfig;
use crate::connection::{Answering, Conn, Conns, Next, State, Waiting};
use crate::dispatch::{admit, dispatch};
use crate::fanout;
use crate::framing::{build_head, encode_response};
use crate::health::{self, Readiness};
use crate::hub::OLDEST_EVENT_ID_HEADER;
use crate::message::{LoopContext, Msg};
use crate::metrics::{Disconnect, LoopCounters, StreamMeter};
use crate::reply::{Answer, Deferred, Reply};
use crate::response::Response;
use crate::router::Router;
use crate::sse::{Source, Sse};
use crate::stats::Stats;
use crate::streaming::{After, Stream};
use crate::topics::HubState;
use conduit_http::{AnnouncedBody, BodyFraming, ParseError, Request, RequestParser, StatusCode, Version};
use conduit_net::{CloseReason, ConnId, Context, Handler, TimerId, WriteError};
use conduit_sse::{Event, KeepAlive, STREAM_HEADERS};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Timer keys of the shutdown grace period and of the delay before it; connection timers use
/// [`ConnId::to_u64`], which never equals them in practice (it would need a generation of `u32::MAX` and an
/// index within one of it).
const SHUTDOWN_KEY: u64 = u64::MAX;
const SHUTDOWN_DELAY_KEY: u64 = u64::MAX - 1;

/// One event loop's server state.
pub(crate) struct Service {
    router: Arc<Router>,
    config: ServerConfig,
    conns: Conns,
    /// Reused buffer for encoding events.
    scratch: Vec<u8>,
    stats: Arc<Stats>,
    hub: HubState,
    shutting_down: bool,
    /// Asked to shut down, and serving out `shutdown_delay` first (not ready, no keep-alive).
    draining: bool,
    /// This loop's metrics, when they are on.
    counters: Option<Arc<LoopCounters>>,
}

impl Service {
    pub(crate) fn new(
        router: Arc<Router>,
        config: ServerConfig,
        stats: Arc<Stats>,
        hub: HubState,
        counters: Option<Arc<LoopCounters>>,
    ) -> Service {
        Service {
            router,
            config,
            conns: Conns::default(),
            scratch: Vec::new(),
            stats,
            hub,
            shutting_down: false,
            draining: false,
            counters,
        }
    }

    /// Closes `id` after a write was refused: a full queue means the client is not reading; a closed
    /// connection is already ending for a reason of its own.
    fn write_refused(&mut self, cx: &mut LoopContext<'_>, id: ConnId, error: WriteError) {
        if let (WriteError::Full(full), Some(c)) = (error, self.conns.get_mut(id)) {
            log::warn!("closing connection {id} to {}: the client is not reading ({full})", peer(c.peer));
            c.ending(Disconnect::SlowClient);
        }
        cx.close(id);
    }

    /// Counts a response with `status` and a body of `bytes`, and logs its request's access-log line.
    fn record_response(&mut self, id: ConnId, status: StatusCode, bytes: usize) {
        if let Some(counters) = &self.counters {
            counters.response(status);
        }
        let Some(level) = self.config.access_log else { return };
        let Some(c) = self.conns.get_mut(id) else { return };
        match c.request_log.take() {
            Some(log) => log.log(&log.response_line(c.peer, status.as_u16(), bytes, Instant::now())),
            // No request was parsed (a bad request, or one that never arrived whole): there is no method or path.
            None if log::log_enabled!(target: access_log::TARGET, level) => {
                log::log!(target: access_log::TARGET, level, "{}", access_log::unparsed_line(c.peer, status.as_u16(), bytes));
            }
            None => {}
        }
    }

    fn arm_deadline(&mut self, cx: &mut LoopContext<'_>, id: ConnId, idle: bool) {
        let after = if idle { self.config.idle_timeout } else { self.config.request_timeout };
        if let Some(c) = self.conns.get_mut(id) {
            c.arm_deadline(cx, after, idle);
        }
    }

    /// Parses and answers every complete request buffered on the connection.
    fn process_input(&mut self, cx: &mut LoopContext<'_>, id: ConnId) {
        loop {
            // A connection being closed (its write queue overflowed, say) answers nothing more: running the
            // requests pipelined behind would do work nobody sees, and clients retry unanswered requests.
            if !cx.is_open(id) {
                break;
            }
            let Some(c) = self.conns.get_mut(id) else { return };
            match c.next_request() {
                Next::Request { request, admitted } => {
                    c.disarm_deadline(cx);
                    // The body is in the request now; what it reserved goes back to the budget.
                    self.stats.release_body(std::mem::take(&mut c.body_reserved));
                    count_request(&self.config, &self.stats, c, &request);
                    match c.refused.take() {
                        // Refused from its head; its body was read only to keep the connection usable.
                        Some(refused) => {
                            let to = Answering::of(&request, request.keep_alive() && !self.shutting_down);
                            self.respond(cx, id, to, *refused);
                        }
                        None => self.answer(cx, id, request, admitted),
                    }
                }
                Next::Head(announced) => {
                    if !self.admit(cx, id, announced) {
                        break;
                    }
                }
                Next::Partial { continue_due } => {
                    if continue_due {
                        let _ = cx.write(id, b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    break;
                }
                Next::Invalid(e) => {
                    log::debug!("connection {id}: bad request: {e}");
                    c.ending(Disconnect::Error);
                    self.stats.release_body(std::mem::take(&mut c.body_reserved));
                    self.reject(cx, id, &e);
                    break;
                }
                Next::Nothing => break,
            }
        }
        let Some(c) = self.conns.get_mut(id) else { return };
        if c.is_streaming() && c.input.len() > self.config.limits.max_head_bytes {
            // What a client may send behind a stream is its next request's head; a whole read of more than
            // that is not a request worth keeping for the life of the stream.
            log::debug!("connection {id}: too much input behind a stream; closing");
            c.ending(Disconnect::Error);
            cx.close(id);
            return;
        }
        c.shrink_input();
    }

    /// Decides from the head of a request that announced a body whether to read the body: the host, CORS,
    /// the route, its guard and body limit, then the server-wide body budget. A refused request is answered at
    /// once and its connection closed once the answer is sent (its body is never read). True if the body is to
    /// be read.
    fn admit(&mut self, cx: &mut LoopContext<'_>, id: ConnId, announced: AnnouncedBody) -> bool {
        let max_body = self.config.limits.max_body_bytes;
        let Some(c) = self.conns.get_mut(id) else { return false };
        let Some(head) = c.head_mut() else { return false };
        let length = match announced {
            AnnouncedBody::Length(n) => Some(n),
            AnnouncedBody::None | AnnouncedBody::Chunked => None,
        };
        let decision = match misdirected(&self.config, head) {
            Some(refused) => Err(refused),
            None => admit(&self.router, &self.config, head, length),
        };
        let refused = match decision {
            Ok(limit) => {
                let limit = limit.unwrap_or(max_body).min(max_body);
                let reserve = length.map_or(limit, |n| usize::try_from(n).unwrap_or(usize::MAX).min(limit));
                if self.stats.reserve_body(reserve, self.config.max_body_memory) {
                    c.body_reserved = reserve;
                    match c.admit(limit) {
                        Ok(()) => return true,
                        Err(e) => Response::error(e.status(), e),
                    }
                } else {
                    log::warn!(
                        "connection {id}: request bodies hold {} bytes, the most allowed",
                        self.config.max_body_memory
                    );
                    Response::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many request bodies in progress; retry shortly",
                    )
                    .header("Retry-After", "1")
                }
            }
            Err(refused) => {
                // A small body is read and dropped so the connection can carry the next request; a large one
                // is not worth reading.
                let small = length.is_some_and(|n| n <= self.config.limits.max_head_bytes as u64);
                let reserve = length.map_or(0, |n| n as usize);
                // A client waiting for `100 Continue` is not told to send a body that would only be dropped.
                let waits = head.header("expect").is_some();
                if small && !waits && head.keep_alive() && self.stats.reserve_body(reserve, self.config.max_body_memory)
                {
                    c.body_reserved = reserve;
                    if c.admit(reserve).is_ok() {
                        c.refused = Some(Box::new(refused));
                        return true;
                    }
                }
                refused
            }
        };
        self.stats.release_body(std::mem::take(&mut c.body_reserved));
        let Some(head) = c.refuse() else { return false };
        c.disarm_deadline(cx);
        count_request(&self.config, &self.stats, c, &head);
        // The unread body is still on its way: the connection cannot carry another request.
        self.respond(cx, id, Answering::of(&head, false), refused);
        false
    }

    fn reject(&mut self, cx: &mut LoopContext<'_>, id: ConnId, error: &ParseError) {
        self.respond(cx, id, Answering::NO_REQUEST, Response::error(error.status(), error));
    }

    /// Runs a request and sends its reply; `admitted` if its head already passed [`admit`](Self::admit).
    fn answer(&mut self, cx: &mut LoopContext<'_>, id: ConnId, mut req: Request, admitted: bool) {
        let to = Answering::of(&req, req.keep_alive() && !self.shutting_down);
        if let Some(check) = health::check_for(&self.config.health, req.path()) {
            if let Some(log) = self.conns.get_mut(id).and_then(|c| c.request_log.as_mut()) {
                log.quieter();
            }
            let readiness = Readiness {
                accepting: cx.is_accepting(),
                shutting_down: self.shutting_down || self.draining,
                backbone_up: self.hub.hub.backbone_state(),
            };
            let response = health::answer(check, &req, readiness);
            return self.send_reply(cx, id, to, Reply::Response(response));
        }
        let reply = match misdirected(&self.config, &req) {
            Some(refused) => Reply::Response(refused),
            None => dispatch(&self.router, &self.config, &mut req, admitted),
        };
        self.send_reply(cx, id, to, reply);
    }

    fn send_reply(&mut self, cx: &mut LoopContext<'_>, id: ConnId, to: Answering, reply: Reply) {
        let to = Answering { keep_alive: to.keep_alive && !self.shutting_down && !self.draining, ..to };
        match reply {
            Reply::Response(r) => self.respond(cx, id, to, r),
            Reply::Stream(sse) => self.start_stream(cx, id, to, sse),
            Reply::Deferred(deferred) => self.wait_for(cx, id, to, deferred),
        }
    }

    /// A handler answers later: the connection waits (reading nothing further) until the answer comes, the
    /// responder is dropped (`500`) or `deferred_timeout` passes (`504`).
    fn wait_for(&mut self, cx: &mut LoopContext<'_>, id: ConnId, to: Answering, deferred: Deferred) {
        match deferred.attach(cx.remote(), id) {
            Answer::Ready(reply) => {
                let reply = with_headers(reply, &deferred.headers);
                self.send_reply(cx, id, to, reply);
            }
            Answer::Abandoned => self.respond(cx, id, to, abandoned()),
            Answer::Pending => {
                let timer = cx.set_timer(cx.now() + self.config.deferred_timeout, id.to_u64());
                let Some(c) = self.conns.get_mut(id) else { return };
                c.state = State::Waiting(Box::new(Waiting { deferred, to, timer }));
            }
        }
    }

    /// The loop was told that a deferred answer is in, or its time is up (`timed_out`).
    fn deferred_done(&mut self, cx: &mut LoopContext<'_>, id: ConnId, timed_out: bool) {
        let Some(c) = self.conns.get_mut(id) else { return };
        let State::Waiting(waiting) = &c.state else { return };
        let answer = if timed_out { Answer::Abandoned } else { waiting.deferred.take() };
        if matches!(answer, Answer::Pending) {
            return;
        }
        let State::Waiting(waiting) = std::mem::replace(&mut c.state, State::Reading) else { return };
        let Waiting { deferred, to, timer } = *waiting;
        if !timed_out {
            cx.cancel_timer(timer);
        }
        match answer {
            Answer::Ready(reply) => {
                let reply = with_headers(reply, &deferred.headers);
                self.send_reply(cx, id, to, reply);
            }
            _ if timed_out => {
                deferred.close();
                log::warn!("connection {id}: no answer within {:?}", self.config.deferred_timeout);
                let late = Response::error(StatusCode::GATEWAY_TIMEOUT, "no answer in time");
                self.respond(cx, id, to, late);
            }
            _ => self.respond(cx, id, to, abandoned()),
        }
        self.process_input(cx, id);
    }

    /// After a complete response: wait for the next request, or close once it is sent.
    fn after_response(&mut self, cx: &mut LoopContext<'_>, id: ConnId, keep_alive: bool) {
        let Some(c) = self.conns.get_mut(id) else { return };
        if keep_alive {
            let limits = &self.config.limits;
            c.read_requests(|| RequestParser::new(limits.clone()));
            self.arm_deadline(cx, id, true);
        } else {
            c.state = State::Closing;
            c.ending(Disconnect::Completed);
            cx.close_after_flush(id);
        }
    }

    fn respond(&mut self, cx: &mut LoopContext<'_>, id: ConnId, to: Answering, r: Response) {
        if let Err(e) = cx.write_vec(id, encode_response(&r, to.version, to.keep_alive, to.head_only)) {
            return self.write_refused(cx, id, e);
        }
        self.record_response(id, r.status, if to.head_only { 0 } else { r.body.len() });
        self.after_response(cx, id, to.keep_alive);
    }

    fn start_stream(&mut self, cx: &mut LoopContext<'_>, id: ConnId, to: Answering, mut sse: Sse) {
        let Answering { version, keep_alive, head_only } = to;
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
        let mut reset_event = None;
        if let Source::Subscription(sub) = &mut sse.source {
            let resuming = sub.last_event_id.is_some();
            match fanout::plan(&mut self.hub, id, sub) {
                // A subscription that waits (on an external backbone) learns its reset when it starts.
                Ok(None) => {}
                Ok(Some(start)) => {
                    if let (true, Some(counters)) = (resuming, &self.counters) {
                        counters.resume(start.reset.is_none());
                    }
                    reset_event = start.reset;
                    if let Some(oldest) = start.oldest_id {
                        headers.push((OLDEST_EVENT_ID_HEADER.to_owned(), oldest));
                    }
                }
                Err(response) => return self.respond(cx, id, to, response),
            }
        }
        let mut head_bytes = Vec::with_capacity(256);
        build_head(StatusCode::OK, version, framing, reuse, &headers).write(&mut head_bytes);
        let written = cx.write_vec(id, head_bytes);
        if written.is_err() || head_only {
            if let Source::Subscription(sub) = &mut sse.source {
                fanout::unfollow(&mut self.hub, id, sub);
            }
            match written {
                Ok(()) => {
                    self.record_response(id, StatusCode::OK, 0);
                    self.after_response(cx, id, reuse);
                }
                Err(e) => self.write_refused(cx, id, e),
            }
            return;
        }
        if let Some(counters) = &self.counters {
            counters.response(StatusCode::OK);
        }

        let keep_alive = match sse.keep_alive.unwrap_or(self.config.keep_alive) {
            Some(interval) => KeepAlive::new(interval, cx.now()),
            None => KeepAlive::disabled(),
        };
        if let Source::Subscription(sub) = &sse.source {
            fanout::start(&mut self.hub, id, sub);
        }
        let interval = matches!(sse.source, Source::Interval { .. });
        let retry = sse.retry.or(self.config.retry);
        let meter = StreamMeter::new(self.counters.clone());
        let stream = Stream::start(cx, id, sse.source, chunked, reuse, keep_alive, meter);
        let Some(c) = self.conns.get_mut(id) else { return };
        c.start_streaming(stream);
        self.stats.streams.fetch_add(1, Ordering::Relaxed);
        if retry.is_some() || reset_event.is_some() {
            let mut body = std::mem::take(&mut self.scratch);
            if let Some(retry) = retry {
                Event::new().retry(retry).encode(&mut body);
            }
            let reset = reset_event.is_some();
            if let Some(reset) = reset_event {
                reset.encode(&mut body);
            }
            if let Some(stream) = self.conns.stream_mut(id) {
                stream.unsent_events = u64::from(reset);
                stream.emit(cx, id, &mut body);
            }
            body.clear();
            self.scratch = body;
        }
        if interval {
            self.tick(cx, id);
        } else {
            self.pump(cx, id);
        }
    }

    /// Ends the subscriptions that the fan-out found have sent the event they end after.
    fn end_finished_subscriptions(&mut self, cx: &mut LoopContext<'_>) {
        for id in std::mem::take(&mut self.hub.ended) {
            self.finish_stream(cx, id, None);
        }
    }

    /// Produces what a stream's source has, up to the high-water mark.
    fn pump(&mut self, cx: &mut LoopContext<'_>, id: ConnId) {
        let high_water = self.config.stream_high_water;
        let Some(queued) = cx.queued(id) else { return };
        let Some(stream) = self.conns.stream_mut(id) else { return };
        if matches!(stream.source, Source::Subscription(_)) {
            fanout::catch_up(cx, &mut self.conns, &mut self.hub, id, high_water);
            return self.end_finished_subscriptions(cx);
        }
        let mut body = std::mem::take(&mut self.scratch);
        let after = stream.pull(queued, high_water, &mut body);
        self.send_and_continue(cx, id, body, after);
    }

    /// Runs an interval source's callback once.
    fn tick(&mut self, cx: &mut LoopContext<'_>, id: ConnId) {
        let now = cx.now();
        let Some(stream) = self.conns.stream_mut(id) else { return };
        let mut body = std::mem::take(&mut self.scratch);
        let after = stream.tick(now, &mut body);
        self.send_and_continue(cx, id, body, after);
    }

    /// Sends what a source produced (returning the buffer for reuse), then does what the source asked next.
    fn send_and_continue(&mut self, cx: &mut LoopContext<'_>, id: ConnId, mut body: Vec<u8>, after: After) {
        let alive = match self.conns.stream_mut(id) {
            Some(stream) => stream.emit(cx, id, &mut body),
            None => false,
        };
        body.clear();
        self.scratch = body;
        if !alive {
            return;
        }
        match after {
            After::Failed(what) => {
                log::error!("stream {id} ended: {what}");
                self.finish_stream(cx, id, Some("internal error"));
            }
            After::End => self.finish_stream(cx, id, None),
            After::More => cx.notify_drained(id),
            After::Wait => {}
        }
    }

    /// Frees what a stream holds: timers, its channel, its place among its topics' followers.
    fn release_stream(&mut self, cx: &mut LoopContext<'_>, id: ConnId, stream: &mut Stream) {
        stream.release(cx);
        if let Source::Subscription(sub) = &mut stream.source {
            fanout::unfollow(&mut self.hub, id, sub);
        }
        self.stats.streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// Ends a stream: an optional `error` event, the chunked terminator, then the next request or a close.
    fn finish_stream(&mut self, cx: &mut LoopContext<'_>, id: ConnId, error: Option<&str>) {
        let Some(c) = self.conns.get_mut(id) else { return };
        let State::Streaming(mut stream) = std::mem::replace(&mut c.state, State::Closing) else {
            return;
        };
        self.release_stream(cx, id, &mut stream);
        let ended = stream.write_end(cx, id, error);
        let end = match (error, self.shutting_down) {
            (Some(_), _) => Disconnect::Error,
            (None, true) => Disconnect::Shutdown,
            (None, false) => Disconnect::Completed,
        };
        let Some(c) = self.conns.get_mut(id) else { return };
        log_stream_end(c.request_log.take(), c.peer, &stream, end);
        if !ended {
            c.ending(Disconnect::SlowClient);
            cx.close(id);
            return;
        }
        if stream.reuse && error.is_none() && !self.shutting_down && !self.draining {
            self.after_response(cx, id, true);
            self.process_input(cx, id);
        } else {
            c.ending(end);
            cx.close_after_flush(id);
        }
    }

    fn begin_shutdown(&mut self, cx: &mut LoopContext<'_>) {
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
            let Some(c) = self.conns.get_mut(id) else { continue };
            c.ending(Disconnect::Shutdown);
            match &mut c.state {
                State::Streaming(stream) => {
                    let mut body = farewell.clone();
                    stream.unsent_events = u64::from(self.config.shutdown_event.is_some());
                    stream.emit(cx, id, &mut body);
                    self.finish_stream(cx, id, None);
                }
                State::Reading if c.input.is_empty() => cx.close(id),
                State::Reading | State::Closing => cx.close_after_flush(id),
                // Answered within the grace period, then closed (`send_reply` no longer keeps connections).
                State::Waiting(_) => {}
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

/// A request whose head is complete is counted, and its access-log entry begun (when the log is on).
fn count_request(config: &ServerConfig, stats: &Stats, c: &mut Conn, request: &Request) {
    if let Some(level) = config.access_log {
        c.request_log = RequestLog::begin(request, level);
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
}

/// The answer to a request naming a host the server does not serve (`ServerConfig::allowed_hosts`).
fn misdirected(config: &ServerConfig, req: &Request) -> Option<Response> {
    if config.allowed_hosts.is_empty() || config.allowed_hosts.allows_request(req) {
        return None;
    }
    log::debug!("refused {} {}: host {:?} is not served here", req.method(), req.path(), req.host());
    Some(Response::error(StatusCode::MISDIRECTED_REQUEST, "this server does not serve that host"))
}

/// `reply` with `headers` added (those a deferred reply collected before its answer came).
fn with_headers(reply: Reply, headers: &[(String, String)]) -> Reply {
    headers.iter().fold(reply, |reply, (name, value)| reply.header(name, value))
}

/// The answer to a request whose responder was dropped without answering.
fn abandoned() -> Response {
    Response::error(StatusCode::INTERNAL_SERVER_ERROR, "the handler gave no answer")
}

impl Handler for Service {
    type Message = Msg;

    fn on_connect(&mut self, cx: &mut Context<'_, Msg>, id: ConnId) {
        self.conns.insert(Conn::new(id, RequestParser::new(self.config.limits.clone()), cx.peer_addr(id)));
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.arm_deadline(cx, id, false);
    }

    fn on_data(&mut self, cx: &mut Context<'_, Msg>, id: ConnId, data: &[u8]) {
        let max_buffered = self.config.limits.max_head_bytes;
        let Some(c) = self.conns.get_mut(id) else { return };
        match c.state {
            State::Reading => {
                let starts_request = c.is_idle();
                c.input.extend_from_slice(data);
                if starts_request {
                    self.arm_deadline(cx, id, false);
                }
                self.process_input(cx, id);
            }
            State::Streaming(_) | State::Waiting(_) => {
                // Clients have nothing to say during a stream (or while their answer is prepared) except their
                // next request; hold that much and no more.
                if c.input.len() + data.len() > max_buffered {
                    log::debug!("connection {id}: too much input during a stream; closing");
                    c.ending(Disconnect::Error);
                    cx.close(id);
                } else {
                    c.input.extend_from_slice(data);
                }
            }
            State::Closing => {}
        }
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_, Msg>, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id) {
            c.ending(Disconnect::ClientGone);
        }
        match self.conns.get(id).map(|c| c.is_streaming() || matches!(c.state, State::Waiting(_))) {
            // The client of a stream, or of a request being answered later, has nothing more to send, so EOF
            // means it left (and a deferred answer's responder learns so).
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
        if key == SHUTDOWN_DELAY_KEY {
            return self.begin_shutdown(cx);
        }
        let id = ConnId::from_u64(key);
        let Some(c) = self.conns.get_mut(id) else { return };
        if c.take_deadline(timer) {
            if c.has_partial_request() {
                log::debug!("connection {id}: request not received in time");
                c.ending(Disconnect::RequestTimeout);
                let timeout = Response::error(StatusCode::REQUEST_TIMEOUT, "request not received in time");
                self.respond(cx, id, Answering::NO_REQUEST, timeout);
            } else {
                c.ending(if c.is_idle() { Disconnect::IdleTimeout } else { Disconnect::RequestTimeout });
                cx.close(id);
            }
            return;
        }
        if matches!(&c.state, State::Waiting(w) if w.timer == timer) {
            return self.deferred_done(cx, id, true);
        }
        let Some(stream) = c.stream_mut() else { return };
        if stream.is_tick(timer) {
            self.tick(cx, id);
        } else if stream.is_keep_alive(timer) {
            stream.keep_alive(cx, id);
        }
    }

    fn on_turn_end(&mut self, cx: &mut Context<'_, Msg>) {
        if let Some(counters) = &self.counters {
            counters.set_write_queue_bytes(cx.queued_total());
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg>, msg: Msg) {
        match msg {
            Msg::ChannelReady(id) => self.pump(cx, id),
            Msg::Answer(id) => self.deferred_done(cx, id, false),
            Msg::Shutdown => {
                let delay = self.config.shutdown_delay;
                if delay.is_zero() || self.draining || self.shutting_down {
                    // A second request does not wait out the delay.
                    self.begin_shutdown(cx);
                } else {
                    log::info!("shutting down in {delay:?}: not ready meanwhile");
                    self.draining = true;
                    let at = cx.now() + delay;
                    cx.set_timer(at, SHUTDOWN_DELAY_KEY);
                }
            }
            Msg::Publish { topic, event, published_at } => {
                let high_water = self.config.stream_high_water;
                fanout::deliver(cx, &mut self.conns, &mut self.hub, topic, event, high_water);
                if let Some(counters) = &self.counters {
                    counters.publish_to_write(published_at.elapsed());
                }
                self.end_finished_subscriptions(cx);
            }
            Msg::Forget { topic } => self.hub.forget(&topic),
            Msg::Backbone(event) => {
                let high_water = self.config.stream_high_water;
                fanout::on_backbone(cx, &mut self.conns, &mut self.hub, &event, high_water);
                self.end_finished_subscriptions(cx);
            }
        }
    }

    fn on_close(&mut self, cx: &mut Context<'_, Msg>, id: ConnId, reason: CloseReason) {
        let Some(mut c) = self.conns.remove(id) else { return };
        c.disarm_deadline(cx);
        self.stats.release_body(std::mem::take(&mut c.body_reserved));
        let cut_off = matches!(&c.state, State::Streaming(stream) if stream.cut_off);
        let why = Disconnect::of(reason, c.end, cut_off);
        if why == Disconnect::ClientGone {
            log::debug!("connection {id} from {}: the client disconnected", peer(c.peer));
        } else {
            log::trace!("connection {id} from {} closed: {} ({reason:?})", peer(c.peer), why.as_str());
        }
        if let Some(counters) = &self.counters {
            counters.disconnect(why);
        }
        match &mut c.state {
            State::Streaming(stream) => {
                self.release_stream(cx, id, stream);
                log_stream_end(c.request_log.take(), c.peer, stream, why);
            }
            State::Waiting(waiting) => {
                cx.cancel_timer(waiting.timer);
                waiting.deferred.close();
            }
            State::Reading | State::Closing => {}
        }
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        if self.shutting_down && cx.connection_count() == 0 {
            cx.stop();
        }
    }
}

/// Logs the access-log line of a stream that ended for `end` (when the access log is on).
fn log_stream_end(request_log: Option<Box<RequestLog>>, peer: Option<SocketAddr>, stream: &Stream, end: Disconnect) {
    if let Some(log) = request_log {
        log.log(&log.stream_line(peer, (stream.meter.events, stream.meter.bytes), end, Instant::now()));
    }
}
