//! Permissions over the real xDS server with scripted Envoys: a permission change reaches
//! only the dataplanes whose inbounds it selects (the RBAC filter is on the providers' inbound
//! listeners; consumers and bystanders have nothing to regenerate), in a mesh with mTLS on.

mod common;

use std::time::Duration;

use common::ads::{grpc_env, Envoy, LDS};
use higuma::daemon::Daemon;
use higuma::envoy::discovery::DiscoveryResponse;
use higuma::model::{rest, ResourceKey, ResourceType};
use higuma::reconcile::Metrics;
use serde_json::{json, Value};

fn dataplane(name: &str, service: &str, port: u32, outbounds: &[(&str, u32)]) -> Value {
    let outbound: Vec<Value> =
        outbounds.iter().map(|(s, p)| json!({"port": p, "tags": {"kuma.io/service": s}})).collect();
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": port + 1000, "tags": {"kuma.io/service": service}}],
            "outbound": outbound
        }
    })
}

fn apply(d: &Daemon, value: Value) {
    let env = rest::from_json(value).unwrap();
    let key = ResourceKey::new(env.rtype, env.mesh.clone().unwrap_or_default(), &env.name);
    match d.store.get(&key) {
        Ok(cur) => d.store.update(&key, env.spec, cur.meta.version).map(|_| ()).unwrap(),
        Err(_) => d.store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).map(|_| ()).unwrap(),
    }
}

/// The inbound listeners' RBAC filters of an LDS response, as JSON.
fn rbac_filters(lds: &DiscoveryResponse) -> Vec<Value> {
    lds.resources
        .iter()
        .map(|a| higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(a).unwrap()))
        .filter(|l| l["name"].as_str().is_some_and(|n| n.starts_with("inbound:")))
        .flat_map(|l| l["filterChains"][0]["filters"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["name"] == "envoy.filters.network.rbac")
        .collect()
}

/// Dataplane jobs the reconciler has run: a dataplane a change reaches costs one, even when
/// its config comes out unchanged (and nothing is sent).
fn jobs(d: &Daemon) -> u64 {
    Metrics::get(&d.reconciler().unwrap().metrics().jobs_dispatched)
}

/// The next LDS response of `envoy`, ACKed.
fn next_lds(envoy: &mut Envoy) -> DiscoveryResponse {
    let lds = envoy.expect(LDS);
    envoy.ack(&lds, &[]);
    lds
}

#[test]
fn a_permission_change_reaches_only_the_dataplanes_it_selects() {
    // A 60 s refresh interval: whatever arrives within seconds was pushed by the change.
    let mut config = common::test_config(60_000);
    config.defaults.skip_mesh_creation = true;
    let d = Daemon::start(config).unwrap();
    apply(
        &d,
        json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"],
               "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
    );
    apply(&d, dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    apply(&d, dataplane("backend-1", "backend", 9090, &[]));
    apply(&d, dataplane("other-1", "other", 7070, &[]));
    let env = grpc_env();
    let mut web = common::ads::connect_to(&d, &env, "default.web-1");
    let mut backend = common::ads::connect_to(&d, &env, "default.backend-1");
    let mut other = common::ads::connect_to(&d, &env, "default.other-1");
    web.converge(&["backend"]);
    let (_, _, lds) = backend.converge(&[]);
    other.converge(&[]);
    // mTLS on and no permission: every inbound denies all (an ALLOW engine without policies).
    let before = rbac_filters(&lds);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["typedConfig"]["rules"], json!({}));

    // A MeshTrafficPermission on backend: backend's listener changes, nobody else's, and
    // nobody else's config is even regenerated.
    std::thread::sleep(Duration::from_millis(300));
    let before = jobs(&d);
    apply(
        &d,
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "backend-from-web",
               "spec": {"targetRef": {"kind": "MeshService", "name": "backend"},
                        "from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Allow"}}]}}),
    );
    let after = rbac_filters(&next_lds(&mut backend));
    let principals = &after[0]["typedConfig"]["rules"]["policies"]["MeshTrafficPermission"]["principals"];
    assert_eq!(principals[0]["authenticated"]["principalName"]["exact"], "spiffe://default/web", "{after:?}");
    web.expect_nothing(Duration::from_millis(1500));
    other.expect_nothing(Duration::from_millis(100));
    backend.expect_nothing(Duration::from_millis(100));
    assert_eq!(jobs(&d) - before, 1, "only backend-1 was reached");

    // Its `rules` form reaches the same dataplanes, and so does its deletion.
    let before = jobs(&d);
    apply(
        &d,
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "backend-from-web",
               "spec": {"targetRef": {"kind": "MeshService", "name": "backend"},
                        "rules": [{"default": {"allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]}}]}}),
    );
    let after = rbac_filters(&next_lds(&mut backend));
    let principals = &after[0]["typedConfig"]["rules"]["policies"]["MeshTrafficPermission"]["principals"];
    assert_eq!(principals[0]["authenticated"]["principalName"]["prefix"], "spiffe://default/", "{after:?}");
    d.store.delete(&ResourceKey::new(ResourceType::MeshTrafficPermission, "default", "backend-from-web")).unwrap();
    assert_eq!(rbac_filters(&next_lds(&mut backend))[0]["typedConfig"]["rules"], json!({}));
    web.expect_nothing(Duration::from_millis(1500));
    other.expect_nothing(Duration::from_millis(100));
    assert_eq!(jobs(&d) - before, 2, "only backend-1 was reached, once per change");

    // The same for an old TrafficPermission whose destination is backend.
    let before = jobs(&d);
    apply(
        &d,
        json!({"type": "TrafficPermission", "mesh": "default", "name": "web-to-backend",
               "sources": [{"match": {"kuma.io/service": "web"}}],
               "destinations": [{"match": {"kuma.io/service": "backend"}}]}),
    );
    let after = rbac_filters(&next_lds(&mut backend));
    assert!(after[0]["typedConfig"]["rules"]["policies"]["web-to-backend"].is_object(), "{after:?}");
    web.expect_nothing(Duration::from_millis(1500));
    other.expect_nothing(Duration::from_millis(100));
    assert_eq!(jobs(&d) - before, 1, "only backend-1 was reached");

    // The test can fail: a mesh-wide permission reaches all three.
    let before = jobs(&d);
    apply(
        &d,
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "all",
               "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}),
    );
    for e in [&mut web, &mut backend, &mut other] {
        next_lds(e);
    }
    assert_eq!(jobs(&d) - before, 3);
    d.shutdown();
}
