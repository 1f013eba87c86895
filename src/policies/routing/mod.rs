//! What the routing plugins (MeshHTTPRoute, MeshTCPRoute, TrafficRoute) share: Kuma's names
//! for the clusters of service subsets, the common protocol of an outbound's clusters, and
//! installing a routing on an outbound.

use crate::model::Tags;

use super::resolved::{ClusterConf, ResolvedCluster, ResolvedProxy, RoutedBy, Routing};
use super::ResolveCx;
use crate::model::dataplane::Protocol;

pub mod backend;
#[cfg(test)]
pub(crate) mod golden;
#[cfg(test)]
mod tests;

/// The cluster of `service` limited to endpoints with `tags` (never `kuma.io/service`), added
/// to `out` unless one with the same service and tags exists. Kuma's names: the service's
/// own name for all its endpoints, `<service>-_<n>_` for a subset, `n` counting the subsets
/// of the whole dataplane so names never clash across outbounds; equal tags reuse a name.
pub fn cluster_for(cx: &ResolveCx<'_>, out: &mut ResolvedProxy, service: &str, tags: Tags) -> String {
    if let Some(c) = out.clusters.iter().find(|c| c.service == service && c.tags == tags) {
        return c.name.clone();
    }
    let name = if tags.is_empty() {
        service.to_string()
    } else {
        // Clusters are only dropped once every plugin ran, so the subsets present are all
        // those named so far.
        let n = out.clusters.iter().filter(|c| !c.tags.is_empty()).count();
        format!("{service}-_{n}_")
    };
    out.clusters.push(ResolvedCluster {
        name: name.clone(),
        service: service.to_string(),
        tags,
        protocol: (cx.protocol_of)(service),
        conf: ClusterConf::default(),
    });
    name
}

/// The protocols an endpoint of `p` can also be spoken to with, most specific first
/// (Kuma's `pkg/xds/generator/protocol.go`).
fn stack(p: Protocol) -> &'static [Protocol] {
    match p {
        Protocol::Grpc => &[Protocol::Grpc, Protocol::Http2, Protocol::Tcp],
        Protocol::Http2 => &[Protocol::Http2, Protocol::Tcp],
        Protocol::Http => &[Protocol::Http, Protocol::Tcp],
        Protocol::Kafka => &[Protocol::Kafka, Protocol::Tcp],
        Protocol::Tcp => &[Protocol::Tcp],
    }
}

/// The protocol every one of `protocols` can be spoken to with: the first of one's stack
/// that the other's has, so http and http2 meet only at tcp, grpc and http2 at http2. TCP
/// when there are none (Kuma's unknown protocol, which it treats as TCP).
pub fn common_protocol(protocols: impl IntoIterator<Item = Protocol>) -> Protocol {
    let mut it = protocols.into_iter();
    let Some(first) = it.next() else { return Protocol::Tcp };
    it.fold(first, |acc, p| stack(acc).iter().copied().find(|a| stack(p).contains(a)).unwrap_or(Protocol::Tcp))
}

/// The protocol of the services of the clusters named in `routing`.
pub fn protocol_of_routing(out: &ResolvedProxy, routing: &Routing) -> Protocol {
    common_protocol(
        routing
            .cluster_names()
            .into_iter()
            .filter_map(|n| out.clusters.iter().find(|c| c.name == n).map(|c| c.protocol)),
    )
}

/// Gives outbound `at` (an index into `out.outbounds`) its routing, records who decided it
/// and sets its protocol from the clusters it routes to.
pub fn install(out: &mut ResolvedProxy, at: usize, routing: Routing, by: RoutedBy) {
    let protocol = protocol_of_routing(out, &routing);
    if let Some(o) = out.outbounds.get_mut(at) {
        o.routing = routing;
        o.routed_by = by;
        o.protocol = protocol;
    }
}

/// `tags` without `kuma.io/service` (and `kuma.io/mesh`, which names a cross-mesh
/// destination higuma does not route to): what a subset cluster filters endpoints by.
pub fn subset_tags(tags: &Tags) -> Tags {
    use crate::model::selector::SERVICE_TAG;
    tags.iter().filter(|(k, _)| *k != SERVICE_TAG && *k != MESH_TAG).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Kuma's tag for a destination in another mesh.
pub const MESH_TAG: &str = "kuma.io/mesh";

#[cfg(test)]
mod protocol_tests {
    use super::*;

    #[test]
    fn common_protocol_follows_kumas_stacks() {
        use Protocol::*;
        assert_eq!(common_protocol([Http, Http]), Http);
        // Kuma's comment claims http2; its code (and so higuma) says tcp.
        assert_eq!(common_protocol([Http, Http2]), Tcp);
        assert_eq!(common_protocol([Grpc, Http2]), Http2);
        assert_eq!(common_protocol([Http2, Grpc]), Http2);
        assert_eq!(common_protocol([Grpc, Http]), Tcp);
        assert_eq!(common_protocol([Grpc, Grpc, Http2]), Http2);
        assert_eq!(common_protocol([Kafka, Tcp]), Tcp);
        assert_eq!(common_protocol([]), Tcp);
    }
}
