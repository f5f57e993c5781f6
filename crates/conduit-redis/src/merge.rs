//! Merging the entries of several topics into the one global order, and noticing missed entries.
//!
//! A read returns each topic's entries in sequence order, at most `limit` of them per topic. Within one read
//! (one command, or one `MULTI`/`EXEC`) the streams are a snapshot: every entry published up to that instant is
//! there, because the publish script numbers an event and appends it in one atomic step. So the union, sorted
//! by sequence, is the global order, *up to the first place a topic was cut off*: a topic that returned exactly
//! `limit` entries may hold more, and a later entry of another topic must wait until those have been read.

use crate::entry::Entry;
use std::collections::HashMap;
use std::sync::Arc;

/// The entries of one read in global order, and the position the read is complete up to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Merged {
    /// Every entry with a sequence number up to `through`, of every topic read, in sequence order.
    pub(crate) entries: Vec<Entry>,
    /// Everything of the topics read up to here is in `entries`.
    pub(crate) through: u64,
}

/// Merges per-topic runs (each in sequence order, each cut at `limit` entries) into global order.
///
/// `complete_through` is the position the read itself covers when no topic was cut off (the sequence at the
/// snapshot, say). `max_total` bounds the result; past it the result stops, and says so in `through`.
pub(crate) fn merge_runs(runs: Vec<Vec<Entry>>, limit: usize, complete_through: u64, max_total: usize) -> Merged {
    let cutoff = runs
        .iter()
        .filter(|run| run.len() >= limit)
        .filter_map(|run| run.last().map(|e| e.seq))
        .fold(complete_through, u64::min);
    let mut entries: Vec<Entry> = runs.into_iter().flatten().filter(|e| e.seq <= cutoff).collect();
    entries.sort_unstable_by_key(|e| e.seq);
    let mut through = cutoff;
    if entries.len() > max_total {
        entries.truncate(max_total);
        through = entries.last().map_or(0, |e| e.seq);
    }
    Merged { entries, through }
}

/// Events of one topic that a reader will never receive: the topic's stream trimmed them before they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: Arc<str>,
    /// The newest event of the topic the reader had.
    pub after: u64,
    /// The first event the reader has again; events of the topic strictly between the two are lost to it.
    pub until: u64,
}

/// Each followed topic's newest sequence number, to check that every entry's `prev` is one the reader has.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    newest: HashMap<Arc<str>, u64>,
}

impl Chains {
    /// Starts (or restarts) a topic's chain at `newest` (0: no event yet).
    pub(crate) fn start(&mut self, topic: &Arc<str>, newest: u64) {
        self.newest.insert(Arc::clone(topic), newest);
    }

    /// Forgets a topic.
    pub(crate) fn stop(&mut self, topic: &str) {
        self.newest.remove(topic);
    }

    /// Forgets every topic.
    pub(crate) fn clear(&mut self) {
        self.newest.clear();
    }

    /// Moves the chains along `entries` (in sequence order), returning the gaps found. An entry whose `prev` is
    /// older than the chain's newest means the stream restarted (its key was deleted): nothing is missing.
    pub(crate) fn follow(&mut self, entries: &[Entry]) -> Vec<Gap> {
        let mut gaps = Vec::new();
        for entry in entries {
            let Some(newest) = self.newest.get_mut(&entry.topic) else { continue };
            if entry.prev > *newest {
                gaps.push(Gap { topic: Arc::clone(&entry.topic), after: *newest, until: entry.seq });
            }
            *newest = entry.seq;
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_sse::Event;

    fn entry(topic: &str, seq: u64, prev: u64) -> Entry {
        Entry { seq, prev, topic: topic.into(), event: Event::new().data(seq.to_string()) }
    }

    fn run(topic: &str, seqs: &[u64]) -> Vec<Entry> {
        seqs.iter().map(|&s| entry(topic, s, 0)).collect()
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn merges_by_sequence_up_to_the_first_cut() {
        // (runs, limit, complete_through, max_total) -> (sequence numbers, through)
        type Case = (Vec<Vec<Entry>>, usize, u64, usize, Vec<u64>, u64);
        let cases: Vec<Case> = vec![
            // Nothing cut: everything, through the snapshot.
            (vec![run("a", &[1, 4]), run("b", &[2, 3, 5])], 10, 9, usize::MAX, vec![1, 2, 3, 4, 5], 9),
            (vec![], 10, 9, usize::MAX, vec![], 9),
            (vec![run("a", &[]), run("b", &[])], 10, 7, usize::MAX, vec![], 7),
            // a was cut at 4: b's 5 and 6 wait for a's next read.
            (vec![run("a", &[1, 4]), run("b", &[2, 3, 5, 6])], 2, 9, usize::MAX, vec![1, 2, 3, 4], 4),
            // Both cut: the earlier cut wins.
            (vec![run("a", &[1, 8]), run("b", &[2, 3])], 2, 9, usize::MAX, vec![1, 2, 3], 3),
            // A total bound.
            (vec![run("a", &[1, 4]), run("b", &[2, 3, 5])], 10, 9, 3, vec![1, 2, 3], 3),
            (vec![run("a", &[5])], 10, 9, 0, vec![], 0),
            // Entries past the covered position (a history read that ran ahead of the reader) are left out.
            (vec![run("a", &[1, 12]), run("b", &[11])], 10, 10, usize::MAX, vec![1], 10),
        ];
        for (i, (runs, limit, complete, max_total, want, through)) in cases.into_iter().enumerate() {
            let merged = merge_runs(runs, limit, complete, max_total);
            assert_eq!((seqs(&merged.entries), merged.through), (want, through), "case {i}");
        }
    }

    #[test]
    fn chains_find_missed_entries() {
        let mut chains = Chains::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        chains.start(&a, 3);
        chains.start(&b, 0);
        let entries = [
            entry("a", 5, 3),  // follows 3
            entry("b", 6, 0),  // b's first
            entry("a", 9, 7),  // 7 was never seen: a gap
            entry("c", 10, 1), // not followed: ignored
            entry("b", 11, 2), // the stream restarted below 6: no gap
            entry("b", 12, 11),
        ];
        assert_eq!(chains.follow(&entries), vec![Gap { topic: a.clone(), after: 5, until: 9 }]);
        chains.stop("a");
        assert!(chains.follow(&[entry("a", 20, 15)]).is_empty());
        chains.clear();
        assert!(chains.follow(&[entry("b", 21, 19)]).is_empty());
    }
}
