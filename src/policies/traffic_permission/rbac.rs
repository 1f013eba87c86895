//! The resolved permissions of one inbound and the network RBAC filter they become
//! (reference §2.3, §4.5): what TrafficPermission and MeshTrafficPermission decided, as plain
//! data, and the `envoy.filters.network.rbac` filter put first on the inbound's chain.
//!
//! Both generations write [`InboundRbac`] (TrafficPermission first, MeshTrafficPermission
//! replacing it on the inbounds it selects); only the TrafficPermission plugin's configure
//! hook writes the filter, so it is there once whoever decided it.
//!
//! Identities are the URI SANs of the client's workload certificate: `spiffe://<mesh>/<service>`
//! for `kuma.io/service`, `kuma://<tag>/<value>` for every other tag. Envoy's
//! `authenticated.principal_name` matches any of the certificate's URI SANs, so one principal
//! per tag and an `and_ids` of them select a client by several tags.

use protobuf::EnumOrUnknown;

use crate::envoy::listener_components::Filter;
use crate::envoy::network_rbac::RBAC as NetworkRbac;
use crate::envoy::rbac::{permission, principal, rbac, Permission, Policy, Principal as EnvoyPrincipal, RBAC};
use crate::envoy::string::StringMatcher;
use crate::envoy::to_any;
use crate::model::selector::SERVICE_TAG;

/// The network filter's name, which Kuma also uses to find (and MeshTrafficPermission to
/// replace) it.
pub const NETWORK_FILTER: &str = "envoy.filters.network.rbac";

/// A set of clients, by the identities their certificate carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Every client (also one without a certificate, as on PERMISSIVE's plaintext chain).
    Any,
    /// A certificate with this URI SAN.
    Exact(String),
    /// A certificate with a URI SAN starting with this.
    Prefix(String),
    Not(Box<Principal>),
    /// Clients every one of these selects.
    And(Vec<Principal>),
    /// Clients one of these selects.
    Or(Vec<Principal>),
}

impl Principal {
    /// The identity of the clients of `service` in `mesh`.
    pub fn service(mesh: &str, service: &str) -> Principal {
        Principal::Exact(format!("spiffe://{mesh}/{service}"))
    }

    /// The identity of the clients tagged `key: value` (`kuma.io/service` is a SPIFFE id).
    pub fn tag(mesh: &str, key: &str, value: &str) -> Principal {
        if key == SERVICE_TAG {
            return Principal::service(mesh, value);
        }
        Principal::Exact(format!("kuma://{key}/{value}"))
    }

    /// Kuma's shape for a conjunction: nothing is `any`, one is itself, more an `and_ids`.
    pub fn all_of(mut ids: Vec<Principal>) -> Principal {
        match ids.len() {
            0 => Principal::Any,
            1 => ids.remove(0),
            _ => Principal::And(ids),
        }
    }

    /// A disjunction, `None` when empty (no client).
    pub fn any_of(mut ids: Vec<Principal>) -> Option<Principal> {
        match ids.len() {
            0 => None,
            1 => Some(ids.remove(0)),
            _ => Some(Principal::Or(ids)),
        }
    }

    fn envoy(&self) -> EnvoyPrincipal {
        let set = |ids: &[Principal]| principal::Set {
            ids: ids.iter().map(Principal::envoy).collect(),
            ..Default::default()
        };
        let authenticated = |m: StringMatcher| {
            let mut a = principal::Authenticated::new();
            a.principal_name = Some(m).into();
            a
        };
        let mut p = EnvoyPrincipal::new();
        match self {
            Principal::Any => p.set_any(true),
            Principal::Exact(v) => {
                let mut m = StringMatcher::new();
                m.set_exact(v.clone());
                p.set_authenticated(authenticated(m));
            }
            Principal::Prefix(v) => {
                let mut m = StringMatcher::new();
                m.set_prefix(v.clone());
                p.set_authenticated(authenticated(m));
            }
            Principal::Not(inner) => p.set_not_id(inner.envoy()),
            Principal::And(ids) => p.set_and_ids(set(ids)),
            Principal::Or(ids) => p.set_or_ids(set(ids)),
        }
        p
    }
}

/// One RBAC policy: every permission (`any: true`, as Kuma) for these principals.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RbacPolicy {
    /// The policy's key in Envoy's `policies` map (the TrafficPermission's name, or
    /// `MeshTrafficPermission`). One entry per map keeps the encoding deterministic.
    pub name: String,
    /// OR-ed; never empty.
    pub principals: Vec<Principal>,
}

