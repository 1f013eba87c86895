//! Policies proven by what real traffic through real Envoys does. One control plane, one
//! client sidecar (`web`) and the backends' sidecars are shared by every case, which run in
//! order in one test; each case has services of its own, so its policies never select
//! another case's traffic.

mod common;

use std::time::{Duration, Instant};

use common::app::{get, HttpApp};
use common::free_port;
use common::mesh::{dataplane, dump_contains, wait_for_config, Mesh};
use serde_json::json;

#[test]
fn policies_shape_real_traffic() {
    let mut mesh = Mesh::start(&[]);
    old_style_timeout_turns_a_slow_backend_into_504(&mut mesh);
}

/// Timeout `http.requestTimeout: 1s` in front of a backend that takes 3 s: 504 after ~1 s.
fn old_style_timeout_turns_a_slow_backend_into_504(mesh: &mut Mesh) {
    let app = HttpApp::start("slow-1");
    app.set(|b| b.delay = Duration::from_secs(3));
    mesh.sidecar(&dataplane("slow-1", "slow", "http", free_port(), app.port, &[], &[]));
    let outbound = mesh.outbound_to("slow");
    common::wait_until("traffic to slow", Duration::from_secs(30), || get(outbound, "/").status == 200);

    mesh.put(&json!({
        "type": "Timeout", "mesh": "default", "name": "slow-1s",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "slow"}}],
        "conf": {"http": {"requestTimeout": "1s"}}
    }));
    wait_for_config(mesh.client_admin(), "a 1s route timeout", |d| dump_contains(d, "\"timeout\":\"1s\""));
    let started = Instant::now();
    let reply = get(outbound, "/");
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_millis(2500), "answered after {:?}", started.elapsed());
}
