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

/// A dataplane resolved against YAML resources (Dataplanes and policies; a Mesh is not
/// needed): documents are created one second apart in order, so of two equally specific
/// old-style policies the later document is the newer one. Service protocols come from the
/// Dataplanes' `kuma.io/protocol` tags.
pub fn resolve_yaml(input: &str, dataplane: &str) -> crate::policies::resolved::ResolvedProxy {
    with_cx(input, dataplane, crate::policies::resolve)
}

/// Runs `f` with the resolve context [`resolve_yaml`] builds, for tests that run one
/// plugin on a prepared [`crate::policies::resolved::ResolvedProxy`].
pub fn with_cx<T>(input: &str, dataplane: &str, f: impl FnOnce(&crate::policies::ResolveCx<'_>) -> T) -> T {
    use crate::model::{Meta, Resource, ResourceType, Spec};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    let mut policies: BTreeMap<ResourceType, Vec<Arc<Resource>>> = BTreeMap::new();
    let mut dataplanes = Vec::new();
    for (i, doc) in crate::model::rest::parse_documents(input).unwrap().into_iter().enumerate() {
        let env = from_json(doc).unwrap_or_else(|e| panic!("invalid input: {e}"));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64);
        let meta = Meta {
            mesh: env.mesh.clone().unwrap_or_default(),
            name: env.name.clone(),
            version: 1,
            creation_time: t,
            modification_time: t,
        };
        let r = Arc::new(Resource { meta, spec: env.spec });
        match &r.spec {
            Spec::Dataplane(_) => dataplanes.push(r),
            _ if r.rtype().is_policy() => policies.entry(r.rtype()).or_default().push(r),
            _ => {}
        }
    }
    let specs: Vec<(&str, &crate::model::dataplane::DataplaneSpec)> = dataplanes
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Dataplane(s) => Some((r.meta.name.as_str(), s)),
            _ => None,
        })
        .collect();
    let protocol_of = |service: &str| {
        specs
            .iter()
            .flat_map(|(_, s)| s.networking.inbound.iter())
            .find(|i| i.service() == service)
            .map(|i| i.protocol())
            .unwrap_or(crate::model::dataplane::Protocol::Tcp)
    };
    let dp = specs.iter().find(|(n, _)| *n == dataplane).map(|(_, s)| *s).expect("no such Dataplane");
    let set = crate::policies::core::set::PolicySet::from_lists(policies);
    f(&crate::policies::ResolveCx {
        mesh_name: "default",
        mesh: &crate::model::mesh::MeshSpec::default(),
        policies: &set,
        name: dataplane,
        dataplane: dp,
        protocol_of: &protocol_of,
        tls_ready: &|_| false,
    })
}

/// A policy's golden file: the Envoy config generated for `dataplane` from
/// `<dir>/<case>.input.yaml` (a path under the crate root), compared with
/// `<dir>/<case>.golden.yaml`. `UPDATE_GOLDEN_FILES=true` rewrites the golden file.
#[track_caller]
pub fn check_golden(dir: &str, case: &str, dataplane: &str) {
    use crate::model::{ResourceKey, ResourceType};
    use crate::store::{MemoryStore, ResourceStore};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let input = std::fs::read_to_string(dir.join(format!("{case}.input.yaml"))).unwrap();
    let store = MemoryStore::new();
    for doc in crate::model::rest::parse_documents(&input).unwrap() {
        let env = from_json(doc).unwrap_or_else(|e| panic!("{case}: invalid input: {e}"));
        store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
    }
    let ctx = crate::xds::context::MeshContext::build(&store, "default", None).unwrap();
    let dp = store.get(&ResourceKey::new(ResourceType::Dataplane, "default", dataplane)).unwrap();
    let chain = crate::xds::generate::default_chain();
    let snapshot = crate::xds::generate::generate(&chain, &ctx, &dp).unwrap();
    let actual = serde_yaml_ng::to_string(&crate::xds::debug::snapshot_to_json(&snapshot)).unwrap();
    let golden = dir.join(format!("{case}.golden.yaml"));
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
/// [`assert_round_trip`] for a targetRef policy: the decoded spec re-serializes to `spec`.
#[track_caller]
pub fn assert_spec_round_trip(v: Value) {
    let env = from_json(v.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env.spec.to_json(), v["spec"]);
}
