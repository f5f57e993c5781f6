//! The backbone's settings, each bounded and checked with a typed error.

use crate::keys::{InvalidPrefix, Keys};
use crate::url::{RedisUrl, UrlError};
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The range of [`RedisConfig::backlog`].
pub const BACKLOG_RANGE: RangeInclusive<usize> = 1..=1_000_000;
/// The range of [`RedisConfig::batch`].
pub const BATCH_RANGE: RangeInclusive<usize> = 1..=100_000;
/// The range of [`RedisConfig::connect_timeout`] and [`RedisConfig::command_timeout`].
pub const TIMEOUT_RANGE: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(60);
/// The range of [`RedisConfig::block`].
pub const BLOCK_RANGE: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(10);
/// The range of [`RedisConfig::reconnect_initial`]; [`RedisConfig::reconnect_max`] lies between it and
/// [`RECONNECT_MAX_LIMIT`].
pub const RECONNECT_INITIAL_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(60);
/// The longest [`RedisConfig::reconnect_max`].
pub const RECONNECT_MAX_LIMIT: Duration = Duration::from_secs(300);

/// How a node reaches Redis and how much the backbone keeps.
///
/// | setting | default | what it bounds |
/// |---|---|---|
/// | `url` | – | `redis://[[user]:password@]host[:port][/db]` |
/// | `key_prefix` | `conduit` | the hash tag of every key, so nodes sharing one prefix form one cluster |
/// | `backlog` | 1,000 | events each topic's stream keeps (`MAXLEN ~`, so Redis may keep a few more), and the tail a node loads when it starts following a topic |
/// | `connect_timeout` | 1 s | one connection attempt |
/// | `command_timeout` | 1 s | one command's reply; a publish that waits longer fails |
/// | `block` | 1 s | the reader's blocking `XREAD`; also the longest a node takes to notice a topic or epoch change when a wake-up is lost |
/// | `reconnect_initial` | 50 ms | the first wait after a failed connection; it doubles on each failure... |
/// | `reconnect_max` | 2 s | ...up to this |
/// | `batch` | 512 | events read per topic in one read, and per history request |
///
/// ```
/// use conduit_redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://127.0.0.1:6379/0")?;
/// assert_eq!((config.backlog, config.key_prefix.as_str()), (1000, "conduit"));
/// config.validate()?;
/// # Ok::<(), conduit_redis::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Where Redis is.
    pub url: RedisUrl,
    /// The prefix of every key (see [`Keys`]).
    pub key_prefix: String,
    /// Events kept per topic.
    pub backlog: usize,
    /// The bound on one connection attempt.
    pub connect_timeout: Duration,
    /// The bound on one command's reply.
    pub command_timeout: Duration,
    /// How long the reader's `XREAD` blocks.
    pub block: Duration,
    /// The first pause after a failed connection.
    pub reconnect_initial: Duration,
    /// The longest pause between connection attempts.
    pub reconnect_max: Duration,
    /// Events read per topic at once.
    pub batch: usize,
}

/// Why a [`RedisConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL did not parse.
    Url(UrlError),
    /// The key prefix is empty, too long, or has a space, a brace or a non-ASCII character.
    KeyPrefix,
    /// `backlog` is outside [`BACKLOG_RANGE`].
    Backlog,
    /// `batch` is outside [`BATCH_RANGE`].
    Batch,
    /// `connect_timeout` is outside [`TIMEOUT_RANGE`].
    ConnectTimeout,
    /// `command_timeout` is outside [`TIMEOUT_RANGE`].
    CommandTimeout,
    /// `block` is outside [`BLOCK_RANGE`].
    Block,
    /// `reconnect_initial` is outside [`RECONNECT_INITIAL_RANGE`].
    ReconnectInitial,
    /// `reconnect_max` is below `reconnect_initial` or above [`RECONNECT_MAX_LIMIT`].
    ReconnectMax,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Url(e) => e.fmt(f),
            ConfigError::KeyPrefix => InvalidPrefix.fmt(f),
            ConfigError::Backlog => f.write_str("backlog must be 1 to 1,000,000 events"),
            ConfigError::Batch => f.write_str("batch must be 1 to 100,000 events"),
            ConfigError::ConnectTimeout => f.write_str("connect_timeout must be 10 ms to 60 s"),
            ConfigError::CommandTimeout => f.write_str("command_timeout must be 10 ms to 60 s"),
            ConfigError::Block => f.write_str("block must be 10 ms to 10 s"),
            ConfigError::ReconnectInitial => f.write_str("reconnect_initial must be 1 ms to 60 s"),
            ConfigError::ReconnectMax => f.write_str("reconnect_max must be reconnect_initial to 300 s"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Url(e) => Some(e),
            _ => None,
        }
    }
}

