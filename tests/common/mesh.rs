//! A mesh for policy end-to-end tests: one `higuma run`, real Envoys started by `higuma dp
//! run`, test apps behind them, resources written through the REST API, and helpers that
//! wait until Envoy has the config a policy should produce before traffic is measured.
//!
//! Cases of one test binary share the fleet; each case uses services of its own so the
//! policies of one case never select another's traffic.

use std::time::Duration;

use serde_json::{json, Value};

use super::{call, get_text, sidecar, wait_until, Daemon, Sidecar};

pub struct Mesh {
    pub cp: Daemon,
    pub dir: tempfile::TempDir,
    sidecars: Vec<(String, Sidecar)>,
    /// The shared client sidecar `web` (service `web`): its Dataplane and Envoy admin port.
    client: Option<(Value, u16)>,
}

impl Mesh {
    /// `higuma run` on the memory store with `env` added (e.g. a short refresh interval),
    /// and a Mesh `default` without Kuma's default policies (`skipCreatingInitialPolicies:
    /// ["*"]`), so each case's policies alone decide what traffic does; the defaults have a
    /// case of their own.
    pub fn start(env: &[(&str, &str)]) -> Mesh {
        let mut env = env.to_vec();
        env.push(("KUMA_DEFAULTS_SKIP_MESH_CREATION", "true"));
        let mesh =
            Mesh { cp: Daemon::start(&env), dir: tempfile::tempdir().unwrap(), sidecars: Vec::new(), client: None };
        mesh.put(&json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"]}));
        mesh
    }

    /// The client sidecar `web` (service `web`, started on first use) gains an outbound to
    /// `service`; returns the local port to send requests to, once Envoy listens there.
    pub fn outbound_to(&mut self, service: &str) -> u16 {
        let port = super::free_port();
        let admin = match self.client.take() {
            None => {
                let dp =
                    dataplane("web", "web", "http", super::free_port(), super::free_port(), &[], &[(service, port)]);
                let admin = self.sidecar(&dp);
                self.client = Some((dp, admin));
                admin
            }
            Some((mut dp, admin)) => {
                dp["networking"]["outbound"]
                    .as_array_mut()
                    .expect("outbounds")
                    .push(json!({"port": port, "tags": {"kuma.io/service": service}}));
                self.put(&dp);
                self.client = Some((dp, admin));
                admin
            }
        };
        let listener = format!("outbound:127.0.0.1:{port}");
        wait_for_config(admin, &format!("web's outbound to {service}"), |d| dump_contains(d, &listener));
        port
    }

    /// The client sidecar's Envoy admin port (after the first [`outbound_to`](Self::outbound_to)).
    pub fn client_admin(&self) -> u16 {
        self.client.as_ref().expect("no client sidecar yet: call outbound_to first").1
    }

    /// PUTs a resource (any type, Kuma's envelope) at its REST path; panics unless 200/201.
    pub fn put(&self, resource: &Value) {
        let (status, body) = call("PUT", &self.cp.url(&path_of(resource)), Some(&resource.to_string()));
        assert!(status == 200 || status == 201, "PUT {}: {status} {body}", path_of(resource));
    }

    /// PUTs and returns the status and body, for cases that expect a rejection.
    pub fn try_put(&self, resource: &Value) -> (u16, Value) {
        call("PUT", &self.cp.url(&path_of(resource)), Some(&resource.to_string()))
    }

    /// DELETEs a resource given as its envelope (only `type`, `mesh`, `name` are read).
    pub fn delete(&self, resource: &Value) {
        let (status, body) = call("DELETE", &self.cp.url(&path_of(resource)), None);
        assert_eq!(status, 200, "DELETE {}: {body}", path_of(resource));
    }

    /// Registers `dataplane` and starts its Envoy; returns the Envoy's admin port.
    pub fn sidecar(&mut self, dataplane: &Value) -> u16 {
        self.put(dataplane);
        let name = dataplane["name"].as_str().expect("a named Dataplane").to_string();
        let s = sidecar(&self.cp, self.dir.path(), &name);
        let admin = s.admin;
        self.sidecars.push((name, s));
        wait_until("the sidecar's admin port", Duration::from_secs(30), || {
            get_text(&format!("http://127.0.0.1:{admin}/ready")).is_some()
        });
        admin
    }

    /// Kills sidecar `name`'s Envoy (its Dataplane stays registered), as a crashed or
    /// stopped proxy leaves it.
    pub fn stop_sidecar(&mut self, name: &str) {
        let i = self.sidecars.iter().position(|(n, _)| n == name).unwrap_or_else(|| panic!("no sidecar {name}"));
        drop(self.sidecars.remove(i));
    }

    /// Sends `sig` to sidecar `name` (e.g. STOP: connected, but it answers nothing).
    pub fn signal_sidecar(&self, name: &str, sig: &str) {
        self.sidecars.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no sidecar {name}")).1.proc.signal(sig);
    }

    /// The Envoy log of sidecar `name`, for failure messages.
    pub fn sidecar_log(&self, name: &str) -> String {
        self.sidecars.iter().find(|(n, _)| n == name).map(|(_, s)| s.proc.log_text()).unwrap_or_default()
    }
}

/// `/meshes/{mesh}/{type path}/{name}` (or `/meshes/{name}` for a Mesh) from the envelope.
pub fn path_of(resource: &Value) -> String {
    let t = resource["type"].as_str().expect("a typed resource");
    let name = resource["name"].as_str().expect("a named resource");
    let rtype = higuma::model::ResourceType::from_name(t).unwrap_or_else(|| panic!("unknown type {t}"));
    if rtype.is_global() {
        format!("/{}/{name}", rtype.ws_path())
    } else {
        let mesh = resource["mesh"].as_str().unwrap_or("default");
        format!("/meshes/{mesh}/{}/{name}", rtype.ws_path())
    }
}

/// A Dataplane on 127.0.0.1: one inbound (`port` for Envoy, `app_port` for the app, HTTP
/// unless `protocol` says otherwise, extra `tags`) and outbounds `(service, port)`.
pub fn dataplane(
    name: &str,
    service: &str,
    protocol: &str,
    port: u16,
    app_port: u16,
    tags: &[(&str, &str)],
    outbounds: &[(&str, u16)],
) -> Value {
    let mut inbound_tags = json!({"kuma.io/service": service, "kuma.io/protocol": protocol});
    for (k, v) in tags {
        inbound_tags[*k] = json!(v);
    }
    let outbound: Vec<Value> =
        outbounds.iter().map(|(s, p)| json!({"port": p, "tags": {"kuma.io/service": s}})).collect();
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": app_port, "tags": inbound_tags}],
            "outbound": outbound
        }
    })
}

