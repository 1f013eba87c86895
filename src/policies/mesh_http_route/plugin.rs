//! MeshHTTPRoute on the engine (Kuma's `meshhttproute/plugin`, reference §4.4–4.5).
//!
//! When any MeshHTTPRoute gives the dataplane `to` rules, it routes every HTTP outbound:
//! those with a rule for their service by the rule's routes, the others by a catch-all to
//! their own service, exactly as Kuma's old generator then skips every HTTP outbound. Each
//! rule, in merged order (least specific policy's first, no precedence sort as in Kuma
//! 2.4), becomes one Envoy route per match (two for a path prefix other than `/`), named by
//! the hash of its matches; a catch-all to the service closes the list unless a rule already
//! matches exactly `PathPrefix /`. A rule whose backends are not all HTTP or HTTP/2 services
//! is dropped, and an outbound left with no route keeps the routing of the policies after.

use std::sync::Arc;

use super::api::{route_name, MERGE};
use super::api::{
    Conf, Filter, FilterType, HeaderMatchType, HeaderModifier, Match, PathMatch, PathMatchType, PathRewrite,
    PathRewriteType, QueryMatchType, Rule, DEFAULT_REDIRECT_STATUS,
};
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::core::matching;
use crate::policies::core::rules::{Rules, Subset};
use crate::policies::core::set::PolicySet;
use crate::policies::resolved::{
    HeaderMatch, HeaderMatcher, HeaderValue, HostRewrite, HttpAction, HttpRoute, Mirror, PathMatch as RoutePath,
    QueryMatch, ResolvedProxy, RoutedBy, Routing, StringMatch, WeightedCluster,
};
use crate::policies::routing;
use crate::policies::routing::backend::{self, BackendRef};
use crate::policies::{Plugin, ResolveCx};

/// The weight Kuma gives the implicit backend (the outbound's own service).
const DEFAULT_BACKEND_WEIGHT: u32 = 100;

/// Mirrored requests when a mirror names no percentage: all of them.
const ALL_MILLIONTHS: u32 = 1_000_000;

/// The dataplane's MeshHTTPRoute `to` rules; `None` when no MeshHTTPRoute gives it any.
fn rules_of(cx: &ResolveCx<'_>) -> Option<Arc<Rules>> {
    let t = ResourceType::MeshHttpRoute;
    let matched = matching::matched(cx.policies, t, cx.dataplane);
    if matched.is_empty() {
        return None;
    }
    let rules = matching::to_rules(cx.policies, t, &matched, MERGE);
    (!rules.is_empty()).then_some(rules)
}

/// Whether a MeshHTTPRoute rule covers outbound `service` of the dataplane (MeshTCPRoute
/// yields to one on HTTP outbounds).
pub fn has_rule_for(cx: &ResolveCx<'_>, service: &str) -> bool {
    rules_of(cx).is_some_and(|r| r.conf_for::<Conf>(&Subset::service(service)).is_some_and(|c| !c.rules.is_empty()))
}

/// Backends of an HTTP route must speak HTTP or HTTP/2 (Kuma's `MakeHTTPSplit`; not gRPC).
fn http_backend(p: Protocol) -> bool {
    matches!(p, Protocol::Http | Protocol::Http2)
}

fn catch_all() -> Match {
    Match { path: Some(PathMatch { value: "/".into(), type_: PathMatchType::PathPrefix }), ..Match::default() }
}

/// The rules for `service` as Kuma prepares them, each with its route name (the hash of its
/// matches as written): the catch-all appended unless a rule matches exactly `PathPrefix /`,
/// and a match without a path given `PathPrefix /`. `None` when there are no rules and the
/// service is not HTTP, HTTP/2 or gRPC.
fn prepare(rules: &[Rule], protocol: Protocol) -> Option<Vec<(String, Rule)>> {
    if rules.is_empty() && !protocol.is_http() {
        return None;
    }
    let mut out: Vec<Rule> = rules.to_vec();
    if !out.iter().any(|r| r.matches == [catch_all()]) {
        out.push(Rule { matches: vec![catch_all()], ..Rule::default() });
    }
    let named = out
        .into_iter()
        .map(|mut r| {
            let name = route_name(&r.matches);
            for m in &mut r.matches {
                if m.path.is_none() {
                    m.path = catch_all().path;
                }
            }
            (name, r)
        })
        .collect();
    Some(named)
}

/// The header modifier's Envoy headers: `set` replaces (its comma-separated values after
/// the first are appended), `add` appends, as Kuma's filter does.
fn header_values(m: &HeaderModifier) -> (Vec<HeaderValue>, Vec<String>) {
    let mut add = Vec::new();
    for h in m.set.iter().flatten() {
        for (i, v) in h.value.split(',').enumerate() {
            add.push(HeaderValue { name: h.name.clone(), value: v.to_string(), append: i > 0 });
        }
    }
    for h in m.add.iter().flatten() {
        for v in h.value.split(',') {
            add.push(HeaderValue { name: h.name.clone(), value: v.to_string(), append: true });
        }
    }
    (add, m.remove.clone().unwrap_or_default())
}

