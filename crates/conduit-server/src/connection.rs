//! A connection's state machine: reading a request (head and body, within a deadline), streaming, closing.
//!
//! ```text
//!            request parsed: respond            finite stream ends, client keeps the connection
//!   Reading ---------------------> Reading <---------------------------------------+
//!      |  stream started                                                            |
//!      +-------------------------> Streaming --------------------------------------+
//!      |  deferred reply            ^  the answer is a stream (or a response: back to Reading)
//!      +-------------------------> Waiting
//!      |  error / last response                  | stream ends without reuse, shutdown
//!      +-------------------------> Closing <-----+
//! ```
//!
//! While `Reading`, one deadline is armed: `request_timeout` once a request's first byte has arrived,
//! `idle_timeout` while waiting for it. The [`Conns`] table is indexed like the loop's own slab.

use crate::access_log::RequestLog;
use crate::message::LoopContext;
use crate::metrics::Disconnect;
use crate::reply::Deferred;
use crate::streaming::Stream;
use conduit_http::{AnnouncedBody, Method, ParseError, Parsed, Request, RequestParser, Version};
use conduit_net::{ConnId, TimerId};
use std::net::SocketAddr;
use std::time::Duration;

/// A connection's place in the HTTP exchange.
pub(crate) enum State {
    /// Waiting for (the rest of) a request head or body.
    Reading,
    /// Waiting for a handler's deferred answer from another thread.
    Waiting(Box<Waiting>),
    /// Sending an event stream.
    Streaming(Box<Stream>),
    /// The last response is queued; the connection closes once it is sent.
    Closing,
}

/// A request whose handler answers later.
/// How a request is to be answered, as the request decides it: in its HTTP version, keeping the connection for
/// another request or not, and with or without the body (`HEAD` gets the head only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answering {
    pub(crate) version: Version,
    pub(crate) keep_alive: bool,
    pub(crate) head_only: bool,
}

impl Answering {
    /// For an answer to no request that could be read (a parse error, a timeout): HTTP/1.1, then close.
    pub(crate) const NO_REQUEST: Answering =
        Answering { version: Version::Http11, keep_alive: false, head_only: false };

    /// `request`'s version and method; `keep_alive` as the caller decided it.
    pub(crate) fn of(request: &Request, keep_alive: bool) -> Self {
        Answering { version: request.version(), keep_alive, head_only: request.method() == &Method::Head }
    }
}

pub(crate) struct Waiting {
    pub(crate) deferred: Deferred,
    pub(crate) to: Answering,
    /// Armed for `deferred_timeout`.
    pub(crate) timer: TimerId,
}

/// One connection as the server sees it.
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    /// Received bytes not yet consumed by the parser.
    pub(crate) input: Vec<u8>,
    /// `None` while streaming: the connection has no request to parse until its stream ends, and thousands of
    /// open streams should not each keep a parser.
    parser: Option<Box<RequestParser>>,
    pub(crate) state: State,
    /// Request or idle deadline, armed while `Reading`.
    deadline: Option<TimerId>,
    /// The deadline is the idle one (no byte of a next request yet).
    deadline_idle: bool,
    pub(crate) peer: Option<SocketAddr>,
    /// Why the server is ending the connection, once it has decided to (see [`Disconnect::of`]).
    pub(crate) end: Option<Disconnect>,
    /// The request being answered, while the access log is on.
    pub(crate) request_log: Option<Box<RequestLog>>,
    /// The head of a request whose body is being read (or waits to be admitted). Boxed, like `refused`: most
    /// connections are idle or streaming, and pay for a pointer only.
    head: Option<Box<Request>>,
    /// Bytes of the server's body budget this connection's request holds.
    pub(crate) body_reserved: usize,
    /// The answer to a request refused from its head whose (small) body is read only to be dropped, so that
    /// the connection can carry the next request.
    pub(crate) refused: Option<Box<crate::response::Response>>,
}

/// What the buffered input holds next.
pub(crate) enum Next {
    /// A complete request (its bytes are consumed); `admitted` if its head was admitted before its body was
    /// read.
    Request { request: Request, admitted: bool },
    /// A head that announced a body: decide with [`Conn::admit`] or [`Conn::refuse`] before it is read.
    Head(AnnouncedBody),
    /// Nothing complete yet; `continue_due` says the client waits for `100 Continue` before its body.
    Partial { continue_due: bool },
    /// The input is not valid HTTP: answer with the error's status and close.
    Invalid(ParseError),
    /// The connection is not reading requests now (streaming or closing), or has no input.
    Nothing,
}

impl Conn {
    pub(crate) fn new(id: ConnId, parser: RequestParser, peer: Option<SocketAddr>) -> Conn {
        Conn {
            id,
            input: Vec::new(),
            parser: Some(Box::new(parser)),
            state: State::Reading,
            deadline: None,
            deadline_idle: false,
            peer,
            end: None,
            request_log: None,
            head: None,
            body_reserved: 0,
            refused: None,
        }
    }

    /// Notes why the server is ending the connection; the first reason given stands.
    pub(crate) fn ending(&mut self, why: Disconnect) {
        self.end.get_or_insert(why);
    }

