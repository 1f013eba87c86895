//! Kuma's old-style Timeout (`timeout.proto`): connect, idle and request timeouts of the
//! outbounds of the sources it selects.
//!
//! Validation follows Kuma's `pkg/core/resources/apis/mesh/*_validator.go`.

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::selector::Selector;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};
use crate::policies::core::validate::*;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: TimeoutConf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TimeoutTcp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<TimeoutHttp>,
    /// Deprecated in Kuma in favour of `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<TimeoutGrpc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutTcp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutHttp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutGrpc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<ProtoDuration>,
}

impl SpecType for TimeoutSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let c = &self.conf;
        if *c == TimeoutConf::default() {
            errors.add("conf", "has to be defined");
        }
        positive_duration_when_set(&mut errors, "conf.connectTimeout", c.connect_timeout);
        if let Some(tcp) = &c.tcp {
            match tcp.idle_timeout {
                None => errors.add("conf.tcp", "at least one timeout in section has to be defined"),
                Some(d) if d.is_zero() => errors.add("conf.tcp.idleTimeout", "has to be greater than 0"),
                Some(_) => {}
            }
        }
        if let Some(http) = &c.http {
            if *http == TimeoutHttp::default() {
                errors.add("conf.http", "at least one timeout in section has to be defined");
            }
            positive_duration_when_set(&mut errors, "conf.http.requestTimeout", http.request_timeout);
            positive_duration_when_set(&mut errors, "conf.http.idleTimeout", http.idle_timeout);
        }
        if let Some(grpc) = &c.grpc {
            if *grpc == TimeoutGrpc::default() {
                errors.add("conf.grpc", "at least one timeout in section has to be defined");
            }
            positive_duration_when_set(&mut errors, "conf.grpc.streamIdleTimeout", grpc.stream_idle_timeout);
            positive_duration_when_set(&mut errors, "conf.grpc.maxStreamDuration", grpc.max_stream_duration);
        }
        errors.into_result()
    }
}

impl OldStylePolicy for TimeoutSpec {
    fn attachment(&self) -> Attachment {
        Attachment::Outbound
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
    fn outbound_policy_selectors() {
        let conf = json!({"connectTimeout": "1s"});
        assert_violation(
            policy("Timeout", json!({"sources": [{"match": {"zone": "a"}}], "destinations": svc("b"), "conf": conf})),
            "sources[0].match",
            "mandatory tag \"kuma.io/service\" is missing",
        );
        assert_violation(
            policy(
                "Timeout",
                json!({"sources": svc("a"), "destinations": [{"match": {"kuma.io/service": "b", "version": "1"}}], "conf": conf}),
            ),
            "destinations[0].match[\"version\"]",
            "not allowed",
        );
        assert_violation(
            policy(
                "Timeout",
                json!({"sources": svc("a"), "destinations": [{"match": {"version": "1"}}], "conf": conf}),
            ),
            "destinations[0].match",
            "kuma.io/service",
        );
        assert_violation(
            policy("Timeout", json!({"destinations": svc("b"), "conf": conf})),
            "sources",
            "at least one element",
        );
        assert_violation(
            policy("Timeout", json!({"sources": svc("b"), "conf": conf})),
            "destinations",
            "at least one element",
        );
    }

    #[test]
    fn timeout_round_trips_kumas_default() {
        assert_round_trip(with_conf(
            "Timeout",
            json!({
                "connectTimeout": "5s",
                "tcp": {"idleTimeout": "3600s"},
                "http": {"requestTimeout": "15s", "idleTimeout": "3600s", "streamIdleTimeout": "1800s", "maxStreamDuration": "0s"},
                "grpc": {"streamIdleTimeout": "300s", "maxStreamDuration": "0.500s"}
            }),
        ));
    }

    #[test]
    fn timeout_rules() {
        assert_violation(with_conf("Timeout", json!({})), "conf", "has to be defined");
        assert_violation(
            with_conf("Timeout", json!({"connectTimeout": "0s"})),
            "conf.connectTimeout",
            "greater than 0",
        );
        assert_violation(with_conf("Timeout", json!({"tcp": {}})), "conf.tcp", "at least one timeout");
        assert_violation(
            with_conf("Timeout", json!({"tcp": {"idleTimeout": "0s"}})),
            "conf.tcp.idleTimeout",
            "greater than 0",
        );
        assert_violation(with_conf("Timeout", json!({"http": {}})), "conf.http", "at least one timeout");
        assert_violation(
            with_conf("Timeout", json!({"http": {"requestTimeout": "0s"}})),
            "conf.http.requestTimeout",
            "greater than 0",
        );
        assert_violation(
            with_conf("Timeout", json!({"http": {"idleTimeout": "0s"}})),
            "conf.http.idleTimeout",
            "greater than 0",
        );
        assert_violation(with_conf("Timeout", json!({"grpc": {}})), "conf.grpc", "at least one timeout");
        assert_violation(
            with_conf("Timeout", json!({"grpc": {"streamIdleTimeout": "0s"}})),
            "conf.grpc.streamIdleTimeout",
            "greater than 0",
        );
    }

    #[test]
    fn bad_duration_in_a_policy_names_field_and_text() {
        assert_violation(with_conf("Timeout", json!({"connectTimeout": "soon"})), "conf.connectTimeout", "\"soon\"");
    }

    #[test]
    fn go_durations_are_canonicalized() {
        let env = from_json(with_conf("Timeout", json!({"connectTimeout": "500ms", "http": {"requestTimeout": "1m"}})))
            .unwrap();
        assert_eq!(env.spec.to_json()["conf"], json!({"connectTimeout": "0.500s", "http": {"requestTimeout": "60s"}}));
    }
}
