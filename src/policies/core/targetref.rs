//! targetRef (`api/common/v1alpha1/ref.go`): what a targetRef policy selects, its
//! validation (`pkg/plugins/policies/core/matchers/validators`), and which dataplanes a
//! policy's top-level targetRef selects (MADR 005, reference §4.1–4.2).

use crate::model::Tags;

use serde::{Deserialize, Serialize};

use super::rules::{Subset, Tag};
use crate::model::dataplane::DataplaneSpec;
use crate::model::selector::{validate_tags, SERVICE_TAG};
use crate::model::ValidationError;

/// The kinds a targetRef can name, in Kuma's specificity order (least specific first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TargetKind {
    Mesh,
    MeshSubset,
    MeshGateway,
    MeshService,
    MeshServiceSubset,
    #[serde(rename = "MeshHTTPRoute")]
    MeshHttpRoute,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Mesh => "Mesh",
            TargetKind::MeshSubset => "MeshSubset",
            TargetKind::MeshGateway => "MeshGateway",
            TargetKind::MeshService => "MeshService",
            TargetKind::MeshServiceSubset => "MeshServiceSubset",
            TargetKind::MeshHttpRoute => "MeshHTTPRoute",
        }
    }
}

/// Kuma 2.6+: which proxies a top-level targetRef applies to (absent: all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProxyType {
    Sidecar,
    Gateway,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// Required; `None` only so that a missing kind is reported as Kuma does ("must be set").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_types: Vec<ProxyType>,
}

impl TargetRef {
    pub fn mesh() -> TargetRef {
        TargetRef { kind: Some(TargetKind::Mesh), ..TargetRef::default() }
    }

    pub fn service(name: &str) -> TargetRef {
        TargetRef { kind: Some(TargetKind::MeshService), name: Some(name.to_string()), ..TargetRef::default() }
    }

    /// The kind, `Mesh` when absent (only reachable on unvalidated input).
    pub fn kind(&self) -> TargetKind {
        self.kind.unwrap_or(TargetKind::Mesh)
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The subset of clients or destinations this targetRef names, for rules: Mesh `{}`,
    /// MeshSubset its tags, MeshService `{kuma.io/service: name}`, MeshServiceSubset both.
    /// `None` for kinds that name no subset (MeshGateway, MeshHTTPRoute).
    pub fn subset(&self) -> Option<Subset> {
        let positive = |k: &str, v: &str| Tag { key: k.to_string(), value: v.to_string(), not: false };
        let mut tags: Vec<Tag> = match self.kind() {
            TargetKind::Mesh => Vec::new(),
            TargetKind::MeshSubset => Vec::new(),
            TargetKind::MeshService | TargetKind::MeshServiceSubset => vec![positive(SERVICE_TAG, self.name())],
            TargetKind::MeshGateway | TargetKind::MeshHttpRoute => return None,
        };
        if matches!(self.kind(), TargetKind::MeshSubset | TargetKind::MeshServiceSubset) {
            tags.extend(self.tags.iter().map(|(k, v)| positive(k, v)));
        }
        Some(Subset::new(tags))
    }

    /// Whether this (top-level) targetRef selects an inbound with `tags`. MeshGateway selects
    /// no sidecar; MeshHTTPRoute is resolved by the caller (it selects what its route does).
    pub fn selects_inbound(&self, tags: &Tags) -> bool {
        if !self.proxy_types.is_empty() && !self.proxy_types.contains(&ProxyType::Sidecar) {
            return false;
        }
        let tags_match = || self.tags.iter().all(|(k, v)| tags.get(k) == Some(v));
        let service_match = || tags.get(SERVICE_TAG).map(String::as_str) == Some(self.name());
        match self.kind() {
            TargetKind::Mesh => true,
            TargetKind::MeshSubset => tags_match(),
            TargetKind::MeshService => service_match(),
            TargetKind::MeshServiceSubset => service_match() && tags_match(),
            TargetKind::MeshGateway | TargetKind::MeshHttpRoute => false,
        }
    }

    /// Whether it selects at least one inbound of `dp`.
    pub fn selects(&self, dp: &DataplaneSpec) -> bool {
        dp.tags_of_inbounds().any(|t| self.selects_inbound(t))
    }

    /// Checks the targetRef at `path` (e.g. `spec.to[0].targetRef`) against the kinds the
    /// policy allows there, with Kuma's messages.
    pub fn validate(&self, errors: &mut ValidationError, path: &str, allowed: &[TargetKind]) {
        let Some(kind) = self.kind else {
            errors.add(format!("{path}.kind"), "must be set");
            return;
        };
        if !allowed.contains(&kind) {
            let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
            errors.add(
                format!("{path}.kind"),
                format!("value is not supported: {} (allowed: {})", kind.name(), names.join(", ")),
            );
            return;
        }
        let must_not = |errors: &mut ValidationError, field: &str, set: bool| {
            if set {
                errors.add(format!("{path}.{field}"), format!("cannot be set with kind {}", kind.name()));
            }
        };
        match kind {
            TargetKind::Mesh => {
                if self.name.is_some() {
                    errors.add(format!("{path}.name"), "using name with kind Mesh is not yet supported");
                }
                must_not(errors, "mesh", self.mesh.is_some());
                must_not(errors, "tags", !self.tags.is_empty());
            }
            TargetKind::MeshSubset => {
                must_not(errors, "name", self.name.is_some());
                must_not(errors, "mesh", self.mesh.is_some());
                errors.add_nested(&format!("{path}.tags"), validate_tags("", &self.tags));
            }
            TargetKind::MeshService | TargetKind::MeshServiceSubset => {
                if self.name().is_empty() {
                    errors.add(format!("{path}.name"), format!("must be set with kind {}", kind.name()));
                }
                must_not(errors, "mesh", self.mesh.is_some());
                if kind == TargetKind::MeshService {
                    must_not(errors, "tags", !self.tags.is_empty());
                } else {
                    errors.add_nested(&format!("{path}.tags"), validate_tags("", &self.tags));
                }
            }
            TargetKind::MeshGateway | TargetKind::MeshHttpRoute => {
                if self.name().is_empty() {
                    errors.add(format!("{path}.name"), format!("must be set with kind {}", kind.name()));
                }
            }
        }
        if !self.proxy_types.is_empty() && !path.ends_with("spec.targetRef") {
            errors.add(format!("{path}.proxyTypes"), "can only be set on the top-level targetRef");
        }
    }
}

/// One `to` or `from` entry as the rules computation sees it: its targetRef and its
/// `default` conf as JSON (merged as JSON merge patches, as Kuma does).
#[derive(Clone, Debug)]
pub struct Item<'a> {
    pub target_ref: &'a TargetRef,
    pub default: serde_json::Value,
}

