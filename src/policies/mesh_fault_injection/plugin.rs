//! MeshFaultInjection on the engine: for each HTTP inbound the top-level targetRef selects,
//! the `from` rules (most specific subset first) each contribute one fault filter per entry of
//! their `http` list, limited to the rule's clients by `x-kuma-tags` matchers.
//!
//! Coexistence (reference §4.4): inbounds an old FaultInjection matched keep its faults and
//! are left alone. Like Kuma, only http and http2 inbounds get faults (not gRPC). The filters
//! themselves are written by the FaultInjection plugin, which owns the conf.

use super::api::{Conf, FaultConf};
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::core::matching::{from_rules, matched};
use crate::policies::core::oldstyle::select_inbound_all;
use crate::policies::core::rules::MergeOptions;
use crate::policies::fault_injection::plugin::{kbps_of, HttpFault};
use crate::policies::kuma_tags::SourceMatch;
use crate::policies::resolved::ResolvedProxy;
use crate::policies::{Plugin, ResolveCx};

fn fault(sources: &SourceMatch, f: &FaultConf) -> HttpFault {
    HttpFault {
        sources: sources.clone(),
        delay: f.delay.as_ref().and_then(|d| Some((d.value.0, d.percentage.fraction()?))),
        abort: f.abort.as_ref().and_then(|a| Some((a.http_status, a.percentage.fraction()?))),
        response_bandwidth: f
            .response_bandwidth
            .as_ref()
            .and_then(|b| Some((kbps_of(&b.limit)?, b.percentage.fraction()?))),
    }
}

pub struct MeshFaultInjectionPlugin;

impl Plugin for MeshFaultInjectionPlugin {
    fn name(&self) -> &'static str {
        "mesh-fault-injection"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshFaultInjection]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshFaultInjection;
        let matched = matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let old = cx.policies.of(ResourceType::FaultInjection);
        for r in &mut out.inbounds {
            let Some(inbound) = cx.dataplane.networking.inbound.get(r.index) else { continue };
            if !matches!(inbound.protocol(), Protocol::Http | Protocol::Http2) {
                continue;
            }
            if !select_inbound_all(old, &inbound.tags).is_empty() {
                continue;
            }
            let rules = from_rules(cx.policies, t, &matched, &inbound.tags, MergeOptions::default());
            let confs = rules.decoded::<Conf>();
            let mut faults = Vec::new();
            for (rule, conf) in rules.rules.iter().zip(confs) {
                let Some(conf) = conf else { continue };
                let sources = SourceMatch::subset(&rule.subset);
                faults.extend(conf.http.iter().flatten().map(|f| fault(&sources, f)));
            }
            r.conf.faults = faults;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::{check_golden, resolve_yaml};

    #[test]
    fn golden_basic() {
        check_golden("src/policies/mesh_fault_injection/testdata", "basic", "backend-1");
    }

    const INPUT: &str = r#"
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
    - {port: 8080, tags: {kuma.io/service: backend, kuma.io/protocol: http}}
    - {port: 8081, tags: {kuma.io/service: backend-api, kuma.io/protocol: http2}}
    - {port: 8082, tags: {kuma.io/service: backend-grpc, kuma.io/protocol: grpc}}
---
type: FaultInjection
mesh: default
name: old
sources: [{match: {kuma.io/service: web}}]
destinations: [{match: {kuma.io/service: backend, kuma.io/protocol: http}}]
conf: {abort: {percentage: 100, httpStatus: 503}}
---
type: MeshFaultInjection
mesh: default
name: new
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {http: [{abort: {httpStatus: 500, percentage: 100}}]}
"#;

    /// Kuma's coexistence rule: an inbound an old FaultInjection matched keeps exactly its
    /// faults; the others get MeshFaultInjection's, gRPC inbounds none.
    #[test]
    fn inbounds_an_old_fault_injection_matched_are_skipped() {
        let r = resolve_yaml(INPUT, "backend-1");
        let statuses = |i: usize| r.inbounds[i].conf.faults.iter().map(|f| f.abort.unwrap().0).collect::<Vec<_>>();
        assert_eq!(statuses(0), vec![503]);
        assert_eq!(statuses(1), vec![500]);
        assert_eq!(statuses(2), Vec::<u32>::new());
        // The Mesh rule matches every client: no header matcher.
        assert!(r.inbounds[1].conf.faults[0].sources.matchers().is_empty());
    }
}
