//! `google.protobuf.Duration` as Kuma's protobuf JSON writes it, shared by the policy specs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `google.protobuf.Duration` as protobuf JSON writes it (`"10s"`, `"0.500s"`).
///
/// Reads protobuf JSON (`"10s"`, `"0.5s"`, `"1.000000001s"`) and, leniently, Go/humantime
/// forms (`"500ms"`, `"1m"`, `"1h30m"`). Writes protobuf JSON: whole seconds, with 3, 6 or 9
/// fractional digits when needed (as Go's protojson does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtoDuration(pub Duration);

impl ProtoDuration {
    pub fn from_secs(secs: u64) -> Self {
        ProtoDuration(Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        ProtoDuration(Duration::from_millis(ms))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn parse(text: &str) -> Result<ProtoDuration, String> {
        let err = || {
            format!(
                "invalid duration {text:?}: expected protobuf JSON seconds like \"10s\" or \"0.5s\", or a Go duration like \"500ms\", \"1m\" or \"1h30m\""
            )
        };
        let t = text.trim();
        if t.is_empty() || t.starts_with('-') || t.starts_with('+') {
            return Err(err());
        }
        // Protobuf JSON: digits, optional fraction of at most 9 digits, then "s".
        if let Some(num) = t.strip_suffix('s') {
            let (whole, frac) = match num.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (num, None),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if digits(whole) && frac.is_none_or(|f| digits(f) && f.len() <= 9) {
                let secs: u64 = whole.parse().map_err(|_| err())?;
                let nanos = match frac {
                    Some(f) => format!("{f:0<9}").parse::<u32>().map_err(|_| err())?,
                    None => 0,
                };
                return Ok(ProtoDuration(Duration::new(secs, nanos)));
            }
        }
        humantime::parse_duration(t).map(ProtoDuration).map_err(|_| err())
    }
}

impl fmt::Display for ProtoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else if nanos % 1_000_000 == 0 {
            write!(f, "{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            write!(f, "{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{secs}.{nanos:09}s")
        }
    }
}

impl From<Duration> for ProtoDuration {
    fn from(d: Duration) -> Self {
        ProtoDuration(d)
    }
}

impl From<ProtoDuration> for Duration {
    fn from(d: ProtoDuration) -> Self {
        d.0
    }
}

impl Serialize for ProtoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProtoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ProtoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"10s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ProtoDuration, E> {
                ProtoDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse_protobuf_json_and_go_forms() {
        let p = |s: &str| ProtoDuration::parse(s).unwrap().0;
        assert_eq!(p("10s"), Duration::from_secs(10));
        assert_eq!(p("0s"), Duration::ZERO);
        assert_eq!(p("0.5s"), Duration::from_millis(500));
        assert_eq!(p("1.000000001s"), Duration::new(1, 1));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("1m"), Duration::from_secs(60));
        assert_eq!(p("1h30m"), Duration::from_secs(5400));
        for bad in ["", "10", "-1s", "1.0000000001s", "abc", "s", ".5s", "1.s"] {
            let err = ProtoDuration::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn durations_print_protobuf_json() {
        let s = |d: Duration| ProtoDuration(d).to_string();
        assert_eq!(s(Duration::from_secs(10)), "10s");
        assert_eq!(s(Duration::ZERO), "0s");
        assert_eq!(s(Duration::from_millis(500)), "0.500s");
        assert_eq!(s(Duration::from_micros(1_500_001)), "1.500001s");
        assert_eq!(s(Duration::new(1, 1)), "1.000000001s");
        assert_eq!(s(Duration::from_secs(5400)), "5400s");
        assert_eq!(serde_json::to_value(ProtoDuration::from_millis(1500)).unwrap(), json!("1.500s"));
        let back: ProtoDuration = serde_json::from_value(json!("1.500s")).unwrap();
        assert_eq!(back, ProtoDuration::from_millis(1500));
        assert!(serde_json::from_value::<ProtoDuration>(json!(10)).is_err());
    }
}
