//! Test helpers shared by the policies' validation tests: envelopes built from JSON and
//! assertions on the violations they produce.

#![allow(dead_code)]

use crate::model::rest::from_json;
use serde_json::{json, Value};

pub fn policy(rtype: &str, body: Value) -> Value {
    let mut v = json!({"type": rtype, "mesh": "default", "name": "p"});
    v.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    v
}

pub fn svc(name: &str) -> Value {
    json!([{"match": {"kuma.io/service": name}}])
}

/// A policy of `rtype` with valid selectors and the given conf.
pub fn with_conf(rtype: &str, conf: Value) -> Value {
    policy(rtype, json!({"sources": svc("web"), "destinations": svc("backend"), "conf": conf}))
}

#[track_caller]
pub fn assert_violation(v: Value, field: &str, reason: &str) {
    let err = from_json(v).expect_err("expected a validation error");
    assert!(
        err.violations.iter().any(|x| x.field == field && x.reason.contains(reason)),
        "no violation at {field:?} containing {reason:?}: {err}"
    );
}

/// Decodes, validates and re-serializes; the spec part must equal the input.
#[track_caller]
pub fn assert_round_trip(v: Value) {
    let env = from_json(v.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut expected = v.as_object().unwrap().clone();
    for k in ["type", "mesh", "name"] {
        expected.remove(k);
    }
    assert_eq!(env.spec.to_json(), Value::Object(expected));
}

/// The Envoy config higuma generates for `dataplane` (mesh `default`) from the resources in
/// `<dir>/<case>.input.yaml` (`dir` relative to the crate root), as YAML.
pub fn render_config(dir: &str, case: &str, dataplane: &str) -> String {
    use crate::model::{rest, ResourceKey, ResourceType};
    use crate::store::{MemoryStore, ResourceStore};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let input = std::fs::read_to_string(root.join(format!("{case}.input.yaml")))
        .unwrap_or_else(|e| panic!("{dir}/{case}.input.yaml: {e}"));
    let store = std::sync::Arc::new(MemoryStore::new());
    for doc in rest::parse_documents(&input).unwrap() {
        let env = rest::from_json(doc).unwrap_or_else(|e| panic!("{case}: invalid input: {e}"));
        store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
    }
    let ctx = crate::xds::context::MeshContext::build(store.as_ref(), "default", None).unwrap();
    let dp = store.get(&ResourceKey::new(ResourceType::Dataplane, "default", dataplane)).unwrap();
    let chain = crate::xds::generate::default_chain();
    let snapshot = crate::xds::generate::generate(&chain, &ctx, &dp).unwrap();
    serde_yaml_ng::to_string(&crate::xds::debug::snapshot_to_json(&snapshot)).unwrap()
}

/// Compares [`render_config`] with `<dir>/<case>.golden.yaml`; `UPDATE_GOLDEN_FILES=true`
/// rewrites the golden file instead.
#[track_caller]
pub fn check_golden(dir: &str, case: &str, dataplane: &str) {
    let actual = render_config(dir, case, dataplane);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(format!("{case}.golden.yaml"));
    if std::env::var("UPDATE_GOLDEN_FILES").as_deref() == Ok("true") {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        actual == expected,
        "{case}: generated config differs from {}.\n--- actual ---\n{actual}\nRegenerate with: UPDATE_GOLDEN_FILES=true cargo test --lib {case}",
        golden.display()
    );
}

/// The resolved confs of `dataplane` (mesh `default`) given the resources of `yaml`, created
/// in document order a millisecond apart so that creation-time tie rules see that order.
pub fn resolve_yaml(yaml: &str, dataplane: &str) -> crate::policies::resolved::ResolvedProxy {
    use crate::model::{rest, ResourceKey, ResourceType, Spec};
    use crate::store::{MemoryStore, ResourceStore};
    let store = std::sync::Arc::new(MemoryStore::new());
    for doc in rest::parse_documents(yaml).unwrap() {
        let env = rest::from_json(doc).unwrap_or_else(|e| panic!("invalid input: {e}"));
        store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let ctx = crate::xds::context::MeshContext::build(store.as_ref(), "default", None).unwrap();
    let dp = store.get(&ResourceKey::new(ResourceType::Dataplane, "default", dataplane)).unwrap();
    let Spec::Dataplane(spec) = &dp.spec else { panic!("{dataplane} is not a Dataplane") };
    ctx.resolve(&dp, spec)
}

/// [`assert_round_trip`] for a targetRef policy: the decoded spec re-serializes to `spec`.
#[track_caller]
pub fn assert_spec_round_trip(v: Value) {
    let env = from_json(v.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env.spec.to_json(), v["spec"]);
}
