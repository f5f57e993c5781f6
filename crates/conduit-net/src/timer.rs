//! One-shot and interval timers, sans-I/O: the caller passes the time in, so tests never sleep.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Names one armed timer. Cancelling a timer that already fired or was cancelled is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    armed: Option<Armed<T>>,
}

#[derive(Debug)]
struct Armed<T> {
    deadline: Instant,
    period: Option<Duration>,
    payload: T,
}

/// A set of timers ordered by deadline, each carrying a payload `T` that says what to do when it fires.
///
/// Cancelling is O(1): the heap entry is left behind and skipped when it surfaces, and the heap is rebuilt if
/// such leftovers ever outnumber the live timers, so cancelled timers never pile up.
#[derive(Debug)]
pub struct Timers<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    live: usize,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Timers<T> {
    /// No timers.
    pub fn new() -> Self {
        Timers { entries: Vec::new(), free: Vec::new(), heap: BinaryHeap::new(), live: 0 }
    }

    /// Armed timers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Arms a timer that fires once at `deadline`.
    pub fn once(&mut self, deadline: Instant, payload: T) -> TimerId {
        self.insert(deadline, None, payload)
    }

    /// Arms a timer that fires at `start + period` and every `period` after.
    /// A zero period is raised to one millisecond so an interval can never spin.
    pub fn interval(&mut self, start: Instant, period: Duration, payload: T) -> TimerId {
        let period = period.max(Duration::from_millis(1));
        self.insert(start + period, Some(period), payload)
    }

    fn insert(&mut self, deadline: Instant, period: Option<Duration>, payload: T) -> TimerId {
        let armed = Some(Armed { deadline, period, payload });
        let index = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize].armed = armed;
                i
            }
            None => {
                self.entries.push(Entry { generation: 0, armed });
                (self.entries.len() - 1) as u32
            }
        };
        let generation = self.entries[index as usize].generation;
        self.heap.push(Reverse((deadline, index, generation)));
        self.live += 1;
        TimerId { index, generation }
    }

    /// Disarms a timer and returns its payload, or `None` if it was not armed.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get_mut(id.index as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        let armed = entry.armed.take()?;
        self.release(id.index);
        if self.heap.len() > 2 * self.live + 64 {
            self.rebuild();
        }
        Some(armed.payload)
    }

    /// True if `id` is still armed.
    pub fn is_armed(&self, id: TimerId) -> bool {
        self.entries.get(id.index as usize).is_some_and(|e| e.generation == id.generation && e.armed.is_some())
    }

    fn release(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
    }

    fn rebuild(&mut self) {
        let heap = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.armed.as_ref().map(|a| Reverse((a.deadline, i as u32, e.generation))))
            .collect();
        self.heap = heap;
    }

    /// Drops heap entries of timers that were cancelled or re-armed.
    fn skip_stale(&mut self) {
        while let Some(Reverse((deadline, index, generation))) = self.heap.peek().copied() {
            let entry = &self.entries[index as usize];
            let live = entry.generation == generation && entry.armed.as_ref().is_some_and(|a| a.deadline == deadline);
            if live {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest deadline of an armed timer.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((d, _, _))| *d)
    }

    /// Fires the earliest timer due at `now`, if any, returning its id and a copy of its payload.
    ///
    /// A one-shot timer is disarmed; an interval timer is re-armed one period after its deadline, or one period
    /// after `now` if it fell more than a period behind, so a stalled caller never gets a burst of catch-up ticks.
    pub fn poll(&mut self, now: Instant) -> Option<(TimerId, T)>
    where
        T: Clone,
    {
        self.skip_stale();
        let Reverse((deadline, index, generation)) = *self.heap.peek()?;
        if deadline > now {
            return None;
        }
        self.heap.pop();
        let id = TimerId { index, generation };
        let entry = &mut self.entries[index as usize];
        let armed = entry.armed.as_mut().expect("skip_stale left a live entry");
        let payload = armed.payload.clone();
        match armed.period {
            Some(period) => {
                let mut next = deadline + period;
                if next <= now {
                    next = now + period;
                }
                armed.deadline = next;
                self.heap.push(Reverse((next, index, generation)));
            }
            None => {
                entry.armed = None;
                self.release(index);
            }
        }
        Some((id, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fire_all(t: &mut Timers<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| t.poll(now).map(|(_, p)| p)).collect()
    }

    #[test]
    fn fires_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.once(t0 + ms(30), "c");
        t.once(t0 + ms(10), "a");
        t.once(t0 + ms(20), "b");
        assert_eq!(t.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(fire_all(&mut t, t0 + ms(9)), Vec::<&str>::new());
        assert_eq!(fire_all(&mut t, t0 + ms(20)), vec!["a", "b"]);
        assert_eq!(fire_all(&mut t, t0 + ms(100)), vec!["c"]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn intervals_rearm_without_catch_up_bursts() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let id = t.interval(t0, ms(10), "tick");
        assert_eq!(fire_all(&mut t, t0 + ms(10)), vec!["tick"]);
        assert_eq!(t.next_deadline(), Some(t0 + ms(20)));
        // A caller that stalls for ten periods gets one tick, then the rhythm resumes from now.
        assert_eq!(fire_all(&mut t, t0 + ms(115)), vec!["tick"]);
        assert_eq!(t.next_deadline(), Some(t0 + ms(125)));
        assert!(t.is_armed(id));
        assert_eq!(t.cancel(id), Some("tick"));
        assert!(!t.is_armed(id));
        assert_eq!(fire_all(&mut t, t0 + ms(1000)), Vec::<&str>::new());
    }

    #[test]
    fn cancel_is_exact_and_stale_ids_are_harmless() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let a = t.once(t0 + ms(5), "a");
        assert_eq!(t.cancel(a), Some("a"));
        assert_eq!(t.cancel(a), None);
        let b = t.once(t0 + ms(5), "b");
        assert_eq!(t.cancel(a), None, "a stale id must not cancel the slot's new timer");
        assert!(t.is_armed(b));
        assert_eq!(fire_all(&mut t, t0 + ms(5)), vec!["b"]);
        assert_eq!(t.cancel(b), None, "a fired one-shot is no longer armed");
    }

    #[test]
    fn cancelled_entries_do_not_accumulate() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        for i in 0..10_000u64 {
            let id = t.once(t0 + ms(1000 + i), "x");
            t.cancel(id);
        }
        assert!(t.is_empty());
        assert!(t.heap.len() <= 64 + 1, "heap kept {} stale entries", t.heap.len());
        assert!(t.entries.len() <= 1);
    }

    #[test]
    fn zero_period_is_clamped() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.interval(t0, Duration::ZERO, "z");
        assert_eq!(t.next_deadline(), Some(t0 + ms(1)));
    }

    #[test]
    fn poll_returns_the_payload() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let id = t.interval(t0, ms(1), 7u32);
        assert_eq!(t.poll(t0 + ms(1)), Some((id, 7)));
        let once = t.once(t0, 9u32);
        assert_eq!(t.poll(t0 + ms(1)), Some((once, 9)));
    }
}
