//! Opening connections with the configured bounds, classifying failures, and pacing reconnections.

use crate::config::RedisConfig;
use redis::{Connection, ErrorKind, RedisError};
use std::time::{Duration, Instant};

/// Opens a connection: the attempt is bounded by `connect_timeout`, every later command by `command_timeout`,
/// and the connection is named `conduit-<role>` so `CLIENT LIST` shows who is who.
///
/// # Errors
/// The driver's error: the address is unreachable, the password is wrong, the database does not exist...
pub(crate) fn connect(config: &RedisConfig, role: &str) -> Result<Connection, RedisError> {
    let client = redis::Client::open(config.url.connection_info())?;
    let mut conn = client.get_connection_with_timeout(config.connect_timeout)?;
    conn.set_read_timeout(Some(config.command_timeout))?;
    conn.set_write_timeout(Some(config.command_timeout))?;
    redis::cmd("CLIENT").arg("SETNAME").arg(format!("conduit-{role}")).query::<()>(&mut conn)?;
    Ok(conn)
}

/// True when the error is Redis's answer to a command (the connection is fine); false when the connection failed
/// or its state is unknown (a timeout may leave a late reply in the socket), so it must be replaced.
pub(crate) fn is_reply_error(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// Capped exponential backoff: `initial`, doubling up to `max`, until [`reset`](Backoff::reset).
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), next: initial }
    }

    /// The pause before the next attempt, lengthening the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to `initial`, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// When a failed connection may next be tried, shared by callers that must not wait for it (publishers): until
/// then they fail at once.
#[derive(Debug)]
pub(crate) struct RetryGate {
    backoff: Backoff,
    not_before: Option<Instant>,
}

impl RetryGate {
    pub(crate) fn new(backoff: Backoff) -> RetryGate {
        RetryGate { backoff, not_before: None }
    }

    /// Whether an attempt may be made at `now`.
    pub(crate) fn open(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// An attempt failed at `now`: the next waits.
    pub(crate) fn failed(&mut self, now: Instant) {
        self.not_before = Some(now + self.backoff.next_delay());
    }

    /// An attempt succeeded.
    pub(crate) fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = None;
    }
}

/// One connection for callers on any thread that must not wait out a reconnection backoff: opened when first
/// needed, dropped after a failure, and reopened no sooner than its [`RetryGate`] allows (until then callers
/// fail at once).
pub(crate) struct Link {
    role: &'static str,
    conn: Option<Connection>,
    gate: RetryGate,
}

impl Link {
    /// A link named `conduit-<role>` in `CLIENT LIST`; nothing is opened yet.
    pub(crate) fn new(config: &RedisConfig, role: &'static str) -> Link {
        Link { role, conn: None, gate: RetryGate::new(Backoff::new(config.reconnect_initial, config.reconnect_max)) }
    }

    /// True while a connection is open (a command on it may find it broken all the same).
    pub(crate) fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// The open connection, or a new one.
    ///
    /// # Errors
    /// Why there is none: the backoff after a failed attempt has not passed, or this attempt failed.
    pub(crate) fn get(&mut self, config: &RedisConfig) -> Result<&mut Connection, String> {
        if self.conn.is_none() {
            let now = Instant::now();
            if !self.gate.open(now) {
                return Err("waiting to reconnect".to_owned());
            }
            match connect(config, self.role) {
                Ok(c) => {
                    self.conn = Some(c);
                    self.gate.succeeded();
                }
                Err(e) => {
                    self.gate.failed(now);
                    return Err(e.to_string());
                }
            }
        }
        self.conn.as_mut().ok_or_else(|| "not connected".to_owned())
    }

    /// The connection failed, or its state is unknown: the next [`get`](Self::get) opens another.
    pub(crate) fn broken(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(300));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [ms(50), ms(100), ms(200), ms(300), ms(300), ms(300)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(50));
        // A cap below the start is the start.
        let mut b = Backoff::new(ms(50), ms(10));
        assert_eq!((b.next_delay(), b.next_delay()), (ms(50), ms(50)));
    }

    #[test]
    fn the_gate_closes_after_a_failure_for_the_backoff() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut gate = RetryGate::new(Backoff::new(ms(100), ms(1000)));
        assert!(gate.open(t0));
        gate.failed(t0);
        assert!(!gate.open(t0 + ms(99)) && gate.open(t0 + ms(100)));
        gate.failed(t0 + ms(100));
        assert!(!gate.open(t0 + ms(299)) && gate.open(t0 + ms(300)));
        gate.succeeded();
        assert!(gate.open(t0));
        gate.failed(t0);
        assert!(gate.open(t0 + ms(100)), "the backoff started over");
    }

    #[test]
    fn reply_errors_keep_the_connection() {
        let reply = RedisError::from((ErrorKind::Server(redis::ServerErrorKind::ReadOnly), "READONLY"));
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        assert!(is_reply_error(&reply));
        assert!(!is_reply_error(&io));
    }
}
