//! MeshTimeout (`pkg/plugins/policies/meshtimeout/api/v1alpha1`, reference §4.5): the
//! targetRef successor of Timeout, with `to` (outbounds) and `from` (inbounds) entries.
//!
//! Validation follows Kuma's `validator.go`: field paths `spec.to[0].default.http.requestTimeout`,
//! Kuma's messages.

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshTimeoutSpec(pub ToFromPolicy<MeshTimeoutConf>);

/// One `default`. Absent fields take Kuma's defaults when the conf applies (see the plugin).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTimeoutConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<MeshTimeoutHttp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTimeoutHttp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<ProtoDuration>,
}

const TOP: &[TargetKind] = &[
    TargetKind::Mesh,
    TargetKind::MeshSubset,
    TargetKind::MeshGateway,
    TargetKind::MeshService,
    TargetKind::MeshServiceSubset,
    TargetKind::MeshHttpRoute,
];

/// Under a MeshGateway or MeshHTTPRoute only `to` Mesh, and no `from`.
fn allowed(top: TargetKind) -> Allowed {
    match top {
        TargetKind::MeshGateway | TargetKind::MeshHttpRoute => {
            Allowed { top: TOP, to: &[TargetKind::Mesh], from: &[], require_entries: false }
        }
        _ => Allowed {
            top: TOP,
            to: &[TargetKind::Mesh, TargetKind::MeshService],
            from: &[TargetKind::Mesh],
            require_entries: false,
        },
    }
}

const ROUTE_ONLY: &str = "can't be specified when top-level TargetRef is referencing MeshHTTPRoute";

fn validate_default(errors: &mut ValidationError, path: &str, c: &MeshTimeoutConf, top: TargetKind) {
    if c.connection_timeout.is_none() && c.idle_timeout.is_none() && c.http.is_none() {
        errors.add(path, "at least one timeout should be configured");
        return;
    }
    if top == TargetKind::MeshHttpRoute {
        // A route's timeouts live on its routes: only the request and stream idle timeouts.
        let http = c.http.as_ref();
        for (field, set) in [
            ("connectionTimeout", c.connection_timeout.is_some()),
            ("idleTimeout", c.idle_timeout.is_some()),
            ("http.maxStreamDuration", http.is_some_and(|h| h.max_stream_duration.is_some())),
            ("http.maxConnectionDuration", http.is_some_and(|h| h.max_connection_duration.is_some())),
        ] {
            if set {
                errors.add(format!("{path}.{field}"), ROUTE_ONLY);
            }
        }
    }
    if c.connection_timeout.is_some_and(|d| d.is_zero()) {
        errors.add(format!("{path}.connectionTimeout"), "must be greater than zero when defined");
    }
    if let Some(http) = &c.http {
        if *http == MeshTimeoutHttp::default() {
            errors.add(format!("{path}.http"), "at least one timeout in this section should be configured");
        }
    }
}