/// One Envoy path match per route: a path prefix `/x` matches `/x` and `/x/...` (never
/// `/xy`), hence two routes.
fn paths(p: &PathMatch) -> Vec<RoutePath> {
    match p.type_ {
        PathMatchType::Exact => vec![RoutePath::Exact(p.value.clone())],
        PathMatchType::RegularExpression => vec![RoutePath::Regex(p.value.clone())],
        PathMatchType::PathPrefix if p.value == "/" => vec![RoutePath::Prefix("/".into())],
        PathMatchType::PathPrefix => {
            vec![RoutePath::Exact(p.value.clone()), RoutePath::Prefix(format!("{}/", p.value))]
        }
    }
}

/// The prefix rewrite for a route matching `path`: the `/`-terminated prefix route gets a
/// `/`-terminated replacement so the rest of the path keeps its separator.
fn prefix_rewrite(path: &RoutePath, replacement: &str) -> String {
    match path {
        RoutePath::Prefix(p) if p.ends_with('/') && !replacement.ends_with('/') => format!("{replacement}/"),
        _ => replacement.to_string(),
    }
}

/// What a rule does, apart from its matches.
struct Action<'a> {
    name: String,
    filters: &'a [Filter],
    clusters: Vec<WeightedCluster>,
    mirrors: Vec<Mirror>,
}

fn routes_of_match(m: &Match, a: &Action<'_>) -> Vec<HttpRoute> {
    let method = m.method.map(|x| StringMatch::Exact(x.as_str().to_string()));
    let headers: Vec<HeaderMatch> = m
        .headers
        .iter()
        .flatten()
        .map(|h| {
            let v = h.value.clone().unwrap_or_default();
            let matcher = match h.type_.unwrap_or(HeaderMatchType::Exact) {
                HeaderMatchType::Exact => HeaderMatcher::Exact(v),
                HeaderMatchType::Prefix => HeaderMatcher::Prefix(v),
                HeaderMatchType::RegularExpression => HeaderMatcher::Regex(v),
                HeaderMatchType::Present => HeaderMatcher::Present,
                HeaderMatchType::Absent => HeaderMatcher::Absent,
            };
            HeaderMatch { name: h.name.clone(), matcher }
        })
        .collect();
    let query: Vec<QueryMatch> = m
        .query_params
        .iter()
        .flatten()
        .map(|q| QueryMatch {
            name: q.name.clone(),
            regex: q.type_ == QueryMatchType::RegularExpression,
            value: q.value.clone(),
        })
        .collect();
    let path = m.path.clone().unwrap_or(PathMatch { value: "/".into(), type_: PathMatchType::PathPrefix });
    paths(&path)
        .into_iter()
        .map(|p| {
            let mut r = HttpRoute::catch_all(a.clusters.clone());
            r.name = a.name.clone();
            r.method = method.clone();
            r.headers = headers.clone();
            r.query = query.clone();
            apply_filters(&mut r, &p, a);
            r.path = p;
            r
        })
        .collect()
}

fn rewrite_path(route_path: &RoutePath, rw: &PathRewrite) -> (Option<String>, Option<(String, String)>) {
    match rw.type_ {
        PathRewriteType::ReplaceFullPath => (None, rw.replace_full_path.clone().map(|v| (".*".to_string(), v))),
        PathRewriteType::ReplacePrefixMatch => {
            (rw.replace_prefix_match.as_deref().map(|v| prefix_rewrite(route_path, v)), None)
        }
    }
}

