//! Test helpers of the routing and load-balancing plugins.
//!
//! Golden files beside each plugin: the resources in
//! `src/policies/<policy>/testdata/<case>.input.yaml` and the Envoy config generated for one
//! of its dataplanes, compared with `<case>.golden.yaml`. Regenerate with
//! `UPDATE_GOLDEN_FILES=true cargo test --lib golden`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{rest, ResourceKey, ResourceType};
use crate::store::{MemoryStore, ResourceStore};
use crate::xds::context::MeshContext;
use crate::xds::debug::snapshot_to_json;
use crate::xds::generate::{default_chain, generate};

fn testdata(policy: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/policies").join(policy).join("testdata").join(name)
}

/// The generated config of `dataplane` for the inputs of `case`, as YAML.
pub fn render(policy: &str, case: &str, dataplane: &str) -> String {
    let input = std::fs::read_to_string(testdata(policy, &format!("{case}.input.yaml"))).unwrap();
    let store = Arc::new(MemoryStore::new());
    for doc in rest::parse_documents(&input).unwrap() {
        let env = rest::from_json(doc).unwrap_or_else(|e| panic!("{case}: invalid input: {e}"));
        store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
    }
    let ctx = MeshContext::build(store.as_ref(), "default", None).unwrap();
    let dp = store.get(&ResourceKey::new(ResourceType::Dataplane, "default", dataplane)).unwrap();
    let snapshot = generate(&default_chain(), &ctx, &dp).unwrap();
    serde_yaml_ng::to_string(&snapshot_to_json(&snapshot)).unwrap()
}

/// Compares (or with `UPDATE_GOLDEN_FILES=true` rewrites) the golden file of `case`.
#[track_caller]
pub fn check(policy: &str, case: &str, dataplane: &str) {
    let actual = render(policy, case, dataplane);
    let golden = testdata(policy, &format!("{case}.golden.yaml"));
    if std::env::var("UPDATE_GOLDEN_FILES").as_deref() == Ok("true") {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        actual == expected,
        "{case}: generated config differs from {}.\n--- actual ---\n{actual}\nRegenerate with: UPDATE_GOLDEN_FILES=true cargo test --lib golden",
        golden.display()
    );
}

/// Decodes and validates a `spec:`-envelope resource; re-serialized, its spec must equal
/// the input's.
#[track_caller]
pub fn assert_spec_round_trip(v: serde_json::Value) {
    let env = rest::from_json(v.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env.spec.to_json(), v["spec"]);
}
