//! Epochs: telling a history that continues from one that Redis lost.
//!
//! Redis keeps a random token, the epoch, beside the sequence. A node remembers the token it reads from and the
//! position it has delivered through. If the token changed, vanished, or the sequence is below that position,
//! Redis no longer holds the history the node's clients saw (it restarted without persistence, was restored from
//! an older snapshot, or was flushed): that is a new epoch, and clients must be told (`reset`), never handed a
//! silent gap or an id that now names another event.
//!
//! Whoever finds the history broken repairs it in one atomic step (the publish script, or the reader's sync
//! script): a fresh token, and the sequence raised past everything that node has seen, so ids keep increasing
//! across the break for every node that was running.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a reader concludes from the sequence and epoch it finds in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The history needs the sync script: no token, or a sequence below what this node has seen.
    pub(crate) repair: bool,
    /// The history is not the one this node delivered from.
    pub(crate) new_epoch: bool,
}

/// Judges what a reader found: `known` is the token it reads from (`None` before its first read), `floor` the
/// highest sequence number this node had seen (delivered or published) *before* it sent the read, and
/// `found_token`, `found_seq` what Redis held when the read ran. Every number the node saw was handed out by
/// Redis before the read, so in an unbroken history `found_seq >= floor`.
pub(crate) fn judge(known: Option<&str>, floor: u64, found_token: Option<&str>, found_seq: u64) -> Verdict {
    let repair = found_token.is_none() || found_seq < floor;
    // Before its first read a node has delivered nothing: whatever Redis holds is its history.
    let new_epoch = known.is_some_and(|known| repair || found_token != Some(known));
    Verdict { repair, new_epoch }
}

/// Candidate epoch tokens: random per process, then counted, so no two candidates anywhere are equal.
#[derive(Debug)]
pub(crate) struct Tokens {
    base: u64,
    next: AtomicU64,
}

impl Tokens {
    pub(crate) fn new() -> Tokens {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            // No OS randomness: the time and process id still differ between processes that could meet.
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            seed = ((nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        }
        Tokens { base: u64::from_le_bytes(seed), next: AtomicU64::new(1) }
    }

    /// The process's random part: it also names this node's publisher in Redis.
    pub(crate) fn node(&self) -> String {
        format!("{:016x}", self.base)
    }

    /// A new candidate token.
    pub(crate) fn candidate(&self) -> String {
        format!("{:016x}-{}", self.base, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_histories() {
        // (known, floor, found token, found seq) -> (repair, new epoch)
        type Case<'a> = (Option<&'a str>, u64, Option<&'a str>, u64, bool, bool);
        let cases: &[Case<'_>] = &[
            // First read: adopt what is there; an empty Redis gets a token.
            (None, 0, Some("t"), 0, false, false),
            (None, 0, Some("t"), 50, false, false),
            (None, 0, None, 0, true, false),
            (None, 0, None, 7, true, false),
            // This node published 9 before its reader's first read, and Redis is behind it now.
            (None, 9, Some("t"), 5, true, false),
            // The same history, moved on or not.
            (Some("t"), 10, Some("t"), 10, false, false),
            (Some("t"), 12, Some("t"), 30, false, false),
            // Redis restarted empty.
            (Some("t"), 10, None, 0, true, true),
            // Restarted empty, and a publisher already started a new history.
            (Some("t"), 10, Some("u"), 11, false, true),
            (Some("t"), 10, Some("u"), 3, true, true),
            // Restored from an older snapshot: same token, the sequence went back.
            (Some("t"), 10, Some("t"), 4, true, true),
            // It lost events this node published, even if none of them was delivered yet.
            (Some("t"), 15, Some("t"), 12, true, true),
        ];
        for (i, &(known, floor, token, seq, repair, new_epoch)) in cases.iter().enumerate() {
            assert_eq!(judge(known, floor, token, seq), Verdict { repair, new_epoch }, "case {i}");
        }
    }

    #[test]
    fn candidates_are_unique() {
        let (a, b) = (Tokens::new(), Tokens::new());
        let all = [a.candidate(), a.candidate(), b.candidate(), b.candidate()];
        for (i, x) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|y| y != x), "{all:?}");
            assert!(x.starts_with(&a.node()) || x.starts_with(&b.node()));
        }
    }
}
