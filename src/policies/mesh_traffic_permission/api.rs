//! Kuma's MeshTrafficPermission (`pkg/plugins/policies/meshtrafficpermission/api/v1alpha1`):
//! `spec.targetRef` selects the inbounds, and either `spec.from[]` names client subsets and the
//! `default.action` for them (reference §4.1, §4.5), or `spec.rules[]` (Kuma 2.12+, the form
//! that replaces `from` in 3.0) lists `deny`, `allow` and `allowWithShadowDeny` matchers on the
//! client's SPIFFE id. One policy uses one form; policies of both forms on one inbound combine
//! (see the plugin).

use serde::{Deserialize, Serialize};

use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, Entry, ToFromPolicy};
use crate::policies::core::targetref::{Item, TargetKind, TargetRef, TargetRefPolicy};

const SELECTING: &[TargetKind] =
    &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset];

/// Kuma's validator: the four selecting kinds at the top and in `from`, no `to`. Entries are
/// required as `from` or `rules`, which [`MeshTrafficPermissionSpec::validate`] checks itself.
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

/// How a matcher compares the client's SPIFFE id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpiffeIdMatchType {
    Exact,
    Prefix,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpiffeIdMatch {
    /// Required; `None` only to report its absence by name.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<SpiffeIdMatchType>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Kuma's `common_api.Match`. Its `sni` matcher applies to zone proxies only, which higuma
/// does not run, so it is refused as an unknown field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(rename = "spiffeID", default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<SpiffeIdMatch>,
}

/// One `rules[].default`: the matchers of each outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConf {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Match>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_with_shadow_deny: Vec<Match>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Match>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub default: RuleConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTrafficPermissionSpec {
    /// Absent means the whole mesh (Kuma 2.6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Never valid; parsed so that its presence is reported as Kuma does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Entry<Conf>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Entry<Conf>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

impl MeshTrafficPermissionSpec {
    /// The `targetRef` / `to` / `from` part, as every targetRef policy has it.
    fn to_from(&self) -> ToFromPolicy<Conf> {
        ToFromPolicy { target_ref: self.target_ref.clone(), to: self.to.clone(), from: self.from.clone() }
    }
}

impl SpecType for MeshTrafficPermissionSpec {
    const TARGET_REF_KINDS: Option<Allowed> = Some(ALLOWED);

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        let to_from = self.to_from();
        to_from.validate_refs(&mut errors, Allowed { require_entries: false, ..ALLOWED });
        // Kuma's messages since `rules` exists (2.12).
        match (self.from.is_empty(), self.rules.is_empty()) {
            (false, false) => errors.add("spec", "field 'from' must be empty when 'rules' is defined"),
            (true, true) => errors.add("spec", "at least one of 'from' or 'rules' has to be defined"),
            _ => {}
        }
        for (path, conf) in to_from.defaults() {
            if conf.action.is_none() {
                errors.add(format!("{path}.action"), "must be defined");
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            validate_rule(&mut errors, &format!("spec.rules[{i}].default"), &rule.default);
        }
        errors.into_result()
    }
}

/// Kuma reports these under `spec.rules[i].allow[j]` (its path leaves out `default`); higuma
/// names the field where it is, `spec.rules[i].default.allow[j]`.
fn validate_rule(errors: &mut ValidationError, path: &str, conf: &RuleConf) {
    if conf.deny.is_empty() && conf.allow.is_empty() && conf.allow_with_shadow_deny.is_empty() {
        errors.add(path, "at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined");
    }
    for (field, matches) in
        [("deny", &conf.deny), ("allowWithShadowDeny", &conf.allow_with_shadow_deny), ("allow", &conf.allow)]
    {
        for (j, m) in matches.iter().enumerate() {
            let at = format!("{path}.{field}[{j}]");
            // Kuma 3.0 refuses an empty matcher (2.x read it as matching every client, which a
            // `deny: [{}]` typo would turn into denying all).
            let Some(id) = &m.spiffe_id else {
                errors.add(at, "must define spiffeID");
                continue;
            };
            if id.type_.is_none() {
                errors.add(format!("{at}.spiffeID.type"), "must be defined (Exact or Prefix)");
            }
            let prefix = id.type_ == Some(SpiffeIdMatchType::Prefix);
            if let Err(reason) = check_spiffe_id(&id.value, prefix) {
                errors.add(
                    format!("{at}.spiffeID.value"),
                    format!("must be a valid Spiffe ID: {reason}: {:?}", id.value),
                );
            }
        }
    }
}

