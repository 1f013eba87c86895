//! Envoy access-log format strings as Kuma reads them (`pkg/envoy/accesslog/v3/format_parser.go`):
//! validated when a Mesh logging backend or a MeshAccessLog is written, and rendered with
//! Kuma's `%KUMA_*%` variables bound when a dataplane's config is resolved.
//!
//! A format is text with command operators `%COMMAND%`, `%COMMAND(args)%` or
//! `%COMMAND(args):limit%`. Header commands (`REQ`, `RESP`, `TRAILER`) take `header` or
//! `header?alternative` and are rendered with lower-cased names (Envoy logs headers that way);
//! `DYNAMIC_METADATA` and `FILTER_STATE` need arguments; `START_TIME` takes a time format;
//! every other command takes neither arguments nor a limit.

use std::fmt::Write;

/// The variables Kuma substitutes before Envoy sees the format.
pub const KUMA_MESH: &str = "KUMA_MESH";
pub const KUMA_SOURCE_ADDRESS: &str = "KUMA_SOURCE_ADDRESS";
pub const KUMA_SOURCE_ADDRESS_WITHOUT_PORT: &str = "KUMA_SOURCE_ADDRESS_WITHOUT_PORT";
pub const KUMA_SOURCE_SERVICE: &str = "KUMA_SOURCE_SERVICE";
pub const KUMA_DESTINATION_SERVICE: &str = "KUMA_DESTINATION_SERVICE";
pub const KUMA_TRAFFIC_DIRECTION: &str = "KUMA_TRAFFIC_DIRECTION";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("format string is not valid: {0}")]
pub struct FormatError(String);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Fragment<'a> {
    Text(&'a str),
    Command { token: &'a str, command: &'a str, args: Option<&'a str>, limit: Option<&'a str> },
}

/// Splits one `%...%` operator off the start of `s` (which starts with `%`); `None` if none.
fn operator(s: &str) -> Option<Fragment<'_>> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i == 1 {
        return None;
    }
    let command = &s[1..i];
    let mut args = None;
    if b.get(i) == Some(&b'(') {
        let close = s[i..].find(')')? + i;
        args = Some(&s[i + 1..close]);
        i = close + 1;
    }
    let mut limit = None;
    if b.get(i) == Some(&b':') {
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == start {
            return None;
        }
        limit = Some(&s[start..j]);
        i = j;
    }
    if b.get(i) != Some(&b'%') {
        return None;
    }
    Some(Fragment::Command { token: &s[..=i], command, args, limit })
}

fn parse(format: &str) -> Result<Vec<Fragment<'_>>, FormatError> {
    let mut out = Vec::new();
    let mut rest = format;
    let mut pos = 0;
    while !rest.is_empty() {
        match rest.find('%') {
            None => {
                out.push(Fragment::Text(rest));
                break;
            }
            Some(at) => {
                if at > 0 {
                    out.push(Fragment::Text(&rest[..at]));
                }
                let tail = &rest[at..];
                let Some(op) = operator(tail) else {
                    return Err(FormatError(format!(
                        "expected a command operator to start at position {}, instead got: {tail:?}",
                        pos + at + 1
                    )));
                };
                if let Fragment::Command { token, .. } = op {
                    check(&op)?;
                    pos += at + token.len();
                    rest = &tail[token.len()..];
                    out.push(op);
                }
            }
        }
    }
    Ok(out)
}

