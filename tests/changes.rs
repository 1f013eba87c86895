//! Change delivery tracking over the REST API, with scripted Envoys (real gRPC streams over
//! TLS, `common::ads`) that ACK or NACK what they are sent: a write's change id, the
//! dataplanes it affected and each one's state, counts, latencies, and the no-op write.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ads::{grpc_env, Envoy};
use higuma::daemon::Daemon;
use higuma::xds::resource_kind::ResourceKind;
use serde_json::{json, Value};

const CHANGE_ID: &str = "Higuma-Change-Id";

struct Cp {
    daemon: Option<Daemon>,
}

impl Cp {
    fn start() -> Cp {
        Cp::start_with(common::test_config(1000))
    }

    fn start_with(mut config: higuma::config::Config) -> Cp {
        config.defaults.skip_mesh_creation = true;
        let cp = Cp { daemon: Some(Daemon::start(config).unwrap()) };
        let (status, _, _) = cp.put(&json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"]}));
        assert!(status == 201 || status == 200, "{status}");
        cp
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.d().api_addr().unwrap())
    }

    /// PUTs a resource through the API: status, change id, body.
    fn put(&self, resource: &Value) -> (u16, Option<String>, Value) {
        let path = common::mesh::path_of(resource);
        let mut r = common::agent()
            .put(&self.url(&path))
            .header("Content-Type", "application/json")
            .send(resource.to_string())
            .unwrap();
        let id = r.headers().get(CHANGE_ID).map(|v| v.to_str().unwrap().to_string());
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (r.status().as_u16(), id, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        common::call("GET", &self.url(path), None)
    }

    /// `GET /changes/{id}` once the change is complete (every delivery final).
    fn settled(&self, id: &str) -> Value {
        let mut last = Value::Null;
        common::wait_until(&format!("change {id} to settle"), Duration::from_secs(10), || {
            let (status, body) = self.get(&format!("/changes/{id}"));
            assert_eq!(status, 200, "{body}");
            last = body;
            last["complete"] == true
        });
        last
    }

    fn connect(&self, env: &Arc<grpcio::Environment>, name: &str) -> Envoy {
        common::ads::connect_to(self.d(), env, &format!("default.{name}"))
    }
}

impl Drop for Cp {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown();
        }
    }
}

fn dataplane(name: &str, service: &str, port: u16, outbounds: &[(&str, u16)]) -> Value {
    let outbound: Vec<Value> =
        outbounds.iter().map(|(s, p)| json!({"port": p, "tags": {"kuma.io/service": s}})).collect();
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": port + 1000,
                         "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}],
            "outbound": outbound
        }
    })
}

fn timeout_on(name: &str, service: &str, request_timeout: &str) -> Value {
    json!({
        "type": "MeshTimeout", "mesh": "default", "name": name,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service},
                    "default": {"http": {"requestTimeout": request_timeout}}}]
        }
    })
}

/// Answers every response that arrives until the stream is quiet: an ACK, or a NACK with
/// `reject` (Envoy then reports the version it still runs, here none). Returns how many.
fn answer_all(envoy: &mut Envoy, eds_names: &[&str], reject: Option<&str>) -> usize {
    let mut n = 0;
    while let Some(r) = envoy.recv(Duration::from_millis(700)) {
        let kind = ResourceKind::from_type_url(&r.type_url).unwrap();
        let names: &[&str] = if kind == ResourceKind::Endpoint { eds_names } else { &[] };
        match reject {
            None => envoy.ack(&r, names),
            Some(error) => envoy.send(kind, "", &r.nonce, names, Some(error)),
        }
        n += 1;
    }
    n
}

fn state_of<'a>(change: &'a Value, dataplane: &str) -> &'a Value {
    change["dataplanes"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == dataplane))
        .unwrap_or_else(|| panic!("{dataplane} is not in the change: {change}"))
}

