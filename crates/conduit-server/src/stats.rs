//! Counters every event loop keeps up to date and [`ServerHandle`](crate::ServerHandle) reads.

use std::sync::atomic::{AtomicU64, AtomicUsize};

/// Shared by all the loops of one server.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicUsize,
    pub(crate) streams: AtomicUsize,
    pub(crate) requests: AtomicU64,
}
