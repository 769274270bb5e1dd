//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`), parsed the way apimachinery's
//! `resource.ParseQuantity` parses them.
//!
//! The kubelet turns quantities into cgroup values (CPU shares and quota, memory limits)
//! and into downward-API environment variables, so `value()` and `milli_value()` must
//! round exactly as upstream's `Quantity.Value()` and `Quantity.MilliValue()` do.
//!
//! A parsed quantity is held as a whole number of nano-units (10^-9), which is the
//! precision upstream keeps: anything finer is rounded up (away from zero) when parsed.
//!
//! # Example
//!
//! ```
//! use kubelet_core::Quantity;
//!
//! let cpu: Quantity = "250m".parse().unwrap();
//! assert_eq!(cpu.milli_value(), 250);
//! assert_eq!(cpu.value(), 1); // rounded up
//! assert_eq!(Quantity::parse("1.5Gi").unwrap().value(), 1_610_612_736);
//! assert!(Quantity::parse("1 Gi").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// Nano-units in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Nano-units in one milli-unit.
const NANOS_PER_MILLI: i128 = 1_000_000;
/// Upstream caps binary-suffixed quantities (`Ki` ... `Ei`) at the largest int64.
const MAX_BINARY_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantityErrorKind {
    /// The text does not have the shape `<sign><digits>.<digits><suffix>`
    /// (upstream `ErrFormatWrong`).
    Format,
    /// The suffix is not one of the known ones (upstream `ErrSuffix`).
    Suffix,
    /// The number has no digits where upstream needs some (upstream `ErrNumeric`).
    Numeric,
}

/// A quantity string that is not a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {text:?}: {}", match kind {
    QuantityErrorKind::Format => "quantities must match the regular expression \
        '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    QuantityErrorKind::Suffix => "unable to parse quantity's suffix",
    QuantityErrorKind::Numeric => "unable to parse numeric part of quantity",
})]
pub struct QuantityError {
    /// The rejected text.
    pub text: String,
    /// Why it was rejected.
    pub kind: QuantityErrorKind,
}

/// A parsed Kubernetes quantity.
///
/// Ordering and equality compare the numeric values, so `1Ki == 1024` and `1 < 1001m`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantity {
    /// The value in units of 10^-9, saturated at the bounds of `i128` (about 1.7e29 units,
    /// far beyond any meaningful resource amount).
    nanos: i128,
    /// Upstream holds this value in its arbitrary-precision form rather than as a scaled
    /// int64; the two round negative values differently in `Value()`/`MilliValue()`.
    arbitrary: bool,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

