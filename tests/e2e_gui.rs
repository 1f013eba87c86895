//! The operator's view with real Envoys: `higuma apply --wait` (delivered, NACKed, a
//! disconnected dataplane) and the web GUI at `/gui` driven in a real headless Chromium.
//! One control plane and its sidecars are shared by every case, which run in order; each
//! case has services of its own.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::app::{get, HttpApp};
use common::browser::Browser;
use common::mesh::{dataplane, dump_contains, Mesh};
use common::{call, free_port, wait_until};
use serde_json::{json, Value};

const SECRET: &str = "gui-test-password";

#[test]
fn operators_view() {
    // A password the control-plane page must not show (the memory store does not use it).
    let mut mesh = Mesh::start(&[("KUMA_STORE_POSTGRES_PASSWORD", SECRET)]);
    let delivered = apply_wait_succeeds_once_every_consumer_acked(&mut mesh);
    let nacked = apply_wait_names_the_dataplane_that_nacked(&mut mesh);
    apply_wait_names_a_disconnected_dataplane(&mut mesh);
    apply_wait_names_a_dataplane_that_does_not_answer(&mut mesh);
    let browser = Browser::start(mesh.dir.path());
    gui_shows_the_mesh_in_a_real_browser(&browser, &mut mesh, &delivered, &nacked);
    gui_asks_for_a_token_where_the_api_wants_one(&browser, &mesh.dir);
}

/// What a case left for the GUI to show: the change id and a dataplane it reached.
struct Applied {
    change: String,
    dataplane: String,
}

fn run_apply(mesh: &Mesh, doc: &Value, timeout: &str) -> Output {
    let file = mesh.dir.path().join(format!("{}.json", doc["name"].as_str().unwrap()));
    std::fs::write(&file, doc.to_string()).unwrap();
    Command::new(common::higuma_bin())
        .args(["apply", "-f"])
        .arg(&file)
        .args(["--wait", "--timeout", timeout, "--cp-address", &mesh.cp.url("")])
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The change id `higuma apply` printed: `created <Type> "<name>" (change <id>)`.
fn change_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split("(change ").nth(1))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no change id printed: {stdout}"))
        .to_string()
}

fn timeout_to(name: &str, service: &str, request_timeout: &str) -> Value {
    json!({
        "type": "MeshTimeout", "mesh": "default", "name": name,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service},
                    "default": {"http": {"requestTimeout": request_timeout}}}]
        }
    })
}

/// A MeshTimeout on `aw-ok`: `apply --wait` returns 0 once web's Envoy ACKed, and by then
/// the timeout is in force there (a 2 s backend gets a 504 after 1 s).
fn apply_wait_succeeds_once_every_consumer_acked(mesh: &mut Mesh) -> Applied {
    let app = HttpApp::start("aw-ok-1");
    mesh.sidecar(&dataplane("aw-ok-1", "aw-ok", "http", free_port(), app.port, &[], &[]));
    let outbound = mesh.outbound_to("aw-ok");
    wait_until("traffic to aw-ok", Duration::from_secs(30), || get(outbound, "/").status == 200);
    app.set(|b| b.delay = Duration::from_secs(2));

    let out = run_apply(mesh, &timeout_to("aw-ok-1s", "aw-ok", "1s"), "20s");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("created MeshTimeout \"aw-ok-1s\" (change "), "{stdout}");
    assert!(stdout.contains("all 1 affected dataplane(s) ACKed"), "{stdout}");
    // Not a terminal: plain progress lines, no bar.
    assert!(stdout.contains("waiting: "), "{stdout}");
    assert!(!stdout.contains('\r') && !stderr.contains('\r'), "{stdout}{stderr}");

    // ACKed means in force: no waiting for the config here.
    let reply = get(outbound, "/");
    assert_eq!(reply.status, 504, "{}", reply.body);

    // On a terminal (`script` gives it one): a progress bar, redrawn in place, full at the end.
    let tty = json!({
        "type": "MeshTimeout", "mesh": "default", "name": "aw-ok-tty",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "MeshService", "name": "aw-ok"},
                         "default": {"connectionTimeout": "2s"}}]}
    });
    let file = mesh.dir.path().join("aw-ok-tty.json");
    std::fs::write(&file, tty.to_string()).unwrap();
    let cmd = format!(
        "{} apply -f {} --wait --timeout 20s --cp-address {}",
        common::higuma_bin().display(),
        file.display(),
        mesh.cp.url("")
    );
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let terminal = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{terminal}");
    let full_bar = format!("\r[{}] 1/1 dataplane(s) ACKed", "#".repeat(30));
    assert!(terminal.contains(&full_bar), "{terminal:?}");
    assert!(!terminal.contains("waiting: "), "no plain lines on a terminal: {terminal:?}");
    Applied { change: change_id(&stdout), dataplane: "web".into() }
}

