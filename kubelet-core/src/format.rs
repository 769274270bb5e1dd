//! Formatting that must read exactly as the upstream kubelet's messages do.

use std::time::Duration;

/// A duration as Go's `time.Duration.String` prints it (`10s`, `5m0s`, `1h0m0s`,
/// `1.5s`, `345ms`), as in upstream messages such as "back-off 5m0s restarting failed
/// container".
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        // Below a second Go switches to the largest unit that keeps an integer part.
        let (unit, scale, digits) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => ("\u{b5}s", 1_000, 3),
            _ => ("ms", 1_000_000, 6),
        };
        return format!(
            "{}{unit}",
            with_fraction(nanos / scale, nanos % scale, digits)
        );
    }
    let secs = d.as_secs();
    let seconds = with_fraction(u128::from(secs % 60), u128::from(d.subsec_nanos()), 9);
    match (secs / 3600, secs / 60 % 60) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `whole.fraction` with the fraction written in `digits` places, trailing zeros (and a
/// bare point) dropped, as Go prints durations.
fn with_fraction(whole: u128, fraction: u128, digits: usize) -> String {
    let fraction = format!("{fraction:0digits$}");
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5\u{b5}s");
        assert_eq!(go_duration(Duration::from_millis(345)), "345ms");
        assert_eq!(go_duration(Duration::from_micros(1_234_500)), "1.2345s");
        assert_eq!(go_duration(Duration::from_millis(90_500)), "1m30.5s");
    }
}
