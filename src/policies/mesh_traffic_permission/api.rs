//! Kuma's MeshTrafficPermission (`pkg/plugins/policies/meshtrafficpermission/api/v1alpha1`):
//! `spec.targetRef` selects the inbounds, `spec.from[]` names client subsets and the
//! `default.action` for them (reference §4.1, §4.5).

use serde::{Deserialize, Serialize};

use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};

const SELECTING: &[TargetKind] =
    &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset];

/// Kuma's validator: the four selecting kinds at the top and in `from`, no `to`, at least
/// one `from` entry.
pub const ALLOWED: Allowed = Allowed { top: SELECTING, to: &[], from: SELECTING, require_entries: true };

/// What happens to the clients of a `from` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    /// Allowed, with the denial logged by Envoy's shadow rules.
    AllowWithShadowDeny,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    /// Required; `None` only so that its absence is reported as Kuma does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshTrafficPermissionSpec(pub ToFromPolicy<Conf>);

impl SpecType for MeshTrafficPermissionSpec {
    const TARGET_REF_KINDS: Option<Allowed> = Some(ALLOWED);

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        self.0.validate_refs(&mut errors, ALLOWED);
        for (path, conf) in self.0.defaults() {
            if conf.action.is_none() {
                errors.add(format!("{path}.action"), "must be defined");
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use crate::policies::core::testing::assert_violation;
    use serde_json::{json, Value};

    fn mtp(spec: Value) -> Value {
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "p", "spec": spec})
    }

    #[test]
    fn kumas_docs_example_round_trips() {
        let doc = parse_document(
            "type: MeshTrafficPermission\nname: allow-orders\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: payments\n  from:\n    - targetRef:\n        kind: MeshSubset\n        tags:\n          kuma.io/service: orders\n      default:\n        action: Allow\n    - targetRef:\n        kind: Mesh\n      default:\n        action: Deny\n",
        )
        .unwrap();
        let env = from_json(doc.clone()).unwrap();
        assert_eq!(env.spec.to_json(), doc["spec"]);
        let spec = env.spec.get::<MeshTrafficPermissionSpec>().unwrap();
        assert_eq!(spec.0.from[0].default.action, Some(Action::Allow));
        assert_eq!(spec.0.from[1].default.action, Some(Action::Deny));
    }

    #[test]
    fn every_action_is_accepted() {
        for action in ["Allow", "Deny", "AllowWithShadowDeny"] {
            let spec = json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": action}}]});
            from_json(mtp(spec)).unwrap_or_else(|e| panic!("{action}: {e}"));
        }
    }

    #[test]
    fn a_bad_action_names_the_field_and_the_value() {
        let spec = json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Maybe"}}]});
        assert_violation(mtp(spec), "spec.from[0].default.action", "Maybe");
        let spec = json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {}}]});
        assert_violation(mtp(spec), "spec.from[0].default.action", "must be defined");
    }

    #[test]
    fn kinds_and_sides_follow_kumas_validator() {
        assert_violation(mtp(json!({"targetRef": {"kind": "Mesh"}})), "spec.from", "at least one item");
        let to = json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
                        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]});
        assert_violation(mtp(to), "spec.to", "must not be defined");
        let gateway = json!({"targetRef": {"kind": "MeshGateway", "name": "gw"},
                             "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]});
        assert_violation(mtp(gateway), "spec.targetRef.kind", "not supported");
        let route =
            json!({"from": [{"targetRef": {"kind": "MeshHTTPRoute", "name": "r"}, "default": {"action": "Allow"}}]});
        assert_violation(mtp(route), "spec.from[0].targetRef.kind", "not supported");
        let service = json!({"from": [{"targetRef": {"kind": "MeshService"}, "default": {"action": "Allow"}}]});
        assert_violation(mtp(service), "spec.from[0].targetRef.name", "must be set");
        let unknown = json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow", "log": true}}]});
        assert_violation(mtp(unknown), "spec.from[0].default.log", "unknown field");
    }
}
