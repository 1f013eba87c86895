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
