//! The REST API over real HTTP: Kuma's paths and shapes, and every bad-input case answered
//! with Kuma's error body while leaving the store untouched.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use common::call;
use higuma::api::{ApiContext, ApiServer};
use higuma::config::Config;
use higuma::model::{ResourceKey, ResourceType, Spec};
use higuma::store::{ChangeEvent, MemoryStore, ResourceStore, SharedStore, StoreError};
use serde_json::{json, Value};

struct Api {
    server: Option<ApiServer>,
    store: SharedStore,
}

impl Api {
    fn start() -> Api {
        Self::with(Config::default(), Arc::new(MemoryStore::new()))
    }

    fn with(config: Config, store: SharedStore) -> Api {
        higuma::daemon::ensure_default_mesh(&store).unwrap();
        let ctx = ApiContext::new(store.clone(), Arc::new(RwLock::new(config)), "test-0001".into());
        let server = ApiServer::start("127.0.0.1:0", ctx).unwrap();
        Api { server: Some(server), store }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.as_ref().unwrap().local_addr())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        call("GET", &self.url(path), None)
    }

    fn put(&self, path: &str, body: &str) -> (u16, Value) {
        call("PUT", &self.url(path), Some(body))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        call("DELETE", &self.url(path), None)
    }

    /// Everything stored, as (type, mesh, name), to prove a bad request changed nothing.
    fn snapshot(&self) -> Vec<(ResourceType, String, String, u64)> {
        ResourceType::ALL
            .iter()
            .flat_map(|t| self.store.list(*t, None).unwrap())
            .map(|r| (r.rtype(), r.meta.mesh.clone(), r.meta.name.clone(), r.meta.version))
            .collect()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

fn dataplane(name: &str, mesh: &str, port: u16) -> String {
    json!({
        "type": "Dataplane", "mesh": mesh, "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": 8080, "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}}],
            "outbound": [{"port": 10001, "tags": {"kuma.io/service": "redis"}}]
        }
    })
    .to_string()
}

fn permission(name: &str) -> String {
    json!({
        "type": "TrafficPermission", "mesh": "default", "name": name,
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}]
    })
    .to_string()
}

