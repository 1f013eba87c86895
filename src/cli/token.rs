//! `higuma generate dataplane-token`, as `kumactl generate dataplane-token`: asks the REST
//! API (`POST /tokens/dataplane`) and prints the token.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use super::client::Client;

pub struct DataplaneTokenRequest {
    pub mesh: String,
    pub name: Option<String>,
    /// `key=value[,value...]`, as kumactl's `--tag`.
    pub tags: Vec<String>,
    pub proxy_type: Option<String>,
    pub valid_for: Option<String>,
}

fn parse_tags(flags: &[String]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for flag in flags {
        let Some((key, values)) = flag.split_once('=') else { bail!("--tag {flag:?}: expected key=value[,value]") };
        if key.is_empty() || values.is_empty() {
            bail!("--tag {flag:?}: expected key=value[,value]");
        }
        tags.entry(key.to_string()).or_default().extend(values.split(',').map(str::to_string));
    }
    Ok(tags)
}

pub fn generate_dataplane_token(client: &Client, req: &DataplaneTokenRequest) -> anyhow::Result<()> {
    let body = json!({
        "mesh": req.mesh,
        "name": req.name.clone().unwrap_or_default(),
        "tags": parse_tags(&req.tags)?,
        "type": req.proxy_type.clone().unwrap_or_default(),
        "validFor": req.valid_for.clone().unwrap_or_default(),
    });
    let (status, text) = client.post_text("/tokens/dataplane", &body)?;
    if status != 200 {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .map(|b| {
                let mut msg =
                    format!("{}: {}", b["title"].as_str().unwrap_or("error"), b["detail"].as_str().unwrap_or(""));
                for p in b["invalid_parameters"].as_array().into_iter().flatten() {
                    msg.push_str(&format!(
                        "\n  * {}: {}",
                        p["field"].as_str().unwrap_or(""),
                        p["reason"].as_str().unwrap_or("")
                    ));
                }
                msg
            })
            .unwrap_or(text);
        return Err(anyhow!("{detail}")).context(format!("generating the token ({status})"));
    }
    println!("{}", text.trim());
    Ok(())
}
