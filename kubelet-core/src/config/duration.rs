//! Go's `time.Duration` as the kubelet configuration writes it: `"10s"`, `"1m0s"`,
//! `"1h30m"`, `"250ms"`, parsed like `time.ParseDuration` and printed like
//! `Duration.String()`, so `/configz` shows the same text upstream's does.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// A signed duration in nanoseconds, as Go's `time.Duration` (and `metav1.Duration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(i64);

impl GoDuration {
    /// The zero duration, which the configuration treats as "unset".
    pub const ZERO: Self = Self(0);

    /// A duration of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// A duration of whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs * SECOND as i64)
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis * MILLISECOND as i64)
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// True for the zero duration.
    pub const fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// The duration as a `std` one; `None` when negative.
    pub fn to_std(self) -> Option<Duration> {
        u64::try_from(self.0).ok().map(Duration::from_nanos)
    }
}

impl From<Duration> for GoDuration {
    /// Saturates at Go's largest duration (about 292 years).
    fn from(duration: Duration) -> Self {
        Self(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// Why a text is not a Go duration; the message is Go's `time: invalid duration "..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "time: {} {:?}", self.reason, self.text)
    }
}

impl std::error::Error for DurationError {}

impl FromStr for GoDuration {
    type Err = DurationError;

    /// `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units ns, us (µs, μs),
    /// ms, s, m, h; a bare `0` is allowed.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let mut rest = text;
        let negative = rest.starts_with('-');
        if let Some(stripped) = rest.strip_prefix(['-', '+']) {
            rest = stripped;
        }
        if rest == "0" {
            return Ok(Self::ZERO);
        }
        if rest.is_empty() {
            return Err(invalid("invalid duration"));
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            // The integer part.
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int_digits, after) = rest.split_at(int_len);
            rest = after;
            let whole: u64 = if int_digits.is_empty() {
                0
            } else {
                int_digits
                    .parse()
                    .map_err(|_| invalid("invalid duration"))?
            };
            // The fraction.
            let mut frac: u64 = 0;
            let mut scale: u64 = 1;
            let mut frac_len = 0;
            if let Some(after_dot) = rest.strip_prefix('.') {
                frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                for digit in after_dot[..frac_len].bytes() {
                    // Digits beyond what fits are dropped, as Go does.
                    if scale <= u64::MAX / 10 / 10 {
                        frac = frac * 10 + u64::from(digit - b'0');
                        scale *= 10;
                    }
                }
                rest = &after_dot[frac_len..];
            }
            if int_digits.is_empty() && frac_len == 0 {
                // No digits at all, e.g. ".s" or "s".
                return Err(invalid("invalid duration"));
            }
            // The unit.
            let unit_len = rest
                .find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (unit_text, after_unit) = rest.split_at(unit_len);
            rest = after_unit;
            let unit = match unit_text {
                "" => return Err(invalid("missing unit in duration")),
                "ns" => NANOSECOND,
                "us" | "\u{b5}s" | "\u{3bc}s" => MICROSECOND,
                "ms" => MILLISECOND,
                "s" => SECOND,
                "m" => MINUTE,
                "h" => HOUR,
                _ => return Err(invalid("unknown unit in duration")),
            };
            let whole_nanos = whole
                .checked_mul(unit)
                .filter(|n| *n <= 1 << 63)
                .ok_or_else(|| invalid("invalid duration"))?;
            // Fraction times unit, as a float would be, truncated (Go does the same).
            let frac_nanos = (frac as f64 * (unit as f64 / scale as f64)) as u64;
            total = total
                .checked_add(whole_nanos)
                .and_then(|t| t.checked_add(frac_nanos))
                .filter(|n| *n <= 1 << 63)
                .ok_or_else(|| invalid("invalid duration"))?;
        }
        if negative {
            // -(1 << 63) is the one value whose magnitude exceeds i64::MAX.
            return Ok(Self(0i64.wrapping_sub_unsigned(total)));
        }
        i64::try_from(total)
            .map(Self)
            .map_err(|_| invalid("invalid duration"))
    }
}

/// Writes `value / 10^prec` with the fraction's trailing zeros (and the point) dropped.
fn push_fraction(out: &mut String, value: u64, prec: u32) -> u64 {
    let divisor = 10u64.pow(prec);
    let frac = value % divisor;
    if frac != 0 {
        let digits = format!("{frac:0width$}", width = prec as usize);
        out.insert_str(0, &format!(".{}", digits.trim_end_matches('0')));
    }
    value / divisor
}

