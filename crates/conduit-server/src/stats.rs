//! Counters every event loop keeps up to date and [`ServerHandle`](crate::ServerHandle) reads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shared by all the loops of one server.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicUsize,
    pub(crate) streams: AtomicUsize,
    pub(crate) requests: AtomicU64,
    /// Bytes reserved for request bodies being read, on all loops (`max_body_memory` bounds it).
    pub(crate) body_memory: AtomicUsize,
}

impl Stats {
    /// Reserves `bytes` of the server-wide body budget `max`; false (nothing reserved) if that would pass it.
    pub(crate) fn reserve_body(&self, bytes: usize, max: usize) -> bool {
        self.body_memory
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| held.checked_add(bytes).filter(|&n| n <= max))
            .is_ok()
    }

    /// Returns what [`reserve_body`](Self::reserve_body) took.
    pub(crate) fn release_body(&self, bytes: usize) {
        if bytes > 0 {
            self.body_memory.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}
