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
