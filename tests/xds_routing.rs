//! Routing over the real xDS server with a scripted Envoy: the endpoints of a service that
//! a TrafficRoute splits an outbound's traffic to reach that outbound's dataplanes when they
//! change (the route's targets count as consumed), and nobody else's.

mod common;

use std::time::Duration;

use common::ads::{grpc_env, EDS};
use higuma::daemon::Daemon;
use higuma::envoy::discovery::DiscoveryResponse;
use higuma::model::rest;
use serde_json::{json, Value};

fn dataplane(name: &str, service: &str, port: u32, outbounds: &[(&str, u32)]) -> Value {
    let outbound: Vec<Value> =
        outbounds.iter().map(|(s, p)| json!({"port": p, "tags": {"kuma.io/service": s}})).collect();
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": port + 1000, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}],
            "outbound": outbound
        }
    })
}

fn apply(d: &Daemon, value: Value) {
    let env = rest::from_json(value).unwrap();
    d.store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
}

/// Endpoints per cluster in an EDS response.
fn endpoints(eds: &DiscoveryResponse) -> Vec<(String, usize)> {
    eds.resources
        .iter()
        .map(|a| {
            let v = higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(a).unwrap());
            let n = v["endpoints"][0]["lbEndpoints"].as_array().map_or(0, Vec::len);
            (v["clusterName"].as_str().unwrap_or("").to_string(), n)
        })
        .collect()
}

#[test]
fn a_new_instance_of_a_split_target_reaches_the_outbounds_consumers() {
    // A 60 s interval: whatever arrives within seconds was pushed by the change itself.
    let d = Daemon::start(common::test_config(60_000)).unwrap();
    apply(&d, dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    apply(&d, dataplane("db-user-1", "db-user", 8081, &[("db", 10002)]));
    apply(&d, dataplane("backend-1", "backend", 9090, &[]));
    apply(&d, dataplane("other-1", "other", 9091, &[]));
    apply(&d, dataplane("db-1", "db", 9092, &[]));
    apply(
        &d,
        json!({
            "type": "TrafficRoute", "mesh": "default", "name": "half-to-other",
            "sources": [{"match": {"kuma.io/service": "web"}}],
            "destinations": [{"match": {"kuma.io/service": "backend"}}],
            "conf": {"split": [
                {"weight": 50, "destination": {"kuma.io/service": "backend"}},
                {"weight": 50, "destination": {"kuma.io/service": "other"}}
            ]}
        }),
    );
    let env = grpc_env();
    let mut web = common::ads::connect_to(&d, &env, "default.web-1");
    let (_, eds, _) = web.converge(&["backend", "other"]);
    assert_eq!(endpoints(&eds.unwrap()), [("backend".to_string(), 1), ("other".to_string(), 1)]);
    let mut bystander = common::ads::connect_to(&d, &env, "default.db-user-1");
    bystander.converge(&["db"]);

    apply(&d, dataplane("other-2", "other", 9093, &[]));
    let eds = web.expect(EDS);
    assert_eq!(endpoints(&eds), [("backend".to_string(), 1), ("other".to_string(), 2)]);
    web.ack(&eds, &["backend", "other"]);
    bystander.expect_nothing(Duration::from_millis(1000));
    web.expect_nothing(Duration::from_millis(500));
    d.shutdown();
}
