//! `higuma inspect`: kumactl's inspect commands over the REST API.
//!
//! - `inspect dataplane NAME [--type policies|rules|xds]`: the policies matched per
//!   attachment (kumactl's default view), the targetRef rules, or the xDS config served to
//!   it (kumactl's `config-dump`, from what higuma sent rather than from Envoy).
//! - `inspect POLICY-TYPE NAME`: the dataplanes a policy reaches and where it attaches.

use anyhow::{anyhow, bail};
use clap::ValueEnum;
use higuma::model::ResourceType;
use serde_json::Value;

use super::client::Client;
use super::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectType {
    Policies,
    Rules,
    /// kumactl's name for it is `config-dump`.
    #[value(alias = "config-dump")]
    Xds,
}

pub struct InspectArgs<'a> {
    pub rtype: &'a str,
    pub name: &'a str,
    pub mesh: &'a str,
    pub what: Option<InspectType>,
    pub output: Output,
}

pub fn inspect(client: &Client, args: &InspectArgs<'_>) -> anyhow::Result<()> {
    let rtype = ResourceType::from_cli_arg(args.rtype).ok_or_else(|| {
        let policies: Vec<&str> = ResourceType::policies().map(|t| t.ws_path()).collect();
        anyhow!("cannot inspect {:?}: inspect \"dataplane\" or a policy type ({})", args.rtype, policies.join(", "))
    })?;
    let (mesh, name) = (args.mesh, args.name);
    if rtype == ResourceType::Dataplane {
        let what = args.what.unwrap_or(InspectType::Policies);
        let sub = match what {
            InspectType::Policies => "policies",
            InspectType::Rules => "rules",
            InspectType::Xds => "xds",
        };
        let body = fetch(client, &format!("/meshes/{mesh}/dataplanes/{name}/{sub}"))?;
        return print(&body, args.output, |b| match what {
            InspectType::Policies => dataplane_policies_text(b),
            InspectType::Rules => rules_table(b),
            // A config dump has no table form.
            InspectType::Xds => serde_json::to_string_pretty(b).unwrap_or_default() + "\n",
        });
    }
    if !rtype.is_policy() {
        bail!("cannot inspect a {}: inspect \"dataplane\" or a policy type", rtype.name());
    }
    if args.what.is_some() {
        bail!("--type applies to `inspect dataplane` only");
    }
    let body = fetch(client, &format!("/meshes/{mesh}/{}/{name}/dataplanes", rtype.ws_path()))?;
    print(&body, args.output, policy_dataplanes_table)
}

fn fetch(client: &Client, path: &str) -> anyhow::Result<Value> {
    let answer = client.get(path)?;
    if answer.status != 200 {
        return Err(answer.error());
    }
    Ok(answer.body.unwrap_or(Value::Null))
}

fn print(body: &Value, output: Output, table: impl Fn(&Value) -> String) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(body)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(body)?),
        Output::Table => print!("{}", table(body)),
    }
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// kumactl's layout: one block per attachment (`INBOUND 10.0.0.1:80:8080(backend):`), the
/// matched policy types under it and their names under those.
fn dataplane_policies_text(body: &Value) -> String {
    let mut out = String::new();
    for item in body["items"].as_array().into_iter().flatten() {
        out.push_str(&s(&item["type"]).to_ascii_uppercase());
        if !s(&item["name"]).is_empty() {
            out.push_str(&format!(" {}", s(&item["name"])));
        }
        if !s(&item["service"]).is_empty() {
            out.push_str(&format!("({})", s(&item["service"])));
        }
        out.push_str(":\n");
        for (policy_type, policies) in item["matchedPolicies"].as_object().into_iter().flatten() {
            out.push_str(&format!("  {policy_type}\n"));
            for p in policies.as_array().into_iter().flatten() {
                out.push_str(&format!("    {}\n", s(&p["name"])));
            }
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("no policies match this dataplane\n");
    }
    out
}

fn compact(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(&v.to_string()))).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

fn rules_table(body: &Value) -> String {
    let rows = body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let origins: Vec<&str> = i["origins"].as_array().into_iter().flatten().map(|o| s(&o["name"])).collect();
            vec![
                s(&i["type"]).to_string(),
                s(&i["name"]).to_string(),
                s(&i["policyType"]).to_string(),
                compact(&i["subset"]),
                serde_json::to_string(&i["conf"]).unwrap_or_default(),
                origins.join(","),
            ]
        })
        .collect();
    table(&["TYPE", "NAME", "POLICY", "SUBSET", "CONF", "ORIGINS"], rows)
}

fn policy_dataplanes_table(body: &Value) -> String {
    let rows = body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let attachments: Vec<String> = i["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let mut t = s(&a["type"]).to_string();
                    if !s(&a["name"]).is_empty() {
                        t.push_str(&format!(" {}", s(&a["name"])));
                    }
                    if !s(&a["service"]).is_empty() && s(&a["service"]) != s(&a["name"]) {
                        t.push_str(&format!("({})", s(&a["service"])));
                    }
                    t
                })
                .collect();
            vec![s(&i["dataplane"]["mesh"]).to_string(), s(&i["dataplane"]["name"]).to_string(), attachments.join(", ")]
        })
        .collect();
    table(&["MESH", "DATAPLANE", "ATTACHMENTS"], rows)
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(padded.join("   ").trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
    out
}
