//! `Duration`: a config duration that reads and writes the way Kuma's does.
//!
//! Kuma's `config_types.Duration` accepts Go `time.ParseDuration` text ("5s", "1h30m",
//! "1.5s") or, in YAML/JSON, a bare number of nanoseconds. A Kuma user's existing config
//! must load unchanged, so both forms are accepted here. Human forms that humantime
//! understands ("3days", "2 min") are accepted as a convenience.
//!
//! Output is Go-compatible compact text ("72h", "1m30s", "500ms"), never humantime's
//! "3days": the shipped `etc/higuma.yaml` and `higuma config` output must stay readable
//! by Kuma itself.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A config duration. The inner value is public so callers use `std::time::Duration`
/// directly; this type only exists for parsing and printing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Zero, the value validation rejects for intervals that drive timers.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub const fn from_mins(mins: u64) -> Self {
        Duration(std::time::Duration::from_secs(mins * 60))
    }

    pub const fn from_hours(hours: u64) -> Self {
        Duration(std::time::Duration::from_secs(hours * 3600))
    }

    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Why a duration string was rejected; the message always quotes the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason}")]
pub struct ParseDurationError {
    pub text: String,
    pub reason: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let too_long =
            || ParseDurationError { text: s.to_owned(), reason: format!("longer than Go's maximum duration ({MAX})") };
        // Go syntax first: it is the documented format, and it is the only one with
        // fractions ("1.5h"), which humantime rejects.
        if let Some(d) = parse_go(text) {
            return if d <= MAX.0 { Ok(Duration(d)) } else { Err(too_long()) };
        }
        match humantime::parse_duration(text) {
            Ok(d) if d > MAX.0 => Err(too_long()),
            Ok(d) => Ok(Duration(d)),
            Err(e) => Err(ParseDurationError {
                text: s.to_owned(),
                reason: format!("{e} (expected Go duration syntax such as \"5s\", \"500ms\" or \"1h30m\")"),
            }),
        }
    }
}

/// Go's `time.Duration` is an int64 of nanoseconds (about 292 years): a longer value is an
/// error there, so it is one here too. Found by the config fuzz target: a longer time-out
/// overflowed `Instant` arithmetic and killed the HTTP worker that used it.
pub const MAX: Duration =
    Duration(std::time::Duration::new(i64::MAX as u64 / 1_000_000_000, (i64::MAX as u64 % 1_000_000_000) as u32));

const NANOS_PER_UNIT: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000), // Greek mu; Go accepts both code points
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
];

/// Go's `time.ParseDuration` without the sign: a sequence of `<decimal><unit>`, or "0".
/// Returns `None` for anything else so humantime gets a chance and produces the error.
fn parse_go(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = NANOS_PER_UNIT.iter().find(|(u, _)| *u == unit)?.1;
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
        let mut nanos = int.checked_mul(scale)?;
        // Fractions are accumulated digit by digit, as Go does, so "1.5h" is exact.
        let mut place = scale;
        for digit in frac_part.chars() {
            let d = u128::from(digit.to_digit(10)?);
            place /= 10;
            if place == 0 {
                break;
            }
            nanos = nanos.checked_add(d * place)?;
        }
        total = total.checked_add(nanos)?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    // The remainder of a division by 1e9 always fits in u32.
    let sub = (total % 1_000_000_000) as u32;
    Some(std::time::Duration::new(secs, sub))
}

impl fmt::Display for Duration {
    /// Go-style compact text with hours as the largest unit ("72h", "1h30m", "1s500ms"),
    /// which both Go's `time.ParseDuration` and `Duration::from_str` read back exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if secs == 0 && nanos == 0 {
            return f.write_str("0s");
        }
        let parts = [
            (secs / 3600, "h"),
            (secs / 60 % 60, "m"),
            (secs % 60, "s"),
            (u64::from(nanos / 1_000_000), "ms"),
            (u64::from(nanos / 1_000 % 1_000), "us"),
            (u64::from(nanos % 1_000), "ns"),
        ];
        for (value, unit) in parts {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"5s\", \"500ms\", \"1h30m\", or an integer number of nanoseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v > i64::MAX as u64 {
            return Err(E::custom(format!("invalid duration {v}: longer than Go's maximum duration ({MAX})")));
        }
        Ok(Duration(std::time::Duration::from_nanos(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!("invalid duration {v}: must not be negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        // Go's Duration.UnmarshalJSON accepts a JSON float and truncates it to whole
        // nanoseconds; do the same so a Kuma config with `1e9` still loads.
        if v.is_finite() && v >= 0.0 && v <= i64::MAX as f64 {
            Ok(Duration(std::time::Duration::from_nanos(v as u64)))
        } else {
            Err(E::custom(format!("invalid duration {v}: must be a non-negative number of nanoseconds")))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn longer_than_gos_maximum_is_an_error() {
        assert_eq!(super::MAX.to_string(), "2562047h47m16s854ms775us807ns");
        assert_eq!("2562047h".parse::<super::Duration>().map(|d| d.0.as_secs()), Ok(2562047 * 3600));
        for text in ["2562048h", "3000000000000000h", "300 years"] {
            let err = text.parse::<super::Duration>().unwrap_err();
            assert!(err.to_string().contains("maximum"), "{text}: {err}");
        }
        assert!(serde_json::from_value::<super::Duration>(serde_json::json!(u64::MAX)).is_err());
    }

    use super::*;

    fn parse(s: &str) -> Duration {
        match s.parse() {
            Ok(d) => d,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse("5s"), Duration::from_secs(5));
        assert_eq!(parse("500ms"), Duration::from_millis(500));
        assert_eq!(parse("1h30m"), Duration::from_mins(90));
        assert_eq!(parse("72h"), Duration::from_hours(72));
        assert_eq!(parse("1.5h"), Duration::from_mins(90));
        assert_eq!(parse(".5s"), Duration::from_millis(500));
        assert_eq!(parse("0"), Duration::ZERO);
        assert_eq!(parse("10us"), Duration(std::time::Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Duration(std::time::Duration::from_micros(10)));
    }

    #[test]
    fn accepts_humantime_forms() {
        assert_eq!(parse("3days"), Duration::from_hours(72));
        assert_eq!(parse("1h 30m"), Duration::from_mins(90));
    }

    #[test]
    fn rejects_garbage_naming_the_text() {
        for bad in ["", "abc", "5", "5x", "-5s", "1..5s"] {
            let err = bad.parse::<Duration>().err().map(|e| e.to_string());
            let msg = err.unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn displays_compact_and_round_trips() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_hours(72), "72h"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_mins(90), "1h30m"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration(std::time::Duration::new(3661, 1_001_001)), "1h1m1s1ms1us1ns"),
        ];
        for (d, text) in cases {
            assert_eq!(d.to_string(), text);
            assert_eq!(parse(text), d, "{text} round trip");
        }
    }
}
