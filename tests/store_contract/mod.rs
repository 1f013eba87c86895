//! The store contract: every `ResourceStore` backend must pass these cases. A backend's test
//! file instantiates them with `store_contract_suite!(name, || -> SharedStore)`.

#![allow(dead_code)]

use std::sync::{Arc, Barrier};
use std::time::Duration;

use higuma::model::{rest, ResourceKey, ResourceType, Spec};
use higuma::store::{BatchWrite, ChangeEvent, Operation, SharedStore, StoreError};
use serde_json::json;

pub fn spec(value: serde_json::Value) -> Spec {
    rest::from_json(value).expect("fixture is a valid resource").spec
}

pub fn mesh_spec() -> Spec {
    spec(json!({"type": "Mesh", "name": "x"}))
}

pub fn dataplane_spec(service: &str, port: u32) -> Spec {
    spec(json!({
        "type": "Dataplane", "name": "x", "mesh": "x",
        "networking": {
            "address": "192.168.0.1",
            "inbound": [{"port": port, "servicePort": 80, "tags": {"kuma.io/service": service}}]
        }
    }))
}

pub fn permission_spec() -> Spec {
    spec(json!({
        "type": "TrafficPermission", "name": "x", "mesh": "x",
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}]
    }))
}

pub fn insight_spec() -> Spec {
    spec(json!({"type": "DataplaneInsight", "name": "x", "mesh": "x"}))
}

fn key(rtype: ResourceType, mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(rtype, mesh, name)
}

fn with_mesh(store: &SharedStore, mesh: &str) {
    store.create("", mesh, mesh_spec()).expect("create mesh");
}

fn drain(rx: &crossbeam_channel::Receiver<ChangeEvent>) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    // Backends that deliver events asynchronously (Postgres NOTIFY) get a moment to do so;
    // the loop ends as soon as no event arrives for that long.
    while let Ok(ev) = rx.recv_timeout(Duration::from_millis(500)) {
        out.push(ev);
    }
    out
}

pub fn create_then_get(store: SharedStore) {
    with_mesh(&store, "default");
    let created = store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    let got = store.get(&key(ResourceType::Dataplane, "default", "dp-1")).unwrap();
    assert_eq!(got.spec, dataplane_spec("web", 8080));
    assert_eq!(got.meta.mesh, "default");
    assert_eq!(got.meta.name, "dp-1");
    assert_eq!(got.meta.version, created.meta.version);
    assert_eq!(got.meta.creation_time, got.meta.modification_time);
    let mesh = store.get(&key(ResourceType::Mesh, "", "default")).unwrap();
    assert_eq!(mesh.meta.mesh, "", "a Mesh is global");
}

pub fn create_duplicate_fails(store: SharedStore) {
    with_mesh(&store, "default");
    store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    let err = store.create("default", "dp-1", dataplane_spec("other", 9090)).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    let got = store.get(&key(ResourceType::Dataplane, "default", "dp-1")).unwrap();
    assert_eq!(got.spec, dataplane_spec("web", 8080), "the first write stays");
}

pub fn get_missing_is_not_found(store: SharedStore) {
    let err = store.get(&key(ResourceType::Mesh, "", "nope")).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub fn create_in_missing_mesh_fails(store: SharedStore) {
    let err = store.create("nope", "dp-1", dataplane_spec("web", 8080)).unwrap_err();
    assert!(matches!(err, StoreError::MeshNotFound(ref m) if m == "nope"), "{err:?}");
    assert!(store.list(ResourceType::Dataplane, None).unwrap().is_empty());
}

pub fn insight_needs_its_dataplane(store: SharedStore) {
    with_mesh(&store, "default");
    let err = store.create("default", "dp-1", insight_spec()).unwrap_err();
    assert!(matches!(err, StoreError::OwnerNotFound { .. }), "{err:?}");
}

pub fn update_with_current_version(store: SharedStore) {
    with_mesh(&store, "default");
    let k = key(ResourceType::Dataplane, "default", "dp-1");
    let v1 = store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let v2 = store.update(&k, dataplane_spec("web", 9090), v1.meta.version).unwrap();
    assert_ne!(v2.meta.version, v1.meta.version);
    assert_eq!(v2.meta.creation_time, v1.meta.creation_time);
    assert!(v2.meta.modification_time > v1.meta.modification_time);
    let got = store.get(&k).unwrap();
    assert_eq!(got.spec, dataplane_spec("web", 9090));
    assert_eq!(got.meta.version, v2.meta.version);
}

pub fn update_with_stale_version_conflicts(store: SharedStore) {
    with_mesh(&store, "default");
    let k = key(ResourceType::Dataplane, "default", "dp-1");
    let v1 = store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    store.update(&k, dataplane_spec("web", 9090), v1.meta.version).unwrap();
    let err = store.update(&k, dataplane_spec("web", 7070), v1.meta.version).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get(&k).unwrap().spec, dataplane_spec("web", 9090), "the lost write changed nothing");
}

