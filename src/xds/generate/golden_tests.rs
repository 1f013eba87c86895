//! Golden files: for each case, the resources in `tests/testdata/xds/<case>.input.yaml` and
//! the Envoy config generated for one of its dataplanes, compared with
//! `<case>.golden.yaml`. Regenerate with `UPDATE_GOLDEN_FILES=true cargo test --lib golden`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{rest, ResourceKey, ResourceType};
use crate::store::{MemoryStore, ResourceStore};
use crate::xds::context::MeshContext;
use crate::xds::debug::snapshot_to_json;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/xds").join(name)
}

fn render(case: &str, dataplane: &str) -> String {
    let input = std::fs::read_to_string(testdata(&format!("{case}.input.yaml"))).unwrap();
    let store = Arc::new(MemoryStore::new());
    for doc in rest::parse_documents(&input).unwrap() {
        let env = rest::from_json(doc).unwrap_or_else(|e| panic!("{case}: invalid input: {e}"));
        store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
    }
    let ctx = MeshContext::build(store.as_ref(), "default", None).unwrap();
    let dp = store.get(&ResourceKey::new(ResourceType::Dataplane, "default", dataplane)).unwrap();
    let snapshot = super::generate(&super::default_chain(), &ctx, &dp).unwrap();
    serde_yaml_ng::to_string(&snapshot_to_json(&snapshot)).unwrap()
}

fn check(case: &str, dataplane: &str) {
    let actual = render(case, dataplane);
    let golden = testdata(&format!("{case}.golden.yaml"));
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

#[test]
fn golden_http_inbound() {
    check("01.http-inbound", "web-1");
}

#[test]
fn golden_tcp_outbound_to_two_instances() {
    check("02.tcp-outbound", "web-1");
}

#[test]
fn golden_grpc_and_missing_service() {
    check("03.grpc-and-missing-service", "gateway-1");
}

#[test]
fn golden_timeout_policies_most_specific_wins() {
    check("04.timeout-policy", "web-1");
}

#[test]
fn identical_inputs_give_identical_versions() {
    let a = render("02.tcp-outbound", "web-1");
    let b = render("02.tcp-outbound", "web-1");
    assert_eq!(a, b);
}
