//! Kuma's old-style TrafficPermission (`traffic_permission.proto`): which sources may reach
//! which destinations. Enforced with mTLS (the identity issue); matched by the engine.
//!
//! Validation follows Kuma's `pkg/core/resources/apis/mesh/*_validator.go`.

use serde::{Deserialize, Serialize};

use crate::model::selector::{validate_selectors, Selector};
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPermissionSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
}

impl SpecType for TrafficPermissionSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_selectors("sources", &self.sources, false);
        errors.add_nested("", validate_selectors("destinations", &self.destinations, false));
        errors.into_result()
    }
}

impl OldStylePolicy for TrafficPermissionSpec {
    fn attachment(&self) -> Attachment {
        Attachment::InboundBest
    }
    fn sources(&self) -> &[Selector] {
        &self.sources
    }
    fn destinations(&self) -> &[Selector] {
        &self.destinations
    }
}

#[cfg(test)]
mod tests {
    #![allow(unused_imports)]
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    #[test]
    fn selectors_of_policies() {
        let env =
            from_json(policy("TrafficPermission", json!({"sources": svc("a"), "destinations": svc("b")}))).unwrap();
        let p = env.spec.old_style().unwrap();
        let (s, d) = (p.sources(), p.destinations());
        assert_eq!(s[0].service(), Some("a"));
        assert_eq!(d[0].service(), Some("b"));
        let mesh = from_json(json!({"type": "Mesh", "name": "m"})).unwrap();
        assert!(mesh.spec.old_style().is_none());
    }

    #[test]
    fn traffic_permission_docs_example() {
        let doc = parse_document(
            "type: TrafficPermission\nname: allow-all-traffic\nmesh: default\nsources:\n  - match:\n      kuma.io/service: '*'\ndestinations:\n  - match:\n      kuma.io/service: '*'\n",
        )
        .unwrap();
        assert_round_trip(doc);
    }

    #[test]
    fn traffic_permission_rules() {
        assert_violation(
            policy("TrafficPermission", json!({"destinations": svc("b")})),
            "sources",
            "at least one element",
        );
        assert_violation(
            policy("TrafficPermission", json!({"sources": svc("a")})),
            "destinations",
            "at least one element",
        );
        assert_violation(
            policy("TrafficPermission", json!({"sources": [{"match": {}}], "destinations": svc("b")})),
            "sources[0].match",
            "at least one tag",
        );
        assert_violation(
            policy(
                "TrafficPermission",
                json!({"sources": svc("a"), "destinations": [{"match": {"kuma.io/service": ""}}]}),
            ),
            "destinations[0].match[\"kuma.io/service\"]",
            "non-empty",
        );
        assert_violation(
            policy(
                "TrafficPermission",
                json!({"sources": [{"match": {"kuma.io/service": "a", "bad key": "x"}}], "destinations": svc("b")}),
            ),
            "sources[0].match[\"bad key\"]",
            "tag key",
        );
        // Kuma does not require kuma.io/service in TrafficPermission selectors.
        assert!(from_json(policy(
            "TrafficPermission",
            json!({"sources": [{"match": {"team": "x"}}], "destinations": svc("b")})
        ))
        .is_ok());
        assert_violation(
            policy(
                "TrafficPermission",
                json!({"sources": [{"match": {"kuma.io/service": "a"}, "selector": 1}], "destinations": svc("b")}),
            ),
            "sources[0].selector",
            "unknown field `selector`",
        );
        assert_violation(
            policy("TrafficPermission", json!({"sources": svc("a"), "destinations": svc("b"), "conf": {}})),
            "conf",
            "unknown field `conf`",
        );
    }
}
