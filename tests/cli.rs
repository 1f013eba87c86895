//! The `higuma` binary end to end: `run` as a real process, then `apply`, `get`, `delete`
//! and `config` as an operator types them.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{higuma_bin, Daemon};

fn higuma(args: &[&str]) -> Output {
    Command::new(higuma_bin()).args(args).env_remove("KUMA_LOG_LEVEL").output().expect("run higuma")
}

fn higuma_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(higuma_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The Dataplane of the README's tour.
const TOUR_DATAPLANE: &str = "\
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 18000
      servicePort: 8000
      tags:
        kuma.io/service: backend
        kuma.io/protocol: http
";

#[test]
fn readme_tour_apply_get_delete() {
    let daemon = Daemon::start(&[]);
    let cp = daemon.cp_address();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backend-1.yaml");
    std::fs::write(&file, TOUR_DATAPLANE).unwrap();

    let out = higuma(&["apply", "-f", file.to_str().unwrap(), "--cp-address", &cp]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created Dataplane \"backend-1\""), "{}", text(&out.stdout));
    let out = higuma(&["apply", "-f", file.to_str().unwrap(), "--cp-address", &cp]);
    assert!(text(&out.stdout).contains("updated"), "{}", text(&out.stdout));

    let out = higuma(&["get", "dataplanes", "--cp-address", &cp]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MESH") && lines[0].contains("NAME") && lines[0].contains("ADDRESS"), "{table}");
    assert!(lines[1].contains("default") && lines[1].contains("backend-1"), "{table}");
    assert!(lines[1].contains("kuma.io/service=backend") && lines[1].contains("127.0.0.1"), "{table}");

    let out = higuma(&["get", "dataplane", "backend-1", "-o", "yaml", "--cp-address", &cp]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml: serde_json::Value = serde_yaml_ng::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(yaml["name"], "backend-1");
    assert_eq!(yaml["networking"]["inbound"][0]["port"], 18000);

    let out = higuma(&["get", "meshes", "-o", "json", "--cp-address", &cp]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["items"][0]["name"], "default");

    let out = higuma(&["delete", "dataplane", "backend-1", "--cp-address", &cp]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = higuma(&["get", "dataplane", "backend-1", "--cp-address", &cp]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("there is no Dataplane with name \"backend-1\""), "{}", text(&out.stderr));
    let out = higuma(&["delete", "dataplane", "backend-1", "--cp-address", &cp]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn apply_stops_at_the_first_bad_document() {
    let daemon = Daemon::start(&[]);
    let cp = daemon.cp_address();
    let docs = "\
type: Mesh
name: first
---
type: Dataplane
mesh: default
name: broken
networking:
  address: 127.0.0.1
  inbound:
    - port: 18000
      tags:
        app: no-service-tag
---
type: Mesh
name: third
";
    let out = higuma_stdin(&["apply", "-f", "-", "--cp-address", &cp], docs);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("networking.inbound[0].tags"), "{err}");
    let out = higuma(&["get", "meshes", "-o", "json", "--cp-address", &cp]);
    let names: Vec<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "first"], "the third document was never applied");
}

#[test]
fn cli_errors_are_clear() {
    let out = higuma(&["get", "widgets", "--cp-address", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown resource type \"widgets\""), "{}", text(&out.stderr));
    let out = higuma(&["get", "meshes", "--cp-address", &format!("http://127.0.0.1:{}", common::free_port())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reach the control plane"), "{}", text(&out.stderr));
    let out = higuma(&["apply", "-f", "/nonexistent/file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/file.yaml"), "{}", text(&out.stderr));
}

#[test]
fn run_creates_the_default_mesh_unless_skipped() {
    let daemon = Daemon::start(&[]);
    let (status, _) = common::call("GET", &daemon.url("/meshes/default"), None);
    assert_eq!(status, 200);
    drop(daemon);
    let daemon = Daemon::start(&[("KUMA_DEFAULTS_SKIP_MESH_CREATION", "true")]);
    let (status, _) = common::call("GET", &daemon.url("/meshes/default"), None);
    assert_eq!(status, 404);
}

#[test]
fn sigterm_stops_run_cleanly() {
    let mut daemon = Daemon::start(&[]);
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", daemon.log_text());
    assert!(daemon.log_text().contains("higuma stopped"), "{}", daemon.log_text());
}

#[test]
fn run_refuses_an_invalid_config() {
    let out = Command::new(higuma_bin())
        .args(["run"])
        .env("KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL", "0s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("dataplaneConfigurationRefreshInterval"), "{}", text(&out.stderr));
}

#[test]
fn config_check_and_defaults() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/higuma.yaml");
    let out = higuma(&["config", "check", "-c", shipped]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiServer:\n  http:\n    port: not-a-port\n").unwrap();
    let out = higuma(&["config", "check", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("apiServer.http.port"), "{}", text(&out.stderr));

    let out = higuma(&["config", "defaults"]);
    assert!(out.status.success());
    let printed = dir.path().join("defaults.yaml");
    std::fs::write(&printed, &out.stdout).unwrap();
    let reloaded = higuma::config::load(Some(&printed), &|_| None).unwrap();
    assert_eq!(reloaded.config, higuma::config::Config::default());
    assert!(reloaded.warnings.is_empty(), "{:?}", reloaded.warnings);
}

/// Kuma's advice for a small Postgres: lower `maxOpenConnections` and nothing else. Both
/// commands accept it; `config check` shows the idle limit it derived.
#[test]
fn a_lower_open_connection_limit_alone_is_accepted_and_shown() {
    let out = Command::new(higuma_bin())
        .args(["config", "check"])
        .env("KUMA_STORE_TYPE", "postgres")
        .env("KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS", "3")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(stdout.contains("store.postgres.maxIdleConnections = 3 (configured 50"), "{stdout}");
    assert!(
        !text(&out.stderr).contains("maxIdleConnections"),
        "a derived default is no warning: {}",
        text(&out.stderr)
    );
}

const INSPECT_POLICIES: &str = "\
type: MeshTrafficPermission
mesh: default
name: mtp-1
spec:
  targetRef:
    kind: Mesh
  from:
    - targetRef:
        kind: Mesh
      default:
        action: Allow
";

#[test]
fn inspect_dataplanes_and_policies() {
    // The env var reaches `run`: Mesh default starts with allow-all-default and route-all-default.
    let daemon = Daemon::start(&[("KUMA_DEFAULTS_CREATE_MESH_ROUTING_RESOURCES", "true")]);
    let cp = daemon.cp_address();
    let docs = format!("{TOUR_DATAPLANE}---\n{INSPECT_POLICIES}");
    let out = higuma_stdin(&["apply", "-f", "-", "--cp-address", &cp], &docs);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect = |args: &[&str]| higuma(&[&["inspect"], args, &["--cp-address", &cp]].concat());

    let out = inspect(&["dataplane", "backend-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        // Mesh `default` starts with Kuma 2.6's default policies, which select every dataplane.
        "DATAPLANE:\n  MeshCircuitBreaker\n    mesh-circuit-breaker-all-default\n  MeshRetry\n    mesh-retry-all-default\n  \
         MeshTimeout\n    mesh-timeout-all-default\n  MeshTrafficPermission\n    mtp-1\n\n\
         INBOUND 127.0.0.1:18000:8000(backend):\n  TrafficPermission\n    allow-all-default\n\n"
    );

    let out = inspect(&["dataplane", "backend-1", "--type", "rules"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TYPE") && lines[0].contains("POLICY") && lines[0].contains("ORIGINS"), "{table}");
    // The permission's rule and the default MeshTimeout's inbound (`from`) rule.
    assert_eq!(lines.len(), 3, "{table}");
    let mtp = lines.iter().find(|l| l.contains("MeshTrafficPermission")).unwrap_or_else(|| panic!("{table}"));
    for cell in ["ClientSubset", "backend-", "{}", r#"{"action":"Allow"}"#, "mtp-1"] {
        assert!(mtp.contains(cell), "{cell} missing: {table}");
    }
    assert!(lines.iter().any(|l| l.contains("MeshTimeout") && l.contains("mesh-timeout-all-default")), "{table}");

    let out = inspect(&["meshtrafficpermission", "mtp-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MESH") && lines[0].contains("ATTACHMENTS"), "{table}");
    assert!(
        lines[1].contains("default") && lines[1].contains("backend-1") && lines[1].contains("dataplane"),
        "{table}"
    );

    let out = inspect(&["traffic-permission", "allow-all-default", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["items"][0]["attachments"],
        serde_json::json!([{"type": "inbound", "name": "127.0.0.1:18000:8000", "service": "backend"}])
    );

    // No Envoy runs for backend-1: the config dump is refused with the API's reason.
    let out = inspect(&["dataplane", "backend-1", "--type", "config-dump"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not connected"), "{}", text(&out.stderr));

    let out = inspect(&["dataplane", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Not Found (404)"), "{}", text(&out.stderr));
    let out = inspect(&["mesh", "default"]);
    assert!(text(&out.stderr).contains("cannot inspect a Mesh"), "{}", text(&out.stderr));
    let out = inspect(&["widgets", "x"]);
    assert!(text(&out.stderr).contains("cannot inspect \"widgets\""), "{}", text(&out.stderr));
    let out = inspect(&["meshtrafficpermission", "mtp-1", "--type", "rules"]);
    assert!(text(&out.stderr).contains("--type applies to `inspect dataplane` only"), "{}", text(&out.stderr));
}
