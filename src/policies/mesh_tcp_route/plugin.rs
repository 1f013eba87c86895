//! MeshTCPRoute on the engine (Kuma's `meshtcproute/plugin`, reference §4.4–4.5): the
//! outbounds of the services its rules cover become TCP proxies to the rule's weighted
//! backends, HTTP ones too, except where a MeshHTTPRoute rule covers an HTTP outbound (the
//! MeshHTTPRoute wins there). Backends must be TCP, HTTP or HTTP/2 services (not gRPC or
//! Kafka, as Kuma's `MakeTCPSplit`); otherwise the outbound keeps its routing.

use super::api::{MeshTcpRouteSpec, Rule};
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::core::matching;
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::core::set::PolicySet;
use crate::policies::mesh_http_route::plugin::has_rule_for;
use crate::policies::resolved::{ResolvedProxy, RoutedBy, Routing};
use crate::policies::routing::{self, backend};
use crate::policies::{Plugin, ResolveCx};

fn tcp_backend(p: Protocol) -> bool {
    matches!(p, Protocol::Tcp | Protocol::Http | Protocol::Http2)
}

pub struct MeshTcpRoutePlugin;

impl Plugin for MeshTcpRoutePlugin {
    fn name(&self) -> &'static str {
        "mesh-tcp-route"
    }

    fn types(&self) -> &'static [ResourceType] {
        // MeshHTTPRoute too: whether one covers an outbound decides who routes it.
        &[ResourceType::MeshTcpRoute, ResourceType::MeshHttpRoute]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshTcpRoute;
        let matched = matching::matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let rules = matching::to_rules(cx.policies, t, &matched, MergeOptions::default());
        for at in 0..out.outbounds.len() {
            let service = out.outbounds[at].service.clone();
            let Some(rule) = rules.conf_for::<Rule>(&Subset::service(&service)) else { continue };
            if out.outbounds[at].routed_by == RoutedBy::MeshHttpRoute
                && (cx.protocol_of)(&service).is_http()
                && has_rule_for(cx, &service)
            {
                continue;
            }
            let refs = rule.default.backend_refs.clone();
            if let Some(clusters) = backend::split(cx, out, &refs, tcp_backend) {
                routing::install(out, at, Routing::Tcp { clusters }, RoutedBy::MeshTcpRoute);
            }
        }
    }

    fn route_targets(&self, policies: &PolicySet) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for (_, spec) in policies.typed::<MeshTcpRouteSpec>() {
            for to in &spec.to {
                for r in &to.effective_rule().default.backend_refs {
                    out.push((Some(to.target_ref.name().to_string()), r.service_name().to_string()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::routing::golden::check;

    #[test]
    fn golden_weighted_backends_and_the_meshhttproute_clash() {
        check("mesh_tcp_route", "01.split-and-http-clash", "web-1");
    }
}
