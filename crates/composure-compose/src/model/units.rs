//! Values with units: durations, byte sizes, CPU counts, file modes.
//!
//! Each type reads what compose files write (and what interpolation leaves as text) and
//! prints the canonical form `docker compose config` prints: durations Go style (`1m30s`),
//! byte sizes as integers, CPU counts as plain numbers, file modes as octal text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::de::{Raw, Scalar, mismatch, scalar};

/// Why a text with a unit could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{text}`: {reason}")]
pub struct UnitError {
    /// The kind of value: "duration", "byte size".
    pub what: &'static str,
    /// The text as written.
    pub text: String,
    pub reason: String,
}

impl UnitError {
    fn new(what: &'static str, text: &str, reason: impl Into<String>) -> Self {
        UnitError {
            what,
            text: text.to_string(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Durations

/// A length of time (`stop_grace_period`, healthcheck intervals, deploy delays).
///
/// Reads Go duration text (`1m30s`, `500ms`, `1.5s`, `10us`) plus the `d` and `w` units
/// compose-go also accepts; a bare number is an error (the spec wants `{value}{unit}`),
/// except `0`. Prints as Go's `time.Duration` does: `1m30s`, `500ms`, `1h0m0s`, `0s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
];

impl Duration {
    pub fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let err = |reason: &str| UnitError::new("duration", text, reason);
        let body = match text.as_bytes().first() {
            Some(b'-') => return Err(err("a duration cannot be negative")),
            Some(b'+') => &text[1..],
            Some(_) => text,
            None => return Err(err("empty text")),
        };
        if body == "0" {
            return Ok(Duration::default());
        }
        let mut rest = body;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let (value, after_number) = split_number(rest).ok_or_else(|| {
                err("expected a number followed by a unit (ns, us, ms, s, m, h, d, w)")
            })?;
            let unit_len = after_number
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after_number.len());
            let unit = &after_number[..unit_len];
            if unit.is_empty() {
                return Err(err(
                    "missing unit (ns, us, ms, s, m, h, d or w), as in `10s`",
                ));
            }
            let scale = NANOS_PER_UNIT
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, n)| *n)
                .ok_or_else(|| err(&format!("unknown unit `{unit}`")))?;
            total = value
                .nanos(scale)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| err("too long"))?;
            rest = &after_number[unit_len..];
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too long"))?;
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

/// A decimal number as written in a duration: whole part and fraction digits.
struct Decimal<'a> {
    whole: &'a str,
    fraction: &'a str,
}

impl Decimal<'_> {
    fn nanos(&self, scale: u128) -> Option<u128> {
        let whole: u128 = if self.whole.is_empty() {
            0
        } else {
            self.whole.parse().ok()?
        };
        // Digits past 30 cannot change a nanosecond count; Go ignores them too.
        let fraction = &self.fraction[..self.fraction.len().min(30)];
        let mut frac_nanos = 0u128;
        if !fraction.is_empty() {
            let digits: u128 = fraction.parse().ok()?;
            let divisor = 10u128.checked_pow(fraction.len() as u32)?;
            frac_nanos = digits.checked_mul(scale)? / divisor;
        }
        whole.checked_mul(scale)?.checked_add(frac_nanos)
    }
}

fn split_number(text: &str) -> Option<(Decimal<'_>, &str)> {
    let whole_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let whole = &text[..whole_len];
    let mut rest = &text[whole_len..];
    let mut fraction = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let len = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        fraction = &after_dot[..len];
        rest = &after_dot[len..];
    }
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    Some((Decimal { whole, fraction }, rest))
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000 {
            return write!(f, "{nanos}ns");
        }
        if nanos < 1_000_000 {
            return write!(f, "{}\u{b5}s", decimal(nanos, 3));
        }
        if nanos < 1_000_000_000 {
            return write!(f, "{}ms", decimal(nanos, 6));
        }
        let secs = nanos / 1_000_000_000;
        let seconds = decimal(nanos % 60_000_000_000, 9);
        let (minutes, hours) = ((secs / 60) % 60, secs / 3600);
        if hours > 0 {
            write!(f, "{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            write!(f, "{minutes}m{seconds}s")
        } else {
            write!(f, "{seconds}s")
        }
    }
}