/// `aw-nack-1` gains an outbound on a port another process holds: its Envoy cannot bind the
/// listener and NACKs the LDS update. `apply --wait` exits 2 naming the dataplane and
/// Envoy's error; the change says the same.
fn apply_wait_names_the_dataplane_that_nacked(mesh: &mut Mesh) -> Applied {
    let app = HttpApp::start("aw-nack-1");
    let inbound = free_port();
    let dp = dataplane("aw-nack-1", "aw-nack", "http", inbound, app.port, &[], &[]);
    mesh.sidecar(&dp);
    wait_until("aw-nack-1 online", Duration::from_secs(30), || online(mesh, "aw-nack-1"));

    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let taken = dataplane("aw-nack-1", "aw-nack", "http", inbound, app.port, &[], &[("aw-ok", port)]);
    let out = run_apply(mesh, &taken, "20s");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("NACKed by default.aw-nack-1"), "{stderr}");
    assert!(stderr.contains("envoy.config.listener.v3.Listener"), "the rejected type is named: {stderr}");
    assert!(stderr.contains(&port.to_string()), "Envoy's error names the port: {stderr}");

    let id = change_id(&stdout);
    let (status, change) = call("GET", &mesh.cp.url(&format!("/changes/{id}")), None);
    assert_eq!(status, 200, "{change}");
    let d = change["dataplanes"].as_array().and_then(|a| a.iter().find(|d| d["name"] == "aw-nack-1")).cloned();
    let d = d.unwrap_or_else(|| panic!("aw-nack-1 not in {change}"));
    assert_eq!(d["state"], "nacked", "{d}");
    assert!(d["error"].as_str().is_some_and(|e| e.contains(&port.to_string())), "{d}");
    drop(held);
    Applied { change: id, dataplane: "aw-nack-1".into() }
}

/// `aw-gone-1` consumes `aw-gone` and its Envoy is stopped; a MeshTimeout on `aw-gone`
/// reaches web (ACK) and aw-gone-1 (not connected): exit 3, naming aw-gone-1 only.
fn apply_wait_names_a_disconnected_dataplane(mesh: &mut Mesh) {
    mesh.outbound_to("aw-gone");
    let dp =
        dataplane("aw-gone-1", "aw-gone-client", "http", free_port(), free_port(), &[], &[("aw-gone", free_port())]);
    mesh.sidecar(&dp);
    wait_until("aw-gone-1 online", Duration::from_secs(30), || online(mesh, "aw-gone-1"));
    mesh.stop_sidecar("aw-gone-1");
    wait_until("aw-gone-1 offline", Duration::from_secs(30), || !online(mesh, "aw-gone-1"));

    let out = run_apply(mesh, &timeout_to("aw-gone-2s", "aw-gone", "2s"), "20s");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("not connected: default.aw-gone-1"), "{stderr}");
    assert!(!stderr.contains("default.web"), "web ACKed: {stderr}");
    assert!(stdout.contains("1/2 dataplane(s) ACKed"), "{stdout}");
}

/// `aw-slow-1`'s Envoy is frozen (SIGSTOP: its stream stays open, nothing answers): exit 3
/// naming it once `--timeout` passed; thawed, it ACKs and the change records that.
fn apply_wait_names_a_dataplane_that_does_not_answer(mesh: &mut Mesh) {
    mesh.outbound_to("aw-slow");
    let dp =
        dataplane("aw-slow-1", "aw-slow-client", "http", free_port(), free_port(), &[], &[("aw-slow", free_port())]);
    mesh.sidecar(&dp);
    wait_until("aw-slow-1 online", Duration::from_secs(30), || online(mesh, "aw-slow-1"));
    mesh.signal_sidecar("aw-slow-1", "STOP");

    let out = run_apply(mesh, &timeout_to("aw-slow-3s", "aw-slow", "3s"), "3s");
    mesh.signal_sidecar("aw-slow-1", "CONT");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("no answer within 3s: default.aw-slow-1"), "{stderr}");
    assert!(!stderr.contains("default.web"), "web ACKed: {stderr}");

    let id = change_id(&stdout);
    wait_until("aw-slow-1's late ACK", Duration::from_secs(20), || {
        let (_, c) = call("GET", &mesh.cp.url(&format!("/changes/{id}")), None);
        c["delivered"] == true && c["counts"]["acked"] == 2
    });
}

/// Whether the control plane has an ADS stream of dataplane `name` right now.
fn online(mesh: &Mesh, name: &str) -> bool {
    let (_, xds) = call("GET", &mesh.cp.url("/meshes/default/dataplanes+xds"), None);
    xds["items"].as_array().is_some_and(|a| a.iter().any(|s| s["name"] == name))
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("gui-screenshots")
}