impl fmt::Display for GoDuration {
    /// `time.Duration.String()`: `0s`, `1.5ms`, `10s`, `1m0s`, `2h0m0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.unsigned_abs();
        let mut out = String::new();
        if magnitude < SECOND {
            let (prec, unit) = match magnitude {
                0 => return f.write_str("0s"),
                n if n < MICROSECOND => (0, "ns"),
                n if n < MILLISECOND => (3, "\u{b5}s"),
                _ => (6, "ms"),
            };
            out.push_str(unit);
            let whole = push_fraction(&mut out, magnitude, prec);
            out.insert_str(0, &whole.to_string());
        } else {
            out.push('s');
            let seconds = push_fraction(&mut out, magnitude, 9);
            out.insert_str(0, &(seconds % 60).to_string());
            let minutes = seconds / 60;
            if minutes > 0 {
                out.insert_str(0, &format!("{}m", minutes % 60));
                let hours = minutes / 60;
                if hours > 0 {
                    out.insert_str(0, &format!("{hours}h"));
                }
            }
        }
        if self.0 < 0 {
            out.insert(0, '-');
        }
        f.write_str(&out)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"10s\" or \"1m30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<GoDuration, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Parses a flag value as a Go duration (clap `value_parser`).
pub fn parse_flag(text: &str) -> Result<GoDuration, String> {
    text.parse().map_err(|e: DurationError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> i64 {
        text.parse::<GoDuration>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .as_nanos()
    }

    #[test]
    fn parses_as_go_does() {
        assert_eq!(parse("0"), 0);
        assert_eq!(parse("10s"), 10_000_000_000);
        assert_eq!(parse("1m0s"), 60_000_000_000);
        assert_eq!(parse("1m30s"), 90_000_000_000);
        assert_eq!(parse("2h45m"), (2 * 3600 + 45 * 60) * 1_000_000_000);
        assert_eq!(parse("250ms"), 250_000_000);
        assert_eq!(parse("1.5h"), 5_400_000_000_000);
        assert_eq!(parse("-1.5s"), -1_500_000_000);
        assert_eq!(parse("+5s"), 5_000_000_000);
        assert_eq!(parse("300us"), 300_000);
        assert_eq!(parse("300\u{b5}s"), 300_000);
        assert_eq!(parse("7ns"), 7);
        assert_eq!(parse(".5s"), 500_000_000);
        assert_eq!(parse("1.s"), 1_000_000_000);
        assert_eq!(parse("2562047h47m16.854775807s"), i64::MAX);
        assert_eq!(parse("-2562047h47m16.854775808s"), i64::MIN);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "", "10", "5d", "s", ".s", "-", "1m30", "1.5", "3000000h", "1 s", "ten",
        ] {
            assert!(text.parse::<GoDuration>().is_err(), "{text:?} accepted");
        }
        let err = "lots".parse::<GoDuration>().expect_err("invalid");
        assert_eq!(err.to_string(), "time: invalid duration \"lots\"");
        let err = "5d".parse::<GoDuration>().expect_err("invalid");
        assert_eq!(err.to_string(), "time: unknown unit in duration \"5d\"");
        let err = "10".parse::<GoDuration>().expect_err("invalid");
        assert_eq!(err.to_string(), "time: missing unit in duration \"10\"");
    }

    #[test]
    fn prints_as_go_does() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (100_000_000, "100ms"),
            (1_000_000_000, "1s"),
            (10_000_000_000, "10s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (300_000_000_000, "5m0s"),
            (7_200_000_000_000, "2h0m0s"),
            (14_400_000_000_000, "4h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-1_500_000_000, "-1.5s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(GoDuration::from_nanos(nanos).to_string(), text);
            assert_eq!(parse(text), nanos, "{text} round trip");
        }
    }

    #[test]
    fn serde_is_a_string() {
        let d: GoDuration = serde_json::from_str("\"1m30s\"").expect("string");
        assert_eq!(d, GoDuration::from_secs(90));
        assert_eq!(serde_json::to_string(&d).expect("json"), "\"1m30s\"");
        let err = serde_json::from_str::<GoDuration>("90").expect_err("number");
        assert!(
            err.to_string().contains("expected a duration string"),
            "{err}"
        );
    }
}
