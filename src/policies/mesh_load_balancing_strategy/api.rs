//! Kuma's MeshLoadBalancingStrategy (`pkg/plugins/policies/meshloadbalancingstrategy/api`,
//! reference §4.5): the load balancer of the clusters of the services its `to` entries name,
//! with the hash policies ring hash and maglev hash requests by.

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshLoadBalancingStrategySpec(pub ToFromPolicy<Conf>);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_awareness: Option<LocalityAwareness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityAwareness {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbType {
    RoundRobin,
    LeastRequest,
    RingHash,
    Random,
    Maglev,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerConf {
    #[serde(rename = "type")]
    pub type_: LbType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_request: Option<LeastRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeastRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_count: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashFunction {
    #[serde(rename = "XXHash")]
    XxHash,
    MurmurHash2,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_function: Option<HashFunction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ring_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ring_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Maglev {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashPolicyType {
    Header,
    Cookie,
    Connection,
    QueryParameter,
    FilterState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashPolicy {
    #[serde(rename = "type")]
    pub type_: HashPolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<Cookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_state: Option<FilterState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Named {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cookie {
    #[serde(default)]
    pub name: String,
    /// A Go duration (`1h30m`); Envoy generates the cookie when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    #[serde(rename = "sourceIP", default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterState {
    #[serde(default)]
    pub key: String,
}

const ALLOWED: Allowed = Allowed {
    top: &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset],
    to: &[TargetKind::Mesh, TargetKind::MeshService],
    from: &[],
    require_entries: true,
};

/// Envoy's bounds: a ring of at most 8M entries (`maximum_ring_size`'s limit) ...
pub const MAX_RING_SIZE: u64 = 8_000_000;
/// ... and a prime maglev table of at most 5,000,011 entries.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

impl SpecType for MeshLoadBalancingStrategySpec {
    const TARGET_REF_KINDS: Option<Allowed> = Some(ALLOWED);

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        self.0.validate_refs(&mut errors, ALLOWED);
        for (at, conf) in self.0.defaults() {
            validate_conf(&mut errors, &at, conf);
        }
        errors.into_result()
    }
}

fn validate_conf(errors: &mut ValidationError, at: &str, conf: &Conf) {
    let Some(lb) = &conf.load_balancer else { return };
    let at = format!("{at}.loadBalancer");
    if let Some(lr) = &lb.least_request {
        if let Some(c) = lr.choice_count.filter(|c| *c < 2) {
            errors
                .add(format!("{at}.leastRequest.choiceCount"), format!("must be greater than or equal to 2, got {c}"));
        }
    }
    if let Some(rh) = &lb.ring_hash {
        let at = format!("{at}.ringHash");
        for (field, v) in [("minRingSize", rh.min_ring_size), ("maxRingSize", rh.max_ring_size)] {
            if let Some(v) = v.filter(|v| !(1..=MAX_RING_SIZE).contains(v)) {
                errors
                    .add(format!("{at}.{field}"), format!("must be in inclusive range [1, {MAX_RING_SIZE}], got {v}"));
            }
        }
        if let (Some(min), Some(max)) = (rh.min_ring_size, rh.max_ring_size) {
            if min > max {
                errors.add(format!("{at}.minRingSize"), format!("must not exceed maxRingSize ({max}), got {min}"));
            }
        }
        validate_hash_policies(errors, &format!("{at}.hashPolicies"), rh.hash_policies.as_deref().unwrap_or(&[]));
    }
    if let Some(m) = &lb.maglev {
        let at = format!("{at}.maglev");
        if let Some(size) = m.table_size {
            if !(1..=MAX_MAGLEV_TABLE_SIZE).contains(&size) || !is_prime(size) {
                errors.add(
                    format!("{at}.tableSize"),
                    format!("must be a prime number in inclusive range [1, {MAX_MAGLEV_TABLE_SIZE}], got {size}"),
                );
            }
        }
        validate_hash_policies(errors, &format!("{at}.hashPolicies"), m.hash_policies.as_deref().unwrap_or(&[]));
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn validate_hash_policies(errors: &mut ValidationError, at: &str, policies: &[HashPolicy]) {
    for (i, p) in policies.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let required = |errors: &mut ValidationError, field: &str, set: bool| {
            if !set {
                errors.add(format!("{at}.{field}"), "must be defined");
            }
        };
        match p.type_ {
            HashPolicyType::Header => {
                required(errors, "header", p.header.is_some());
                if p.header.as_ref().is_some_and(|h| h.name.is_empty()) {
                    errors.add(format!("{at}.header.name"), "must not be empty");
                }
            }
            HashPolicyType::Cookie => {
                required(errors, "cookie", p.cookie.is_some());
                if let Some(c) = &p.cookie {
                    if c.name.is_empty() {
                        errors.add(format!("{at}.cookie.name"), "must not be empty");
                    }
                    if c.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                        errors.add(format!("{at}.cookie.path"), "must be an absolute path");
                    }
                    if let Some(ttl) = &c.ttl {
                        if let Err(e) = ProtoDuration::parse(ttl) {
                            errors.add(format!("{at}.cookie.ttl"), e);
                        }
                    }
                }
            }
            HashPolicyType::Connection => required(errors, "connection", p.connection.is_some()),
            HashPolicyType::QueryParameter => {
                required(errors, "queryParameter", p.query_parameter.is_some());
                if p.query_parameter.as_ref().is_some_and(|q| q.name.is_empty()) {
                    errors.add(format!("{at}.queryParameter.name"), "must not be empty");
                }
            }
            HashPolicyType::FilterState => {
                required(errors, "filterState", p.filter_state.is_some());
                if p.filter_state.as_ref().is_some_and(|f| f.key.is_empty()) {
                    errors.add(format!("{at}.filterState.key"), "must not be empty");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::*;
    use crate::policies::routing::golden::assert_spec_round_trip;
    use serde_json::{json, Value};

    fn mlbs(default: Value) -> Value {
        policy(
            "MeshLoadBalancingStrategy",
            json!({"spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": default}]}}),
        )
    }

    #[test]
    fn round_trips_every_load_balancer() {
        assert_spec_round_trip(mlbs(json!({
            "localityAwareness": {"disabled": true},
            "loadBalancer": {"type": "RingHash", "ringHash": {
                "hashFunction": "MurmurHash2", "minRingSize": 64, "maxRingSize": 1024,
                "hashPolicies": [
                    {"type": "Header", "terminal": true, "header": {"name": "x-user"}},
                    {"type": "Cookie", "cookie": {"name": "session", "ttl": "1h", "path": "/"}},
                    {"type": "Connection", "connection": {"sourceIP": true}},
                    {"type": "QueryParameter", "queryParameter": {"name": "u"}},
                    {"type": "FilterState", "filterState": {"key": "k"}}
                ]
            }}
        })));
        assert_spec_round_trip(mlbs(
            json!({"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 3}}}),
        ));
        assert_spec_round_trip(mlbs(json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 65537}}})));
        assert_spec_round_trip(mlbs(json!({"loadBalancer": {"type": "Random"}})));
    }

    #[test]
    fn bad_values_name_their_field() {
        let at = "spec.to[0].default.loadBalancer";
        assert_violation(
            mlbs(json!({"loadBalancer": {"type": "Fastest"}})),
            &format!("{at}.type"),
            "unknown variant `Fastest`",
        );
        assert_violation(
            mlbs(json!({"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 1}}})),
            &format!("{at}.leastRequest.choiceCount"),
            "greater than or equal to 2, got 1",
        );
        assert_violation(
            mlbs(json!({"loadBalancer": {"type": "RingHash", "ringHash": {"minRingSize": 100, "maxRingSize": 10}}})),
            &format!("{at}.ringHash.minRingSize"),
            "must not exceed maxRingSize (10)",
        );
        assert_violation(
            mlbs(json!({"loadBalancer": {"type": "RingHash", "ringHash": {"maxRingSize": 9000000}}})),
            &format!("{at}.ringHash.maxRingSize"),
            "got 9000000",
        );
        assert_violation(
            mlbs(json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 65536}}})),
            &format!("{at}.maglev.tableSize"),
            "prime",
        );
        assert_violation(
            mlbs(json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": [{"type": "Header"}]}}})),
            &format!("{at}.ringHash.hashPolicies[0].header"),
            "must be defined",
        );
        assert_violation(
            mlbs(
                json!({"loadBalancer": {"type": "Maglev", "maglev": {"hashPolicies": [{"type": "Cookie", "cookie": {"name": "s", "path": "x"}}]}}}),
            ),
            &format!("{at}.maglev.hashPolicies[0].cookie.path"),
            "absolute path",
        );
        assert_violation(
            mlbs(
                json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": [{"type": "Cookie", "cookie": {"name": "s", "ttl": "soon"}}]}}}),
            ),
            &format!("{at}.ringHash.hashPolicies[0].cookie.ttl"),
            "soon",
        );
    }

    #[test]
    fn target_refs_follow_kumas_table() {
        assert_violation(
            policy("MeshLoadBalancingStrategy", json!({"spec": {"targetRef": {"kind": "Mesh"}}})),
            "spec.to",
            "needs at least one item",
        );
        assert_violation(
            policy(
                "MeshLoadBalancingStrategy",
                json!({"spec": {"to": [{"targetRef": {"kind": "MeshServiceSubset", "name": "b", "tags": {"v": "1"}}, "default": {}}]}}),
            ),
            "spec.to[0].targetRef.kind",
            "not supported",
        );
        assert_violation(
            policy(
                "MeshLoadBalancingStrategy",
                json!({"spec": {"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {}}], "to": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}}),
            ),
            "spec.from",
            "must not be defined",
        );
    }
}