/// Three consumers of `backend` get a MeshTimeout on it; two ACK, one NACKs. The change
/// names exactly those three (not `backend-1`, which the policy does not reach), with the
/// right state each, Envoy's error for the NACK, counts and latencies.
#[test]
fn a_write_reaching_three_dataplanes_one_of_which_nacks() {
    let cp = Cp::start();
    cp.put(&dataplane("backend-1", "backend", 20001, &[]));
    for (i, name) in ["web-1", "web-2", "web-3"].iter().enumerate() {
        cp.put(&dataplane(name, "web", 20010 + i as u16, &[("backend", 30001)]));
    }
    let env = grpc_env();
    let mut backend = cp.connect(&env, "backend-1");
    backend.converge(&[]);
    let mut webs: Vec<Envoy> = ["web-1", "web-2", "web-3"].iter().map(|n| cp.connect(&env, n)).collect();
    for w in &mut webs {
        w.converge(&["backend"]);
    }

    let (status, id, body) = cp.put(&timeout_on("backend-3s", "backend", "3s"));
    assert_eq!(status, 201, "{body}");
    let id = id.expect("an accepted write answers with its change id");
    let mut answered = 0;
    for (i, w) in webs.iter_mut().enumerate() {
        answered += answer_all(w, &["backend"], (i == 2).then_some("test: listener rejected"));
    }
    assert!(answered >= 3, "every consumer was sent the new config");
    backend.expect_nothing(Duration::from_millis(300));

    let change = cp.settled(&id);
    assert_eq!(change["id"], id.as_str());
    assert_eq!(change["origin"], "api");
    assert_eq!(change["operation"], "create");
    assert_eq!(change["resource"], json!({"type": "MeshTimeout", "name": "backend-3s", "mesh": "default"}));
    assert_eq!(change["affected"], 3, "{change}");
    assert_eq!(change["counts"]["acked"], 2, "{change}");
    assert_eq!(change["counts"]["nacked"], 1, "{change}");
    assert_eq!(change["counts"]["pending"], 0);
    assert_eq!(change["delivered"], false);
    for name in ["web-1", "web-2"] {
        let d = state_of(&change, name);
        assert_eq!(d["state"], "acked", "{d}");
        assert!(d["latencyMs"].as_f64().is_some_and(|ms| ms > 0.0 && ms < 10_000.0), "{d}");
    }
    let rejected = state_of(&change, "web-3");
    assert_eq!(rejected["state"], "nacked");
    assert_eq!(rejected["error"], "test: listener rejected (code 3)");
    assert!(
        ResourceKind::from_type_url(rejected["typeUrl"].as_str().unwrap_or("")).is_some(),
        "the rejected type is named: {rejected}"
    );
    let latency = &change["latency"];
    let (p50, p99, max) =
        (latency["p50Ms"].as_f64().unwrap(), latency["p99Ms"].as_f64().unwrap(), latency["maxMs"].as_f64().unwrap());
    assert!(p50 <= p99 && p99 <= max, "{latency}");

    let (_, listed) = cp.get("/changes?mesh=default");
    assert_eq!(listed["items"][0]["id"], id.as_str(), "newest first: {listed}");
    assert_eq!(listed["items"][0]["counts"]["nacked"], 1);
    assert!(listed["items"][0].get("dataplanes").is_none(), "lists carry counts, not every dataplane");
    let (_, other) = cp.get("/changes?mesh=other");
    assert_eq!(other["total"], 0, "{other}");

    let metrics = common::get_text(&format!("http://{}/metrics", cp.d().diagnostics_addr().unwrap())).unwrap();
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("xds_change_delivery_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(count.is_some_and(|c| c >= 2), "two ACKs observed: {count:?}");
    assert!(metrics.lines().any(|l| l == "xds_changes_undelivered 0"), "nothing left in flight");
}

/// An identical re-PUT, a permission in a mesh without mTLS (RBAC needs mesh TLS) and a
/// dataplane nobody consumes: each has a change id, and the change says it affected
/// nothing. A refused write has no id and no change.
#[test]
fn writes_that_change_nothing_say_zero_affected() {
    let cp = Cp::start();
    cp.put(&dataplane("backend-1", "backend", 21001, &[]));
    cp.put(&dataplane("web-1", "web", 21002, &[("backend", 31001)]));
    let env = grpc_env();
    let mut web = cp.connect(&env, "web-1");
    web.converge(&["backend"]);
    let (_, first, _) = cp.put(&timeout_on("t", "backend", "4s"));
    answer_all(&mut web, &["backend"], None);
    assert_eq!(cp.settled(&first.unwrap())["counts"]["acked"], 1);

    let (status, again, _) = cp.put(&timeout_on("t", "backend", "4s"));
    assert_eq!(status, 200);
    let change = cp.settled(&again.unwrap());
    assert_eq!((change["affected"].clone(), change["delivered"].clone()), (json!(0), json!(true)), "{change}");
    assert_eq!(change["dataplanes"], json!([]));
    web.expect_nothing(Duration::from_millis(300));

    let permission = json!({
        "type": "MeshTrafficPermission", "mesh": "default", "name": "allow-web",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}
    });
    let (_, id, _) = cp.put(&permission);
    assert_eq!(cp.settled(&id.unwrap())["affected"], 0);

    let (status, id, body) = cp.put(&json!({
        "type": "MeshTimeout", "mesh": "default", "name": "bad",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "soon"}}}]}
    }));
    assert_eq!(status, 400, "{body}");
    assert!(id.is_none(), "a refused write has no change");
    let (_, listed) = cp.get("/changes");
    assert!(listed["items"].as_array().unwrap().iter().all(|c| c["resource"]["name"] != "bad"), "{listed}");
}