/// `value / 10^places` written with its fraction, trailing zeros dropped: `1500, 3 -> 1.5`.
fn decimal(value: u128, places: u32) -> String {
    let unit = 10u128.pow(places);
    let (whole, frac) = (value / unit, value % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = places as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl FromStr for Duration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl Scalar for Duration {
    const EXPECTING: &'static str = "a duration such as `30s` or `1m30s`";
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Text(s) => Duration::parse(s).map_err(|e| e.to_string()),
            Raw::Int(0) | Raw::UInt(0) => Ok(Duration::default()),
            Raw::Int(_) | Raw::UInt(_) | Raw::Float(_) => Err(format!(
                "{}: a duration needs a unit, as in `10s`",
                mismatch::<Self>(raw)
            )),
            Raw::Bool(_) => Err(mismatch::<Self>(raw)),
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d)
    }
}

// ---------------------------------------------------------------------------------------
// Byte sizes

/// A number of bytes (`mem_limit`, `shm_size`, tmpfs `size`).
///
/// Reads an integer, or Docker's size text: a number (fraction allowed), an optional space,
/// and an optional unit `b`, `k`, `m`, `g`, `t`, `p` in any case, optionally followed by
/// `b` or `ib`. Units are powers of 1024 whatever the spelling (`512m` and `512MB` are
/// both 512 MiB), as Docker reads them. `-1` (unlimited swap) is accepted as a plain
/// integer only. Prints as an integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub i64);

impl Bytes {
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Bytes(n));
        }
        let err = |reason: String| UnitError::new("byte size", text, reason);
        let number_len = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, rest) = text.split_at(number_len);
        let suffix = rest.strip_prefix(' ').unwrap_or(rest);
        let amount: f64 = number.parse().map_err(|_| {
            err("expected a number with an optional unit (b, k, m, g, t, p)".into())
        })?;
        let multiplier = byte_multiplier(suffix)
            .ok_or_else(|| err(format!("unknown unit `{suffix}` (use b, k, m, g, t or p)")))?;
        let bytes = amount * multiplier as f64;
        if bytes >= i64::MAX as f64 {
            return Err(err("too large".into()));
        }
        // Docker truncates fractional byte counts.
        Ok(Bytes(bytes as i64))
    }
}

fn byte_multiplier(suffix: &str) -> Option<u64> {
    let lower = suffix.to_ascii_lowercase();
    let mut chars = lower.chars();
    let Some(first) = chars.next() else {
        return Some(1);
    };
    if first == 'b' {
        return chars.next().is_none().then_some(1);
    }
    let power = "kmgtp".find(first)? as u32 + 1;
    match chars.as_str() {
        "" | "b" | "ib" => Some(1024u64.pow(power)),
        _ => None,
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Bytes {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bytes::parse(s)
    }
}

impl Scalar for Bytes {
    const EXPECTING: &'static str = "a byte size such as `512m` or an integer";
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Text(s) => Bytes::parse(s).map_err(|e| e.to_string()),
            Raw::Int(i) => Ok(Bytes(i)),
            Raw::UInt(u) => i64::try_from(u)
                .map(Bytes)
                .map_err(|_| mismatch::<Self>(raw)),
            Raw::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e18 => Ok(Bytes(x as i64)),
            Raw::Float(_) | Raw::Bool(_) => Err(mismatch::<Self>(raw)),
        }
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d)
    }
}

// ---------------------------------------------------------------------------------------
// CPU counts

/// A number of CPUs, possibly fractional (`cpus: 0.5`, `cpus: "1.5"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Cpus(pub f64);

impl Cpus {
    /// In the unit the Docker API takes (`NanoCpus`).
    pub fn nanos(self) -> i64 {
        (self.0 * 1e9).round() as i64
    }
}

