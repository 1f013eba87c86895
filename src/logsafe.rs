//! Values a client chose, made safe to log. A node id, a resource name, a NACK's error
//! detail, a URL or a peer string reaches the log through [`untrusted`], which bounds its
//! length and escapes what could forge or hide log lines (newlines, terminal escapes, bidi
//! overrides); [`RateLimiter`] keeps one misbehaving peer from repeating the same error
//! thousands of times a second.
//!
//! ```text
//! log::warn!("xds: node id {} is not <mesh>.<name>", untrusted(node_id));
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Enough for every legitimate node id (`<mesh>.<name>`, each a DNS label or subdomain),
/// resource name or error line; a 1 MB value costs one log line of this size.
pub const MAX_LOGGED_CHARS: usize = 256;

/// A client-supplied value as it may appear in a log line: quoted, at most
/// [`MAX_LOGGED_CHARS`] characters, control, bidi and invisible format characters written
/// as `\u{..}` escapes, and the length of what was cut off.
pub fn untrusted(value: &str) -> Untrusted<'_> {
    Untrusted(value)
}

/// See [`untrusted`].
pub struct Untrusted<'a>(&'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut end = self.0.len();
        for (shown, (i, c)) in self.0.char_indices().enumerate() {
            if shown == MAX_LOGGED_CHARS {
                end = i;
                break;
            }
            if needs_escape(c) {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            } else {
                f.write_str(c.encode_utf8(&mut [0; 4]))?;
            }
        }
        f.write_str("\"")?;
        if end < self.0.len() {
            write!(f, "...(+{} bytes)", self.0.len() - end)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// [`untrusted`] as an owned string, for values kept beyond the log call (error texts).
pub fn clean(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_LOGGED_CHARS && !value.chars().any(needs_escape) {
        Cow::Borrowed(value)
    } else {
        let quoted = untrusted(value).to_string();
        Cow::Owned(quoted)
    }
}

/// Characters that change how a log line reads rather than what it says: C0/C1 controls
/// (newline, carriage return, ESC starting a terminal sequence), the quote and backslash
/// our own quoting uses, bidi embeddings, overrides and isolates (CVE-2021-42574's
/// "Trojan Source"), and zero-width or line-separating format characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '"' | '\\')
        || matches!(c as u32,
            0x061C | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF)
}

/// How long a repeated error from one peer stays quiet after it was logged.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(10);
/// Distinct (peer, error) pairs remembered; beyond it the table is cleared, so a flood of
/// new peers costs at most one line each and never unbounded memory.
const RATE_LIMIT_KEYS: usize = 4096;

/// Lets through the first occurrence of an error per peer and window, and counts the
/// rest so the next line that passes says how many were held back.
pub struct RateLimiter {
    window: Duration,
    /// (peer, what) → (when last logged, how many held back since).
    seen: Mutex<HashMap<LimitKey, (Instant, u64)>>,
}

type LimitKey = (String, &'static str);

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(RATE_LIMIT_WINDOW)
    }
}

impl RateLimiter {
    pub fn new(window: Duration) -> RateLimiter {
        RateLimiter { window, seen: Mutex::new(HashMap::new()) }
    }

    /// `Some(n)` when a line about `what` from `peer` may be logged now, `n` being how many
    /// identical ones were suppressed since the last; `None` to stay quiet. `peer` should
    /// be the address without the port: a client that reconnects is still the same peer.
    pub fn allow(&self, peer: &str, what: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= RATE_LIMIT_KEYS {
            seen.clear();
        }
        // The key is bounded too: the peer string comes from the connection.
        let key = (peer.chars().take(MAX_LOGGED_CHARS).collect::<String>(), what);
        match seen.get_mut(&key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.window => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// The host part of a peer address (`ipv4:10.0.0.1:5000`, `10.0.0.1:5000`, `[::1]:5000`),
/// the key [`RateLimiter::allow`] wants.
pub fn peer_host(peer: &str) -> &str {
    let p = peer.strip_prefix("ipv4:").or_else(|| peer.strip_prefix("ipv6:")).unwrap_or(peer);
    if let Some(rest) = p.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match p.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') => host,
        _ => p,
    }
}

/// Suffix for a line that passed the limiter: how many identical ones were held back.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_quoted_as_they_are() {
        assert_eq!(untrusted("default.web-1").to_string(), "\"default.web-1\"");
        assert_eq!(clean("default.web-1"), "default.web-1");
    }

    #[test]
    fn controls_quotes_and_bidi_are_escaped() {
        let forged = "a\n2024-01-01 ERROR forged\x1b[2J\"\\\u{202e}txt.exe\u{2066}";
        let shown = untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\x1b') && !shown.contains('\u{202e}'), "{shown}");
        assert!(shown.contains("\\u{a}") && shown.contains("\\u{1b}") && shown.contains("\\u{202e}"), "{shown}");
        assert!(shown.contains("\\u{22}") && shown.contains("\\u{5c}") && shown.contains("\\u{2066}"), "{shown}");
        assert!(clean(forged).starts_with('"'));
    }

    #[test]
    fn long_values_are_cut_and_say_by_how_much() {
        let big = "x".repeat(1 << 20);
        let shown = untrusted(&big).to_string();
        assert!(shown.len() < MAX_LOGGED_CHARS + 40, "{} bytes", shown.len());
        assert!(shown.ends_with(&format!("...(+{} bytes)", (1 << 20) - MAX_LOGGED_CHARS)), "{shown}");
        // Multi-byte characters are never split.
        let wide = "é".repeat(MAX_LOGGED_CHARS + 1);
        assert!(untrusted(&wide).to_string().ends_with("...(+2 bytes)"));
    }

    #[test]
    fn limiter_lets_one_through_per_window_and_counts_the_rest() {
        let limiter = RateLimiter::new(Duration::from_millis(200));
        assert_eq!(limiter.allow("10.0.0.1", "bad token"), Some(0));
        assert_eq!(limiter.allow("10.0.0.1", "bad token"), None);
        assert_eq!(limiter.allow("10.0.0.1", "bad token"), None);
        // Another peer or another error is not held back.
        assert_eq!(limiter.allow("10.0.0.2", "bad token"), Some(0));
        assert_eq!(limiter.allow("10.0.0.1", "node id changed"), Some(0));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limiter.allow("10.0.0.1", "bad token"), Some(2));
        assert_eq!(suppressed_note(2), " (2 similar suppressed)");
    }

    #[test]
    fn peer_hosts_drop_the_port() {
        assert_eq!(peer_host("ipv4:10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(peer_host("10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(peer_host("ipv6:[::1]:5000"), "::1");
        assert_eq!(peer_host("[fe80::1]:80"), "fe80::1");
        assert_eq!(peer_host("unix:/tmp/x"), "unix:/tmp/x");
    }
}