impl SpecType for MeshTimeoutSpec {
    /// The widest kinds (a non-route top level), for `GET /policies`.
    const TARGET_REF_KINDS: Option<Allowed> = Some(Allowed {
        top: TOP,
        to: &[TargetKind::Mesh, TargetKind::MeshService],
        from: &[TargetKind::Mesh],
        require_entries: false,
    });

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        let p = &self.0;
        let top = p.target_ref.as_ref().map_or(TargetKind::Mesh, |t| t.kind());
        let allowed = allowed(top);
        p.validate_refs(&mut errors, allowed);
        if p.to.is_empty() && p.from.is_empty() {
            errors.add("spec", "at least one of 'from', 'to' has to be defined");
        }
        for (i, e) in p.to.iter().enumerate() {
            validate_default(&mut errors, &format!("spec.to[{i}].default"), &e.default, top);
        }
        if !allowed.from.is_empty() {
            for (i, e) in p.from.iter().enumerate() {
                validate_default(&mut errors, &format!("spec.from[{i}].default"), &e.default, top);
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::from_json;
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    fn mesh_timeout(spec: Value) -> Value {
        json!({"type": "MeshTimeout", "mesh": "default", "name": "mt", "spec": spec})
    }

    fn to_mesh(default: Value) -> Value {
        mesh_timeout(
            json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": default}]}),
        )
    }

    /// Decodes, validates and re-serializes; the spec must come back as it went in.
    #[track_caller]
    pub(crate) fn assert_spec_round_trip(v: Value) {
        let env = from_json(v.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.spec.to_json(), v["spec"]);
    }

    #[test]
    fn round_trips_every_field() {
        assert_spec_round_trip(mesh_timeout(json!({
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {
                "connectionTimeout": "2s", "idleTimeout": "20s",
                "http": {"requestTimeout": "3s", "streamIdleTimeout": "4s", "maxStreamDuration": "5s", "maxConnectionDuration": "6s"}
            }}],
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "1s"}}}]
        })));
    }

    #[test]
    fn a_bad_duration_names_kumas_field_path_and_the_value() {
        assert_violation(
            to_mesh(json!({"http": {"requestTimeout": "soon"}})),
            "spec.to[0].default.http.requestTimeout",
            "\"soon\"",
        );
        assert_violation(
            to_mesh(json!({"http": {"requestTimeout": "-1s"}})),
            "spec.to[0].default.http.requestTimeout",
            "\"-1s\"",
        );
        assert_violation(
            to_mesh(json!({"http": {"requestTimout": "1s"}})),
            "spec.to[0].default.http.requestTimout",
            "unknown field `requestTimout`",
        );
    }

    #[test]
    fn kumas_rules_and_messages() {
        assert_violation(
            mesh_timeout(json!({"targetRef": {"kind": "Mesh"}})),
            "spec",
            "at least one of 'from', 'to' has to be defined",
        );
        assert_violation(to_mesh(json!({})), "spec.to[0].default", "at least one timeout should be configured");
        assert_violation(
            to_mesh(json!({"http": {}})),
            "spec.to[0].default.http",
            "at least one timeout in this section should be configured",
        );
        assert_violation(
            to_mesh(json!({"connectionTimeout": "0s"})),
            "spec.to[0].default.connectionTimeout",
            "must be greater than zero when defined",
        );
        // Zero is allowed everywhere else (it disables the timeout).
        from_json(to_mesh(json!({"idleTimeout": "0s", "http": {"requestTimeout": "0s"}}))).unwrap();
        assert_violation(
            mesh_timeout(
                json!({"to": [{"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}}, "default": {"idleTimeout": "1s"}}]}),
            ),
            "spec.to[0].targetRef.kind",
            "value is not supported",
        );
        assert_violation(
            mesh_timeout(
                json!({"from": [{"targetRef": {"kind": "MeshService", "name": "a"}, "default": {"idleTimeout": "1s"}}]}),
            ),
            "spec.from[0].targetRef.kind",
            "value is not supported",
        );
    }

    #[test]
    fn under_a_meshhttproute_only_route_timeouts_and_no_from() {
        let on_route = |to: Value, from: Option<Value>| {
            let mut spec = json!({"targetRef": {"kind": "MeshHTTPRoute", "name": "r"}, "to": to});
            if let Some(f) = from {
                spec["from"] = f;
            }
            mesh_timeout(spec)
        };
        let mesh_to = |d: Value| json!([{"targetRef": {"kind": "Mesh"}, "default": d}]);
        from_json(on_route(mesh_to(json!({"http": {"requestTimeout": "1s", "streamIdleTimeout": "2s"}})), None))
            .unwrap();
        for (field, default) in [
            ("connectionTimeout", json!({"connectionTimeout": "1s"})),
            ("idleTimeout", json!({"idleTimeout": "1s"})),
            ("http.maxStreamDuration", json!({"http": {"maxStreamDuration": "1s"}})),
            ("http.maxConnectionDuration", json!({"http": {"maxConnectionDuration": "1s"}})),
        ] {
            assert_violation(on_route(mesh_to(default), None), &format!("spec.to[0].default.{field}"), ROUTE_ONLY);
        }
        assert_violation(
            on_route(
                json!([{"targetRef": {"kind": "MeshService", "name": "b"}, "default": {"http": {"requestTimeout": "1s"}}}]),
                None,
            ),
            "spec.to[0].targetRef.kind",
            "value is not supported",
        );
        assert_violation(
            on_route(mesh_to(json!({"http": {"requestTimeout": "1s"}})), Some(mesh_to(json!({"idleTimeout": "1s"})))),
            "spec.from",
            "must not be defined",
        );
    }

    #[test]
    fn go_durations_are_accepted() {
        let env = from_json(to_mesh(json!({"idleTimeout": "1h30m", "http": {"requestTimeout": "500ms"}}))).unwrap();
        assert_eq!(
            env.spec.to_json()["to"][0]["default"],
            json!({"idleTimeout": "5400s", "http": {"requestTimeout": "0.500s"}})
        );
    }
}