fn apply_filters(r: &mut HttpRoute, route_path: &RoutePath, a: &Action<'_>) {
    for f in a.filters {
        match f.type_ {
            FilterType::RequestHeaderModifier => {
                if let Some(m) = &f.request_header_modifier {
                    let (add, remove) = header_values(m);
                    r.request_headers_to_add.extend(add);
                    r.request_headers_to_remove.extend(remove);
                }
            }
            FilterType::ResponseHeaderModifier => {
                if let Some(m) = &f.response_header_modifier {
                    let (add, remove) = header_values(m);
                    r.response_headers_to_add.extend(add);
                    r.response_headers_to_remove.extend(remove);
                }
            }
            FilterType::RequestRedirect => {
                if let Some(rd) = &f.request_redirect {
                    let path = rd.path.as_ref().and_then(|p| match p.type_ {
                        PathRewriteType::ReplaceFullPath => p.replace_full_path.clone().map(|v| (true, v)),
                        PathRewriteType::ReplacePrefixMatch => {
                            p.replace_prefix_match.as_deref().map(|v| (false, prefix_rewrite(route_path, v)))
                        }
                    });
                    r.action = HttpAction::Redirect {
                        scheme: rd.scheme.map(|s| s.as_str().to_string()),
                        host: rd.hostname.clone(),
                        port: rd.port,
                        path,
                        status: rd.status_code.unwrap_or(DEFAULT_REDIRECT_STATUS),
                    };
                }
            }
            FilterType::UrlRewrite => {
                if let (Some(u), HttpAction::Forward { prefix_rewrite, regex_rewrite, host_rewrite, .. }) =
                    (&f.url_rewrite, &mut r.action)
                {
                    if let Some(p) = &u.path {
                        let (prefix, regex) = rewrite_path(route_path, p);
                        *prefix_rewrite = prefix.or(prefix_rewrite.take());
                        *regex_rewrite = regex.or(regex_rewrite.take());
                    }
                    if let Some(h) = &u.hostname {
                        *host_rewrite = Some(HostRewrite::Literal(h.clone()));
                    }
                }
            }
            FilterType::RequestMirror => {}
        }
    }
    if let HttpAction::Forward { mirrors, .. } = &mut r.action {
        mirrors.extend(a.mirrors.iter().cloned());
    }
}

/// The routes of outbound `service`, allocating their clusters in `out`; `None` when the
/// MeshHTTPRoute leaves the outbound alone.
fn routes_for(cx: &ResolveCx<'_>, out: &mut ResolvedProxy, rules: &Rules, service: &str) -> Option<Vec<HttpRoute>> {
    let own = rules.conf_for::<Conf>(&Subset::service(service)).map(|c| c.rules.as_slice()).unwrap_or(&[]);
    let prepared = prepare(own, (cx.protocol_of)(service))?;
    let mut routes = Vec::new();
    for (name, rule) in &prepared {
        let refs = rule
            .default
            .backend_refs
            .clone()
            .unwrap_or_else(|| vec![BackendRef::service(service, DEFAULT_BACKEND_WEIGHT)]);
        let Some(clusters) = backend::split(cx, out, &refs, http_backend) else { continue };
        let filters = rule.default.filters.as_deref().unwrap_or(&[]);
        let mirrors = filters
            .iter()
            .filter_map(|f| f.request_mirror.as_ref().filter(|_| f.type_ == FilterType::RequestMirror))
            .filter_map(|m| {
                let mut r = m.backend_ref.clone();
                r.weight = Some(1);
                let cluster = backend::split(cx, out, &[r], http_backend)?.into_iter().next()?.name;
                let millionths = m.percentage.as_ref().and_then(|p| p.millionths()).unwrap_or(ALL_MILLIONTHS);
                Some(Mirror { cluster, millionths })
            })
            .collect();
        let action = Action { name: name.clone(), filters, clusters, mirrors };
        routes.extend(rule.matches.iter().flat_map(|m| routes_of_match(m, &action)));
    }
    (!routes.is_empty()).then_some(routes)
}

pub struct MeshHttpRoutePlugin;

impl Plugin for MeshHttpRoutePlugin {
    fn name(&self) -> &'static str {
        "mesh-http-route"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshHttpRoute]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let Some(rules) = rules_of(cx) else { return };
        for at in 0..out.outbounds.len() {
            let service = out.outbounds[at].service.clone();
            if let Some(routes) = routes_for(cx, out, &rules, &service) {
                routing::install(out, at, Routing::Http { routes }, RoutedBy::MeshHttpRoute);
            }
        }
    }

    fn route_targets(&self, policies: &PolicySet) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for (_, spec) in policies.typed::<super::api::MeshHttpRouteSpec>() {
            for to in &spec.to {
                let from = to.target_ref.name().to_string();
                for rule in &to.rules {
                    let refs = rule.default.backend_refs.iter().flatten();
                    let mirrors = rule.default.filters.iter().flatten().filter_map(|f| f.request_mirror.as_ref());
                    for r in refs.chain(mirrors.map(|m| &m.backend_ref)) {
                        out.push((Some(from.clone()), r.service_name().to_string()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::routing::golden::check;

    #[test]
    fn route_names_are_kumas_hashes() {
        // The catch-all's name in Kuma's goldens.
        assert_eq!(route_name(&[catch_all()]), "9Zuf5Tg79OuZcQITwBbQykxAk2u4fRKrwYn3//AL4Yo=");
    }

    #[test]
    fn golden_header_match_split_and_filters() {
        check("mesh_http_route", "01.matches-and-filters", "web-1");
    }

    #[test]
    fn golden_default_routes_and_old_style_policies_left_alone() {
        check("mesh_http_route", "02.default-route-coexistence", "web-1");
    }
}
