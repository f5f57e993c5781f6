//! Log levels for `notifications/message` and `logging/setLevel` (the syslog severities, least severe first).

/// A log message's severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Detailed debugging information.
    Debug,
    /// Ordinary information.
    Info,
    /// Normal but significant.
    Notice,
    /// A warning.
    Warning,
    /// An error.
    Error,
    /// A critical condition.
    Critical,
    /// Action must be taken at once.
    Alert,
    /// The system is unusable.
    Emergency,
}

const NAMES: [(LogLevel, &str); 8] = [
    (LogLevel::Debug, "debug"),
    (LogLevel::Info, "info"),
    (LogLevel::Notice, "notice"),
    (LogLevel::Warning, "warning"),
    (LogLevel::Error, "error"),
    (LogLevel::Critical, "critical"),
    (LogLevel::Alert, "alert"),
    (LogLevel::Emergency, "emergency"),
];

impl LogLevel {
    /// The name the protocol uses.
    pub fn as_str(self) -> &'static str {
        NAMES.iter().find(|(l, _)| *l == self).map_or("info", |(_, n)| n)
    }

    /// Reads a protocol name.
    pub fn parse(name: &str) -> Option<LogLevel> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(l, _)| *l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        for (level, name) in NAMES {
            assert_eq!(level.as_str(), name);
            assert_eq!(LogLevel::parse(name), Some(level));
        }
        assert_eq!(LogLevel::parse("Info"), None);
        assert_eq!(LogLevel::parse("fatal"), None);
        assert!(LogLevel::Debug < LogLevel::Info && LogLevel::Alert < LogLevel::Emergency);
    }
}