/// Asserts Kuma's error shape and returns the invalid parameters' fields.
fn assert_error(status: u16, body: &Value, expected: u16) -> Vec<String> {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected, "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    body["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_parameters in {body}"))
        .iter()
        .map(|p| p["field"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn index_identifies_a_kuma_compatible_control_plane() {
    let api = Api::start();
    let (status, body) = api.get("/");
    assert_eq!(status, 200);
    assert_eq!(body["tagline"], "Kuma");
    assert_eq!(body["product"], "Higuma");
    assert_eq!(body["instanceId"], "test-0001");
}

#[test]
fn mesh_put_creates_then_updates() {
    let api = Api::start();
    let (status, _) = api.put("/meshes/demo", r#"{"type":"Mesh","name":"demo"}"#);
    assert_eq!(status, 201);
    let (status, _) = api.put("/meshes/demo", "type: Mesh\nname: demo\nskipCreatingInitialPolicies: ['*']\n");
    assert_eq!(status, 200);
    let (status, body) = api.get("/meshes/demo");
    assert_eq!(status, 200);
    assert_eq!(body["type"], "Mesh");
    assert_eq!(body["name"], "demo");
    assert!(body.get("mesh").is_none(), "a Mesh has no mesh field: {body}");
    assert!(body["creationTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["skipCreatingInitialPolicies"], json!(["*"]));
    let (status, list) = api.get("/meshes");
    assert_eq!(status, 200);
    assert_eq!(list["total"], 2, "default + demo: {list}");
    assert_eq!(list["next"], Value::Null);
}

#[test]
fn dataplane_round_trip() {
    let api = Api::start();
    let (status, body) = api.put("/meshes/default/dataplanes/backend-1", &dataplane("backend-1", "default", 9000));
    assert_eq!(status, 201, "{body}");
    let (status, body) = api.get("/meshes/default/dataplanes/backend-1");
    assert_eq!(status, 200);
    assert_eq!(body["type"], "Dataplane");
    assert_eq!(body["mesh"], "default");
    assert_eq!(body["networking"]["inbound"][0]["port"], 9000);
    assert_eq!(body["networking"]["inbound"][0]["tags"]["kuma.io/service"], "backend");
    let (_, all) = api.get("/dataplanes");
    assert_eq!(all["total"], 1);
    let (_, in_mesh) = api.get("/meshes/default/dataplanes");
    assert_eq!(in_mesh["items"][0]["name"], "backend-1");
}

#[test]
fn yaml_bodies_are_accepted() {
    let api = Api::start();
    let yaml = "type: TrafficPermission\nmesh: default\nname: allow\nsources:\n  - match:\n      kuma.io/service: '*'\ndestinations:\n  - match:\n      kuma.io/service: '*'\n";
    let (status, body) = api.put("/meshes/default/traffic-permissions/allow", yaml);
    assert_eq!(status, 201, "{body}");
}

#[test]
fn malformed_bodies_are_400_and_store_nothing() {
    let api = Api::start();
    let before = api.snapshot();
    for body in ["{\"type\": \"Dataplane\",", "type: [unclosed", "", "[1, 2]", "\"just a string\""] {
        let (status, err) = api.put("/meshes/default/dataplanes/dp-1", body);
        assert_eq!(status, 400, "body {body:?} -> {err}");
        assert_eq!(err["status"], 400);
        assert!(err["detail"].as_str().is_some_and(|d| !d.is_empty()), "{err}");
    }
    assert_eq!(api.snapshot(), before);
}

#[test]
fn type_name_and_mesh_must_match_the_url() {
    let api = Api::start();
    api.put("/meshes/other", r#"{"type":"Mesh","name":"other"}"#);
    let before = api.snapshot();
    let (s, b) = api.put("/meshes/default/dataplanes/allow", &permission("allow"));
    assert_eq!(assert_error(s, &b, 400), ["type"]);
    let (s, b) = api.put("/meshes/default/dataplanes/dp-2", &dataplane("dp-1", "default", 9000));
    assert_eq!(assert_error(s, &b, 400), ["name"]);
    let (s, b) = api.put("/meshes/default/dataplanes/dp-1", &dataplane("dp-1", "other", 9000));
    assert_eq!(assert_error(s, &b, 400), ["mesh"]);
    assert_eq!(api.snapshot(), before);
}

#[test]
fn invalid_names_are_rejected() {
    let api = Api::start();
    let before = api.snapshot();
    let (s, b) = api.put("/meshes/Bad.Name", r#"{"type":"Mesh","name":"Bad.Name"}"#);
    assert_eq!(assert_error(s, &b, 400), ["name"]);
    assert!(b["invalid_parameters"][0]["reason"].as_str().unwrap().contains("Bad.Name"), "{b}");
    let (s, b) = api.put("/meshes/BAD/dataplanes/dp-1", &dataplane("dp-1", "BAD", 9000));
    assert_eq!(assert_error(s, &b, 400), ["mesh"]);
    assert_eq!(api.snapshot(), before);
}

#[test]
fn unknown_mesh_is_400() {
    let api = Api::start();
    let before = api.snapshot();
    let (s, b) = api.put("/meshes/nope/dataplanes/dp-1", &dataplane("dp-1", "nope", 9000));
    assert_eq!(assert_error(s, &b, 400), ["mesh"]);
    assert!(b["invalid_parameters"][0]["reason"].as_str().unwrap().contains("nope"), "{b}");
    assert_eq!(api.snapshot(), before);
}

#[test]
fn validation_errors_name_the_field() {
    let api = Api::start();
    let before = api.snapshot();
    let body = json!({
        "type": "Dataplane", "mesh": "default", "name": "dp-1",
        "networking": {"address": "127.0.0.1", "inbound": [{"port": 9000, "tags": {"app": "x"}}]}
    });
    let (s, b) = api.put("/meshes/default/dataplanes/dp-1", &body.to_string());
    let fields = assert_error(s, &b, 400);
    assert!(fields.contains(&"networking.inbound[0].tags".to_string()), "{b}");
    assert!(b["invalid_parameters"].to_string().contains("must contain kuma.io/service"), "{b}");
    let body = json!({"type": "Mesh", "name": "m", "colour": "blue"});
    let (s, b) = api.put("/meshes/m", &body.to_string());
    assert_error(s, &b, 400);
    assert!(b.to_string().contains("colour"), "unknown field named: {b}");
    assert_eq!(api.snapshot(), before);
}

#[test]
fn missing_resources_are_404() {
    let api = Api::start();
    let (s, b) = api.get("/meshes/default/dataplanes/ghost");
    assert_eq!(s, 404);
    assert_eq!(b["status"], 404);
    let (s, _) = api.delete("/meshes/default/dataplanes/ghost");
    assert_eq!(s, 404);
    let (s, _) = api.get("/meshes/ghost");
    assert_eq!(s, 404);
    let (s, _) = api.get("/no/such/path/at/all");
    assert_eq!(s, 404);
    let (s, _) = api.get("/meshes/default/widgets");
    assert_eq!(s, 404);
}

#[test]
fn body_over_one_mib_is_413() {
    let api = Api::start();
    let before = api.snapshot();
    let big = format!(r#"{{"type":"Mesh","name":"big","pad":"{}"}}"#, "x".repeat(1024 * 1024 + 10));
    let (s, b) = api.put("/meshes/big", &big);
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["status"], 413);
    assert_eq!(api.snapshot(), before);
}

#[test]
fn delete_removes_and_mesh_delete_cascades() {
    let api = Api::start();
    api.put("/meshes/demo", r#"{"type":"Mesh","name":"demo"}"#);
    let perm = permission("allow").replace("\"default\"", "\"demo\"");
    assert_eq!(api.put("/meshes/demo/traffic-permissions/allow", &perm).0, 201);
    assert_eq!(api.put("/meshes/demo/dataplanes/dp-1", &dataplane("dp-1", "demo", 9000)).0, 201);
    // Kuma refuses to delete a mesh that still has dataplanes unless store.unsafeDelete.
    let (s, b) = api.delete("/meshes/demo");
    assert_eq!(s, 400, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("dataplane"), "{b}");
    assert_eq!(api.get("/meshes/demo/dataplanes/dp-1").0, 200);
    assert_eq!(api.delete("/meshes/demo/dataplanes/dp-1").0, 200);
    assert_eq!(api.get("/meshes/demo/dataplanes/dp-1").0, 404);
    assert_eq!(api.delete("/meshes/demo").0, 200);
    assert_eq!(api.get("/meshes/demo").0, 404);
    assert_eq!(api.get("/meshes/demo/traffic-permissions/allow").0, 404, "policies go with their mesh");
}

#[test]
fn unsafe_delete_removes_a_mesh_with_dataplanes() {
    let mut config = Config::default();
    config.store.unsafe_delete = true;
    let api = Api::with(config, Arc::new(MemoryStore::new()));
    assert_eq!(api.put("/meshes/default/dataplanes/dp-1", &dataplane("dp-1", "default", 9000)).0, 201);
    assert_eq!(api.delete("/meshes/default").0, 200);
    assert!(api.store.list(ResourceType::Dataplane, None).unwrap().is_empty());
}

#[test]
fn pagination_follows_kuma() {
    let api = Api::start();
    for i in 0..5 {
        assert_eq!(
            api.put(&format!("/meshes/default/traffic-permissions/p-{i}"), &permission(&format!("p-{i}"))).0,
            201
        );
    }
    let (s, page1) = api.get("/meshes/default/traffic-permissions?size=2");
    assert_eq!(s, 200);
    assert_eq!(page1["total"], 5);
    let names: Vec<&str> = page1["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p-0", "p-1"]);
    let next = page1["next"].as_str().unwrap();
    assert!(next.starts_with("http://") && next.contains("offset=2") && next.contains("size=2"), "{next}");
    let (_, page3) = call("GET", &api.url("/meshes/default/traffic-permissions?size=2&offset=4"), None);
    assert_eq!(page3["items"].as_array().unwrap().len(), 1);
    assert_eq!(page3["next"], Value::Null);
    let (s, page2) = call("GET", next, None);
    assert_eq!(s, 200);
    assert_eq!(page2["items"][0]["name"], "p-2");
    for bad in ["size=0", "size=1001", "size=abc"] {
        let (s, b) = api.get(&format!("/meshes/default/traffic-permissions?{bad}"));
        assert_eq!(assert_error(s, &b, 400), ["size"], "{bad}");
    }
    let (s, b) = api.get("/meshes/default/traffic-permissions?offset=x");
    assert_eq!(assert_error(s, &b, 400), ["offset"]);
}

#[test]
fn dataplanes_with_insights() {
    let api = Api::start();
    api.put("/meshes/default/dataplanes/dp-1", &dataplane("dp-1", "default", 9000));
    api.put("/meshes/default/dataplanes/other", &dataplane("other", "default", 9001));
    let (s, b) = api.get("/meshes/default/dataplanes+insights");
    assert_eq!(s, 200);
    assert_eq!(b["total"], 2);
    assert_eq!(b["items"][0]["type"], "DataplaneOverview");
    assert_eq!(b["items"][0]["dataplane"]["networking"]["address"], "127.0.0.1");
    assert!(b["items"][0]["dataplaneInsight"].is_object());
    let (_, b) = api.get("/meshes/default/dataplanes+insights?name=dp");
    assert_eq!(b["total"], 1);
    let (_, b) = api.get("/meshes/default/dataplanes+insights?tag=kuma.io/service:backend");
    assert_eq!(b["total"], 2);
    let (_, b) = api.get("/meshes/default/dataplanes+insights?tag=kuma.io/service:web");
    assert_eq!(b["total"], 0);
    let (s, b) = api.get("/meshes/default/dataplanes+insights/dp-1");
    assert_eq!(s, 200);
    assert_eq!(b["name"], "dp-1");
    let (s, _) = api.get("/meshes/default/dataplanes+insights/ghost");
    assert_eq!(s, 404);
    let (_, b) = api.get("/dataplanes+insights");
    assert_eq!(b["total"], 2);
}

#[test]
fn insights_are_read_only() {
    let api = Api::start();
    let body = json!({"type": "DataplaneInsight", "mesh": "default", "name": "dp-1"}).to_string();
    let (s, b) = api.put("/meshes/default/dataplane-insights/dp-1", &body);
    assert_eq!(s, 405, "{b}");
    let (s, _) = api.get("/meshes/default/dataplane-insights");
    assert_eq!(s, 200);
}

#[test]
fn read_only_api_refuses_writes() {
    let mut config = Config::default();
    config.api_server.read_only = true;
    let api = Api::with(config, Arc::new(MemoryStore::new()));
    let before = api.snapshot();
    let (s, _) = api.put("/meshes/demo", r#"{"type":"Mesh","name":"demo"}"#);
    assert_eq!(s, 405);
    let (s, _) = api.delete("/meshes/default");
    assert_eq!(s, 405);
    assert_eq!(api.snapshot(), before);
}

#[test]
fn config_endpoint_masks_the_password() {
    let mut config = Config::default();
    config.store.postgres.password = "s3cret-pw".into();
    let api = Api::with(config, Arc::new(MemoryStore::new()));
    let (s, b) = api.get("/config");
    assert_eq!(s, 200);
    assert_eq!(b["apiServer"]["http"]["port"], 5681);
    assert_ne!(b["store"]["postgres"]["password"], "s3cret-pw");
    assert!(!b.to_string().contains("s3cret-pw"));
}

/// A store whose first `update` loses a race: another writer updates the same resource just
/// before. The in-memory store cannot be made to interleave two HTTP requests on cue, so this
/// wrapper produces the lost race deterministically.
struct RacingStore {
    inner: MemoryStore,
    raced: AtomicBool,
}

impl ResourceStore for RacingStore {
    fn get(&self, key: &ResourceKey) -> Result<Arc<higuma::model::Resource>, StoreError> {
        self.inner.get(key)
    }
    fn list(&self, t: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<higuma::model::Resource>>, StoreError> {
        self.inner.list(t, mesh)
    }
    fn create(&self, mesh: &str, name: &str, spec: Spec) -> Result<Arc<higuma::model::Resource>, StoreError> {
        self.inner.create(mesh, name, spec)
    }
    fn update(&self, key: &ResourceKey, spec: Spec, v: u64) -> Result<Arc<higuma::model::Resource>, StoreError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let current = self.inner.get(key)?;
            self.inner.update(key, current.spec.clone(), current.meta.version)?;
        }
        self.inner.update(key, spec, v)
    }
    fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn subscribe(&self) -> crossbeam_channel::Receiver<ChangeEvent> {
        self.inner.subscribe()
    }
    fn backend(&self) -> &'static str {
        "racing"
    }
}

#[test]
fn lost_update_race_is_409() {
    let store = Arc::new(RacingStore { inner: MemoryStore::new(), raced: AtomicBool::new(false) });
    let api = Api::with(Config::default(), store.clone());
    assert_eq!(api.put("/meshes/default/dataplanes/dp-1", &dataplane("dp-1", "default", 9000)).0, 201);
    let (s, b) = api.put("/meshes/default/dataplanes/dp-1", &dataplane("dp-1", "default", 9999));
    assert_error(s, &b, 409);
    let (_, got) = api.get("/meshes/default/dataplanes/dp-1");
    assert_eq!(got["networking"]["inbound"][0]["port"], 9000, "the losing write changed nothing");
    // Retrying after the conflict succeeds.
    assert_eq!(api.put("/meshes/default/dataplanes/dp-1", &dataplane("dp-1", "default", 9999)).0, 200);
}

// ---- GET /policies, default policies, MeshTrafficPermission --------------------------------

#[test]
fn policies_lists_every_policy_type_in_kumas_shape() {
    let api = Api::start();
    let (status, body) = api.get("/policies");
    assert_eq!(status, 200);
    let items = body["policies"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    assert_eq!(names.len(), ResourceType::policies().count(), "every policy type of the registry");
    let find = |n: &str| items.iter().find(|p| p["name"] == n).unwrap_or_else(|| panic!("{n} missing: {body}"));
    assert_eq!(
        find("MeshTrafficPermission"),
        &json!({
            "name": "MeshTrafficPermission", "readOnly": false, "path": "meshtrafficpermissions",
            "singularDisplayName": "Mesh Traffic Permission", "pluralDisplayName": "Mesh Traffic Permissions",
            "isExperimental": false, "isTargetRefBased": true, "isInbound": true, "isOutbound": false
        })
    );
    let tp = find("TrafficPermission");
    assert_eq!(
        (&tp["isTargetRefBased"], &tp["isInbound"], &tp["path"]),
        (&json!(false), &json!(false), &json!("traffic-permissions"))
    );
    assert_eq!(find("Retry")["pluralDisplayName"], "Retries");
    assert_eq!(find("HealthCheck")["singularDisplayName"], "Health Check");
    assert!(!names.contains(&"Dataplane") && !names.contains(&"Secret"), "only policies: {names:?}");

    let mut read_only = Config::default();
    read_only.api_server.read_only = true;
    let api = Api::with(read_only, Arc::new(MemoryStore::new()));
    let (_, body) = api.get("/policies");
    assert!(body["policies"].as_array().unwrap().iter().all(|p| p["readOnly"] == true), "{body}");
}

fn mtp(name: &str, top: Value, from: Value) -> String {
    json!({"type": "MeshTrafficPermission", "mesh": "default", "name": name, "spec": {"targetRef": top, "from": from}})
        .to_string()
}

#[test]
fn mesh_traffic_permission_round_trips_and_a_bad_action_is_400_storing_nothing() {
    let api = Api::start();
    let good =
        mtp("allow", json!({"kind": "Mesh"}), json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]));
    assert_eq!(api.put("/meshes/default/meshtrafficpermissions/allow", &good).0, 201);
    let (status, got) = api.get("/meshes/default/meshtrafficpermissions/allow");
    assert_eq!(status, 200);
    assert_eq!(got["spec"]["from"][0]["default"]["action"], "Allow");
    assert_eq!(got["type"], "MeshTrafficPermission");

    let before = api.snapshot();
    let bad =
        mtp("bad", json!({"kind": "Mesh"}), json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Permit"}}]));
    let (status, body) = api.put("/meshes/default/meshtrafficpermissions/bad", &bad);
    let fields = assert_error(status, &body, 400);
    assert_eq!(fields, ["spec.from[0].default.action"], "{body}");
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("Permit"), "names the value: {body}");
    let missing = mtp("bad", json!({"kind": "Mesh"}), json!([{"targetRef": {"kind": "Mesh"}, "default": {}}]));
    let (status, body) = api.put("/meshes/default/meshtrafficpermissions/bad", &missing);
    assert_eq!(assert_error(status, &body, 400), ["spec.from[0].default.action"]);
    // An update to a bad action leaves the stored one as it was.
    let bad_update = mtp(
        "allow",
        json!({"kind": "Mesh"}),
        json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Permit"}}]),
    );
    let (status, body) = api.put("/meshes/default/meshtrafficpermissions/allow", &bad_update);
    assert_eq!(assert_error(status, &body, 400), ["spec.from[0].default.action"]);
    assert_eq!(api.snapshot(), before, "nothing stored or changed");
}

#[test]
fn mesh_traffic_permission_rules_round_trip_and_bad_ones_are_400_naming_the_field() {
    let api = Api::start();
    let rules = |allow: Value| {
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "r",
               "spec": {"targetRef": {"kind": "Mesh"}, "rules": [{"default": {"allow": allow}}]}})
        .to_string()
    };
    let good = rules(json!([{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]));
    assert_eq!(api.put("/meshes/default/meshtrafficpermissions/r", &good).0, 201);
    let (_, got) = api.get("/meshes/default/meshtrafficpermissions/r");
    assert_eq!(got["spec"]["rules"][0]["default"]["allow"][0]["spiffeID"]["value"], "spiffe://default/");

    let before = api.snapshot();
    let bad = rules(json!([{"spiffeID": {"type": "Exact", "value": "spiffe://default/web/"}}]));
    let (status, body) = api.put("/meshes/default/meshtrafficpermissions/r", &bad);
    assert_eq!(assert_error(status, &body, 400), ["spec.rules[0].default.allow[0].spiffeID.value"]);
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("spiffe://default/web/"), "{body}");
    let bad = rules(json!([{"spiffeID": {"type": "Glob", "value": "spiffe://default/web"}}]));
    let (status, body) = api.put("/meshes/default/meshtrafficpermissions/r2", &bad.replace("\"r\"", "\"r2\""));
    assert_eq!(assert_error(status, &body, 400), ["spec.rules[0].default.allow[0].spiffeID.type"]);
    let both = json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "r",
        "spec": {"rules": [{"default": {"allow": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/web"}}]}}],
                 "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}});
    let (status, body) = api.put("/meshes/default/meshtrafficpermissions/r", &both.to_string());
    assert_eq!(assert_error(status, &body, 400), ["spec"]);
    assert_eq!(api.snapshot(), before, "nothing stored or changed");
}

fn names_of(api: &Api, t: ResourceType, mesh: &str) -> Vec<String> {
    api.store.list(t, Some(mesh)).unwrap().iter().map(|r| r.meta.name.clone()).collect()
}

#[test]
fn a_new_mesh_gets_its_defaults_once_and_never_on_update() {
    // Kuma 2.6's default: no routing resources, and no other default type exists yet.
    let api = Api::start();
    assert_eq!(api.put("/meshes/plain", r#"{"type":"Mesh","name":"plain"}"#).0, 201);
    assert!(names_of(&api, ResourceType::TrafficPermission, "plain").is_empty());
    assert!(names_of(&api, ResourceType::TrafficRoute, "plain").is_empty());

    let mut routing = Config::default();
    routing.defaults.create_mesh_routing_resources = true;
    let api = Api::with(routing, Arc::new(MemoryStore::new()));
    assert_eq!(api.put("/meshes/demo", r#"{"type":"Mesh","name":"demo"}"#).0, 201);
    assert_eq!(names_of(&api, ResourceType::TrafficPermission, "demo"), ["allow-all-demo"]);
    assert_eq!(names_of(&api, ResourceType::TrafficRoute, "demo"), ["route-all-demo"]);
    let (_, route) = api.get("/meshes/demo/traffic-routes/route-all-demo");
    assert_eq!(route["conf"]["destination"], json!({"kuma.io/service": "*"}));
    assert_eq!(route["conf"]["loadBalancer"], json!({"roundRobin": {}}));

    // Deleted by the operator, it stays deleted through Mesh updates.
    assert_eq!(api.delete("/meshes/demo/traffic-routes/route-all-demo").0, 200);
    assert_eq!(api.put("/meshes/demo", "type: Mesh\nname: demo\nskipCreatingInitialPolicies: []\n").0, 200);
    assert!(names_of(&api, ResourceType::TrafficRoute, "demo").is_empty(), "not recreated on update");
    assert_eq!(names_of(&api, ResourceType::TrafficPermission, "demo"), ["allow-all-demo"]);

    // Skipped per type, and all of them with "*".
    let skip_route = "type: Mesh\nname: some\nskipCreatingInitialPolicies: [TrafficRoute]\n";
    assert_eq!(api.put("/meshes/some", skip_route).0, 201);
    assert_eq!(names_of(&api, ResourceType::TrafficPermission, "some"), ["allow-all-some"]);
    assert!(names_of(&api, ResourceType::TrafficRoute, "some").is_empty());
    assert_eq!(api.put("/meshes/none", "type: Mesh\nname: none\nskipCreatingInitialPolicies: ['*']\n").0, 201);
    assert!(names_of(&api, ResourceType::TrafficPermission, "none").is_empty());

    // Mesh default at start gets them too, once.
    let store: SharedStore = Arc::new(MemoryStore::new());
    higuma::daemon::ensure_default_mesh_with(&store, true).unwrap();
    higuma::daemon::ensure_default_mesh_with(&store, true).unwrap();
    let tps = store.list(ResourceType::TrafficPermission, Some("default")).unwrap();
    assert_eq!(tps.iter().map(|r| r.meta.name.as_str()).collect::<Vec<_>>(), ["allow-all-default"]);
}

// ---- inspect --------------------------------------------------------------------------------

/// backend-1 (inbound backend, http, 127.0.0.1:9000 → 8080; outbound redis) with one policy of
/// each attachment kind and two MeshTrafficPermissions.
fn inspect_setup(api: &Api) {
    // Mesh `default` starts with Kuma 2.6's default policies; these cases count exactly the
    // policies they create.
    for path in [
        "meshtimeouts/mesh-timeout-all-default",
        "meshcircuitbreakers/mesh-circuit-breaker-all-default",
        "meshretries/mesh-retry-all-default",
    ] {
        let (status, body) = api.delete(&format!("/meshes/default/{path}"));
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(api.put("/meshes/default/dataplanes/backend-1", &dataplane("backend-1", "default", 9000)).0, 201);
    let web = json!({
        "type": "Dataplane", "mesh": "default", "name": "web-1",
        "networking": {"address": "127.0.0.2", "inbound": [{"port": 7000, "tags": {"kuma.io/service": "web"}}]}
    });
    assert_eq!(api.put("/meshes/default/dataplanes/web-1", &web.to_string()).0, 201);
    let any = json!([{"match": {"kuma.io/service": "*"}}]);
    let docs = [
        (
            "traffic-permissions/tp-backend",
            json!({"type": "TrafficPermission", "mesh": "default", "name": "tp-backend", "sources": any,
                   "destinations": [{"match": {"kuma.io/service": "backend"}}]}),
        ),
        (
            "timeouts/t-redis",
            json!({"type": "Timeout", "mesh": "default", "name": "t-redis", "sources": any,
                   "destinations": [{"match": {"kuma.io/service": "redis"}}], "conf": {"connectTimeout": "2s"}}),
        ),
        (
            "health-checks/hc-1",
            json!({"type": "HealthCheck", "mesh": "default", "name": "hc-1",
                   "sources": [{"match": {"kuma.io/service": "backend"}}], "destinations": any,
                   "conf": {"interval": "5s", "timeout": "7s", "unhealthyThreshold": 3, "healthyThreshold": 1}}),
        ),
    ];
    for (path, doc) in docs {
        let (s, b) = api.put(&format!("/meshes/default/{path}"), &doc.to_string());
        assert_eq!(s, 201, "{path}: {b}");
    }
    let mesh_allow =
        mtp("mtp-1", json!({"kind": "Mesh"}), json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]));
    let deny_web = mtp(
        "mtp-2",
        json!({"kind": "MeshService", "name": "backend"}),
        json!([{"targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": "web"}}, "default": {"action": "Deny"}}]),
    );
    assert_eq!(api.put("/meshes/default/meshtrafficpermissions/mtp-1", &mesh_allow).0, 201);
    assert_eq!(api.put("/meshes/default/meshtrafficpermissions/mtp-2", &deny_web).0, 201);
}

#[test]
fn dataplane_policies_show_each_attachment_with_its_matched_policies() {
    let api = Api::start();
    inspect_setup(&api);
    let (status, body) = api.get("/meshes/default/dataplanes/backend-1/policies");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "SidecarDataplane");
    let summary: Vec<(String, String, String, Vec<String>)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut policies = Vec::new();
            for (t, ps) in i["matchedPolicies"].as_object().unwrap() {
                for p in ps.as_array().unwrap() {
                    assert_eq!(p["type"], t.as_str(), "entries are the policies' own JSON: {p}");
                    policies.push(format!("{t}/{}", p["name"].as_str().unwrap()));
                }
            }
            (
                i["type"].as_str().unwrap().into(),
                i["name"].as_str().unwrap().into(),
                i["service"].as_str().unwrap().into(),
                policies,
            )
        })
        .collect();
    let s = |v: &str| v.to_string();
    assert_eq!(
        summary,
        vec![
            // targetRef policies attach to the whole dataplane, in merge order (MeshService
            // after Mesh); mtp-2 selects backend-1 through its service.
            (s("dataplane"), s(""), s(""), vec![s("MeshTrafficPermission/mtp-1"), s("MeshTrafficPermission/mtp-2")]),
            (s("inbound"), s("127.0.0.1:9000:8080"), s("backend"), vec![s("TrafficPermission/tp-backend")]),
            (s("outbound"), s("127.0.0.1:10001"), s("redis"), vec![s("Timeout/t-redis")]),
            (s("service"), s("redis"), s("redis"), vec![s("HealthCheck/hc-1")]),
        ]
    );
    assert_eq!(body["total"], 4);
    let mtp = &body["items"][0]["matchedPolicies"]["MeshTrafficPermission"][0];
    assert_eq!(mtp["spec"]["from"][0]["default"]["action"], "Allow", "full resource, spec envelope: {mtp}");
    assert!(mtp["creationTime"].is_string());

    // web-1: only the Mesh-wide permission (mtp-2 and tp-backend select backend only).
    let (_, web) = api.get("/meshes/default/dataplanes/web-1/policies");
    assert_eq!(web["total"], 1, "{web}");
    assert_eq!(web["items"][0]["matchedPolicies"]["MeshTrafficPermission"].as_array().unwrap().len(), 1);
}

#[test]
fn dataplane_rules_are_kumas_rules_view() {
    let api = Api::start();
    inspect_setup(&api);
    let (status, body) = api.get("/meshes/default/dataplanes/backend-1/rules");
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(body["total"], items.len());
    // mtp-1 allows the mesh, mtp-2 (more specific) denies web: the client space splits in two.
    assert_eq!(items.len(), 2, "{body}");
    for i in items {
        assert_eq!(i["type"], "ClientSubset");
        assert_eq!(i["policyType"], "MeshTrafficPermission");
        assert_eq!(i["service"], "backend");
        assert_eq!(i["addresses"], json!(["127.0.0.1:9000"]));
        assert_eq!(i["tags"], json!({"kuma.io/service": "backend", "kuma.io/protocol": "http"}));
        let name = i["name"].as_str().unwrap();
        assert!(name.starts_with("backend-") && name.len() == "backend-".len() + 16, "Kuma's cluster name: {name}");
    }
    let by_subset =
        |subset: Value| items.iter().find(|i| i["subset"] == subset).unwrap_or_else(|| panic!("{subset}: {body}"));
    let web = by_subset(json!({"kuma.io/service": "web"}));
    assert_eq!(web["conf"], json!({"action": "Deny"}));
    assert_eq!(web["origins"], json!([{"mesh": "default", "name": "mtp-1"}, {"mesh": "default", "name": "mtp-2"}]));
    let others = by_subset(json!({"kuma.io/service": "!web"}));
    assert_eq!(others["conf"], json!({"action": "Allow"}));
    assert_eq!(others["origins"], json!([{"mesh": "default", "name": "mtp-1"}]));

    // web-1 is selected by mtp-1 only: one rule for everybody.
    let (_, web) = api.get("/meshes/default/dataplanes/web-1/rules");
    assert_eq!(web["total"], 1, "{web}");
    assert_eq!(web["items"][0]["subset"], json!({}));
    assert_eq!(web["items"][0]["name"], "web", "a single service tag names the cluster alone");
}

#[test]
fn policy_dataplanes_list_who_a_policy_reaches_and_where() {
    let api = Api::start();
    inspect_setup(&api);
    let (status, body) = api.get("/meshes/default/meshtrafficpermissions/mtp-2/dataplanes");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"total": 1, "items": [{
            "kind": "SidecarDataplane",
            "dataplane": {"mesh": "default", "name": "backend-1"},
            "attachments": [{"type": "dataplane", "name": "", "service": ""}]
        }]})
    );
    let (_, all) = api.get("/meshes/default/meshtrafficpermissions/mtp-1/dataplanes");
    let dps: Vec<&str> =
        all["items"].as_array().unwrap().iter().map(|i| i["dataplane"]["name"].as_str().unwrap()).collect();
    assert_eq!(dps, ["backend-1", "web-1"]);
    let (_, tp) = api.get("/meshes/default/traffic-permissions/tp-backend/dataplanes");
    assert_eq!(
        tp["items"][0]["attachments"],
        json!([{"type": "inbound", "name": "127.0.0.1:9000:8080", "service": "backend"}])
    );
    let (_, hc) = api.get("/meshes/default/health-checks/hc-1/dataplanes");
    assert_eq!(hc["items"][0]["attachments"], json!([{"type": "service", "name": "redis", "service": "redis"}]));
}

#[test]
fn inspect_answers_404_with_kumas_error_body() {
    let api = Api::start();
    inspect_setup(&api);
    for path in [
        "/meshes/default/dataplanes/nope/policies",
        "/meshes/default/dataplanes/nope/rules",
        "/meshes/default/dataplanes/nope/xds",
        "/meshes/nope/dataplanes/backend-1/policies",
        "/meshes/default/meshtrafficpermissions/nope/dataplanes",
        "/meshes/default/dataplanes/backend-1/dataplanes",
        // Known, but no xDS side here to be connected to.
        "/meshes/default/dataplanes/backend-1/xds",
    ] {
        let (status, body) = api.get(path);
        assert_error(status, &body, 404);
        assert!(body["detail"].as_str().unwrap().len() > 10, "{path}: {body}");
    }
    let (_, body) = api.get("/meshes/default/dataplanes/backend-1/xds");
    assert!(body["detail"].as_str().unwrap().contains("not connected"), "{body}");
    let (status, body) = api.put("/meshes/default/dataplanes/backend-1/policies", "{}");
    assert_error(status, &body, 405);
    assert!(body["detail"].as_str().unwrap().contains("read-only"), "{body}");
}
