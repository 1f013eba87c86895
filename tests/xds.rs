//! The xDS server over real gRPC with a scripted client standing in for Envoy: ordering,
//! ACK/NACK, stale nonces, unknown dataplanes, status, and that an idle control plane sends
//! and regenerates nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ads::{grpc_env, Envoy, CDS, EDS, LDS};
use futures::SinkExt;
use grpcio::WriteFlags;
use higuma::config::Config;
use higuma::daemon::Daemon;
use higuma::envoy::discovery::{DiscoveryRequest, DiscoveryResponse};
use higuma::model::{rest, ResourceKey, ResourceType};
use higuma::reconcile::Metrics;
use serde_json::json;

fn config(refresh_ms: u64) -> Config {
    common::test_config(refresh_ms)
}

struct Cp {
    daemon: Option<Daemon>,
}

impl Cp {
    fn start(refresh_ms: u64) -> Cp {
        Cp::start_with(config(refresh_ms))
    }

    /// A control plane whose Mesh `default` has no default policies: these tests are about
    /// the xDS mechanics and the policies they write themselves.
    fn start_with(mut config: Config) -> Cp {
        config.defaults.skip_mesh_creation = true;
        let cp = Cp { daemon: Some(Daemon::start(config).unwrap()) };
        cp.apply(json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"]}));
        cp
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn apply(&self, value: serde_json::Value) {
        let env = rest::from_json(value).unwrap();
        let store = &self.d().store;
        let key = ResourceKey::new(env.rtype, env.mesh.clone().unwrap_or_default(), &env.name);
        match store.get(&key) {
            Ok(cur) => {
                store.update(&key, env.spec, cur.meta.version).unwrap();
            }
            Err(_) => {
                store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
            }
        }
    }

    fn delete(&self, rtype: ResourceType, name: &str) {
        self.d().store.delete(&ResourceKey::new(rtype, "default", name)).unwrap();
    }

    fn metrics(&self) -> Arc<Metrics> {
        self.d().reconciler().unwrap().metrics()
    }

    /// As a sidecar connects: TLS and a token for `node` (see `common::ads`).
    fn connect(&self, env: &Arc<grpcio::Environment>, node: &str) -> Envoy {
        common::ads::connect_to(self.d(), env, node)
    }
}

impl Drop for Cp {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown();
        }
    }
}

