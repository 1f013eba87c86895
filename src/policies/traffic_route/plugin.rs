//! TrafficRoute on the engine (Kuma's `pkg/xds/topology/router.go` and the old outbound
//! generator, reference §2.4): the most specific TrafficRoute whose sources match the
//! dataplane and whose destinations match an outbound's service routes that outbound.
//!
//! - Destinations are resolved against the outbound's tags (`*` values dropped, missing keys
//!   taken from the outbound), `destination` is a split of weight 1, weight-0 entries drop.
//! - Each destination is a cluster: the service's own for `kuma.io/service` alone, else a
//!   subset cluster `<service>-_<n>_` limited to endpoints with the other tags.
//! - An HTTP-family outbound (by the common protocol of all those clusters) gets one route
//!   per `http[]` entry, in order, then the default `prefix: /` route; any other gets a TCP
//!   proxy over the clusters of every route, `http[]` ones included, as Kuma does.
//! - `loadBalancer` sets the load balancer of every cluster of the route.
//!
//! Without a matching TrafficRoute the outbound keeps all its traffic on its own service:
//! Kuma 2.6+ creates no `route-all` TrafficRoute with a mesh, and an outbound without one
//! there still reaches its service. Outbounds a MeshHTTPRoute or MeshTCPRoute routes are
//! left alone, as Kuma's old generator skips them.

use crate::model::Tags;

use super::api::{self, HttpMatch, Split, StringMatcher, TrafficRouteSpec};
use crate::model::selector::{SERVICE_TAG, WILDCARD};
use crate::model::ResourceType;
use crate::policies::core::oldstyle::{destination_services, select_outbound};
use crate::policies::core::set::PolicySet;
use crate::policies::mesh_load_balancing_strategy::plugin::LoadBalancer;
use crate::policies::resolved::{
    HeaderMatch, HeaderMatcher, HeaderValue, HostRewrite, HttpAction, HttpRoute, PathMatch, ResolvedProxy, RoutedBy,
    Routing, StringMatch, WeightedCluster,
};
use crate::policies::routing::{self, cluster_for, subset_tags};
use crate::policies::{Plugin, ResolveCx};

/// `destination` (a split of one) or `split`, as TrafficRoute's conf and entries have.
fn splits_of(split: &[Split], destination: Option<&Tags>) -> Vec<Split> {
    match destination {
        Some(d) if split.is_empty() => vec![Split { weight: 1, destination: d.clone() }],
        _ => split.to_vec(),
    }
}