fn check(op: &Fragment<'_>) -> Result<(), FormatError> {
    let Fragment::Command { token, command, args, limit: _ } = *op else { return Ok(()) };
    let no_args = args.is_none_or(str::is_empty);
    match command {
        "REQ" | "RESP" | "TRAILER" => {
            if no_args {
                return Err(FormatError(format!(
                    "command \"{command}\" requires a header and optional alternative header names as its arguments, instead got {token:?}"
                )));
            }
            if args.is_some_and(|a| a.matches('?').count() > 1) {
                return Err(FormatError(format!("more than 1 alternative header specified in {token:?}")));
            }
            if args.is_some_and(|a| a.contains(['\0', '\r', '\n'])) {
                return Err(FormatError(format!("header name contains a newline in {token:?}")));
            }
        }
        "DYNAMIC_METADATA" | "FILTER_STATE" => {
            if no_args {
                return Err(FormatError(format!("command \"{command}\" requires arguments, instead got {token:?}")));
            }
        }
        "START_TIME" => {
            if args.is_some_and(|a| a.contains(['\0', '\r', '\n'])) {
                return Err(FormatError(format!("start time format string contains a newline in {token:?}")));
            }
        }
        _ => {
            if token.len() != command.len() + 2 {
                return Err(FormatError(format!(
                    "command \"{command}\" doesn't support arguments or max length constraint, instead got {token:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Whether `format` is a format string Kuma (and Envoy) accept.
pub fn validate(format: &str) -> Result<(), FormatError> {
    parse(format).map(|_| ())
}

/// The values of Kuma's variables for one listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars {
    pub mesh: String,
    pub source_service: String,
    pub destination_service: String,
    /// The dataplane's address (advertised, else networking).
    pub source_address: String,
    /// `INBOUND` or `OUTBOUND`.
    pub direction: &'static str,
}

impl Vars {
    fn value(&self, command: &str) -> Option<String> {
        Some(match command {
            KUMA_MESH => self.mesh.clone(),
            // Deprecated in Kuma: the address with port 0.
            KUMA_SOURCE_ADDRESS => format!("{}:0", self.source_address),
            KUMA_SOURCE_ADDRESS_WITHOUT_PORT => self.source_address.clone(),
            KUMA_SOURCE_SERVICE => self.source_service.clone(),
            KUMA_DESTINATION_SERVICE => self.destination_service.clone(),
            KUMA_TRAFFIC_DIRECTION => self.direction.to_string(),
            _ => return None,
        })
    }
}

/// `format` with Kuma's variables bound and header names lower-cased. A format that does not
/// parse (validation keeps those out of the store) is passed through unchanged.
pub fn render(format: &str, vars: &Vars) -> String {
    let Ok(fragments) = parse(format) else { return format.to_string() };
    let mut out = String::with_capacity(format.len());
    for f in fragments {
        match f {
            Fragment::Text(t) => out.push_str(t),
            Fragment::Command { token, command, args, limit } => match vars.value(command) {
                Some(v) => out.push_str(&v),
                None if matches!(command, "REQ" | "RESP" | "TRAILER") => {
                    let _ = write!(out, "%{command}({})", args.unwrap_or("").to_ascii_lowercase());
                    if let Some(l) = limit {
                        let _ = write!(out, ":{l}");
                    }
                    out.push('%');
                }
                None => out.push_str(token),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumas_default_formats_parse() {
        for f in [super::super::DEFAULT_HTTP_FORMAT, super::super::DEFAULT_TCP_FORMAT] {
            validate(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn bad_formats_name_the_problem() {
        let err = validate("[%START_TIME%] %").unwrap_err().to_string();
        assert!(err.contains("position 16"), "{err}");
        assert!(validate("%REQ%").unwrap_err().to_string().contains("requires a header"));
        assert!(validate("%REQ(a?b?c)%").unwrap_err().to_string().contains("more than 1 alternative"));
        assert!(validate("%DURATION(x)%").unwrap_err().to_string().contains("doesn't support arguments"));
        assert!(validate("%DURATION:10%").is_err());
        assert!(validate("%FILTER_STATE%").is_err());
        assert!(validate("%lower%").is_err());
        assert!(validate("100%").is_err());
        assert!(validate("plain text").is_ok());
        assert!(validate("").is_ok());
        assert!(validate("%REQ(X-Id):10% %START_TIME(%s)% %DYNAMIC_METADATA(ns:key)%").is_ok());
    }

    #[test]
    fn variables_are_bound_and_headers_lower_cased() {
        let vars = Vars {
            mesh: "default".into(),
            source_service: "web".into(),
            destination_service: "backend".into(),
            source_address: "10.0.0.1".into(),
            direction: "OUTBOUND",
        };
        assert_eq!(
            render(
                "%KUMA_MESH% %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %KUMA_SOURCE_ADDRESS% \
                 %KUMA_SOURCE_ADDRESS_WITHOUT_PORT% %KUMA_TRAFFIC_DIRECTION% %REQ(X-Request-ID?:PATH):5% %DURATION%",
                &vars
            ),
            "default web->backend 10.0.0.1:0 10.0.0.1 OUTBOUND %REQ(x-request-id?:path):5% %DURATION%"
        );
    }
}
