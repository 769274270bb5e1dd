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
        let secs = self.unix_seconds();
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }

    /// Parses RFC 3339 (`Z` or a `±hh:mm` offset, optional fractional seconds).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(r)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut rest = &text[19..];
        let mut nanos = 0i64;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let mut value = 0i64;
            for (i, c) in frac.bytes().take(digits).enumerate() {
                if i < 9 {
                    value = value * 10 + i64::from(c - b'0');
                }
            }
            for _ in digits..9 {
                value *= 10;
            }
            nanos = value;
            rest = &frac[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                    return None;
                }
                let oh: i64 = rest.get(1..3)?.parse().ok()?;
                let om: i64 = rest.get(4..6)?.parse().ok()?;
                sign * (oh * 3600 + om * 60)
            }
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
        Some(Self(secs.checked_mul(1_000_000_000)?.checked_add(nanos)?))
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

// Howard Hinnant's days <-> civil date algorithms (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