fn dataplane(name: &str, service: &str, port: u32, outbounds: &[(&str, u32)]) -> serde_json::Value {
    let outbound: Vec<_> =
        outbounds.iter().map(|(svc, p)| json!({"port": p, "tags": {"kuma.io/service": svc}})).collect();
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": port + 1000, "tags": {"kuma.io/service": service}}],
            "outbound": outbound
        }
    })
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| {
            let v = higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(a).unwrap());
            v["name"].as_str().or(v["clusterName"].as_str()).unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn start_up_exchange_sends_clusters_then_endpoints_and_listeners() {
    let cp = Cp::start(1000);
    cp.apply(dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    cp.apply(dataplane("backend-1", "backend", 9090, &[]));
    let env = grpc_env();
    let mut envoy = cp.connect(&env, "default.web-1");
    let (cds, eds, lds) = envoy.converge(&["backend"]);
    assert_eq!(names(&cds), ["backend", "localhost:9080"]);
    assert_eq!(names(&eds.unwrap()), ["backend"]);
    assert_eq!(names(&lds), ["inbound:127.0.0.1:8080", "outbound:127.0.0.1:10001"]);
    assert!(!cds.version_info.is_empty());
    assert!(cds.control_plane.is_some(), "responses name the control-plane instance");
    assert_ne!(cds.nonce, lds.nonce);
    envoy.expect_nothing(Duration::from_millis(1500));
}

#[test]
fn versions_are_content_hashes_across_instances() {
    let version_of = || {
        let cp = Cp::start(1000);
        cp.apply(dataplane("web-1", "web", 8080, &[]));
        let env = grpc_env();
        let mut envoy = cp.connect(&env, "default.web-1");
        let (cds, _, lds) = envoy.converge(&[]);
        (cds.version_info, lds.version_info)
    };
    assert_eq!(version_of(), version_of());
}

#[test]
fn changes_are_pushed_without_waiting_for_the_interval() {
    // A 60 s interval: anything that arrives quickly was pushed by the change event.
    let cp = Cp::start(60_000);
    cp.apply(dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    cp.apply(dataplane("backend-1", "backend", 9090, &[]));
    let env = grpc_env();
    let mut envoy = cp.connect(&env, "default.web-1");
    envoy.converge(&["backend"]);
    let started = Instant::now();
    cp.apply(dataplane("backend-2", "backend", 9091, &[]));
    let eds = envoy.expect(EDS);
    assert!(started.elapsed() < Duration::from_secs(5), "pushed on the event, not on the 60 s tick");
    assert_eq!(endpoint_count(&eds), 2);
    envoy.ack(&eds, &["backend"]);
    envoy.expect_nothing(Duration::from_millis(500));
}

#[test]
fn unaffected_dataplanes_receive_nothing() {
    let cp = Cp::start(60_000);
    only_consumers_hear_of_a_new_instance(&cp, &grpc_env());
}

#[test]
fn idle_control_plane_sends_and_regenerates_nothing() {
    let cp = Cp::start(200);
    let services = 10;
    for i in 0..100u32 {
        let svc = format!("svc-{}", i % services);
        let next = format!("svc-{}", (i + 1) % services);
        cp.apply(dataplane(&format!("dp-{i}"), &svc, 20000 + i, &[(next.as_str(), 30000)]));
    }
    let env = grpc_env();
    let mut envoys: Vec<Envoy> = (0..100u32).map(|i| cp.connect(&env, &format!("default.dp-{i}"))).collect();
    for (i, e) in envoys.iter_mut().enumerate() {
        let next = format!("svc-{}", (i as u32 + 1) % services);
        e.converge(&[next.as_str()]);
    }
    let m = cp.metrics();
    // Let in-flight ACK processing settle, then measure a quiet window of 10 intervals.
    std::thread::sleep(Duration::from_millis(500));
    let sent_before = Metrics::total(&m.responses_sent);
    let regen_before = m.regenerations();
    let sweeps_before = Metrics::get(&m.interval_sweeps);
    let checked_before = Metrics::get(&m.interval_checked);
    let jobs_before = Metrics::get(&m.jobs_dispatched);
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(Metrics::total(&m.responses_sent), sent_before, "an idle control plane sent responses");
    assert_eq!(m.regenerations(), regen_before, "an idle control plane regenerated config");
    // The interval keeps running (200 ms: about ten sweeps), but with nothing changed it
    // looks at no dataplane and runs no job: its cost does not grow with the fleet.
    assert!(Metrics::get(&m.interval_sweeps) >= sweeps_before + 5, "the refresh interval stopped sweeping");
    assert_eq!(Metrics::get(&m.interval_checked), checked_before, "an idle sweep visited dataplanes");
    assert_eq!(Metrics::get(&m.jobs_dispatched), jobs_before, "an idle control plane ran jobs");
    for e in &envoys {
        e.expect_nothing(Duration::from_millis(1));
    }
}

#[test]
fn a_nack_is_not_answered_with_the_same_config() {
    // Interval 100 ms, NACK back-off 300 ms (see `config`).
    let cp = Cp::start(100);
    cp.apply(dataplane("web-1", "web", 8080, &[]));
    let env = grpc_env();
    let mut envoy = cp.connect(&env, "default.web-1");
    envoy.subscribe(CDS, &[]);
    let cds = envoy.expect(CDS);
    envoy.send(CDS, "", &cds.nonce.clone(), &[], Some("cluster rejected by test"));
    let nacked_at = Instant::now();
    // New content right away: it is sent, but not before the back-off has passed.
    cp.apply(dataplane("web-1", "web", 8081, &[]));
    let again = envoy.expect(CDS);
    assert_ne!(again.version_info, cds.version_info);
    assert!(nacked_at.elapsed() >= Duration::from_millis(300), "sent {:?} after the NACK", nacked_at.elapsed());
    // Rejected again: ten intervals pass and the same config is never resent.
    envoy.send(CDS, &cds.version_info.clone(), &again.nonce.clone(), &[], Some("still rejected"));
    envoy.expect_nothing(Duration::from_millis(1000));
    let m = cp.metrics();
    assert_eq!(m.nacks[CDS.index()].load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn stale_nonces_and_missing_nodes_are_ignored() {
    let cp = Cp::start(100);
    cp.apply(dataplane("web-1", "web", 8080, &[]));
    let env = grpc_env();
    // No node id, or a malformed one: nothing is sent and the stream is closed (it cannot
    // be authenticated as any dataplane).
    let mut anonymous = cp.connect(&env, "");
    anonymous.sent_node = true;
    anonymous.subscribe(CDS, &[]);
    anonymous.expect_nothing(Duration::from_millis(500));
    assert_eq!(
        anonymous.closed_with(Duration::from_secs(2)).map(|c| c.0),
        Some(grpcio::RpcStatusCode::INVALID_ARGUMENT)
    );
    let mut bad = cp.connect(&env, "no-dot-here");
    bad.subscribe(CDS, &[]);
    bad.expect_nothing(Duration::from_millis(300));
    assert_eq!(bad.closed_with(Duration::from_secs(2)).map(|c| c.0), Some(grpcio::RpcStatusCode::INVALID_ARGUMENT));

    let mut envoy = cp.connect(&env, "default.web-1");
    envoy.subscribe(CDS, &[]);
    let first = envoy.expect(CDS);
    envoy.ack(&first, &[]);
    cp.apply(dataplane("web-1", "web", 8081, &[]));
    let second = envoy.expect(CDS);
    // A late answer to the first response must not count as an ACK of the second.
    envoy.send(CDS, &first.version_info.clone(), &first.nonce.clone(), &[], Some("stale"));
    envoy.expect_nothing(Duration::from_millis(500));
    assert_eq!(cp.metrics().nacks[CDS.index()].load(std::sync::atomic::Ordering::Relaxed), 0);
    envoy.ack(&second, &[]);
    // Unknown type URLs get no answer and break nothing.
    let mut req = DiscoveryRequest::new();
    req.type_url = "type.googleapis.com/envoy.config.nothing.v3.Nothing".into();
    futures::executor::block_on(envoy.tx.send((req, WriteFlags::default()))).unwrap();
    envoy.expect_nothing(Duration::from_millis(300));
    cp.apply(dataplane("web-1", "web", 8082, &[]));
    envoy.expect(CDS);
}

#[test]
fn an_unknown_dataplane_is_served_once_it_exists() {
    let cp = Cp::start(60_000);
    let env = grpc_env();
    let mut envoy = cp.connect(&env, "default.late-1");
    envoy.subscribe(CDS, &[]);
    envoy.subscribe(LDS, &[]);
    envoy.expect_nothing(Duration::from_millis(500));
    cp.apply(dataplane("late-1", "late", 8080, &[]));
    let cds = envoy.expect(CDS);
    assert_eq!(names(&cds), ["localhost:9080"]);
}

#[test]
fn status_shows_online_then_offline() {
    let cp = Cp::start(100);
    cp.apply(dataplane("web-1", "web", 8080, &[]));
    let api = format!("http://{}", cp.d().api_addr().unwrap());
    {
        let env = grpc_env();
        let mut envoy = cp.connect(&env, "default.web-1");
        envoy.converge(&[]);
        common::wait_until("insight with ACKs", Duration::from_secs(5), || {
            let (_, b) = common::call("GET", &format!("{api}/meshes/default/dataplanes+insights/web-1"), None);
            let sub = &b["dataplaneInsight"]["subscriptions"][0];
            sub["connectTime"].is_string()
                && sub["disconnectTime"].is_null()
                && sub["status"]["total"]["responsesAcknowledged"] == "2"
                && sub["status"]["cds"]["responsesSent"] == "1"
                && sub["controlPlaneInstanceId"] == cp.d().instance_id.as_str()
        });
    }
    common::wait_until("insight marked disconnected", Duration::from_secs(5), || {
        let (_, b) = common::call("GET", &format!("{api}/meshes/default/dataplanes+insights/web-1"), None);
        b["dataplaneInsight"]["subscriptions"][0]["disconnectTime"].is_string()
    });
}

#[test]
fn deleting_a_service_instance_updates_consumers() {
    let cp = Cp::start(60_000);
    cp.apply(dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    cp.apply(dataplane("backend-1", "backend", 9090, &[]));
    cp.apply(dataplane("backend-2", "backend", 9091, &[]));
    let env = grpc_env();
    let mut envoy = cp.connect(&env, "default.web-1");
    envoy.converge(&["backend"]);
    cp.delete(ResourceType::Dataplane, "backend-1");
    let eds = envoy.expect(EDS);
    let json = higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(&eds.resources[0]).unwrap());
    let eps = json["endpoints"][0]["lbEndpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["endpoint"]["address"]["socketAddress"]["portValue"], 9091);
}

/// The number of endpoints in an EDS response's first load assignment.
fn endpoint_count(eds: &DiscoveryResponse) -> usize {
    let json = higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(&eds.resources[0]).unwrap());
    json["endpoints"][0]["lbEndpoints"].as_array().map_or(0, |a| a.len())
}

/// A Timeout policy giving every outbound a 7 s connect timeout.
fn slow_connect_everywhere() -> serde_json::Value {
    json!({
        "type": "Timeout", "mesh": "default", "name": "slow-connect",
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}],
        "conf": {"connectTimeout": "7s"}
    })
}

/// web-1 (an outbound to `backend`) and backend-1, with web-1's scripted Envoy converged.
fn web_calling_backend(cp: &Cp, env: &Arc<grpcio::Environment>) -> Envoy {
    cp.apply(dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    cp.apply(dataplane("backend-1", "backend", 9090, &[]));
    let mut web = cp.connect(env, "default.web-1");
    web.converge(&["backend"]);
    web
}

/// web-1 → backend and other-1 → db, both converged; a new backend instance must reach
/// web-1 (two endpoints now) and nothing may reach other-1. Returns both for more steps.
fn only_consumers_hear_of_a_new_instance(cp: &Cp, env: &Arc<grpcio::Environment>) -> (Envoy, Envoy) {
    cp.apply(dataplane("other-1", "other", 7070, &[("db", 10002)]));
    cp.apply(dataplane("db-1", "db", 9095, &[]));
    let mut web = web_calling_backend(cp, env);
    let mut other = cp.connect(env, "default.other-1");
    other.converge(&["db"]);
    cp.apply(dataplane("backend-2", "backend", 9091, &[]));
    let eds = web.expect(EDS);
    assert_eq!(endpoint_count(&eds), 2);
    web.ack(&eds, &["backend"]);
    other.expect_nothing(Duration::from_millis(1000));
    (web, other)
}

fn push_off(refresh_ms: u64) -> Cp {
    let mut c = config(refresh_ms);
    c.xds_server.event_push = false;
    Cp::start_with(c)
}

#[test]
fn with_event_push_off_changes_wait_for_the_interval() {
    // A 60 s interval: nothing may arrive within a few seconds of the change.
    let cp = push_off(60_000);
    let env = grpc_env();
    let web = web_calling_backend(&cp, &env);
    cp.apply(dataplane("backend-2", "backend", 9091, &[]));
    web.expect_nothing(Duration::from_millis(2000));
}

#[test]
fn with_event_push_off_the_interval_delivers_exactly_the_affected_changes() {
    let cp = push_off(300);
    let env = grpc_env();
    let (mut web, mut other) = only_consumers_hear_of_a_new_instance(&cp, &env);
    // A policy change reaches every dataplane it applies to.
    cp.apply(slow_connect_everywhere());
    for envoy in [&mut web, &mut other] {
        let cds = envoy.expect(CDS);
        let connect: Vec<String> = cds
            .resources
            .iter()
            .map(|a| higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(a).unwrap()))
            // Outbound clusters only: the local ones (`localhost:<port>`) have no policy.
            .filter(|c| !c["name"].as_str().unwrap_or("").starts_with("localhost:"))
            .map(|c| c["connectTimeout"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(connect, ["7s"], "outbound clusters after the policy: {cds:?}");
    }
}

#[test]
fn changes_while_a_response_is_in_flight_arrive_after_its_ack() {
    let cp = Cp::start(60_000);
    let env = grpc_env();
    let mut web = web_calling_backend(&cp, &env);
    cp.apply(dataplane("backend-2", "backend", 9091, &[]));
    let first = web.expect(EDS);
    // Not ACKed yet: a second change must wait (one response in flight per type) ...
    cp.apply(dataplane("backend-3", "backend", 9092, &[]));
    web.expect_nothing(Duration::from_millis(500));
    // ... and must not be lost: the ACK brings it, with a 60 s interval that cannot.
    web.ack(&first, &["backend"]);
    let second = web.expect(EDS);
    assert_eq!(endpoint_count(&second), 3);
}

#[test]
fn a_dataplane_change_waiting_behind_a_policy_rebuild_is_not_lost() {
    // Push off: both changes wait for the same sweep, so the Dataplane change arrives while
    // the mesh's context is due for its policy rebuild.
    let cp = push_off(500);
    let env = grpc_env();
    let mut web = web_calling_backend(&cp, &env);
    cp.apply(slow_connect_everywhere());
    cp.apply(dataplane("backend-2", "backend", 9091, &[]));
    let cds = web.expect(CDS);
    web.ack(&cds, &[]);
    let eds = web.expect(EDS);
    assert_eq!(endpoint_count(&eds), 2);
}

// ---- re-created resources: versions restart at 1, content decides -------------------------

/// The listener names in an LDS response that are inbound listeners.
fn inbound_listeners(lds: &DiscoveryResponse) -> Vec<String> {
    names(lds).into_iter().filter(|n| n.starts_with("inbound:")).collect()
}

/// ACKs whatever arrives (EDS for `backend`) until a response satisfies `done`; panics after
/// 10 s without one.
fn until(envoy: &mut Envoy, what: &str, done: impl Fn(&DiscoveryResponse) -> bool) -> DiscoveryResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = envoy.recv(left).unwrap_or_else(|| panic!("no response with {what} within 10 s"));
        envoy.ack(&r, if r.type_url == EDS.type_url() { &["backend"] } else { &[] });
        if done(&r) {
            return r;
        }
    }
}

fn is(kind: higuma::xds::resource_kind::ResourceKind, r: &DiscoveryResponse) -> bool {
    r.type_url == kind.type_url()
}

/// Deletes web-1 and creates it again with another inbound port on a stream that stays
/// open: the new inbound listener must arrive (the re-created resource is at version 1
/// again, like the one it replaced).
fn recreated_dataplane_reaches_its_envoy(cp: &Cp) {
    let env = grpc_env();
    let mut web = web_calling_backend(cp, &env);
    cp.delete(ResourceType::Dataplane, "web-1");
    cp.apply(dataplane("web-1", "web", 8090, &[("backend", 10001)]));
    until(&mut web, "the new local cluster", |r| is(CDS, r) && names(r).contains(&"localhost:9090".to_string()));
    until(&mut web, "the new inbound listener", |r| is(LDS, r) && inbound_listeners(r) == ["inbound:127.0.0.1:8090"]);
}

#[test]
fn a_dataplane_deleted_and_created_again_gets_its_new_config() {
    recreated_dataplane_reaches_its_envoy(&Cp::start(60_000));
}

#[test]
fn a_dataplane_deleted_and_created_again_gets_its_new_config_on_postgres() {
    let pg = common::pg::fresh_database();
    higuma::store::postgres::migrate_up(&pg).unwrap();
    let mut c = config(60_000);
    c.store.r#type = higuma::config::StoreType::Postgres;
    c.store.postgres = pg;
    recreated_dataplane_reaches_its_envoy(&Cp::start_with(c));
}

/// The outbound clusters' connect timeouts in a CDS response.
fn outbound_connect_timeouts(cds: &DiscoveryResponse) -> Vec<String> {
    cds.resources
        .iter()
        .map(|a| higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(a).unwrap()))
        .filter(|c| !c["name"].as_str().unwrap_or("").starts_with("localhost:"))
        .map(|c| c["connectTimeout"].as_str().unwrap_or("").to_string())
        .collect()
}

fn slow_connect(seconds: u32) -> serde_json::Value {
    let mut p = slow_connect_everywhere();
    p["conf"]["connectTimeout"] = json!(format!("{seconds}s"));
    p
}

#[test]
fn a_policy_deleted_and_created_again_while_push_is_off_takes_effect() {
    // Both writes wait for the same sweep: the new policy has the old one's name and
    // version (1), only its content differs.
    let cp = push_off(400);
    let env = grpc_env();
    let mut web = web_calling_backend(&cp, &env);
    cp.apply(slow_connect(7));
    until(&mut web, "connect timeout 7s", |r| is(CDS, r) && outbound_connect_timeouts(r) == ["7s"]);
    cp.delete(ResourceType::Timeout, "slow-connect");
    cp.apply(slow_connect(3));
    until(&mut web, "connect timeout 3s", |r| is(CDS, r) && outbound_connect_timeouts(r) == ["3s"]);
}

#[test]
fn a_policy_deleted_and_created_again_while_jobs_are_queued_takes_effect() {
    // Forty consumers: the delete queues forty jobs on two workers, so most of them are
    // still queued when the create lands and run once against the final state.
    let cp = Cp::start(60_000);
    cp.apply(dataplane("backend-1", "backend", 9090, &[]));
    cp.apply(slow_connect(7));
    let env = grpc_env();
    let mut envoys: Vec<Envoy> = (0..40)
        .map(|i| {
            let name = format!("web-{i}");
            cp.apply(dataplane(&name, "web", 8000 + i, &[("backend", 10001)]));
            let mut e = cp.connect(&env, &format!("default.{name}"));
            let (cds, _, _) = e.converge(&["backend"]);
            assert_eq!(outbound_connect_timeouts(&cds), ["7s"]);
            e
        })
        .collect();
    cp.delete(ResourceType::Timeout, "slow-connect");
    cp.apply(slow_connect(3));
    // Some may see the moment without the policy (the 10 s default) first; all end at 3 s.
    for e in &mut envoys {
        until(e, "connect timeout 3s", |r| is(CDS, r) && outbound_connect_timeouts(r) == ["3s"]);
    }
}

#[test]
fn a_mesh_deleted_and_created_again_with_its_dataplanes_serves_their_new_config() {
    // A deleted mesh takes its token signing key along, so a token issued before is void
    // afterwards (as in Kuma) and the stream below would be closed; this test is about the
    // reconciler serving a stream across the re-creation, so it runs without tokens.
    let mut config = config(60_000);
    config.dp_server.authn.dp_proxy.r#type = "none".into();
    let cp = Cp::start_with(config);
    let in_mesh = |mut v: serde_json::Value| {
        v["mesh"] = json!("other");
        v
    };
    cp.apply(json!({"type": "Mesh", "name": "other"}));
    cp.apply(in_mesh(dataplane("web-1", "web", 8080, &[("backend", 10001)])));
    cp.apply(in_mesh(dataplane("backend-1", "backend", 9090, &[])));
    let env = grpc_env();
    let mut web = cp.connect(&env, "other.web-1");
    web.converge(&["backend"]);
    // Deleting the Mesh deletes its dataplanes; everything comes back at version 1.
    cp.d().store.delete(&ResourceKey::new(ResourceType::Mesh, "", "other")).unwrap();
    cp.apply(json!({"type": "Mesh", "name": "other"}));
    cp.apply(in_mesh(dataplane("backend-1", "backend", 9090, &[])));
    cp.apply(in_mesh(dataplane("web-1", "web", 8090, &[("backend", 10001)])));
    until(&mut web, "the new inbound listener", |r| is(LDS, r) && inbound_listeners(r) == ["inbound:127.0.0.1:8090"]);
}

/// `GET .../dataplanes/{name}/xds` over a real stream: what was sent, what was ACKed, what was
/// rejected and why, in Envoy's config-dump shape.
#[test]
fn inspect_xds_shows_what_was_sent_and_what_was_acked() {
    let cp = Cp::start(60_000);
    cp.apply(dataplane("web-1", "web", 8080, &[("backend", 10001)]));
    cp.apply(dataplane("backend-1", "backend", 9090, &[]));
    let api = cp.d().api_addr().unwrap();
    let xds = |name: &str| common::call("GET", &format!("http://{api}/meshes/default/dataplanes/{name}/xds"), None);
    let kind_status = |dump: &serde_json::Value, kind: higuma::xds::resource_kind::ResourceKind| {
        dump["xdsStatus"]["types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["typeUrl"] == kind.type_url())
            .cloned()
            .unwrap()
    };
    let config = |dump: &serde_json::Value, admin_type: &str| {
        let t = format!("type.googleapis.com/envoy.admin.v3.{admin_type}");
        dump["configs"].as_array().unwrap().iter().find(|c| c["@type"] == t.as_str()).cloned().unwrap()
    };

    let (status, body) = xds("backend-1");
    assert_eq!(status, 404, "known but not connected: {body}");
    assert!(body["detail"].as_str().unwrap().contains("not connected"), "{body}");
    assert_eq!(xds("nobody").0, 404);

    let env = grpc_env();
    let mut envoy = cp.connect(&env, "default.web-1");
    envoy.subscribe(CDS, &[]);
    let cds = envoy.expect(CDS);
    // Sent, not answered yet.
    let (status, dump) = xds("web-1");
    assert_eq!(status, 200, "{dump}");
    let c = kind_status(&dump, CDS);
    assert_eq!(c["sentVersion"], cds.version_info.as_str());
    assert_eq!((&c["pending"], &c["ackedVersion"]), (&json!(true), &json!("")), "{c}");
    let clusters = config(&dump, "ClustersConfigDump");
    assert_eq!(clusters["dynamicActiveClusters"][0]["clientStatus"], "UNKNOWN");

    envoy.subscribe(LDS, &[]);
    envoy.ack(&cds, &[]);
    let lds = envoy.expect(LDS);
    envoy.ack(&lds, &[]);
    common::wait_until("the listeners' ACK in /xds", Duration::from_secs(5), || {
        kind_status(&xds("web-1").1, LDS)["ackedVersion"] == lds.version_info.as_str()
    });
    let (_, dump) = xds("web-1");
    let c = kind_status(&dump, CDS);
    assert_eq!(
        (c["sentVersion"].as_str(), c["ackedVersion"].as_str()),
        (Some(&*cds.version_info), Some(&*cds.version_info))
    );
    assert_eq!(
        (&c["pending"], &c["responsesSent"], &c["responsesAcknowledged"]),
        (&json!(false), &json!(1), &json!(1))
    );
    let listeners = config(&dump, "ListenersConfigDump");
    assert_eq!(listeners["versionInfo"], lds.version_info.as_str());
    let outbound = listeners["dynamicListeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "outbound:127.0.0.1:10001")
        .unwrap_or_else(|| panic!("no outbound listener in {listeners}"));
    assert_eq!(outbound["clientStatus"], "ACKED");
    assert_eq!(outbound["activeState"]["versionInfo"], lds.version_info.as_str());
    assert_eq!(outbound["activeState"]["listener"]["name"], "outbound:127.0.0.1:10001");
    assert_eq!(outbound["activeState"]["listener"]["@type"], higuma::envoy::LISTENER_TYPE_URL);
    let clusters = config(&dump, "ClustersConfigDump");
    let names: Vec<&str> = clusters["dynamicActiveClusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["backend", "localhost:9080"]);

    // A rejected update: the dump names the version and Envoy's error; the accepted one
    // stays the type's version.
    cp.apply(dataplane("web-1", "web", 8081, &[("backend", 10001)]));
    let bad = envoy.expect(CDS);
    envoy.send(CDS, &cds.version_info.clone(), &bad.nonce.clone(), &[], Some("cluster rejected by test"));
    common::wait_until("the NACK in /xds", Duration::from_secs(5), || {
        kind_status(&xds("web-1").1, CDS)["nackedVersion"] == bad.version_info.as_str()
    });
    let (_, dump) = xds("web-1");
    let c = kind_status(&dump, CDS);
    assert_eq!(c["error"].as_str().unwrap(), "cluster rejected by test (code 3)");
    assert_eq!(c["ackedVersion"], cds.version_info.as_str());
    let clusters = config(&dump, "ClustersConfigDump");
    assert_eq!(clusters["versionInfo"], cds.version_info.as_str());
    let first = &clusters["dynamicActiveClusters"][0];
    assert_eq!(first["clientStatus"], "NACKED");
    assert_eq!(first["errorState"]["details"], "cluster rejected by test (code 3)");

    drop(envoy);
    common::wait_until("the disconnect in /xds", Duration::from_secs(5), || xds("web-1").0 == 404);
}

/// The Mesh `default` created at start carries Kuma 2.6's default policies, and they are in
/// force: 5 s connect timeout and 1024-connection limits on clusters, 15 s request timeout
/// and 5 retries on routes.
#[test]
fn the_default_mesh_starts_with_kumas_default_policies_in_force() {
    let cp = Cp { daemon: Some(Daemon::start(config(60_000)).unwrap()) };
    cp.apply(json!({
        "type": "Dataplane", "mesh": "default", "name": "web-1",
        "networking": {"address": "127.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"}}],
            "outbound": [{"port": 10001, "tags": {"kuma.io/service": "backend"}}]}
    }));
    cp.apply(json!({
        "type": "Dataplane", "mesh": "default", "name": "backend-1",
        "networking": {"address": "127.0.0.1",
            "inbound": [{"port": 9090, "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}}]}
    }));
    let env = grpc_env();
    let mut web = cp.connect(&env, "default.web-1");
    let (cds, _, lds) = web.converge(&["backend"]);
    let json_of = |a: &protobuf::well_known_types::any::Any| {
        higuma::xds::debug::any_bytes_to_json(&protobuf::Message::write_to_bytes(a).unwrap())
    };
    let backend = cds.resources.iter().map(json_of).find(|c| c["name"] == "backend").expect("the backend cluster");
    assert_eq!(backend["connectTimeout"], "5s", "{backend}");
    assert_eq!(backend["circuitBreakers"]["thresholds"][0]["maxConnections"], 1024, "{backend}");
    let outbound =
        lds.resources.iter().map(json_of).find(|l| l["name"] == "outbound:127.0.0.1:10001").expect("the outbound");
    let text = outbound.to_string();
    assert!(text.contains("\"timeout\":\"15s\""), "15 s request timeout: {text}");
    assert!(text.contains("\"numRetries\":5"), "5 retries: {text}");
}
