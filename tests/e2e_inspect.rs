//! The inspect API against real Envoys: what `/xds` says a dataplane ACKed is what that
//! Envoy's own `/config_dump` shows it runs, and `/policies` names the policies that shape
//! its traffic. One control plane, one client sidecar (`web`) and one backend, shared by the
//! cases, which run in order.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::app::{get, HttpApp};
use common::free_port;
use common::mesh::{config_dump, dataplane, Mesh};
use serde_json::{json, Value};

#[test]
fn inspect_shows_what_real_envoys_run() {
    let mut mesh = Mesh::start(&[]);
    let app = HttpApp::start("echo-1");
    mesh.sidecar(&dataplane("echo-1", "echo", "http", free_port(), app.port, &[], &[]));
    let outbound = mesh.outbound_to("echo");
    common::wait_until("traffic to echo", Duration::from_secs(30), || get(outbound, "/").status == 200);
    xds_acked_is_what_envoy_runs(&mesh);
    policies_name_the_timeout_that_shapes_traffic(&mesh);
}

fn admin_dump<'a>(dump: &'a Value, admin_type: &str) -> &'a Value {
    let t = format!("type.googleapis.com/envoy.admin.v3.{admin_type}");
    dump["configs"].as_array().and_then(|c| c.iter().find(|c| c["@type"] == t.as_str())).unwrap_or(&Value::Null)
}

/// Names in a list of dynamic entries, at `path` inside each entry.
fn names(list: &Value, path: &[&str]) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| path.iter().fold(e, |v, k| &v[*k]).as_str())
        .map(str::to_string)
        .collect()
}

/// Envoy's config dump (snake_case) and ours (camelCase, as Kuma's `/xds` prints it) agree on
/// the versions Envoy accepted and the listeners and clusters it runs.
fn xds_acked_is_what_envoy_runs(mesh: &Mesh) {
    let ours = || common::call("GET", &mesh.cp.url("/meshes/default/dataplanes/web/xds"), None);
    // The ACKs travel through the dispatcher: wait until every type Envoy runs shows ACKed.
    common::wait_until("web's ACKs in /xds", Duration::from_secs(10), || {
        let (status, dump) = ours();
        status == 200
            && dump["xdsStatus"]["types"].as_array().unwrap().iter().all(|t| {
                !t["subscribed"].as_bool().unwrap() || (t["ackedVersion"] == t["sentVersion"] && t["pending"] == false)
            })
    });
    let (_, dump) = ours();
    let envoy = config_dump(mesh.client_admin());

    let (our_l, envoy_l) = (admin_dump(&dump, "ListenersConfigDump"), admin_dump(&envoy, "ListenersConfigDump"));
    assert_eq!(our_l["versionInfo"], envoy_l["version_info"], "LDS version Envoy accepted");
    let envoy_listeners = names(&envoy_l["dynamic_listeners"], &["name"]);
    assert_eq!(names(&our_l["dynamicListeners"], &["name"]), envoy_listeners);
    assert!(envoy_listeners.iter().any(|n| n.starts_with("outbound:127.0.0.1:")), "{envoy_listeners:?}");
    for l in our_l["dynamicListeners"].as_array().unwrap() {
        assert_eq!(l["clientStatus"], "ACKED", "{l}");
        assert_eq!(l["activeState"]["versionInfo"], envoy_l["version_info"]);
    }

    let (our_c, envoy_c) = (admin_dump(&dump, "ClustersConfigDump"), admin_dump(&envoy, "ClustersConfigDump"));
    assert_eq!(our_c["versionInfo"], envoy_c["version_info"], "CDS version Envoy accepted");
    assert_eq!(
        names(&our_c["dynamicActiveClusters"], &["cluster", "name"]),
        names(&envoy_c["dynamic_active_clusters"], &["cluster", "name"])
    );
    let echo = our_c["dynamicActiveClusters"].as_array().unwrap().iter().find(|c| c["cluster"]["name"] == "echo");
    assert_eq!(echo.map(|c| &c["clientStatus"]), Some(&json!("ACKED")), "{our_c}");
}

/// A Timeout on web → echo shows as web's outbound attachment, and it is the one in force:
/// Envoy's route to echo carries its timeout.
fn policies_name_the_timeout_that_shapes_traffic(mesh: &Mesh) {
    mesh.put(&json!({
        "type": "Timeout", "mesh": "default", "name": "echo-7s",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "echo"}}],
        "conf": {"http": {"requestTimeout": "7s"}}
    }));
    common::mesh::wait_for_config(mesh.client_admin(), "the 7s route timeout", |d| {
        common::mesh::dump_contains(d, "\"timeout\":\"7s\"")
    });
    let (status, body) = common::call("GET", &mesh.cp.url("/meshes/default/dataplanes/web/policies"), None);
    assert_eq!(status, 200, "{body}");
    let outbound = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "outbound" && i["service"] == "echo")
        .unwrap_or_else(|| panic!("no outbound attachment for echo: {body}"));
    assert_eq!(outbound["matchedPolicies"]["Timeout"][0]["name"], "echo-7s");
    let (_, reach) = common::call("GET", &mesh.cp.url("/meshes/default/timeouts/echo-7s/dataplanes"), None);
    let dps: Vec<&str> =
        reach["items"].as_array().unwrap().iter().map(|i| i["dataplane"]["name"].as_str().unwrap()).collect();
    assert_eq!(dps, ["web"], "only the client: {reach}");
}