/// Opens a GUI page, waits until it rendered, saves a screenshot and checks the console.
fn open(b: &Browser, mesh: &Mesh, hash: &str, page: &str, shot: Option<&str>) {
    b.goto(&mesh.cp.url(&format!("/gui{hash}")));
    b.wait_ready(page);
    if let Some(name) = shot {
        b.screenshot(&screenshots().join(format!("{name}.png")));
    }
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors on {hash}: {errors:?}");
    // Works without outside network: everything the page loaded came from the API port.
    let loaded = b.eval("return performance.getEntriesByType('resource').map((e) => e.name)");
    let origin = mesh.cp.url("/");
    let elsewhere: Vec<&Value> = loaded
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| !u.as_str().is_some_and(|u| u.starts_with(&origin)))
        .collect();
    assert!(elsewhere.is_empty(), "loaded from elsewhere: {elsewhere:?}");
    assert!(loaded.as_array().is_some_and(|a| !a.is_empty()), "the page called the API");
}

/// Every page in headless Chromium, with no console error: a dataplane applied through the
/// API turns from offline to online, the dataplane page shows the config higuma sent, the
/// NACKed change shows as NACKed with Envoy's error, policies name what they affect.
fn gui_shows_the_mesh_in_a_real_browser(b: &Browser, mesh: &mut Mesh, delivered: &Applied, nacked: &Applied) {
    open(b, mesh, "#/meshes", "meshes", Some("meshes"));
    assert_eq!(b.text("tr[data-mesh=default] .mtls"), "off");
    // aw-gone-1 is the one offline.
    let (_, all) = call("GET", &mesh.cp.url("/meshes/default/dataplanes"), None);
    let total = all["total"].as_u64().unwrap_or(0);
    assert_eq!(b.text("tr[data-mesh=default] .dataplanes"), format!("{} online / {total}", total - 1));
    assert_eq!(b.text("tr[data-mesh=default] td:nth-child(4)"), "4 policies");

    let app = HttpApp::start("gui-1");
    let dp = dataplane("gui-1", "gui", "http", free_port(), app.port, &[], &[]);
    mesh.put(&dp);
    open(b, mesh, "#/meshes/default/dataplanes", "dataplanes", None);
    assert_eq!(b.text("tr[data-dataplane=gui-1] .status"), "offline");
    mesh.sidecar(&dp);
    wait_until("gui-1 online in the GUI", Duration::from_secs(30), || {
        open(b, mesh, "#/meshes/default/dataplanes", "dataplanes", None);
        b.text("tr[data-dataplane=gui-1] .status") == "online"
    });
    assert!(b.text("tr[data-dataplane=gui-1] .xds").contains("ACK"), "{}", b.text("tr[data-dataplane=gui-1]"));
    assert_eq!(b.text("tr[data-dataplane=aw-gone-1] .status"), "offline");
    b.screenshot(&screenshots().join("dataplanes.png"));

    open(b, mesh, &format!("#/meshes/default/dataplanes/{}", delivered.dataplane), "dataplane", Some("dataplane"));
    let config = b.text("#config");
    let config: Value = serde_json::from_str(&config).unwrap_or_else(|e| panic!("config is not JSON ({e}): {config}"));
    assert!(dump_contains(&config, "outbound:127.0.0.1:"), "web's listeners: {config}");
    assert!(dump_contains(&config, "\"1s\""), "the MeshTimeout it ACKed: {config}");
    assert!(b.text("main").contains("aw-ok-1s"), "the matched MeshTimeout is listed");

    open(b, mesh, "#/changes", "changes", Some("changes"));
    assert!(b.text(&format!("tr[data-change=\"{}\"] .delivery", delivered.change)).contains("delivered"));
    assert!(b.text(&format!("tr[data-change=\"{}\"] .delivery", nacked.change)).contains("NACKed"));

    open(b, mesh, &format!("#/changes/{}", nacked.change), "change", Some("change-nacked"));
    let row = format!("tr[data-dataplane=\"{}\"]", nacked.dataplane);
    assert_eq!(b.text(&format!("{row} .state")), "nacked");
    let error = b.text(&format!("{row} .error"));
    assert!(!error.is_empty() && b.text("main").contains("NACKed"), "{}", b.text("main"));
    let (_, change) = call("GET", &mesh.cp.url(&format!("/changes/{}", nacked.change)), None);
    let api_error = change["dataplanes"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == nacked.dataplane.as_str()))
        .and_then(|d| d["error"].as_str())
        .unwrap_or("")
        .to_string();
    assert_eq!(error, api_error, "the page shows Envoy's error as the API has it");

    open(b, mesh, "#/meshes/default/policies", "policies", Some("policies"));
    // Kuma's `/{policy}/{name}/dataplanes`: what the top-level targetRef selects, here the
    // whole mesh, including the dataplane that joined last.
    let (_, reach) = call("GET", &mesh.cp.url("/meshes/default/meshtimeouts/aw-ok-1s/dataplanes"), None);
    let names: Vec<&str> =
        reach["items"].as_array().into_iter().flatten().filter_map(|i| i["dataplane"]["name"].as_str()).collect();
    assert!(names.contains(&"gui-1") && names.contains(&"web"), "{reach}");
    assert_eq!(b.text("tr[data-policy=\"MeshTimeout/aw-ok-1s\"] .affects"), names.join(", "));
    // What its write changed: web's config only, delivered.
    let reached = b.text("tr[data-policy=\"MeshTimeout/aw-ok-1s\"] .reached");
    assert_eq!(reached, "1 dataplane(s) delivered");
    assert_eq!(
        b.text("tr[data-policy=\"MeshTimeout/aw-gone-2s\"] .reached"),
        "2 dataplane(s) not delivered everywhere"
    );

    open(b, mesh, "#/control-plane", "control-plane", Some("control-plane"));
    assert_eq!(b.text("#store .store-health"), "healthy");
    let config: Value = serde_json::from_str(&b.text("#config")).expect("the config in force as JSON");
    assert_eq!(config["store"]["postgres"]["password"], "*****", "{config}");
    assert!(!b.eval("return document.documentElement.outerHTML").to_string().contains(SECRET));
}