impl From<UrlError> for ConfigError {
    fn from(e: UrlError) -> Self {
        ConfigError::Url(e)
    }
}

/// The defaults for a URL, as [`RedisConfig::from_url`]: for command-line parsers.
impl std::str::FromStr for RedisConfig {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<RedisConfig, ConfigError> {
        RedisConfig::from_url(url)
    }
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: RedisUrl) -> RedisConfig {
        RedisConfig {
            url,
            key_prefix: "conduit".to_owned(),
            backlog: 1000,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            block: Duration::from_secs(1),
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            batch: 512,
        }
    }

    /// The defaults for the URL `url`.
    ///
    /// # Errors
    /// [`ConfigError::Url`].
    pub fn from_url(url: &str) -> Result<RedisConfig, ConfigError> {
        Ok(RedisConfig::new(RedisUrl::parse(url)?))
    }

    /// Checks every setting against its bound.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.keys()?;
        let checks = [
            (BACKLOG_RANGE.contains(&self.backlog), ConfigError::Backlog),
            (BATCH_RANGE.contains(&self.batch), ConfigError::Batch),
            (TIMEOUT_RANGE.contains(&self.connect_timeout), ConfigError::ConnectTimeout),
            (TIMEOUT_RANGE.contains(&self.command_timeout), ConfigError::CommandTimeout),
            (BLOCK_RANGE.contains(&self.block), ConfigError::Block),
            (RECONNECT_INITIAL_RANGE.contains(&self.reconnect_initial), ConfigError::ReconnectInitial),
            ((self.reconnect_initial..=RECONNECT_MAX_LIMIT).contains(&self.reconnect_max), ConfigError::ReconnectMax),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    /// The key names under this prefix.
    ///
    /// # Errors
    /// [`ConfigError::KeyPrefix`].
    pub fn keys(&self) -> Result<Keys, ConfigError> {
        Keys::new(&self.key_prefix).map_err(|_| ConfigError::KeyPrefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RedisConfig {
        RedisConfig::from_url("redis://127.0.0.1").unwrap()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
        assert_eq!(RedisConfig::from_url("nope"), Err(ConfigError::Url(UrlError::UnsupportedScheme)));
    }

    #[test]
    fn every_setting_is_bounded() {
        type Edit = fn(&mut RedisConfig);
        let cases: &[(Edit, Option<ConfigError>)] = &[
            (|c| c.key_prefix = String::new(), Some(ConfigError::KeyPrefix)),
            (|c| c.key_prefix = "a{b".into(), Some(ConfigError::KeyPrefix)),
            (|c| c.backlog = 0, Some(ConfigError::Backlog)),
            (|c| c.backlog = 1, None),
            (|c| c.backlog = 1_000_000, None),
            (|c| c.backlog = 1_000_001, Some(ConfigError::Backlog)),
            (|c| c.batch = 0, Some(ConfigError::Batch)),
            (|c| c.batch = 100_001, Some(ConfigError::Batch)),
            (|c| c.connect_timeout = Duration::from_millis(9), Some(ConfigError::ConnectTimeout)),
            (|c| c.connect_timeout = Duration::from_secs(61), Some(ConfigError::ConnectTimeout)),
            (|c| c.command_timeout = Duration::ZERO, Some(ConfigError::CommandTimeout)),
            (|c| c.command_timeout = Duration::from_secs(60), None),
            (|c| c.block = Duration::from_millis(10), None),
            (|c| c.block = Duration::from_secs(11), Some(ConfigError::Block)),
            (|c| c.reconnect_initial = Duration::ZERO, Some(ConfigError::ReconnectInitial)),
            (|c| c.reconnect_max = Duration::from_millis(49), Some(ConfigError::ReconnectMax)),
            (|c| c.reconnect_max = Duration::from_millis(50), None),
            (|c| c.reconnect_max = Duration::from_secs(301), Some(ConfigError::ReconnectMax)),
        ];
        for (i, (edit, want)) in cases.iter().enumerate() {
            let mut c = config();
            edit(&mut c);
            assert_eq!(c.validate().err(), *want, "case {i}");
        }
    }
}
