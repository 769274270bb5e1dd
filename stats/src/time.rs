//! Timestamps as Kubernetes' `metav1.Time` writes them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, kept in nanoseconds since the Unix epoch.
///
/// In JSON it is what `metav1.Time` writes: RFC 3339 in UTC with whole seconds
/// (`2025-01-02T03:04:05Z`), and `null` for the zero time. The nanoseconds are kept for
/// the millisecond timestamps of the Prometheus samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

impl Time {
    /// The time `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// A [`SystemTime`] as a `Time` (times before the epoch become the epoch).
    pub fn from_system_time(t: SystemTime) -> Self {
        let nanos = t
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Self(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch (the Prometheus sample timestamp).
    pub const fn unix_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Whole seconds since the Unix epoch.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    /// True for the zero time, which serializes as `null`.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The later of two times.
    pub fn max(self, other: Self) -> Self {
        Ord::max(self, other)
    }

    /// RFC 3339 in UTC with whole seconds, as Go's `time.RFC3339` formats a UTC time.
    pub fn to_rfc3339(self) -> String {
        jiff::Timestamp::from_second(self.unix_seconds())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// Parses RFC 3339 (`Z` or a `±hh:mm` offset, optional fractional seconds).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let time: jiff::Timestamp = text.parse().ok()?;
        i64::try_from(time.as_nanosecond()).ok().map(Self)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_zero() {
            serializer.serialize_none()
        } else {
            serializer.serialize_str(&self.to_rfc3339())
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        match text.as_deref() {
            None | Some("") => Ok(Self::default()),
            Some(t) => Self::parse_rfc3339(t)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {t:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339_like_metav1() {
        let t = Time::from_unix_nanos(1_700_000_000_123_456_789);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20Z");
        assert_eq!(t.unix_millis(), 1_700_000_000_123);
        assert_eq!(
            Time::parse_rfc3339("2023-11-14T22:13:20Z"),
            Some(Time::from_unix_nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            Time::parse_rfc3339("2023-11-14T23:13:20.5+01:00"),
            Some(Time::from_unix_nanos(1_700_000_000_500_000_000))
        );
        assert_eq!(
            Time::parse_rfc3339("2000-02-29T00:00:00Z")
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(Time::parse_rfc3339("nonsense"), None);
        assert_eq!(
            serde_json::to_string(&Time::default()).ok().as_deref(),
            Some("null")
        );
        assert_eq!(
            serde_json::from_str::<Time>("\"1970-01-01T00:00:01Z\"").ok(),
            Some(Time::from_unix_nanos(1_000_000_000))
        );
    }
}
