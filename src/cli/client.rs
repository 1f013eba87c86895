//! A small synchronous client for the control plane's REST API.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

/// Long enough for a slow store, short enough that a dead control plane is noticed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// An answer from the API: status and parsed JSON body (if any).
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
}

impl Client {
    pub fn new(cp_address: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Client { base: cp_address.trim_end_matches('/').to_string(), agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path_or_url: &str) -> anyhow::Result<Answer> {
        let url = if path_or_url.starts_with("http") { path_or_url.to_string() } else { self.url(path_or_url) };
        let response = self.agent.get(&url).call().with_context(|| self.unreachable(&url))?;
        read(response, &url)
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let response = self
            .agent
            .put(&url)
            .header("Content-Type", "application/json")
            .send(serde_json::to_string(body)?)
            .with_context(|| self.unreachable(&url))?;
        read(response, &url)
    }

    /// POSTs JSON and returns the status and the raw text (for endpoints answering in text).
    pub fn post_text(&self, path: &str, body: &Value) -> anyhow::Result<(u16, String)> {
        let url = self.url(path);
        let mut response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(serde_json::to_string(body)?)
            .with_context(|| self.unreachable(&url))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer from {url}"))?;
        Ok((status, text))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let response = self.agent.delete(&url).call().with_context(|| self.unreachable(&url))?;
        read(response, &url)
    }

    fn unreachable(&self, url: &str) -> String {
        format!("cannot reach the control plane at {url} (is `higuma run` up? see --cp-address)")
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>, url: &str) -> anyhow::Result<Answer> {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer from {url}"))?;
    let body = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).with_context(|| format!("{url} answered {status} with non-JSON: {text}"))?)
    };
    Ok(Answer { status, body })
}

impl Answer {
    /// Turns an error status into an error that quotes Kuma's error body.
    pub fn error(&self) -> anyhow::Error {
        let Some(body) = &self.body else { return anyhow!("the control plane answered {}", self.status) };
        let title = body["title"].as_str().unwrap_or("error");
        let detail = body["detail"].as_str().unwrap_or("");
        let mut msg = format!("{title} ({}): {detail}", self.status);
        if let Some(params) = body["invalid_parameters"].as_array() {
            for p in params {
                msg.push_str(&format!(
                    "\n  * {}: {}",
                    p["field"].as_str().unwrap_or(""),
                    p["reason"].as_str().unwrap_or("")
                ));
            }
        }
        anyhow!(msg)
    }
}