    /// The connection now sends `stream`; its parser is dropped until the stream ends.
    pub(crate) fn start_streaming(&mut self, stream: Stream) {
        self.state = State::Streaming(Box::new(stream));
        self.parser = None;
    }

    /// The connection waits for its next request, with a new parser from `parser` if it has none.
    pub(crate) fn read_requests(&mut self, parser: impl FnOnce() -> RequestParser) {
        self.state = State::Reading;
        if self.parser.is_none() {
            self.parser = Some(Box::new(parser()));
        }
    }

    /// Arms the request deadline (`after` from now); `idle` marks it as the wait for a next request.
    pub(crate) fn arm_deadline(&mut self, cx: &mut LoopContext<'_>, after: Duration, idle: bool) {
        self.disarm_deadline(cx);
        self.deadline = Some(cx.set_timer(cx.now() + after, self.id.to_u64()));
        self.deadline_idle = idle;
    }

    pub(crate) fn disarm_deadline(&mut self, cx: &mut LoopContext<'_>) {
        if let Some(t) = self.deadline.take() {
            cx.cancel_timer(t);
        }
    }

    /// True if `timer` is this connection's request deadline; it is then disarmed.
    pub(crate) fn take_deadline(&mut self, timer: TimerId) -> bool {
        let due = self.deadline == Some(timer);
        if due {
            self.deadline = None;
        }
        due
    }

    /// True while waiting for the first byte of a next request.
    pub(crate) fn is_idle(&self) -> bool {
        self.deadline_idle && self.input.is_empty()
    }

    /// True if a request has begun arriving (some of its head or body is here).
    pub(crate) fn has_partial_request(&self) -> bool {
        !self.input.is_empty() || self.parser.as_ref().is_some_and(|p| p.in_body())
    }

    /// Parses the next request from the buffered input, head first: a head that announces a body is handed
    /// out for a decision before any of the body is taken.
    pub(crate) fn next_request(&mut self) -> Next {
        let Some(parser) = self.parser.as_mut().filter(|_| matches!(self.state, State::Reading)) else {
            return Next::Nothing;
        };
        if self.input.is_empty() && !parser.in_body() {
            return Next::Nothing;
        }
        let (parsed, used) = match parser.parse_head_first(&self.input) {
            Ok(step) => step,
            Err(e) => return Next::Invalid(e),
        };
        self.input.drain(..used);
        match parsed {
            Parsed::Partial => Next::Partial { continue_due: parser.take_continue() },
            Parsed::Head(request, AnnouncedBody::None) => Next::Request { request, admitted: false },
            Parsed::Head(head, announced) => {
                self.head = Some(Box::new(head));
                Next::Head(announced)
            }
            Parsed::Body(body) => match self.head.take() {
                Some(head) => Next::Request { request: (*head).with_body(body), admitted: true },
                // The parser hands out a body only after a head it announced: unreachable, never a panic.
                None => Next::Invalid(ParseError::Malformed("a body without its head")),
            },
        }
    }

    /// The head waiting for a decision (see [`Next::Head`]).
    pub(crate) fn head_mut(&mut self) -> Option<&mut Request> {
        self.head.as_deref_mut()
    }

    /// Reads the waiting head's body, up to `limit` bytes.
    ///
    /// # Errors
    /// `413` when the announced length is past `limit`.
    pub(crate) fn admit(&mut self, limit: usize) -> Result<(), ParseError> {
        self.parser.as_mut().map_or(Ok(()), |parser| parser.accept_body(limit))
    }

    /// Refuses the waiting head's body: nothing more is read from this connection. Returns the head.
    pub(crate) fn refuse(&mut self) -> Option<Request> {
        if let Some(parser) = self.parser.as_mut() {
            parser.refuse_body();
        }
        self.head.take().map(|head| *head)
    }

    /// Returns the input buffer's memory once it is empty (idle connections are the common case), and what
    /// a large read left unused while bytes are held behind a stream.
    pub(crate) fn shrink_input(&mut self) {
        if self.input.is_empty() {
            if self.input.capacity() > 0 {
                self.input = Vec::new();
            }
        } else if self.input.capacity() > 2 * self.input.len() {
            self.input.shrink_to_fit();
        }
    }

    pub(crate) fn stream_mut(&mut self) -> Option<&mut Stream> {
        match &mut self.state {
            State::Streaming(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming(_))
    }
}

/// The loop's connections, indexed like its slab; an entry answers only to the id (generation included) it
/// was made for.
#[derive(Default)]
pub(crate) struct Conns {
    slots: Vec<Option<Conn>>,
}

impl Conns {
    pub(crate) fn insert(&mut self, conn: Conn) {
        let index = conn.id.index();
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(conn);
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(id.index())?.as_ref().filter(|c| c.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slots.get_mut(id.index())?.as_mut().filter(|c| c.id == id)
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.slots.get_mut(id.index())?.take_if(|c| c.id == id)
    }

    pub(crate) fn stream_mut(&mut self, id: ConnId) -> Option<&mut Stream> {
        self.get_mut(id)?.stream_mut()
    }
}
