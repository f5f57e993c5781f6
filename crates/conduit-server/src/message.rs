//! What other threads tell an event loop. Defined below every module that sends or handles a message, so the
//! senders ([`Hub`](crate::Hub), [`SseSender`](crate::SseSender), [`ServerHandle`](crate::ServerHandle)) and the
//! loop's dispatcher all depend on this module and not on each other.

use crate::backbone::BackboneEvent;
use conduit_net::ConnId;
use conduit_sse::SharedEvent;
use std::sync::Arc;
use std::time::Instant;

/// A message in an event loop's mailbox.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A channel-fed stream has events buffered.
    ChannelReady(ConnId),
    /// A deferred reply was answered (or its responder dropped).
    Answer(ConnId),
    /// Begin a graceful shutdown.
    Shutdown,
    /// A hub event, numbered and encoded by the publisher at `published_at`.
    Publish { topic: Arc<str>, event: SharedEvent, published_at: Instant },
    /// The hub forgot a topic nobody follows to make room for a new one: drop its backlog.
    Forget { topic: Arc<str> },
    /// What an external backbone read; every loop gets the same ones in the same order.
    Backbone(Arc<BackboneEvent>),
}

/// The loop's context as every module of the server sees it.
pub(crate) type LoopContext<'a> = conduit_net::Context<'a, Msg>;