pub fn update_missing_is_not_found(store: SharedStore) {
    with_mesh(&store, "default");
    let err = store.update(&key(ResourceType::Dataplane, "default", "dp-1"), dataplane_spec("web", 1), 1).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

/// Many writers racing with the same expected version: exactly one wins.
pub fn concurrent_updates_have_one_winner(store: SharedStore) {
    with_mesh(&store, "default");
    let k = key(ResourceType::Dataplane, "default", "dp-1");
    let v1 = store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    let writers = 8;
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            let (store, barrier, k) = (store.clone(), barrier.clone(), k.clone());
            let version = v1.meta.version;
            std::thread::spawn(move || {
                barrier.wait();
                store.update(&k, dataplane_spec("web", 9000 + i as u32), version)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
        }
    }
    assert_eq!(store.get(&k).unwrap().spec, winners[0].spec);
}

pub fn delete_removes(store: SharedStore) {
    with_mesh(&store, "default");
    let k = key(ResourceType::Dataplane, "default", "dp-1");
    store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    store.delete(&k).unwrap();
    assert!(matches!(store.get(&k).unwrap_err(), StoreError::NotFound(_)));
    assert!(matches!(store.delete(&k).unwrap_err(), StoreError::NotFound(_)));
}

pub fn list_is_sorted_and_filtered(store: SharedStore) {
    with_mesh(&store, "b-mesh");
    with_mesh(&store, "a-mesh");
    for (mesh, name) in [("b-mesh", "dp-2"), ("a-mesh", "dp-9"), ("b-mesh", "dp-1"), ("a-mesh", "dp-3")] {
        store.create(mesh, name, dataplane_spec(name, 8080)).unwrap();
    }
    store.create("a-mesh", "allow", permission_spec()).unwrap();
    let all: Vec<(String, String)> = store
        .list(ResourceType::Dataplane, None)
        .unwrap()
        .iter()
        .map(|r| (r.meta.mesh.clone(), r.meta.name.clone()))
        .collect();
    let expected = [("a-mesh", "dp-3"), ("a-mesh", "dp-9"), ("b-mesh", "dp-1"), ("b-mesh", "dp-2")];
    assert_eq!(all, expected.map(|(m, n)| (m.to_string(), n.to_string())));
    let in_b: Vec<String> =
        store.list(ResourceType::Dataplane, Some("b-mesh")).unwrap().iter().map(|r| r.meta.name.clone()).collect();
    assert_eq!(in_b, ["dp-1", "dp-2"]);
    assert_eq!(store.list(ResourceType::TrafficPermission, Some("b-mesh")).unwrap().len(), 0);
    assert_eq!(store.list(ResourceType::TrafficPermission, None).unwrap().len(), 1);
    let meshes: Vec<String> =
        store.list(ResourceType::Mesh, None).unwrap().iter().map(|r| r.meta.name.clone()).collect();
    assert_eq!(meshes, ["a-mesh", "b-mesh"]);
}

pub fn deleting_a_mesh_deletes_its_contents(store: SharedStore) {
    with_mesh(&store, "doomed");
    with_mesh(&store, "kept");
    for mesh in ["doomed", "kept"] {
        store.create(mesh, "dp-1", dataplane_spec("web", 8080)).unwrap();
        store.create(mesh, "dp-1", insight_spec()).unwrap();
        store.create(mesh, "allow", permission_spec()).unwrap();
    }
    store.delete(&key(ResourceType::Mesh, "", "doomed")).unwrap();
    for rtype in [ResourceType::Dataplane, ResourceType::DataplaneInsight, ResourceType::TrafficPermission] {
        assert!(store.list(rtype, Some("doomed")).unwrap().is_empty(), "{rtype} left behind");
        assert_eq!(store.list(rtype, Some("kept")).unwrap().len(), 1, "{rtype} of another mesh lost");
    }
}

pub fn deleting_a_dataplane_deletes_its_insight(store: SharedStore) {
    with_mesh(&store, "default");
    store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    store.create("default", "dp-1", insight_spec()).unwrap();
    store.create("default", "dp-2", dataplane_spec("web", 8081)).unwrap();
    store.create("default", "dp-2", insight_spec()).unwrap();
    store.delete(&key(ResourceType::Dataplane, "default", "dp-1")).unwrap();
    let insights: Vec<String> = store
        .list(ResourceType::DataplaneInsight, Some("default"))
        .unwrap()
        .iter()
        .map(|r| r.meta.name.clone())
        .collect();
    assert_eq!(insights, ["dp-2"]);
}

pub fn writes_emit_events_in_order(store: SharedStore) {
    let rx = store.subscribe();
    with_mesh(&store, "default");
    let k = key(ResourceType::Dataplane, "default", "dp-1");
    let v = store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    store.update(&k, dataplane_spec("web", 9090), v.meta.version).unwrap();
    // Failed writes emit nothing.
    let _ = store.update(&k, dataplane_spec("web", 1), v.meta.version);
    let _ = store.create("default", "dp-1", dataplane_spec("web", 1));
    store.delete(&k).unwrap();
    let events = drain(&rx);
    let expected = vec![
        ChangeEvent::Changed { op: Operation::Create, key: key(ResourceType::Mesh, "", "default") },
        ChangeEvent::Changed { op: Operation::Create, key: k.clone() },
        ChangeEvent::Changed { op: Operation::Update, key: k.clone() },
        ChangeEvent::Changed { op: Operation::Delete, key: k },
    ];
    assert_eq!(events, expected);
}

pub fn cascaded_deletes_emit_events(store: SharedStore) {
    with_mesh(&store, "default");
    store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    store.create("default", "dp-1", insight_spec()).unwrap();
    store.create("default", "allow", permission_spec()).unwrap();
    let rx = store.subscribe();
    store.delete(&key(ResourceType::Mesh, "", "default")).unwrap();
    let mut deleted: Vec<ResourceKey> = drain(&rx)
        .into_iter()
        .map(|e| match e {
            ChangeEvent::Changed { op: Operation::Delete, key } => key,
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    deleted.sort();
    let mut expected = vec![
        key(ResourceType::Mesh, "", "default"),
        key(ResourceType::Dataplane, "default", "dp-1"),
        key(ResourceType::DataplaneInsight, "default", "dp-1"),
        key(ResourceType::TrafficPermission, "default", "allow"),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
}

/// A batch read answers per key, in order, `None` for what does not exist.
pub fn batch_reads_answer_per_key(store: SharedStore) {
    with_mesh(&store, "default");
    store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    store.create("default", "dp-2", dataplane_spec("db", 5432)).unwrap();
    store.create("default", "dp-1", insight_spec()).unwrap();
    let keys = [
        key(ResourceType::Dataplane, "default", "dp-2"),
        key(ResourceType::DataplaneInsight, "default", "dp-2"),
        key(ResourceType::Dataplane, "default", "dp-1"),
        key(ResourceType::Dataplane, "other", "dp-1"),
        key(ResourceType::DataplaneInsight, "default", "dp-1"),
    ];
    let got = store.get_batch(&keys).unwrap();
    let found: Vec<Option<(String, Spec)>> =
        got.iter().map(|r| r.as_ref().map(|r| (r.meta.name.clone(), r.spec.clone()))).collect();
    assert_eq!(
        found,
        vec![
            Some(("dp-2".to_string(), dataplane_spec("db", 5432))),
            None,
            Some(("dp-1".to_string(), dataplane_spec("web", 8080))),
            None,
            Some(("dp-1".to_string(), insight_spec())),
        ]
    );
    for (k, r) in keys.iter().zip(&got) {
        if let Some(r) = r {
            assert_eq!(r.meta.version, store.get(k).unwrap().meta.version, "{k}");
        }
    }
    assert!(store.get_batch(&[]).unwrap().is_empty());
}

/// A batch write gives each write the outcome `create` / `update` would, lands exactly the
/// ones that succeed, and emits one event for each of them.
pub fn batch_writes_report_each_outcome(store: SharedStore) {
    with_mesh(&store, "default");
    for dp in ["dp-1", "dp-2", "dp-3"] {
        store.create("default", dp, dataplane_spec("web", 8080)).unwrap();
    }
    store.create("default", "dp-1", insight_spec()).unwrap();
    let v2 = store.create("default", "dp-2", insight_spec()).unwrap();
    let stale = store.create("default", "dp-3", insight_spec()).unwrap();
    let k3 = key(ResourceType::DataplaneInsight, "default", "dp-3");
    store.update(&k3, insight_spec(), stale.meta.version).unwrap();
    let rx = store.subscribe();
    let changed = spec(json!({"type": "DataplaneInsight", "name": "x", "mesh": "x",
        "subscriptions": [{"id": "s1", "controlPlaneInstanceId": "cp-1", "connectTime": "2026-01-01T00:00:00Z"}]}));
    let ik = |n: &str| key(ResourceType::DataplaneInsight, "default", n);
    let writes = vec![
        BatchWrite::Create { key: ik("dp-1"), spec: changed.clone() },
        BatchWrite::Update { key: ik("dp-2"), spec: changed.clone(), expected_version: v2.meta.version },
        BatchWrite::Update { key: ik("dp-3"), spec: changed.clone(), expected_version: stale.meta.version },
        BatchWrite::Update { key: ik("dp-9"), spec: changed.clone(), expected_version: 0 },
        BatchWrite::Create { key: ik("dp-9"), spec: changed.clone() },
        BatchWrite::Create { key: key(ResourceType::TrafficPermission, "nowhere", "p"), spec: permission_spec() },
        BatchWrite::Create { key: key(ResourceType::TrafficPermission, "default", "p"), spec: permission_spec() },
    ];
    let outcomes = store.write_batch(writes).unwrap();
    let labels: Vec<&str> = outcomes.iter().map(|o| o.as_ref().map_or_else(|e| e.label(), |_| "ok")).collect();
    assert_eq!(labels, ["already_exists", "ok", "conflict", "not_found", "owner_not_found", "mesh_not_found", "ok"]);
    assert_eq!(store.get(&ik("dp-1")).unwrap().spec, insight_spec(), "a failed create changed nothing");
    assert_eq!(store.get(&ik("dp-2")).unwrap().spec, changed);
    assert!(store.get(&ik("dp-2")).unwrap().meta.version != v2.meta.version);
    assert_eq!(store.get(&k3).unwrap().spec, insight_spec(), "a lost compare-and-swap changed nothing");
    assert!(matches!(store.get(&ik("dp-9")), Err(StoreError::NotFound(_))));
    assert_eq!(store.get(&key(ResourceType::TrafficPermission, "default", "p")).unwrap().spec, permission_spec());
    let by_debug = |e: &ChangeEvent| format!("{e:?}");
    let mut events = drain(&rx);
    events.sort_by_key(by_debug);
    let mut expected = vec![
        ChangeEvent::Changed { op: Operation::Update, key: ik("dp-2") },
        ChangeEvent::Changed { op: Operation::Create, key: key(ResourceType::TrafficPermission, "default", "p") },
    ];
    expected.sort_by_key(by_debug);
    assert_eq!(events, expected);
    assert!(store.write_batch(Vec::new()).unwrap().is_empty());
}

/// Instantiates every contract case as a `#[test]` in a module named `$name`.
#[macro_export]
macro_rules! store_contract_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::store_contract as c;
            #[allow(unused_imports)]
            use super::*;
            fn make() -> higuma::store::SharedStore {
                ($make)()
            }
            #[test]
            fn create_then_get() {
                c::create_then_get(make())
            }
            #[test]
            fn create_duplicate_fails() {
                c::create_duplicate_fails(make())
            }
            #[test]
            fn get_missing_is_not_found() {
                c::get_missing_is_not_found(make())
            }
            #[test]
            fn create_in_missing_mesh_fails() {
                c::create_in_missing_mesh_fails(make())
            }
            #[test]
            fn insight_needs_its_dataplane() {
                c::insight_needs_its_dataplane(make())
            }
            #[test]
            fn update_with_current_version() {
                c::update_with_current_version(make())
            }
            #[test]
            fn update_with_stale_version_conflicts() {
                c::update_with_stale_version_conflicts(make())
            }
            #[test]
            fn update_missing_is_not_found() {
                c::update_missing_is_not_found(make())
            }
            #[test]
            fn concurrent_updates_have_one_winner() {
                c::concurrent_updates_have_one_winner(make())
            }
            #[test]
            fn delete_removes() {
                c::delete_removes(make())
            }
            #[test]
            fn list_is_sorted_and_filtered() {
                c::list_is_sorted_and_filtered(make())
            }
            #[test]
            fn deleting_a_mesh_deletes_its_contents() {
                c::deleting_a_mesh_deletes_its_contents(make())
            }
            #[test]
            fn deleting_a_dataplane_deletes_its_insight() {
                c::deleting_a_dataplane_deletes_its_insight(make())
            }
            #[test]
            fn writes_emit_events_in_order() {
                c::writes_emit_events_in_order(make())
            }
            #[test]
            fn cascaded_deletes_emit_events() {
                c::cascaded_deletes_emit_events(make())
            }
            #[test]
            fn batch_reads_answer_per_key() {
                c::batch_reads_answer_per_key(make())
            }
            #[test]
            fn batch_writes_report_each_outcome() {
                c::batch_writes_report_each_outcome(make())
            }
        }
    };
}
