//! `higuma dp bootstrap` and `higuma dp run`: kuma-dp's job for a Universal dataplane —
//! register the Dataplane (optional, through the REST API), fetch its Envoy bootstrap from
//! the DP server (`POST https://<cp>:5678/bootstrap` with the dataplane token, verifying the
//! server with `--ca-cert-file`), and run Envoy with it, forwarding the access logs Envoy
//! writes to the dataplane's pipe to their TCP collectors.
//!
//! Several control-plane instances: `--cp-address` takes a comma-separated list. The
//! bootstrap comes from the first one that answers, and Envoy's `ads_cluster` gets every
//! address as an endpoint, so when its instance dies Envoy reconnects to another (keeping
//! its config meanwhile). A DNS name with several addresses works without a list: the
//! cluster is STRICT_DNS and every address it resolves to is an endpoint.

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
    /// The DP server, `https://host:5678` (`http://` when it serves plaintext); several
    /// instances comma-separated.
    pub cp_address: String,
    pub ca_cert_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub dataplane_file: Option<PathBuf>,
    pub admin_port: Option<u16>,
}

/// Long enough for a slow store, short enough that a dead control plane is noticed.
const BOOTSTRAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Creates or updates the Dataplane from `file`, which must agree with `--mesh`/`--name`;
/// returns whether it created it (kuma-dp deletes on exit only what it created).
fn register(client: &Client, args: &DpArgs, file: &Path) -> anyhow::Result<bool> {
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
    Ok(answer.status == 201)
}

/// The control-plane addresses of `--cp-address`, in order.
fn cp_addresses(cp_address: &str) -> Vec<&str> {
    cp_address.split(',').map(str::trim).filter(|a| !a.is_empty()).collect()
}

/// Makes every address an endpoint of `ads_cluster` (and a name its certificate may carry).
fn add_failover(yaml: &str, addresses: &[&str]) -> anyhow::Result<String> {
    let mut b: Value = serde_yaml_ng::from_str(yaml).context("parsing the bootstrap")?;
    let mut endpoints = Vec::new();
    let mut sans = Vec::new();
    let mut all_ips = true;
    for a in addresses {
        let t = super::https::parse_url(a)?;
        let is_ip = t.host.parse::<std::net::IpAddr>().is_ok();
        all_ips &= is_ip;
        endpoints.push(json!({"endpoint": {"address": {"socket_address": {"address": t.host, "port_value": t.port}}}}));
        let san = json!({"san_type": if is_ip { "IP_ADDRESS" } else { "DNS" }, "matcher": {"exact": t.host}});
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    let clusters =
        b["static_resources"]["clusters"].as_array_mut().ok_or_else(|| anyhow!("bootstrap has no clusters"))?;
    let ads = clusters
        .iter_mut()
        .find(|c| c["name"] == "ads_cluster")
        .ok_or_else(|| anyhow!("bootstrap has no ads_cluster"))?;
    ads["load_assignment"]["endpoints"] = json!([{"lb_endpoints": endpoints}]);
    ads["type"] = json!(if all_ips { "STATIC" } else { "STRICT_DNS" });
    let validation = &mut ads["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"];
    if validation.is_object() {
        validation["match_typed_subject_alt_names"] = Value::Array(sans);
    }
    serde_yaml_ng::to_string(&b).context("writing the bootstrap")
}

/// Without `--ca-cert-file`, a control plane on this host is verified with the CA it
/// generated (`$KUMA_GENERAL_WORK_DIR`, else `$HOME/.kuma`), when that file exists: the
/// README's tour then needs no flag for it. Any other host needs the flag (or a
/// certificate the system trusts).
fn local_ca(cp_address: &str) -> Option<PathBuf> {
    let rest = cp_address.strip_prefix("https://")?;
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if !(matches!(host, "localhost" | "127.0.0.1") || rest.starts_with("[::1]")) {
        return None;
    }
    let dir = match std::env::var_os("KUMA_GENERAL_WORK_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".kuma"),
    };
    let ca = dir.join(higuma::tls::generate::CA_FILE);
    ca.is_file().then(|| {
        eprintln!("higuma dp: verifying the control plane with {} (--ca-cert-file to choose)", ca.display());
        ca
    })
}

/// Registers the Dataplane if asked, then returns its Envoy bootstrap (YAML) and whether
/// the registration created the Dataplane.
pub fn fetch_bootstrap(client: &Client, args: &DpArgs) -> anyhow::Result<(String, bool)> {
    let created = match &args.dataplane_file {
        Some(file) => register(client, args, file)?,
        None => false,
    };
    let addresses = cp_addresses(&args.cp_address);
    let mut failure = None;
    for address in &addresses {
        match fetch_from(address, args) {
            Ok(yaml) if addresses.len() > 1 => return Ok((add_failover(&yaml, &addresses)?, created)),
            Ok(yaml) => return Ok((yaml, created)),
            Err(e) => {
                if addresses.len() > 1 {
                    eprintln!("higuma dp: {address}: {e:#}; trying the next control plane");
                }
                failure.get_or_insert(e);
            }
        }
    }
    Err(failure.unwrap_or_else(|| anyhow!("--cp-address names no control plane")))
}

fn fetch_from(cp_address: &str, args: &DpArgs) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the dataplane token {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let ca_file = args.ca_cert_file.clone().or_else(|| local_ca(cp_address));
    let ca_cert = match &ca_file {
        Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?),
        None => None,
    };
    let body = json!({
        "mesh": args.mesh, "name": args.name, "proxyType": "dataplane",
        "dataplaneToken": token, "caCert": ca_cert, "adminPort": args.admin_port,
    });
    let answer = super::https::post_json(
        cp_address,
        "/bootstrap",
        ca_file.as_deref(),
        body.to_string().as_bytes(),
        BOOTSTRAP_TIMEOUT,
    )?;
    let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if answer.status != 200 {
        let detail = match &parsed {
            Some(b) => format!(
                "{} ({}): {}",
                b["title"].as_str().unwrap_or("error"),
                answer.status,
                b["detail"].as_str().unwrap_or("")
            ),
            None => format!("{}: {}", answer.status, String::from_utf8_lossy(&answer.body).trim()),
        };
        return Err(anyhow!(detail)).context("fetching the Envoy bootstrap");
    }
    let encoded =
        parsed.as_ref().and_then(|b| b["bootstrap"].as_str()).ok_or_else(|| anyhow!("answer has no bootstrap"))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).context("decoding the bootstrap")?;
    String::from_utf8(bytes).context("the bootstrap is not UTF-8")
}

pub fn bootstrap(client: &Client, args: &DpArgs, output: Option<&Path>) -> anyhow::Result<()> {
    let (yaml, _) = fetch_bootstrap(client, args)?;
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
    let (yaml, created) = fetch_bootstrap(client, args)?;
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
        // kuma-dp's lifecycle: a clean exit deregisters the Dataplane it registered, and
        // only that one (an operator's or another process's Dataplane stays).
        if created {
            let path = format!("/meshes/{}/dataplanes/{}", args.mesh, args.name);
            match client.delete(&path) {
                Ok(a) if matches!(a.status, 200 | 404) => {}
                Ok(a) => eprintln!("higuma dp: deregistering the Dataplane failed: {:#}", a.error()),
                Err(e) => eprintln!("higuma dp: deregistering the Dataplane failed: {e:#}"),
            }
        }
        Ok(())
    } else {
        bail!("Envoy exited with {status}")
    }
}