/// How the suffix scales the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Times 10^exponent (SI suffixes and `e`/`E` exponents).
    Decimal(i32),
    /// Times 2^exponent (`Ki` ... `Ei`).
    Binary(u32),
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        arbitrary: false,
    };

    /// Parses `text` as upstream's `resource.ParseQuantity` does.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = |kind| QuantityError {
            text: text.to_owned(),
            kind,
        };
        if text.is_empty() {
            return Err(err(QuantityErrorKind::Format));
        }
        let parts = split(text).ok_or_else(|| err(QuantityErrorKind::Format))?;
        let Some(parts) = parts else {
            // Only zeros (or a bare sign) after the sign: upstream returns zero before
            // looking at anything else.
            return Ok(Self::ZERO);
        };
        let scale = interpret_suffix(parts.suffix).ok_or_else(|| err(QuantityErrorKind::Suffix))?;

        // Upstream takes an int64 fast path when the digits surely fit and falls back to
        // arbitrary precision otherwise. Both give the same number, except that the
        // fallback re-parses the text before the suffix and fails when it has no digit
        // at all (e.g. "Pi", ".e-10"), which the fast path accepts as zero.
        let num_len = parts.num.len().max(1) as i64;
        let denom_len = parts.denom.len() as i64;
        let fast = match scale {
            Scale::Decimal(exp) => {
                18 - (num_len + denom_len) >= 0 && i64::from(exp) - denom_len >= -9
            }
            Scale::Binary(exp) => {
                let precision = 15 - num_len - i64::from(exp) * 3 / 10 - 1;
                denom_len == 0 && precision >= 0 && binary_fits_i64(parts.num, exp)
            }
        };
        if !fast && !parts.value.bytes().any(|b| b.is_ascii_digit()) {
            return Err(err(QuantityErrorKind::Numeric));
        }

        let mut digits: Vec<u8> = parts
            .num
            .bytes()
            .chain(parts.denom.bytes())
            .map(|b| b - b'0')
            .skip_while(|d| *d == 0)
            .collect();
        let shift = match scale {
            Scale::Decimal(exp) => i64::from(exp) - denom_len + 9,
            Scale::Binary(exp) => {
                for _ in 0..exp {
                    double(&mut digits);
                }
                9 - denom_len
            }
        };
        let mut nanos = ceil_shifted(&digits, shift);
        if matches!(scale, Scale::Binary(_)) {
            nanos = nanos.min(MAX_BINARY_NANOS);
        }
        Ok(Self {
            nanos: if parts.negative { -nanos } else { nanos },
            arbitrary: !fast,
        })
    }

    /// The value rounded up to a whole number of units, as upstream `Quantity.Value()`
    /// (`1.2` → 2, `100m` → 1).
    ///
    /// Negative values round as upstream rounds them: away from zero (`-1.5` → -2) for
    /// values upstream keeps as a scaled int64, and to the truncated value plus one
    /// (`-1.5e-10` → 1) for the few it keeps in arbitrary precision (more than 18 digits,
    /// finer than nano, binary suffix with a fraction). Results beyond `i64` saturate
    /// where upstream overflows.
    pub fn value(&self) -> i64 {
        scaled(self.nanos, NANOS_PER_UNIT, self.arbitrary)
    }

    /// The value in thousandths, rounded up, as upstream `Quantity.MilliValue()`
    /// (`0.1` → 100, `1n` → 1). Same rounding and saturation as [`Quantity::value`].
    pub fn milli_value(&self) -> i64 {
        scaled(self.nanos, NANOS_PER_MILLI, self.arbitrary)
    }

    /// The exact value in units of 10^-9 (saturated at the bounds of `i128`).
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }

    /// The quantity of `nanos` units of 10^-9.
    pub fn from_nanos(nanos: i128) -> Self {
        Self {
            nanos,
            arbitrary: false,
        }
    }

    /// The quantity of `units` whole units (bytes, cores), the inverse of
    /// [`Quantity::value`].
    pub fn from_value(units: u64) -> Self {
        Self::from_nanos(i128::from(units) * NANOS_PER_UNIT)
    }

    /// The quantity of `milli` thousandths (millicores), the inverse of
    /// [`Quantity::milli_value`].
    pub fn from_milli_value(milli: u64) -> Self {
        Self::from_nanos(i128::from(milli) * NANOS_PER_MILLI)
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The sum, saturating at the bounds of the representation.
    pub fn saturating_add(self, other: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_add(other.nanos),
            arbitrary: self.arbitrary || other.arbitrary,
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<&ApiQuantity> for Quantity {
    type Error = QuantityError;

    fn try_from(quantity: &ApiQuantity) -> Result<Self, Self::Error> {
        Self::parse(&quantity.0)
    }
}

impl fmt::Display for Quantity {
    /// A plain decimal rendering (`1.5`, `0.25`, `1024`), not upstream's canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let units = abs / NANOS_PER_UNIT as u128;
        let frac = abs % NANOS_PER_UNIT as u128;
        if frac == 0 {
            write!(f, "{sign}{units}")
        } else {
            let frac = format!("{frac:09}");
            write!(f, "{sign}{units}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// The pieces of a quantity string, as upstream's `parseQuantityString` splits it.
struct Parts<'a> {
    negative: bool,
    /// Everything before the suffix: sign, digits, point, fraction.
    value: &'a str,
    /// Integer digits without leading zeros; may be empty.
    num: &'a str,
    /// Fraction digits.
    denom: &'a str,
    suffix: &'a str,
}

/// Splits `text`; `None` when it is malformed, `Some(None)` when upstream short-cuts to
/// zero because nothing but zeros follow the sign.
fn split(text: &str) -> Option<Option<Parts<'_>>> {
    let bytes = text.as_bytes();
    let end = bytes.len();
    let mut pos = 0;
    let mut negative = false;
    match bytes.first() {
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < end && bytes[pos] == b'0' {
        pos += 1;
    }
    if pos == end {
        return Some(None);
    }
    let num_start = pos;
    while pos < end && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &text[num_start..pos];
    let mut denom = "";
    if pos < end && bytes[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &text[denom_start..pos];
    }
    let value = &text[..pos];
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < end && (bytes[pos] == b'-' || bytes[pos] == b'+') {
        pos += 1;
    }
    while pos < end && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return None;
    }
    Some(Some(Parts {
        negative,
        value,
        num,
        denom,
        suffix: &text[suffix_start..],
    }))
}

fn interpret_suffix(suffix: &str) -> Option<Scale> {
    let scale = match suffix {
        "" => Scale::Decimal(0),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|rest| !rest.is_empty())?;
            // Upstream parses an int64 and converts it to int32, wrapping.
            Scale::Decimal(exponent.parse::<i64>().ok()? as i32)
        }
    };
    Some(scale)
}

/// Whether `num << exp` fits an int64, the condition of upstream's binary fast path.
fn binary_fits_i64(num: &str, exp: u32) -> bool {
    if num.is_empty() {
        return true;
    }
    num.parse::<i64>()
        .is_ok_and(|value| value.checked_mul(1_i64 << exp).is_some())
}

/// Multiplies a big-endian decimal digit string by two.
fn double(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for d in digits.iter_mut().rev() {
        let v = *d * 2 + carry;
        *d = v % 10;
        carry = v / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

/// `ceil(digits * 10^shift)`, saturated at `i128::MAX`; `digits` has no leading zeros.
fn ceil_shifted(digits: &[u8], shift: i64) -> i128 {
    if digits.is_empty() {
        return 0;
    }
    let (int_digits, frac_digits) = if shift >= 0 {
        (digits, &[][..])
    } else {
        let k = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
        if k >= digits.len() {
            // Only a non-zero fraction: rounds up to the smallest unit.
            return 1;
        }
        digits.split_at(digits.len() - k)
    };
    let mut value: i128 = 0;
    for d in int_digits {
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(*d)))
        {
            Some(v) => value = v,
            None => return i128::MAX,
        }
    }
    if shift > 0 {
        for _ in 0..shift {
            match value.checked_mul(10) {
                Some(v) => value = v,
                None => return i128::MAX,
            }
        }
    }
    if frac_digits.iter().any(|d| *d != 0) {
        value = value.saturating_add(1);
    }
    value
}

/// `nanos / per` rounded up as upstream rounds, saturated to `i64`.
fn scaled(nanos: i128, per: i128, arbitrary: bool) -> i64 {
    let quotient = nanos / per;
    let rounded = if nanos % per == 0 {
        quotient
    } else if nanos > 0 || arbitrary {
        // Upstream's arbitrary-precision path adds one to the truncated quotient whatever
        // the sign, which for negative values is not a rounding at all (-1.5 -> 0).
        quotient + 1
    } else {
        quotient - 1
    };
    i64::try_from(rounded).unwrap_or(if rounded > 0 { i64::MAX } else { i64::MIN })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `(text, Value(), MilliValue())` as upstream's apimachinery v0.37.2 computes them
    /// (obtained by running `resource.ParseQuantity` on each text).
    const PARSED: &[(&str, i64, i64)] = &[
        ("0", 0, 0),
        ("1", 1, 1000),
        ("-1", -1, -1000),
        ("+1", 1, 1000),
        ("1.5", 2, 1500),
        ("-1.5", -2, -1500),
        ("0.5", 1, 500),
        (".5", 1, 500),
        ("5.", 5, 5000),
        (".", 0, 0),
        ("+", 0, 0),
        ("-", 0, 0),
        ("-0", 0, 0),
        ("00", 0, 0),
        ("007", 7, 7000),
        ("100m", 1, 100),
        ("250m", 1, 250),
        ("1m", 1, 1),
        ("0.1m", 1, 1),
        ("1n", 1, 1),
        ("0.5n", 1, 1),
        ("1u", 1, 1),
        ("1k", 1000, 1000000),
        ("1M", 1000000, 1000000000),
        ("1G", 1000000000, 1000000000000),
        ("1T", 1000000000000, 1000000000000000),
        ("1P", 1000000000000000, 1000000000000000000),
        ("1Ki", 1024, 1024000),
        ("1Mi", 1048576, 1048576000),
        ("1Gi", 1073741824, 1073741824000),
        ("1.5Gi", 1610612736, 1610612736000),
        ("0.5Ki", 512, 512000),
        ("1Ti", 1099511627776, 1099511627776000),
        ("1Pi", 1125899906842624, 1125899906842624000),
        ("Ki", 0, 0),
        ("Ti", 0, 0),
        ("00Pi", 0, 0),
        ("1e3", 1000, 1000000),
        ("1E3", 1000, 1000000),
        ("1e-3", 1, 1),
        ("1e+3", 1000, 1000000),
        ("1e-9", 1, 1),
        ("1e-10", 1, 1),
        ("1.5e-10", 1, 1),
        ("1.G", 1000000000, 1000000000000),
        ("1.Gi", 1073741824, 1073741824000),
        ("0.000000001", 1, 1),
        ("0.0000000001", 1, 1),
        ("0.0000000019", 1, 1),
        ("1.000000000000000000001", 2, 1001),
        ("999999999999", 999999999999, 999999999999000),
        ("3.14159", 4, 3142),
        ("-0.001", -1, -1),
        ("-0.0001", -1, -1),
        ("1e0", 1, 1000),
        ("1e00", 1, 1000),
        ("1e+03", 1000, 1000000),
        ("1E-3", 1, 1),
        ("1.5m", 1, 2),
        ("2.5u", 1, 1),
        ("15n", 1, 1),
        ("1500m", 2, 1500),
        ("0.000001Ki", 1, 2),
        ("1.0000000001Ki", 1025, 1024001),
        ("9223372036.854775807", 9223372037, 9223372036855),
        ("1e15", 1000000000000000, 1000000000000000000),
        ("123.456789k", 123457, 123456789),
        ("0.1", 1, 100),
        ("0.01", 1, 10),
        ("0.001", 1, 1),
        ("0.0001", 1, 1),
        ("-1.5e-10", 1, 1),
        ("-0.5Ki", -512, -512000),
        ("-1.0000000001", 0, -999),
        ("-12345.5n", 1, 1),
        ("-0.0000000001", 1, 1),
    ];

    /// Texts upstream rejects, with the error it returns.
    const REJECTED: &[(&str, QuantityErrorKind)] = &[
        ("1K", QuantityErrorKind::Suffix),
        ("Pi", QuantityErrorKind::Numeric),
        ("Ei", QuantityErrorKind::Numeric),
        (".Ei", QuantityErrorKind::Numeric),
        ("e-10", QuantityErrorKind::Numeric),
        (".e-10", QuantityErrorKind::Numeric),
        ("1e", QuantityErrorKind::Suffix),
        ("1ee3", QuantityErrorKind::Suffix),
        ("1ki", QuantityErrorKind::Suffix),
        ("1mi", QuantityErrorKind::Suffix),
        ("1 ", QuantityErrorKind::Format),
        (" 1", QuantityErrorKind::Format),
        ("1 Gi", QuantityErrorKind::Format),
        ("12Mi ", QuantityErrorKind::Format),
        ("1.5.5", QuantityErrorKind::Format),
        ("1,5", QuantityErrorKind::Format),
        ("abc", QuantityErrorKind::Format),
        ("1m5", QuantityErrorKind::Suffix),
        ("1e12m", QuantityErrorKind::Format),
        ("", QuantityErrorKind::Format),
    ];

    #[test]
    fn parses_like_upstream() {
        for (text, value, milli) in PARSED {
            let parsed = q(text);
            assert_eq!(
                (parsed.value(), parsed.milli_value()),
                (*value, *milli),
                "{text:?}"
            );
        }
        for (text, kind) in REJECTED {
            match Quantity::parse(text) {
                Err(e) => assert_eq!(e.kind, *kind, "{text:?}"),
                Ok(parsed) => panic!("{text:?} parsed as {parsed}"),
            }
        }
    }

    #[test]
    fn out_of_range_results_saturate() {
        // Upstream overflows int64 here (MilliValue of 1E is 0, of 8Ei is -1000).
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1E").milli_value(), i64::MAX);
        // Binary quantities are capped at the largest int64, as upstream caps them.
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("9Ei"), q("8Ei"));
        assert_eq!(q("-8Ei").value(), -i64::MAX);
        assert_eq!(q("1e100").value(), i64::MAX);
        assert_eq!(q("-1e100").value(), i64::MIN);
        assert_eq!(q("1e-2147483648").nano_value(), 1);
        // The exponent is parsed as int64 and wrapped to int32, as upstream does.
        assert_eq!(q("1e4294967296"), q("1"));
    }

    /// A small deterministic generator, so the properties run on many inputs without a
    /// property-testing dependency.
    fn numbers() -> impl Iterator<Item = u64> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        std::iter::repeat_with(move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .take(2000)
    }

    #[test]
    fn properties_hold_for_generated_inputs() {
        for n in numbers() {
            let small = (n % 1_000_000_000_000) as i64;
            // Plain integers are exact in every unit.
            assert_eq!(q(&small.to_string()).value(), small);
            assert_eq!(q(&format!("-{small}")).value(), -small);
            assert_eq!(q(&small.to_string()).milli_value(), small * 1000);
            // Milli-units: milli_value is exact, value is the ceiling.
            let m = q(&format!("{small}m"));
            assert_eq!(m.milli_value(), small);
            assert_eq!(m.value(), (small + 999) / 1000);
            // Binary suffixes multiply exactly.
            let k = small % 1_000_000;
            assert_eq!(q(&format!("{k}Ki")).value(), k * 1024);
            assert_eq!(q(&format!("{k}Mi")).value(), k << 20);
            // Exponents and SI suffixes agree.
            assert_eq!(q(&format!("{k}k")), q(&format!("{k}e3")));
            assert_eq!(q(&format!("{k}M")), q(&format!("{k}E6")));
            assert_eq!(q(&format!("{k}u")), q(&format!("{k}e-6")));
            // A fraction rounds up: a.b is a+1 whenever b is not all zeros.
            let frac = n % 1000;
            let expected = if frac == 0 { k } else { k + 1 };
            assert_eq!(
                q(&format!("{k}.{frac:03}")).value(),
                expected,
                "{k}.{frac:03}"
            );
            // Comparison agrees with the integer order.
            let other = (n.rotate_left(17) % 1_000_000) as i64;
            assert_eq!(
                q(&format!("{k}")).cmp(&q(&format!("{other}"))),
                k.cmp(&other)
            );
        }
    }

    #[test]
    fn display_is_plain_decimal() {
        assert_eq!(q("1.5").to_string(), "1.5");
        assert_eq!(q("-250m").to_string(), "-0.25");
        assert_eq!(q("1Ki").to_string(), "1024");
        assert_eq!(q("1n").to_string(), "0.000000001");
    }

    #[test]
    fn comparison_is_numeric() {
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1000m"), q("1"));
        assert!(q("1") < q("1001m"));
        assert!(q("-1") < Quantity::ZERO);
        assert_eq!(q("1").saturating_add(q("500m")), q("1.5"));
    }

    #[test]
    fn errors_name_the_text() {
        let e = Quantity::parse("12 Mi").expect_err("a space is not allowed");
        assert_eq!(e.kind, QuantityErrorKind::Format);
        assert!(e.to_string().starts_with("quantity \"12 Mi\": "), "{e}");
        let e = Quantity::parse("1ki").expect_err("suffixes are case sensitive");
        assert_eq!(e.kind, QuantityErrorKind::Suffix);
        assert_eq!(
            e.to_string(),
            "quantity \"1ki\": unable to parse quantity's suffix"
        );
    }

    #[test]
    fn decimal_doubling() {
        let mut d = vec![5, 1, 2];
        double(&mut d);
        assert_eq!(d, vec![1, 0, 2, 4]);
    }
}