/// A dataplane the write reaches that is not connected, and one that disconnects before it
/// answers: both `notConnected`, and the change is complete without them.
#[test]
fn dataplanes_not_connected_or_gone_are_named() {
    let cp = Cp::start();
    cp.put(&dataplane("backend-1", "backend", 22001, &[]));
    cp.put(&dataplane("web-1", "web", 22002, &[("backend", 32001)]));
    cp.put(&dataplane("web-2", "web", 22003, &[("backend", 32001)]));
    cp.put(&dataplane("web-3", "web", 22004, &[("backend", 32001)]));
    let env = grpc_env();
    let mut web1 = cp.connect(&env, "web-1");
    web1.converge(&["backend"]);
    let mut web2 = cp.connect(&env, "web-2");
    web2.converge(&["backend"]);

    let (_, id, _) = cp.put(&timeout_on("t", "backend", "5s"));
    let id = id.unwrap();
    answer_all(&mut web1, &["backend"], None);
    // web-2 hangs up without answering.
    assert!(web2.recv(Duration::from_secs(5)).is_some(), "web-2 was sent the change");
    drop(web2);

    let change = cp.settled(&id);
    assert_eq!(change["affected"], 3, "{change}");
    assert_eq!(state_of(&change, "web-1")["state"], "acked");
    let gone = state_of(&change, "web-2");
    assert_eq!(
        (gone["state"].as_str(), gone["detail"].as_str()),
        (Some("notConnected"), Some("disconnected before answering"))
    );
    let never = state_of(&change, "web-3");
    assert_eq!(never["state"], "notConnected");
    assert_eq!(never["detail"], "not connected to this control-plane instance");
    assert_eq!(change["delivered"], false);

    let (status, body) = cp.get("/changes/00000000-1");
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("changeHistorySize"), "{body}");
}

