//! Kuma's old-style TrafficLog (`traffic_log.proto`): access logs on the outbounds of the
//! sources it selects towards the destinations it names, written to one of the Mesh's
//! `logging` backends (its default when `conf.backend` is empty).
//!
//! Validation follows Kuma's `traffic_log_validator.go`: sources need `kuma.io/service`,
//! destinations name only `kuma.io/service`; an empty or unknown backend is not an error
//! (Kuma logs nothing for an unknown one).

use serde::{Deserialize, Serialize};

use crate::model::selector::Selector;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};
use crate::policies::core::validate::validate_outbound_policy_selectors;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficLogSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficLogConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficLogConf {
    /// A backend of the Mesh's `logging`; empty: its `defaultBackend`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backend: String,
}

impl TrafficLogSpec {
    pub fn backend(&self) -> &str {
        self.conf.as_ref().map(|c| c.backend.as_str()).unwrap_or("")
    }
}

impl SpecType for TrafficLogSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate_outbound_policy_selectors(&self.sources, &self.destinations).into_result()
    }
}

impl OldStylePolicy for TrafficLogSpec {
    fn attachment(&self) -> Attachment {
        Attachment::Service
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
    use crate::policies::core::testing::*;
    use serde_json::json;

    #[test]
    fn round_trips_with_and_without_a_backend() {
        assert_round_trip(policy(
            "TrafficLog",
            json!({"sources": svc("web"), "destinations": svc("*"), "conf": {"backend": "file"}}),
        ));
        assert_round_trip(policy("TrafficLog", json!({"sources": svc("web"), "destinations": svc("backend")})));
    }

    #[test]
    fn selectors() {
        assert_violation(
            policy("TrafficLog", json!({"sources": [{"match": {"version": "1"}}], "destinations": svc("b")})),
            "sources[0].match",
            "mandatory tag \"kuma.io/service\" is missing",
        );
        assert_violation(
            policy(
                "TrafficLog",
                json!({"sources": svc("a"), "destinations": [{"match": {"kuma.io/service": "b", "v": "1"}}]}),
            ),
            "destinations[0].match[\"v\"]",
            "not allowed",
        );
        assert_violation(
            policy("TrafficLog", json!({"sources": svc("a"), "destinations": svc("b"), "conf": {"backend": 1}})),
            "conf.backend",
            "",
        );
    }
}
