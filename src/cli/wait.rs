//! `higuma apply --wait`: follows the applied changes (`GET /changes/{id}`) until every
//! affected dataplane answered, with a progress bar on a terminal and plain lines
//! otherwise, and fails naming the dataplanes that NACKed or did not answer.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use super::client::Client;

/// Often enough that a same-host push shows at once, rarely enough to cost the API nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Width of the progress bar in characters.
const BAR_WIDTH: usize = 30;

/// Exit code when some dataplane rejected the change.
pub const EXIT_NACKED: u8 = 2;
/// Exit code when some dataplane did not answer in time or is not connected.
pub const EXIT_UNDELIVERED: u8 = 3;

/// The wait ended with dataplanes that did not take the change; the binary exits `code`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WaitFailed {
    pub code: u8,
    pub message: String,
}

/// One applied change: its id and what it wrote (for messages).
pub struct Applied {
    pub id: String,
    pub what: String,
}

/// Where one dataplane of one change stands.
struct Entry {
    dataplane: String,
    state: String,
    detail: String,
}

#[derive(Default)]
struct Progress {
    /// Changes whose store event the control plane has not handled yet.
    unobserved: Vec<String>,
    entries: Vec<Entry>,
    p99_ms: Option<f64>,
}

impl Progress {
    fn count(&self, state: &str) -> usize {
        self.entries.iter().filter(|e| e.state == state).count()
    }

    fn delivered(&self) -> usize {
        self.count("acked") + self.count("upToDate")
    }

    fn settled(&self) -> bool {
        self.unobserved.is_empty() && self.entries.iter().all(|e| !matches!(e.state.as_str(), "pending" | "sent"))
    }

    fn line(&self) -> String {
        let total = self.entries.len();
        let mut parts = vec![format!("{}/{total} dataplane(s) ACKed", self.delivered())];
        for state in ["sent", "pending", "nacked", "notConnected"] {
            let n = self.count(state);
            if n > 0 {
                parts.push(format!("{n} {state}"));
            }
        }
        if !self.unobserved.is_empty() {
            parts.push(format!("{} change(s) not handled yet", self.unobserved.len()));
        }
        parts.join(", ")
    }
}

fn read(client: &Client, applied: &[Applied]) -> anyhow::Result<Progress> {
    let mut p = Progress::default();
    for a in applied {
        let answer = client.get(&format!("/changes/{}", a.id))?;
        if answer.status != 200 {
            return Err(answer.error().context(format!("following change {} ({})", a.id, a.what)));
        }
        let body = answer.body.unwrap_or(Value::Null);
        if body["observed"] != Value::Bool(true) {
            p.unobserved.push(a.id.clone());
        }
        let mesh = body["mesh"].as_str().unwrap_or("");
        for d in body["dataplanes"].as_array().into_iter().flatten() {
            let name = d["name"].as_str().unwrap_or("");
            let mut detail = String::new();
            if let Some(t) = d["typeUrl"].as_str() {
                detail.push_str(&format!("{t}: "));
            }
            if let Some(e) = d["error"].as_str().or(d["detail"].as_str()) {
                detail.push_str(e);
            }
            if let Some(other) = d["connectedTo"].as_str() {
                detail.push_str(&format!(" (connected to instance {other})"));
            }
            p.entries.push(Entry {
                dataplane: format!("{mesh}.{name}"),
                state: d["state"].as_str().unwrap_or("").to_string(),
                detail,
            });
        }
        if let Some(ms) = body["latency"]["p99Ms"].as_f64() {
            p.p99_ms = Some(p.p99_ms.map_or(ms, |m: f64| m.max(ms)));
        }
    }
    Ok(p)
}

fn bar(p: &Progress, elapsed: Duration) -> String {
    let total = p.entries.len().max(1);
    let filled = p.delivered() * BAR_WIDTH / total;
    format!(
        "\r[{}{}] {} ({:.1}s)\x1b[K",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        p.line(),
        elapsed.as_secs_f64()
    )
}