/// The SPIFFE id grammar (go-spiffe's `spiffeid.FromString`, which Kuma uses): `spiffe://`, a
/// trust domain of lower-case letters, digits, `.`, `-`, `_`, then `/`-separated segments of
/// letters, digits, `.`, `-`, `_` (none empty, none `.` or `..`). A `Prefix` may end with `/`
/// (`spiffe://default/` for "the whole trust domain", as Kuma's examples write it).
fn check_spiffe_id(id: &str, prefix: bool) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("cannot be empty");
    }
    let Some(rest) = id.strip_prefix("spiffe://") else { return Err("scheme is missing or invalid") };
    let (domain, path) = rest.split_once('/').map_or((rest, None), |(d, p)| (d, Some(p)));
    if domain.is_empty() {
        return Err("trust domain is missing");
    }
    if !domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        return Err("trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores");
    }
    let Some(path) = path else { return Ok(()) };
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "" if i == last => return if prefix { Ok(()) } else { Err("path cannot have a trailing slash") },
            "" => return Err("path cannot contain empty segments"),
            "." | ".." => return Err("path cannot contain dot segments"),
            s if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) => {
                return Err("path segment characters are limited to letters, numbers, dots, dashes, and underscores")
            }
            _ => {}
        }
    }
    Ok(())
}

impl TargetRefPolicy for MeshTrafficPermissionSpec {
    fn top(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn inbound_items(&self) -> Vec<Item<'_>> {
        self.from
            .iter()
            .map(|e| Item {
                target_ref: &e.target_ref,
                // Plain data with string keys always serializes.
                default: serde_json::to_value(&e.default).unwrap_or_default(),
            })
            .collect()
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
        assert_eq!(spec.from[0].default.action, Some(Action::Allow));
        assert_eq!(spec.from[1].default.action, Some(Action::Deny));
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
        // Kuma 2.12+'s message, since `rules` can stand in for `from`.
        assert_violation(mtp(json!({"targetRef": {"kind": "Mesh"}})), "spec", "at least one of 'from' or 'rules'");
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

    #[test]
    fn the_rules_form_round_trips_with_kumas_field_names() {
        let doc = parse_document(
            "type: MeshTrafficPermission\nname: by-owner\nmesh: default\nspec:\n  targetRef:\n    kind: MeshService\n    name: backend\n  rules:\n    - default:\n        deny:\n          - spiffeID:\n              type: Exact\n              value: spiffe://default/legacy\n        allowWithShadowDeny:\n          - spiffeID:\n              type: Prefix\n              value: spiffe://default/batch\n        allow:\n          - spiffeID:\n              type: Prefix\n              value: spiffe://default/\n",
        )
        .unwrap();
        let env = from_json(doc.clone()).unwrap();
        assert_eq!(env.spec.to_json(), doc["spec"]);
        let spec = env.spec.get::<MeshTrafficPermissionSpec>().unwrap();
        let conf = &spec.rules[0].default;
        assert_eq!(conf.deny[0].spiffe_id.as_ref().unwrap().type_, Some(SpiffeIdMatchType::Exact));
        assert_eq!(conf.allow[0].spiffe_id.as_ref().unwrap().value, "spiffe://default/");
        assert!(spec.inbound_items().is_empty(), "rules are not `from` items");
    }

    fn rules(default: Value) -> Value {
        mtp(json!({"targetRef": {"kind": "Mesh"}, "rules": [{"default": default}]}))
    }

    fn exact(value: &str) -> Value {
        json!({"spiffeID": {"type": "Exact", "value": value}})
    }

    #[test]
    fn rules_are_validated_naming_the_field() {
        let both = json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
                          "rules": [{"default": {"allow": [exact("spiffe://default/web")]}}]});
        assert_violation(mtp(both), "spec", "field 'from' must be empty when 'rules' is defined");
        assert_violation(
            rules(json!({})),
            "spec.rules[0].default",
            "at least one of 'allow', 'allowWithShadowDeny', 'deny'",
        );
        assert_violation(rules(json!({"deny": [{}]})), "spec.rules[0].default.deny[0]", "must define spiffeID");
        assert_violation(
            rules(json!({"allow": [exact("spiffe://default/web"), {"spiffeID": {"value": "spiffe://default/x"}}]})),
            "spec.rules[0].default.allow[1].spiffeID.type",
            "must be defined",
        );
        assert_violation(
            rules(json!({"allow": [{"spiffeID": {"type": "Regex", "value": "spiffe://default/x"}}]})),
            "spec.rules[0].default.allow[0].spiffeID.type",
            "Regex",
        );
        for (bad, reason) in [
            ("", "cannot be empty"),
            ("http://default/web", "scheme"),
            ("spiffe:///web", "trust domain is missing"),
            ("spiffe://Default/web", "trust domain characters"),
            ("spiffe://default//web", "empty segments"),
            ("spiffe://default/a/../b", "dot segments"),
            ("spiffe://default/web/", "trailing slash"),
            ("spiffe://default/w eb", "path segment characters"),
        ] {
            let v = rules(json!({"allowWithShadowDeny": [exact(bad)]}));
            assert_violation(v.clone(), "spec.rules[0].default.allowWithShadowDeny[0].spiffeID.value", reason);
            assert_violation(v, "spec.rules[0].default.allowWithShadowDeny[0].spiffeID.value", &format!("{bad:?}"));
        }
        // A prefix may end in `/` (the whole trust domain, as Kuma's examples write it).
        let prefix = json!({"allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]});
        from_json(rules(prefix)).unwrap();
        assert_violation(
            rules(json!({"allow": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/x"}, "sni": {}}]})),
            "spec.rules[0].default.allow[0].sni",
            "unknown field",
        );
    }
}