impl Scalar for Cpus {
    const EXPECTING: &'static str = "a number of CPUs such as `0.5` or `2`";
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        let value = f64::from_raw(raw).map_err(|_| mismatch::<Self>(raw))?;
        if value < 0.0 {
            return Err(format!("{}: it cannot be negative", mismatch::<Self>(raw)));
        }
        Ok(Cpus(value))
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_number(self.0, s)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d)
    }
}

/// Writes a whole number as an integer (`2`, not `2.0`) and anything else as a float.
pub(crate) fn serialize_number<S: Serializer>(value: f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        s.serialize_i64(value as i64)
    } else {
        s.serialize_f64(value)
    }
}

// ---------------------------------------------------------------------------------------
// Microseconds (cpu_rt_period, cpu_rt_runtime)

/// A count of microseconds, written either as an integer or as a duration (`400ms`),
/// as the spec allows for `cpu_rt_period` and `cpu_rt_runtime`. Prints as an integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microseconds(pub i64);

impl Scalar for Microseconds {
    const EXPECTING: &'static str = "microseconds as an integer, or a duration such as `400ms`";
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        if let Ok(n) = i64::from_raw(raw) {
            return Ok(Microseconds(n));
        }
        match raw {
            Raw::Text(s) => {
                let d = Duration::parse(s).map_err(|e| e.to_string())?;
                i64::try_from(d.0.as_micros())
                    .map(Microseconds)
                    .map_err(|_| mismatch::<Self>(raw))
            }
            _ => Err(mismatch::<Self>(raw)),
        }
    }
}

impl Serialize for Microseconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Microseconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d)
    }
}

// ---------------------------------------------------------------------------------------
// File modes

/// Unix permission bits (secret and config `mode`, tmpfs `mode`).
///
/// An integer is taken as the number it is (YAML `0o440` is already 288); text is read as
/// octal, as compose-go does (`"440"` and `"0440"` are both 0o440). Prints as octal text
/// with a leading zero (`"0440"`), which reads back to the same value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileMode(pub u32);

