//! `backendRefs` of MeshHTTPRoute and MeshTCPRoute (Kuma's `common_api.BackendRef`): a
//! MeshService or MeshServiceSubset with a weight, and the weighted clusters they become.

use crate::model::Tags;

use serde::{Deserialize, Serialize};

use super::cluster_for;
use crate::model::dataplane::Protocol;
use crate::model::ValidationError;
use crate::policies::core::targetref::{TargetKind, TargetRef};
use crate::policies::resolved::{ResolvedProxy, WeightedCluster};
use crate::policies::ResolveCx;

/// Kuma's default weight of a backendRef.
pub const DEFAULT_WEIGHT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl BackendRef {
    /// All endpoints of `service`, with `weight`.
    pub fn service(service: &str, weight: u32) -> BackendRef {
        BackendRef {
            kind: Some(TargetKind::MeshService),
            name: Some(service.to_string()),
            tags: Tags::new(),
            weight: Some(weight),
        }
    }

    fn target_ref(&self) -> TargetRef {
        TargetRef { kind: self.kind, name: self.name.clone(), tags: self.tags.clone(), ..TargetRef::default() }
    }

    /// The service it names.
    pub fn service_name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(DEFAULT_WEIGHT)
    }

    /// Checks it at `path` (`spec.to[0].rules[0].default.backendRefs[1]`).
    pub fn validate(&self, errors: &mut ValidationError, path: &str) {
        self.target_ref().validate(errors, path, &[TargetKind::MeshService, TargetKind::MeshServiceSubset]);
    }
}

/// The weighted clusters of `refs` (Kuma's `makeSplit`): weight-0 refs dropped, one cluster
/// per service and tags. `None` when a service's protocol is not `allowed` (Kuma drops the
/// whole route then) or nothing is left.
pub fn split(
    cx: &ResolveCx<'_>,
    out: &mut ResolvedProxy,
    refs: &[BackendRef],
    allowed: fn(Protocol) -> bool,
) -> Option<Vec<WeightedCluster>> {
    let mut clusters = Vec::new();
    for r in refs {
        if !matches!(r.kind, Some(TargetKind::MeshService | TargetKind::MeshServiceSubset)) || r.weight() == 0 {
            continue;
        }
        let service = r.service_name();
        if !allowed((cx.protocol_of)(service)) {
            return None;
        }
        let tags = if r.kind == Some(TargetKind::MeshServiceSubset) { r.tags.clone() } else { Tags::new() };
        let name = cluster_for(cx, out, service, super::subset_tags(&tags));
        clusters.push(WeightedCluster { name, weight: r.weight() });
    }
    (!clusters.is_empty()).then_some(clusters)
}