/// Waits until every change is settled or `timeout` passed; `Ok` only when every affected
/// dataplane ACKed (or already ran the config).
pub fn wait(client: &Client, applied: &[Applied], timeout: Duration) -> anyhow::Result<()> {
    if applied.is_empty() {
        bail!("nothing to wait for");
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    let progress = loop {
        let p = read(client, applied)?;
        let line = p.line();
        if tty {
            eprint!("{}", bar(&p, started.elapsed()));
            let _ = std::io::stderr().flush();
        } else if line != last {
            println!("waiting: {line}");
        }
        last = line;
        if p.settled() || Instant::now() >= deadline {
            break p;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    if tty {
        eprintln!();
    }
    report(&progress, timeout)
}

fn report(p: &Progress, timeout: Duration) -> anyhow::Result<()> {
    let list = |states: &[&str]| -> Vec<String> {
        p.entries
            .iter()
            .filter(|e| states.contains(&e.state.as_str()))
            .map(|e| if e.detail.is_empty() { e.dataplane.clone() } else { format!("{} ({})", e.dataplane, e.detail) })
            .collect()
    };
    let nacked = list(&["nacked"]);
    let unanswered = list(&["pending", "sent"]);
    let disconnected = list(&["notConnected"]);
    if nacked.is_empty() && unanswered.is_empty() && disconnected.is_empty() && p.unobserved.is_empty() {
        match (p.entries.len(), p.p99_ms) {
            (0, _) => println!("no dataplane is affected by the change(s)"),
            (n, Some(ms)) => println!("all {n} affected dataplane(s) ACKed (p99 {ms} ms)"),
            (n, None) => println!("all {n} affected dataplane(s) already run the new config"),
        }
        return Ok(());
    }
    let mut lines = vec!["the change did not reach every affected dataplane:".to_string()];
    for d in &nacked {
        lines.push(format!("  NACKed by {d}"));
    }
    for d in &disconnected {
        lines.push(format!("  not connected: {d}"));
    }
    for d in &unanswered {
        lines.push(format!("  no answer within {}: {d}", humantime::format_duration(timeout)));
    }
    for id in &p.unobserved {
        lines.push(format!(
            "  change {id}: the control plane did not handle the write within {}",
            humantime::format_duration(timeout)
        ));
    }
    let code = if nacked.is_empty() { EXIT_UNDELIVERED } else { EXIT_NACKED };
    Err(WaitFailed { code, message: lines.join("\n") }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dataplane: &str, state: &str, detail: &str) -> Entry {
        Entry { dataplane: dataplane.into(), state: state.into(), detail: detail.into() }
    }

    fn failed(p: &Progress) -> WaitFailed {
        let err = report(p, Duration::from_secs(30)).expect_err("not delivered");
        err.downcast::<WaitFailed>().expect("a WaitFailed")
    }

    #[test]
    fn a_nack_wins_over_the_other_failures_and_every_dataplane_is_named() {
        let p = Progress {
            entries: vec![
                entry("default.a", "acked", ""),
                entry("default.b", "nacked", "type.googleapis.com/envoy.config.listener.v3.Listener: bad"),
                entry("default.c", "notConnected", "not connected to this control-plane instance"),
                entry("default.d", "sent", ""),
            ],
            ..Progress::default()
        };
        let f = failed(&p);
        assert_eq!(f.code, EXIT_NACKED);
        assert!(f.message.contains("NACKed by default.b (type.googleapis.com/envoy.config.listener.v3.Listener: bad)"));
        assert!(f.message.contains("not connected: default.c"));
        assert!(f.message.contains("no answer within 30s: default.d"));
        assert!(!f.message.contains("default.a"), "{}", f.message);
    }

    #[test]
    fn no_answer_in_time_or_an_unhandled_write_is_undelivered() {
        let p = Progress { entries: vec![entry("default.d", "pending", "")], ..Progress::default() };
        assert_eq!(failed(&p).code, EXIT_UNDELIVERED);
        let p = Progress { unobserved: vec!["ab-1".into()], ..Progress::default() };
        let f = failed(&p);
        assert_eq!(f.code, EXIT_UNDELIVERED);
        assert!(
            f.message.contains("change ab-1: the control plane did not handle the write within 30s"),
            "{}",
            f.message
        );
    }

    #[test]
    fn delivered_everywhere_or_nowhere_to_deliver_is_success() {
        let p = Progress {
            entries: vec![entry("default.a", "acked", ""), entry("default.b", "upToDate", "")],
            p99_ms: Some(3.5),
            ..Progress::default()
        };
        assert!(report(&p, Duration::from_secs(1)).is_ok());
        assert!(p.settled());
        assert_eq!(p.line(), "2/2 dataplane(s) ACKed");
        assert!(report(&Progress::default(), Duration::from_secs(1)).is_ok());
        let sent = Progress { entries: vec![entry("default.a", "sent", "")], ..Progress::default() };
        assert!(!sent.settled());
        assert_eq!(sent.line(), "0/1 dataplane(s) ACKed, 1 sent");
    }

    #[test]
    fn the_bar_fills_with_the_share_delivered() {
        let p = Progress {
            entries: vec![entry("default.a", "acked", ""), entry("default.b", "sent", "")],
            ..Progress::default()
        };
        let bar = bar(&p, Duration::from_millis(1500));
        assert!(bar.starts_with(&format!("\r[{}{}]", "#".repeat(15), "-".repeat(15))), "{bar:?}");
        assert!(bar.contains("(1.5s)"), "{bar:?}");
    }
}
