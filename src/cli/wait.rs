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