/// What the engine needs of a targetRef policy spec.
pub trait TargetRefPolicy {
    /// The top-level targetRef; `None` means the whole mesh (Kuma 2.6+ makes it optional).
    fn top(&self) -> Option<&TargetRef>;
    /// The `to` entries (outbound side).
    fn outbound_items(&self) -> Vec<Item<'_>> {
        Vec::new()
    }
    /// The `from` entries (inbound side).
    fn inbound_items(&self) -> Vec<Item<'_>> {
        Vec::new()
    }
}

/// The top-level targetRef of `p`, Mesh when absent.
pub fn top_of(p: &dyn TargetRefPolicy) -> TargetRef {
    p.top().cloned().unwrap_or_else(TargetRef::mesh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn top_level_selection_by_kind() {
        let web = tags(&[(SERVICE_TAG, "web"), ("version", "v1")]);
        assert!(TargetRef::mesh().selects_inbound(&web));
        assert!(TargetRef::service("web").selects_inbound(&web));
        assert!(!TargetRef::service("backend").selects_inbound(&web));
        let subset =
            TargetRef { kind: Some(TargetKind::MeshSubset), tags: tags(&[("version", "v1")]), ..Default::default() };
        assert!(subset.selects_inbound(&web));
        let svc_subset = TargetRef {
            kind: Some(TargetKind::MeshServiceSubset),
            name: Some("web".into()),
            tags: tags(&[("version", "v2")]),
            ..Default::default()
        };
        assert!(!svc_subset.selects_inbound(&web));
        let gateways_only = TargetRef { proxy_types: vec![ProxyType::Gateway], ..TargetRef::mesh() };
        assert!(!gateways_only.selects_inbound(&web));
    }

    #[test]
    fn validation_names_the_field() {
        let mut errors = ValidationError::default();
        TargetRef::default().validate(&mut errors, "spec.targetRef", &[TargetKind::Mesh]);
        assert_eq!(errors.violations[0].field, "spec.targetRef.kind");
        assert_eq!(errors.violations[0].reason, "must be set");

        let mut errors = ValidationError::default();
        TargetRef { name: Some("x".into()), ..TargetRef::mesh() }.validate(
            &mut errors,
            "spec.targetRef",
            &[TargetKind::Mesh],
        );
        assert_eq!(errors.violations[0].field, "spec.targetRef.name");

        let mut errors = ValidationError::default();
        TargetRef { kind: Some(TargetKind::MeshService), ..Default::default() }.validate(
            &mut errors,
            "spec.to[0].targetRef",
            &[TargetKind::Mesh, TargetKind::MeshService],
        );
        assert_eq!(errors.violations[0].field, "spec.to[0].targetRef.name");
        assert!(errors.violations[0].reason.contains("must be set"), "{errors}");

        let mut errors = ValidationError::default();
        TargetRef::service("a").validate(&mut errors, "spec.to[0].targetRef", &[TargetKind::Mesh]);
        assert_eq!(errors.violations[0].field, "spec.to[0].targetRef.kind");
        assert!(errors.violations[0].reason.contains("not supported"), "{errors}");
    }
}