/// Envoy's `/config_dump` (with EDS) as JSON.
pub fn config_dump(admin: u16) -> Value {
    get_text(&format!("http://127.0.0.1:{admin}/config_dump?include_eds"))
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Waits until Envoy's config dump satisfies `ready` (e.g. a route timeout appeared), so a
/// case measures traffic only once the policy is in force.
pub fn wait_for_config(admin: u16, what: &str, ready: impl Fn(&Value) -> bool) {
    wait_until(what, Duration::from_secs(20), || ready(&config_dump(admin)));
}

/// Whether the config dump's text contains `needle` (a cheap check for a field value).
pub fn dump_contains(dump: &Value, needle: &str) -> bool {
    dump.to_string().contains(needle)
}

/// Envoy's counter or gauge `name` from `/stats`, if it exists.
pub fn stat(admin: u16, name: &str) -> Option<u64> {
    let stats = get_text(&format!("http://127.0.0.1:{admin}/stats?filter={name}"))?;
    stats.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
}

/// Waits until every endpoint of `cluster` in Envoy `admin` has a health status and at
/// least `healthy` of them report healthy (`/clusters` text).
pub fn healthy_hosts(admin: u16, cluster: &str) -> usize {
    let text = get_text(&format!("http://127.0.0.1:{admin}/clusters")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(&format!("{cluster}::")) && l.contains("::health_flags::"))
        .filter(|l| l.ends_with("::healthy"))
        .count()
}