/// A control plane of its own where localhost is not the admin (as for a remote browser)
/// and only admins may see config dumps: anonymously the dataplane page shows the refusal
/// and asks for a token, the admin token shows the config, an invalid token is refused on
/// every page.
fn gui_asks_for_a_token_where_the_api_wants_one(b: &Browser, work: &tempfile::TempDir) {
    let dir = tempfile::tempdir_in(work.path()).unwrap();
    let file = dir.path().join("higuma.yaml");
    let config = |localhost_is_admin: bool| {
        format!(
            "apiServer:\n  authn:\n    localhostIsAdmin: {localhost_is_admin}\n\
             access:\n  static:\n    viewConfigDump:\n      groups: [mesh-system:admin]\n"
        )
    };
    std::fs::write(&file, config(true)).unwrap();
    let cp = common::Daemon::start_with(free_port(), free_port(), &["-c", file.to_str().unwrap()], &[]);
    let app = HttpApp::start("auth-1");
    let dp = dataplane("auth-1", "auth", "http", free_port(), app.port, &[], &[]);
    let (status, body) = call("PUT", &cp.url("/meshes/default/dataplanes/auth-1"), Some(&dp.to_string()));
    assert_eq!(status, 201, "{body}");
    let _sidecar = common::sidecar(&cp, dir.path(), "auth-1");
    let (status, secret) = call("GET", &cp.url("/global-secrets/admin-user-token"), None);
    assert_eq!(status, 200, "{secret}");
    use base64::Engine;
    let admin = base64::engine::general_purpose::STANDARD.decode(secret["data"].as_str().unwrap_or("")).unwrap();
    let admin = String::from_utf8(admin).unwrap();
    wait_until("auth-1 connected", Duration::from_secs(30), || {
        call("GET", &cp.url("/meshes/default/dataplanes/auth-1/xds"), None).0 == 200
    });
    std::fs::write(&file, config(false)).unwrap();
    cp.signal("HUP");
    wait_until("localhost is no longer admin", Duration::from_secs(5), || {
        call("GET", &cp.url("/meshes/default/dataplanes/auth-1/xds"), None).0 == 401
    });

    let page = cp.url("/gui#/meshes/default/dataplanes/auth-1");
    b.goto(&page);
    b.wait_ready("dataplane");
    assert!(b.text("#config").contains("401"), "{}", b.text("#config"));
    assert_eq!(b.eval("return document.getElementById('auth').hidden"), json!(false), "the token form is shown");
    let refused = b.console_errors();
    assert!(refused.iter().all(|e| e.contains("401")), "only the refused config dump: {refused:?}");

    let submit = |token: &str| {
        let script = format!(
            "document.getElementById('token').value = {}; document.getElementById('token-form').requestSubmit();",
            json!(token)
        );
        b.eval(&script);
    };
    submit(&admin);
    b.wait_ready("dataplane");
    let dump: Value = serde_json::from_str(&b.text("#config")).unwrap_or(Value::Null);
    assert!(dump_contains(&dump, "inbound:127.0.0.1:"), "the admin sees the config: {}", b.text("#config"));
    b.screenshot(&screenshots().join("token.png"));
    assert!(b.console_errors().is_empty());

    submit("not.a.token");
    b.wait_ready("error");
    let error = b.text("#error");
    assert!(error.contains("401") && error.contains("Invalid authentication data"), "{error}");
    let refused = b.console_errors();
    assert!(!refused.is_empty() && refused.iter().all(|e| e.contains("401")), "{refused:?}");
}