/// Two instances on one Postgres: writes taken by A (a new backend instance, a policy)
/// reach web-1, connected to B. A's changes name web-1 `notConnected` and the instance it
/// is connected to; B, which heard the write over NOTIFY, shows it as a change of origin
/// `store` that web-1 ACKed.
#[test]
fn a_write_on_another_instance_shows_as_a_store_change_where_the_dataplane_is() {
    let db = common::pg::fresh_database();
    higuma::store::postgres::migrate_up(&db).unwrap();
    let on_postgres = || {
        let mut c = common::test_config(1000);
        c.store.r#type = higuma::config::StoreType::Postgres;
        c.store.postgres = db.clone();
        c
    };
    let a = Cp::start_with(on_postgres());
    let b = Cp::start_with(on_postgres());
    let (ida, idb) = (a.d().instance_id.clone(), b.d().instance_id.clone());
    assert_ne!(ida, idb);
    a.put(&dataplane("backend-1", "backend", 23001, &[]));
    a.put(&dataplane("web-1", "web", 23002, &[("backend", 33001)]));
    let env = grpc_env();
    let mut web = b.connect(&env, "web-1");
    web.converge(&["backend"]);
    // A reads where web-1 is from its DataplaneInsight, written on connect.
    common::wait_until("web-1's insight names B", Duration::from_secs(10), || {
        let (_, o) = a.get("/meshes/default/dataplanes+insights/web-1");
        o.to_string().contains(&idb)
    });

    // A has no context of the mesh (nothing of it is connected there): a Mesh write still
    // names every dataplane of the mesh, and a new backend itself and its consumer.
    let (status, id, _) = a.put(&json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"]}));
    assert_eq!(status, 200);
    let on_a = a.settled(&id.unwrap());
    assert_eq!(on_a["affected"], 2, "{on_a}");
    assert_eq!(state_of(&on_a, "web-1")["connectedTo"], idb.as_str());
    assert_eq!(state_of(&on_a, "backend-1")["state"], "notConnected");

    let (_, id, _) = a.put(&dataplane("backend-2", "backend", 23003, &[]));
    common::wait_until("B pushes the new endpoint", Duration::from_secs(10), || {
        answer_all(&mut web, &["backend"], None) > 0
    });
    let on_a = a.settled(&id.unwrap());
    assert_eq!(on_a["affected"], 2, "{on_a}");
    assert_eq!(state_of(&on_a, "web-1")["connectedTo"], idb.as_str());
    assert_eq!(state_of(&on_a, "backend-2")["state"], "notConnected");

    let (status, id, body) = a.put(&timeout_on("t", "backend", "6s"));
    assert_eq!(status, 201, "{body}");
    let id = id.unwrap();
    common::wait_until("B pushes the write it heard of", Duration::from_secs(10), || {
        answer_all(&mut web, &["backend"], None) > 0
    });

    let on_a = a.settled(&id);
    assert_eq!(on_a["origin"], "api");
    let d = state_of(&on_a, "web-1");
    assert_eq!((d["state"].as_str(), d["connectedTo"].as_str()), (Some("notConnected"), Some(idb.as_str())), "{d}");

    let mut heard = Value::Null;
    common::wait_until("B lists the write as a store change", Duration::from_secs(10), || {
        let (_, listed) = b.get("/changes?mesh=default");
        let found = listed["items"].as_array().and_then(|items| {
            items.iter().find(|c| c["resource"]["type"] == "MeshTimeout" && c["resource"]["name"] == "t").cloned()
        });
        match found {
            Some(c) => {
                let (_, full) = b.get(&format!("/changes/{}", c["id"].as_str().unwrap_or("")));
                heard = full;
                heard["complete"] == true
            }
            None => false,
        }
    });
    assert_eq!(heard["origin"], "store", "{heard}");
    assert_eq!(heard["instance"], idb.as_str());
    assert_ne!(heard["id"], id.as_str(), "ids belong to the instance that made them");
    assert_eq!(state_of(&heard, "web-1")["state"], "acked", "{heard}");
    assert_eq!(heard["affected"], 1, "{heard}");
}