impl Scalar for FileMode {
    const EXPECTING: &'static str = "a file mode such as `0440`";
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Text(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .map(FileMode)
                    .ok_or_else(|| format!("{}: not an octal number", mismatch::<Self>(raw)))
            }
            _ => u32::from_raw(raw)
                .map(FileMode)
                .map_err(|_| mismatch::<Self>(raw)),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0{:o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dur(text: &str) -> Duration {
        Duration::parse(text).unwrap()
    }

    #[test]
    fn durations_parse_go_syntax() {
        assert_eq!(dur("1m30s"), Duration::from_secs(90));
        assert_eq!(dur("500ms"), Duration::from_millis(500));
        assert_eq!(dur("1h"), Duration::from_secs(3600));
        assert_eq!(dur("10us").0, std::time::Duration::from_micros(10));
        assert_eq!(dur("10\u{b5}s").0, std::time::Duration::from_micros(10));
        assert_eq!(dur("1.5s"), Duration::from_millis(1500));
        assert_eq!(dur(".5s"), Duration::from_millis(500));
        assert_eq!(dur("1h5m30s20ms"), Duration::from_millis(3_930_020));
        assert_eq!(dur("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(dur("1w"), Duration::from_secs(7 * 86_400));
        assert_eq!(dur("0"), Duration::default());
        assert_eq!(dur("+3s"), Duration::from_secs(3));
    }

    #[test]
    fn durations_reject_bad_text_and_name_it() {
        for bad in ["", "10", "s", "1x", "-1s", "1.s.", "1m30"] {
            let err = Duration::parse(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
        assert!(
            Duration::parse("10")
                .unwrap_err()
                .reason
                .contains("missing unit")
        );
        assert!(Duration::parse("3y").unwrap_err().reason.contains("`y`"));
    }

    #[test]
    fn durations_print_go_style() {
        let cases = [
            ("0s", "0s"),
            ("90s", "1m30s"),
            ("500ms", "500ms"),
            ("1h", "1h0m0s"),
            ("1m", "1m0s"),
            ("1.5s", "1.5s"),
            ("10us", "10\u{b5}s"),
            ("1500us", "1.5ms"),
            ("7ns", "7ns"),
            ("25h1s", "25h0m1s"),
            ("1m0.25s", "1m0.25s"),
        ];
        for (input, printed) in cases {
            assert_eq!(dur(input).to_string(), printed, "{input}");
            assert_eq!(dur(printed), dur(input), "{printed} reads back");
        }
    }

    #[test]
    fn durations_through_serde() {
        let d: Duration = serde_json::from_value(json!("1m30s")).unwrap();
        assert_eq!(serde_json::to_value(d).unwrap(), json!("1m30s"));
        let err = serde_json::from_value::<Duration>(json!(30))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a unit"), "{err}");
        let zero: Duration = serde_json::from_value(json!(0)).unwrap();
        assert_eq!(zero, Duration::default());
    }

    #[test]
    fn bytes_use_binary_units_like_docker() {
        let cases = [
            ("100", 100),
            ("2b", 2),
            ("1k", 1024),
            ("1024kb", 1024 * 1024),
            ("512m", 512 << 20),
            ("512MB", 512 << 20),
            ("2gb", 2 << 30),
            ("2GiB", 2 << 30),
            ("1.5g", 1_610_612_736),
            ("1 t", 1 << 40),
            ("1p", 1 << 50),
            ("-1", -1),
        ];
        for (text, want) in cases {
            assert_eq!(Bytes::parse(text), Ok(Bytes(want)), "{text}");
        }
    }

    #[test]
    fn bytes_reject_bad_text_and_name_it() {
        for bad in ["", "m", "12x", "1kk", "1bb", "1.2.3m", "-5m", "1 2"] {
            let err = Bytes::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn bytes_through_serde_print_integers() {
        let b: Bytes = serde_json::from_value(json!("2gb")).unwrap();
        assert_eq!(serde_json::to_value(b).unwrap(), json!(2_147_483_648i64));
        let b: Bytes = serde_json::from_value(json!(1024)).unwrap();
        assert_eq!(b, Bytes(1024));
        assert!(serde_json::from_value::<Bytes>(json!(true)).is_err());
    }

    #[test]
    fn cpus_read_numbers_and_text() {
        let c: Cpus = serde_json::from_value(json!("0.5")).unwrap();
        assert_eq!(c, Cpus(0.5));
        assert_eq!(c.nanos(), 500_000_000);
        assert_eq!(serde_json::to_value(c).unwrap(), json!(0.5));
        let two: Cpus = serde_json::from_value(json!(2)).unwrap();
        assert_eq!(serde_json::to_value(two).unwrap(), json!(2));
        assert!(serde_json::from_value::<Cpus>(json!("-1")).is_err());
        assert!(serde_json::from_value::<Cpus>(json!("lots")).is_err());
    }

    #[test]
    fn microseconds_read_integers_or_durations() {
        let m: Microseconds = serde_json::from_value(json!("400ms")).unwrap();
        assert_eq!(m, Microseconds(400_000));
        let m: Microseconds = serde_json::from_value(json!(95000)).unwrap();
        assert_eq!(m, Microseconds(95_000));
        let m: Microseconds = serde_json::from_value(json!("1400us")).unwrap();
        assert_eq!(serde_json::to_value(m).unwrap(), json!(1400));
    }

    #[test]
    fn file_modes_read_text_as_octal() {
        let m: FileMode = serde_json::from_value(json!("555")).unwrap();
        assert_eq!(m, FileMode(0o555));
        let m: FileMode = serde_json::from_value(json!("0440")).unwrap();
        assert_eq!(m, FileMode(0o440));
        let m: FileMode = serde_json::from_value(json!(288)).unwrap();
        assert_eq!(m, FileMode(0o440));
        assert_eq!(serde_json::to_value(m).unwrap(), json!("0440"));
        assert!(serde_json::from_value::<FileMode>(json!("999")).is_err());
    }
}