/// Kuma's wildcard resolution: `*` values dropped, keys the destination lacks taken from the
/// outbound's tags (so `kuma.io/service: '*'` becomes the outbound's own service).
fn resolve_wildcards(dest: &Tags, outbound: &Tags) -> Tags {
    let mut out: Tags =
        dest.iter().filter(|(_, v)| v.as_str() != WILDCARD).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in outbound {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The weighted clusters of `splits`, allocated in `out` with `lb`.
fn clusters_of(
    cx: &ResolveCx<'_>,
    out: &mut ResolvedProxy,
    splits: &[Split],
    outbound_tags: &Tags,
    lb: &LoadBalancer,
) -> Vec<WeightedCluster> {
    let mut clusters = Vec::new();
    for s in splits.iter().filter(|s| s.weight > 0) {
        let dest = resolve_wildcards(&s.destination, outbound_tags);
        let Some(service) = dest.get(SERVICE_TAG) else { continue };
        let name = cluster_for(cx, out, service, subset_tags(&dest));
        if let Some(c) = out.clusters.iter_mut().find(|c| c.name == name) {
            c.conf.load_balancer = lb.clone();
        }
        clusters.push(WeightedCluster { name, weight: s.weight });
    }
    clusters
}

fn load_balancer(lb: Option<&api::LoadBalancer>) -> LoadBalancer {
    match lb {
        None | Some(api::LoadBalancer::RoundRobin(_)) => LoadBalancer::RoundRobin,
        Some(api::LoadBalancer::LeastRequest(l)) => LoadBalancer::LeastRequest { choice_count: l.choice_count },
        Some(api::LoadBalancer::RingHash(r)) => LoadBalancer::RingHash {
            murmur: r.hash_function == "MURMUR_HASH_2",
            min_ring_size: r.min_ring_size,
            max_ring_size: r.max_ring_size,
        },
        Some(api::LoadBalancer::Random(_)) => LoadBalancer::Random,
        Some(api::LoadBalancer::Maglev(_)) => LoadBalancer::Maglev { table_size: None },
    }
}

fn string_match(m: &StringMatcher) -> StringMatch {
    match m {
        StringMatcher::Exact(v) => StringMatch::Exact(v.clone()),
        StringMatcher::Prefix(v) => StringMatch::Prefix(v.clone()),
        StringMatcher::Regex(v) => StringMatch::Regex(v.clone()),
    }
}

fn http_route(m: &HttpMatch, modify: Option<&api::Modify>, clusters: Vec<WeightedCluster>) -> HttpRoute {
    let mut r = HttpRoute::catch_all(clusters);
    r.path = match &m.path {
        Some(StringMatcher::Exact(p)) => PathMatch::Exact(p.clone()),
        Some(StringMatcher::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(StringMatcher::Regex(p)) => PathMatch::Regex(p.clone()),
        None => PathMatch::Prefix("/".into()),
    };
    r.method = m.method.as_ref().map(string_match);
    // A map, so sorted by name already.
    r.headers = m
        .headers
        .iter()
        .flatten()
        .map(|(name, v)| {
            let matcher = match v {
                StringMatcher::Exact(x) => HeaderMatcher::Exact(x.clone()),
                StringMatcher::Prefix(x) => HeaderMatcher::Prefix(x.clone()),
                StringMatcher::Regex(x) => HeaderMatcher::Regex(x.clone()),
            };
            HeaderMatch { name: name.clone(), matcher }
        })
        .collect();
    let Some(modify) = modify else { return r };
    if let HttpAction::Forward { prefix_rewrite, regex_rewrite, host_rewrite, .. } = &mut r.action {
        if let Some(p) = &modify.path {
            *prefix_rewrite = p.rewrite_prefix.clone();
            *regex_rewrite = p.regex.as_ref().map(|re| (re.pattern.clone(), re.substitution.clone()));
        }
        if let Some(h) = &modify.host {
            *host_rewrite = match (&h.value, &h.from_path) {
                (Some(v), _) => Some(HostRewrite::Literal(v.clone())),
                (None, Some(re)) => Some(HostRewrite::PathRegex(re.pattern.clone(), re.substitution.clone())),
                (None, None) => None,
            };
        }
    }
    let add = |h: &api::AddHeader| HeaderValue { name: h.name.clone(), value: h.value.clone(), append: h.append };
    if let Some(h) = &modify.request_headers {
        r.request_headers_to_add = h.add.iter().map(add).collect();
        r.request_headers_to_remove = h.remove.iter().map(|x| x.name.clone()).collect();
    }
    if let Some(h) = &modify.response_headers {
        r.response_headers_to_add = h.add.iter().map(add).collect();
        r.response_headers_to_remove = h.remove.iter().map(|x| x.name.clone()).collect();
    }
    r
}

/// The routing `spec` gives outbound `at`.
fn routing_of(cx: &ResolveCx<'_>, out: &mut ResolvedProxy, at: usize, spec: &TrafficRouteSpec) -> Option<Routing> {
    let index = out.outbounds.get(at)?.index;
    let outbound_tags = cx.dataplane.networking.outbound.get(index)?.tags.clone();
    let conf = &spec.conf;
    let lb = load_balancer(conf.load_balancer.as_ref());
    let mut routes = Vec::new();
    for entry in &conf.http {
        let splits = splits_of(&entry.split, entry.destination.as_ref());
        let clusters = clusters_of(cx, out, &splits, &outbound_tags, &lb);
        if !clusters.is_empty() {
            routes.push(http_route(&entry.match_, entry.modify.as_ref(), clusters));
        }
    }
    let default = clusters_of(cx, out, &splits_of(&conf.split, conf.destination.as_ref()), &outbound_tags, &lb);
    if default.is_empty() && routes.is_empty() {
        return None;
    }
    if !default.is_empty() {
        routes.push(HttpRoute::catch_all(default));
    }
    let http = Routing::Http { routes };
    if routing::protocol_of_routing(out, &http).is_http() {
        return Some(http);
    }
    // Kuma's TCP proxy takes the clusters of every route, `http[]` ones too (observed).
    let Routing::Http { routes } = http else { return None };
    let mut clusters: Vec<WeightedCluster> = Vec::new();
    for r in routes {
        if let HttpAction::Forward { clusters: cs, .. } = r.action {
            for c in cs {
                if !clusters.iter().any(|x| x.name == c.name) {
                    clusters.push(c);
                }
            }
        }
    }
    Some(Routing::Tcp { clusters })
}

pub struct TrafficRoutePlugin;

impl Plugin for TrafficRoutePlugin {
    fn name(&self) -> &'static str {
        "traffic-route"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::TrafficRoute]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::TrafficRoute);
        if policies.is_empty() {
            return;
        }
        for at in 0..out.outbounds.len() {
            if !out.outbounds[at].old_style_applies() {
                continue;
            }
            let service = out.outbounds[at].service.clone();
            let Some(spec) =
                select_outbound(policies, cx.dataplane, &service).and_then(|p| p.spec.get::<TrafficRouteSpec>())
            else {
                continue;
            };
            if let Some(r) = routing_of(cx, out, at, spec) {
                routing::install(out, at, r, RoutedBy::TrafficRoute);
            }
        }
    }

    fn route_targets(&self, policies: &PolicySet) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for (_, spec) in policies.typed::<TrafficRouteSpec>() {
            let conf = &spec.conf;
            let mut to: Vec<&str> = Vec::new();
            let entries = conf.http.iter().map(|h| (&h.split, h.destination.as_ref()));
            for (split, dest) in std::iter::once((&conf.split, conf.destination.as_ref())).chain(entries) {
                let named = split.iter().map(|s| &s.destination).chain(dest);
                to.extend(named.filter_map(|d| d.get(SERVICE_TAG)).map(String::as_str).filter(|s| *s != WILDCARD));
            }
            let from: Vec<Option<String>> = match destination_services(&spec.destinations) {
                None => vec![None],
                Some(services) => services.into_iter().map(Some).collect(),
            };
            for f in &from {
                out.extend(to.iter().map(|t| (f.clone(), t.to_string())));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::routing::golden::check;

    #[test]
    fn golden_split_subsets_and_load_balancers() {
        check("traffic_route", "01.split-subsets-lb", "web-1");
    }

    #[test]
    fn golden_http_matches_and_modify() {
        check("traffic_route", "02.http-match-modify", "web-1");
    }

    #[test]
    fn golden_tcp_outbound_takes_every_cluster() {
        check("traffic_route", "03.tcp-all-clusters", "web-1");
    }
}