/// The RBAC filter of one inbound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InboundRbac {
    /// `<listener name with [^a-zA-Z_\-0-9] as _>.`: Kuma's prefix, with the dot so the stats
    /// read `inbound_10_0_0_1_80.rbac.allowed`.
    pub stat_prefix: String,
    /// The clients allowed; `None` is Kuma's `rules: {}` (an ALLOW engine with no policy),
    /// which denies every connection.
    pub allow: Option<RbacPolicy>,
    /// Shadow rules (DENY, not enforced, only counted and logged): the clients allowed with
    /// a shadow deny.
    pub shadow_deny: Option<RbacPolicy>,
}

/// Kuma's `SanitizeMetric` of an inbound listener's name, plus the dot.
pub fn stat_prefix(listener_name: &str) -> String {
    let mut out: String = listener_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    out.push('.');
    out
}

fn rules(action: rbac::Action, policy: Option<&RbacPolicy>) -> RBAC {
    let mut r = RBAC::new();
    r.action = EnumOrUnknown::new(action);
    if let Some(p) = policy {
        let mut any = Permission::new();
        any.rule = Some(permission::Rule::Any(true));
        let mut envoy = Policy::new();
        envoy.permissions.push(any);
        envoy.principals = p.principals.iter().map(Principal::envoy).collect();
        r.policies.insert(p.name.clone(), envoy);
    }
    r
}

/// The `envoy.filters.network.rbac` filter for `rbac`.
pub fn network_filter(rbac: &InboundRbac) -> Filter {
    let mut n = NetworkRbac::new();
    n.stat_prefix = rbac.stat_prefix.clone();
    n.rules = Some(rules(rbac::Action::ALLOW, rbac.allow.as_ref())).into();
    if let Some(shadow) = &rbac.shadow_deny {
        n.shadow_rules = Some(rules(rbac::Action::DENY, Some(shadow))).into();
    }
    let mut f = Filter::new();
    f.name = NETWORK_FILTER.to_string();
    f.set_typed_config(to_any(&n));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::from_any;
    use crate::envoy::listener_components::filter::Config_type;

    #[test]
    fn stat_prefix_is_kumas_sanitized_listener_name() {
        assert_eq!(stat_prefix("inbound:192.168.0.1:80"), "inbound_192_168_0_1_80.");
        assert_eq!(stat_prefix("inbound:[fd00::1]:80"), "inbound__fd00__1__80.");
    }

    #[test]
    fn tags_become_spiffe_and_kuma_identities() {
        assert_eq!(Principal::tag("m", "kuma.io/service", "web"), Principal::Exact("spiffe://m/web".into()));
        assert_eq!(Principal::tag("m", "version", "1.0"), Principal::Exact("kuma://version/1.0".into()));
        assert_eq!(Principal::all_of(vec![]), Principal::Any);
        assert_eq!(Principal::any_of(vec![]), None);
    }

    fn decoded(f: &Filter) -> NetworkRbac {
        let Some(Config_type::TypedConfig(any)) = &f.config_type else { panic!("no typed config") };
        from_any::<NetworkRbac>(any).unwrap().unwrap()
    }

    #[test]
    fn no_allow_policy_is_an_empty_allow_engine_and_shadow_rules_only_when_asked() {
        let f = network_filter(&InboundRbac { stat_prefix: "x.".into(), allow: None, shadow_deny: None });
        assert_eq!(f.name, NETWORK_FILTER);
        let n = decoded(&f);
        assert!(n.rules.is_some(), "rules present and empty: Envoy denies all");
        assert!(n.rules.policies.is_empty());
        assert!(n.shadow_rules.is_none());

        let p = RbacPolicy { name: "p".into(), principals: vec![Principal::Not(Box::new(Principal::Any))] };
        let n = decoded(&network_filter(&InboundRbac {
            stat_prefix: "x.".into(),
            allow: Some(p.clone()),
            shadow_deny: Some(p),
        }));
        assert_eq!(n.shadow_rules.action.enum_value(), Ok(rbac::Action::DENY));
        let policy = &n.rules.policies["p"];
        assert!(matches!(policy.permissions[0].rule, Some(permission::Rule::Any(true))));
        assert!(policy.principals[0].has_not_id());
    }
}
