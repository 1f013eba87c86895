//! `higuma apply`, `get` and `delete`: kumactl's resource commands over the REST API.

use std::io::Read;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context};
use higuma::model::{rest, ResourceType};
use serde_json::Value;

use super::client::Client;
use super::wait::Applied;
use super::Output;
use higuma::api::changes::CHANGE_ID_HEADER;

fn resource_type(arg: &str) -> anyhow::Result<ResourceType> {
    ResourceType::from_cli_arg(arg)
        .ok_or_else(|| anyhow!("unknown resource type {arg:?}; known: {}", ResourceType::cli_names().join(", ")))
}

fn path_of(rtype: ResourceType, mesh: &str, name: Option<&str>) -> String {
    let base =
        if rtype.is_global() { format!("/{}", rtype.ws_path()) } else { format!("/meshes/{mesh}/{}", rtype.ws_path()) };
    match name {
        Some(n) => format!("{base}/{n}"),
        None => base,
    }
}

/// Applies every document of `file` in order; stops at the first failure, naming it. With
/// `wait`, then follows the changes until every affected dataplane answered (or the time
/// is up).
pub fn apply(client: &Client, file: &str, wait: Option<std::time::Duration>) -> anyhow::Result<()> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let docs = rest::parse_documents(&text).map_err(|e| anyhow!("{file}: {e}"))?;
    if docs.is_empty() {
        bail!("{file}: no resources found");
    }
    let mut applied = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let n = i + 1;
        let what = |field: &str| doc.get(field).and_then(Value::as_str).map(str::to_string);
        let type_name = what("type").ok_or_else(|| anyhow!("document {n}: field \"type\" is required"))?;
        let rtype =
            ResourceType::from_name(&type_name).ok_or_else(|| anyhow!("document {n}: unknown type {type_name:?}"))?;
        let name = what("name").ok_or_else(|| anyhow!("document {n}: field \"name\" is required"))?;
        let mesh = match (rtype.is_global(), what("mesh")) {
            (true, _) => String::new(),
            (false, Some(m)) => m,
            (false, None) => bail!("document {n}: {type_name} {name:?} needs a \"mesh\" field"),
        };
        let answer = client.put(&path_of(rtype, &mesh, Some(&name)), doc)?;
        let verb = match answer.status {
            201 => "created",
            200 => "updated",
            _ => {
                return Err(answer.error())
                    .with_context(|| format!("document {n} ({type_name} {name:?}) was not applied"))
            }
        };
        match &answer.change_id {
            Some(id) => {
                println!("{verb} {type_name} {name:?} (change {id})");
                applied.push(Applied { id: id.clone(), what: format!("{type_name} {name:?}") });
            }
            None => println!("{verb} {type_name} {name:?}"),
        }
    }
    let Some(timeout) = wait else { return Ok(()) };
    if applied.len() < docs.len() {
        bail!("the control plane returned no change id ({CHANGE_ID_HEADER}) for every write; --wait needs one");
    }
    super::wait::wait(client, &applied, timeout)
}

pub fn get(client: &Client, rtype: &str, name: Option<&str>, mesh: &str, output: Output) -> anyhow::Result<()> {
    let rtype = resource_type(rtype)?;
    let path = path_of(rtype, mesh, name);
    let items = if name.is_some() {
        let answer = client.get(&path)?;
        if answer.status == 404 {
            bail!("there is no {} with name {:?}{}", rtype.name(), name.unwrap_or(""), in_mesh(rtype, mesh));
        }
        if answer.status != 200 {
            return Err(answer.error());
        }
        vec![answer.body.unwrap_or(Value::Null)]
    } else {
        list_all(client, &path)?
    };
    match output {
        Output::Json => {
            let value = if name.is_some() { items[0].clone() } else { list_value(items) };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Yaml => {
            let value = if name.is_some() { items[0].clone() } else { list_value(items) };
            print!("{}", serde_yaml_ng::to_string(&value)?);
        }
        Output::Table => print!("{}", table(rtype, &items)),
    }
    Ok(())
}

fn in_mesh(rtype: ResourceType, mesh: &str) -> String {
    if rtype.is_global() {
        String::new()
    } else {
        format!(" in mesh {mesh:?}")
    }
}

fn list_value(items: Vec<Value>) -> Value {
    serde_json::json!({ "total": items.len(), "items": items, "next": null })
}

/// Follows `next` links until the last page.
fn list_all(client: &Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut url = client.url(&format!("{path}?size=1000"));
    loop {
        let answer = client.get(&url)?;
        if answer.status != 200 {
            return Err(answer.error());
        }
        let body = answer.body.unwrap_or(Value::Null);
        if let Some(page) = body["items"].as_array() {
            items.extend(page.iter().cloned());
        }
        match body["next"].as_str() {
            Some(next) if !next.is_empty() => url = next.to_string(),
            _ => return Ok(items),
        }
    }
}

fn table(rtype: ResourceType, items: &[Value]) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let (headers, rows): (Vec<&str>, Vec<Vec<String>>) = match rtype {
        ResourceType::Mesh => (
            vec!["NAME", "mTLS", "AGE"],
            items.iter().map(|i| vec![s(&i["name"]), mtls(i), age(&i["creationTime"])]).collect(),
        ),
        ResourceType::Dataplane => (
            vec!["MESH", "NAME", "TAGS", "ADDRESS", "AGE"],
            items
                .iter()
                .map(|i| {
                    vec![s(&i["mesh"]), s(&i["name"]), tags(i), s(&i["networking"]["address"]), age(&i["creationTime"])]
                })
                .collect(),
        ),
        _ => (
            vec!["MESH", "NAME", "AGE"],
            items.iter().map(|i| vec![s(&i["mesh"]), s(&i["name"]), age(&i["creationTime"])]).collect(),
        ),
    };
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

fn mtls(mesh: &Value) -> String {
    match mesh["mtls"]["enabledBackend"].as_str() {
        Some(b) if !b.is_empty() => format!("{}/{}", "builtin", b),
        _ => "off".to_string(),
    }
}

/// Inbound tags as kumactl prints them: `k=v` pairs, inbounds separated by spaces.
fn tags(dp: &Value) -> String {
    let mut out = Vec::new();
    for inbound in dp["networking"]["inbound"].as_array().into_iter().flatten() {
        if let Some(t) = inbound["tags"].as_object() {
            out.push(t.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","));
        }
    }
    out.join(" ")
}

fn age(time: &Value) -> String {
    let Some(t) = time.as_str().and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok()) else {
        return "unknown".into();
    };
    let secs = SystemTime::now().duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

pub fn delete(client: &Client, rtype: &str, name: &str, mesh: &str) -> anyhow::Result<()> {
    let rtype = resource_type(rtype)?;
    let answer = client.delete(&path_of(rtype, mesh, Some(name)))?;
    match answer.status {
        200 => {
            println!("deleted {} {name:?}", rtype.name());
            Ok(())
        }
        404 => bail!("there is no {} with name {name:?}{}", rtype.name(), in_mesh(rtype, mesh)),
        _ => Err(answer.error()),
    }
}

/// `higuma generate user-token`: `POST /tokens/user`, the token on standard output.
pub fn generate_user_token(client: &Client, name: &str, groups: &[String], valid_for: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"name": name, "groups": groups, "validFor": valid_for});
    match client.post_for_text("/tokens/user", &body)? {
        Ok(token) => {
            println!("{}", token.trim());
            Ok(())
        }
        Err(answer) => Err(answer.error()).context("the user token was not generated"),
    }
}
