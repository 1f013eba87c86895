//! `higuma dp bootstrap` and `higuma dp run`: kuma-dp's job for a Universal dataplane —
//! register the Dataplane (optional), fetch its Envoy bootstrap, and run Envoy with it,
//! forwarding the access logs Envoy writes to the dataplane's pipe to their TCP collectors.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use higuma::model::{rest, ResourceType};
use higuma::policies::access_log::pipe;
use serde_json::{json, Value};

use super::client::Client;

pub struct DpArgs {
    pub mesh: String,
    pub name: String,
    pub dataplane_file: Option<PathBuf>,
    pub admin_port: Option<u16>,
}

/// Creates or updates the Dataplane from `file`, which must agree with `--mesh`/`--name`.
fn register(client: &Client, args: &DpArgs, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let docs = rest::parse_documents(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let [doc] = docs.as_slice() else {
        bail!("{}: expected exactly one Dataplane document, found {}", file.display(), docs.len())
    };
    let mut doc = doc.clone();
    let obj = doc.as_object_mut().ok_or_else(|| anyhow!("{}: not a mapping", file.display()))?;
    match obj.get("type").and_then(Value::as_str) {
        Some(t) if t == ResourceType::Dataplane.name() => {}
        other => bail!("{}: type must be Dataplane, got {other:?}", file.display()),
    }
    for (field, wanted) in [("mesh", &args.mesh), ("name", &args.name)] {
        match obj.get(field).and_then(Value::as_str) {
            None => {
                obj.insert(field.to_string(), Value::from(wanted.as_str()));
            }
            Some(v) if v == wanted => {}
            Some(v) => bail!("{}: {field} is {v:?} but --{field} is {wanted:?}", file.display()),
        }
    }
    let answer = client.put(&format!("/meshes/{}/dataplanes/{}", args.mesh, args.name), &doc)?;
    if !matches!(answer.status, 200 | 201) {
        return Err(answer.error()).context("registering the Dataplane");
    }
    Ok(())
}

/// Registers the Dataplane if asked, then returns its Envoy bootstrap (YAML).
pub fn fetch_bootstrap(client: &Client, args: &DpArgs) -> anyhow::Result<String> {
    if let Some(file) = &args.dataplane_file {
        register(client, args, file)?;
    }
    let answer =
        client.post("/bootstrap", &json!({"mesh": args.mesh, "name": args.name, "adminPort": args.admin_port}))?;
    if answer.status != 200 {
        return Err(answer.error()).context("fetching the Envoy bootstrap");
    }
    let encoded =
        answer.body.as_ref().and_then(|b| b["bootstrap"].as_str()).ok_or_else(|| anyhow!("answer has no bootstrap"))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).context("decoding the bootstrap")?;
    String::from_utf8(bytes).context("the bootstrap is not UTF-8")
}

pub fn bootstrap(client: &Client, args: &DpArgs, output: Option<&Path>) -> anyhow::Result<()> {
    let yaml = fetch_bootstrap(client, args)?;
    match output {
        Some(path) => std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display())),
        None => {
            print!("{yaml}");
            Ok(())
        }
    }
}

/// Runs Envoy with the dataplane's bootstrap until it exits; SIGINT/SIGTERM go to Envoy.
pub fn run(client: &Client, args: &DpArgs, envoy: &str, extra: &[String]) -> anyhow::Result<()> {
    let yaml = fetch_bootstrap(client, args)?;
    let dir = tempfile::tempdir().context("creating a directory for the bootstrap")?;
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    // Before Envoy starts: a tcp access-log backend's logger opens the pipe as soon as the
    // config arrives.
    let pipe = pipe::socket_path(&args.name, &args.mesh);
    let _forwarder = pipe::Forwarder::start(Path::new(&pipe))
        .map_err(|e| log::warn!("{e}; access logs to TCP backends are lost"))
        .ok();
    let mut child = Command::new(envoy)
        .arg("-c")
        .arg(&path)
        // Several Envoys on one host must not share hot-restart memory; kuma-dp does the same.
        .arg("--disable-hot-restart")
        .args(extra)
        .spawn()
        .with_context(|| format!("starting Envoy ({envoy}); use --envoy PATH"))?;
    let pid = child.id() as libc::pid_t;
    ctrlc::set_handler(move || {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory
        // effects; at worst the process is already gone and ESRCH is returned.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    })
    .context("installing the signal handler")?;
    let status = child.wait().context("waiting for Envoy")?;
    drop(dir);
    if status.success() {
        Ok(())
    } else {
        bail!("Envoy exited with {status}")
    }
}
