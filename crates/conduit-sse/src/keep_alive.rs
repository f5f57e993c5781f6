//! The keep-alive timer: pure bookkeeping over caller-supplied instants.

use std::time::{Duration, Instant};

/// When a keep-alive comment is due.
///
/// Time is passed in, never read from the clock, so it is testable without
/// sleeping and an event loop can use [`next_deadline`](KeepAlive::next_deadline)
/// as its timer. A keep-alive is due when `interval` has passed since the last
/// activity (an event or a keep-alive); a disabled timer never fires.
///
/// ```
/// use std::time::{Duration, Instant};
/// use conduit_sse::KeepAlive;
///
/// let start = Instant::now();
/// let mut keep_alive = KeepAlive::new(Duration::from_secs(15), start);
/// assert!(!keep_alive.poll(start + Duration::from_secs(14)));
/// assert!(keep_alive.poll(start + Duration::from_secs(15)));
/// assert_eq!(keep_alive.next_deadline(), Some(start + Duration::from_secs(30)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// `None` when disabled; holding the instant only when enabled is why
    /// [`KeepAlive::disabled`] needs no `now`.
    timer: Option<Timer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    interval: Duration,
    last_activity: Instant,
}

impl KeepAlive {
    /// A timer that fires `interval` after `now`, and after every later activity.
    ///
    /// A zero `interval` gives a disabled timer: firing on every poll would flood
    /// the connection with comments.
    pub fn new(interval: Duration, now: Instant) -> Self {
        if interval.is_zero() {
            return Self::disabled();
        }
        KeepAlive { timer: Some(Timer { interval, last_activity: now }) }
    }

    /// A timer that never fires.
    pub fn disabled() -> Self {
        KeepAlive { timer: None }
    }

    /// The interval, or `None` if disabled.
    pub fn interval(&self) -> Option<Duration> {
        self.timer.map(|t| t.interval)
    }

    /// Real data went out at `now`: push the next keep-alive back.
    ///
    /// An instant earlier than the last recorded activity is ignored, so callers
    /// that sample the clock loosely can never bring the deadline forward.
    pub fn record_activity(&mut self, now: Instant) {
        if let Some(timer) = &mut self.timer {
            timer.last_activity = timer.last_activity.max(now);
        }
    }

    /// True if a keep-alive should be sent at `now`; if so it also counts as activity.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.next_deadline() {
            Some(deadline) if now >= deadline => {
                self.record_activity(now);
                true
            }
            _ => false,
        }
    }

    /// When [`poll`](KeepAlive::poll) will next return true (`None` if disabled).
    ///
    /// Also `None` if the deadline lies beyond what `Instant` can represent (a huge
    /// interval), since such a timer can never fire.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timer?;
        timer.last_activity.checked_add(timer.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn due_exactly_at_interval() {
        let base = Instant::now();
        let mut ka = KeepAlive::new(10 * SEC, base);
        assert_eq!(ka.interval(), Some(10 * SEC));
        assert_eq!(ka.next_deadline(), Some(base + 10 * SEC));
        let steps = [
            (Duration::ZERO, false),
            (9 * SEC, false),
            (10 * SEC - Duration::from_nanos(1), false),
            (10 * SEC, true),
            // Firing counted as activity: not due again right away.
            (10 * SEC, false),
            (19 * SEC, false),
            (20 * SEC, true),
        ];
        for (offset, expected) in steps {
            assert_eq!(ka.poll(base + offset), expected, "at {offset:?}");
        }
        assert_eq!(ka.next_deadline(), Some(base + 30 * SEC));
    }

    #[test]
    fn late_poll_reschedules_from_the_poll() {
        let base = Instant::now();
        let mut ka = KeepAlive::new(10 * SEC, base);
        assert!(ka.poll(base + 25 * SEC));
        assert_eq!(ka.next_deadline(), Some(base + 35 * SEC));
        assert!(!ka.poll(base + 30 * SEC));
    }

    #[test]
    fn activity_pushes_deadline_back() {
        let base = Instant::now();
        let mut ka = KeepAlive::new(10 * SEC, base);
        ka.record_activity(base + 8 * SEC);
        assert_eq!(ka.next_deadline(), Some(base + 18 * SEC));
        assert!(!ka.poll(base + 10 * SEC));
        assert!(!ka.poll(base + 17 * SEC));
        // An older instant never moves the deadline forward.
        ka.record_activity(base + 2 * SEC);
        assert_eq!(ka.next_deadline(), Some(base + 18 * SEC));
        assert!(ka.poll(base + 18 * SEC));
    }

    #[test]
    fn disabled_never_fires() {
        let base = Instant::now();
        for mut ka in [KeepAlive::disabled(), KeepAlive::new(Duration::ZERO, base)] {
            assert_eq!(ka.interval(), None);
            assert_eq!(ka.next_deadline(), None);
            ka.record_activity(base);
            for secs in [0, 1, 1_000, 1_000_000] {
                assert!(!ka.poll(base + secs * SEC));
            }
            assert_eq!(ka, KeepAlive::disabled());
        }
    }

    #[test]
    fn huge_interval_does_not_overflow() {
        let base = Instant::now();
        let mut ka = KeepAlive::new(Duration::MAX, base);
        assert_eq!(ka.interval(), Some(Duration::MAX));
        assert_eq!(ka.next_deadline(), None);
        assert!(!ka.poll(base + 1_000_000 * SEC));
    }
}
