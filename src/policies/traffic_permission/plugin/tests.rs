//! TrafficPermission: golden RBAC filters, and which single policy an inbound gets.

use super::*;
use crate::model::mesh::MeshSpec;
use crate::model::rest::from_json;
use crate::model::Spec;
use crate::policies::core::testing::{check_golden, with_cx};
use crate::policies::resolved::ResolvedProxy;

const DIR: &str = "src/policies/traffic_permission/testdata";

#[test]
fn golden_principals_of_the_single_best_permission_per_inbound() {
    check_golden(DIR, "01.principals", "backend-1");
}

#[test]
fn golden_no_matching_permission_denies_all() {
    check_golden(DIR, "02.no-match-denies-all", "backend-1");
}

pub(crate) fn mtls_mesh() -> MeshSpec {
    let v = serde_json::json!({"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}});
    match from_json(v).unwrap().spec {
        Spec::Mesh(m) => m,
        _ => unreachable!(),
    }
}

/// Every plugin on `dataplane`, in a mesh with mTLS on (`mtls`) or off. Documents are created
/// one second apart, in order.
pub(crate) fn resolve_in(input: &str, dataplane: &str, mtls: bool) -> ResolvedProxy {
    let mesh = if mtls { mtls_mesh() } else { MeshSpec::default() };
    with_cx(input, dataplane, |cx| {
        let cx = ResolveCx {
            mesh_name: cx.mesh_name,
            mesh: &mesh,
            policies: cx.policies,
            name: cx.name,
            dataplane: cx.dataplane,
            protocol_of: cx.protocol_of,
            tls_ready: cx.tls_ready,
        };
        crate::policies::resolve(&cx)
    })
}

/// The allowed principals of inbound `i` (`None`: deny all), panicking without RBAC.
pub(crate) fn allowed(r: &ResolvedProxy, i: usize) -> Option<(String, Vec<Principal>)> {
    let rbac = r.inbounds[i].conf.rbac.as_ref().expect("an RBAC conf");
    rbac.allow.as_ref().map(|p| (p.name.clone(), p.principals.clone()))
}

fn spiffe(s: &str) -> Principal {
    Principal::Exact(format!("spiffe://default/{s}"))
}

const BACKEND: &str = r#"
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
    - {port: 8080, tags: {kuma.io/service: backend, version: v2}}
    - {port: 8081, tags: {kuma.io/service: other}}
"#;

fn tp(name: &str, source: &str, destination: &str) -> String {
    format!(
        "---\ntype: TrafficPermission\nmesh: default\nname: {name}\nsources: [{{match: {source}}}]\ndestinations: [{{match: {destination}}}]\n"
    )
}

/// Kuma's gotcha: a specific TrafficPermission on an inbound hides every less specific one
/// there, so allow-all no longer lets `batch` in once `web-only` names the service.
#[test]
fn only_the_single_best_permission_counts_for_an_inbound() {
    let input = format!(
        "{BACKEND}{}{}",
        tp("allow-all", "{kuma.io/service: '*'}", "{kuma.io/service: '*'}"),
        tp("web-only", "{kuma.io/service: web}", "{kuma.io/service: backend}")
    );
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0), Some(("web-only".to_string(), vec![spiffe("web")])));
    assert_eq!(allowed(&r, 1), Some(("allow-all".to_string(), vec![Principal::Any])), "other keeps allow-all");
}

#[test]
fn more_destination_tags_win_then_exact_values_then_the_newest() {
    // Two tags (one `*`) outrank one exact tag: total count first.
    let input = format!(
        "{BACKEND}{}{}",
        tp("exact-service", "{kuma.io/service: a}", "{kuma.io/service: backend}"),
        tp("two-tags", "{kuma.io/service: b}", "{kuma.io/service: '*', version: v2}")
    );
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0).unwrap().0, "two-tags");
    assert_eq!(allowed(&r, 1), None, "neither names `other`: deny all");
    // Equal totals: the more exact one.
    let input = format!(
        "{BACKEND}{}{}",
        tp("a-wild", "{kuma.io/service: a}", "{kuma.io/service: '*', version: '*'}"),
        tp("b-exact", "{kuma.io/service: b}", "{kuma.io/service: backend, version: '*'}")
    );
    assert_eq!(allowed(&resolve_in(&input, "backend-1", true), 0).unwrap().0, "b-exact");
    // Equal ranks: the newer (the later document), whatever the names.
    let input = format!(
        "{BACKEND}{}{}",
        tp("z-old", "{kuma.io/service: a}", "{kuma.io/service: backend}"),
        tp("a-new", "{kuma.io/service: b}", "{kuma.io/service: backend}")
    );
    assert_eq!(allowed(&resolve_in(&input, "backend-1", true), 0).unwrap().0, "a-new");
}

#[test]
fn sources_play_no_part_in_choosing_the_permission() {
    // `web-only`'s source matches no dataplane at all; it still wins on its destination.
    let input = format!(
        "{BACKEND}{}{}",
        tp("allow-all", "{kuma.io/service: '*'}", "{kuma.io/service: '*'}"),
        tp("nobody", "{kuma.io/service: ghost}", "{kuma.io/service: backend}")
    );
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0), Some(("nobody".to_string(), vec![spiffe("ghost")])));
}

#[test]
fn a_destination_tag_the_inbound_lacks_does_not_match() {
    let input =
        format!("{BACKEND}{}", tp("v1-only", "{kuma.io/service: web}", "{kuma.io/service: backend, version: v1}"));
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0), None);
}

#[test]
fn with_mtls_off_there_is_no_rbac_at_all() {
    let input = format!("{BACKEND}{}", tp("allow-all", "{kuma.io/service: '*'}", "{kuma.io/service: '*'}"));
    let r = resolve_in(&input, "backend-1", false);
    assert!(r.inbounds.iter().all(|i| i.conf.rbac.is_none()));
    // Without any permission, too: off means off, not deny.
    let r = resolve_in(BACKEND, "backend-1", false);
    assert!(r.inbounds.iter().all(|i| i.conf.rbac.is_none()));
    let r = resolve_in(BACKEND, "backend-1", true);
    assert!(r.inbounds.iter().all(|i| i.conf.rbac.as_ref().is_some_and(|x| x.allow.is_none())));
}

#[test]
fn the_stat_prefix_names_the_inbound_listener() {
    let input = format!("{BACKEND}{}", tp("allow-all", "{kuma.io/service: '*'}", "{kuma.io/service: '*'}"));
    let r = resolve_in(&input, "backend-1", true);
    let prefixes: Vec<&str> = r.inbounds.iter().map(|i| i.conf.rbac.as_ref().unwrap().stat_prefix.as_str()).collect();
    assert_eq!(prefixes, ["inbound_10_0_0_2_8080.", "inbound_10_0_0_2_8081."]);
}

#[test]
fn source_selectors_become_principals_in_kumas_shape() {
    let sel = |pairs: &[(&str, &str)]| Selector {
        match_: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    assert_eq!(source_principal("m", &sel(&[(SERVICE_TAG, "*")])), Principal::Any);
    assert_eq!(source_principal("m", &sel(&[(SERVICE_TAG, "web")])), Principal::Exact("spiffe://m/web".into()));
    assert_eq!(
        source_principal("m", &sel(&[(SERVICE_TAG, "web"), ("version", "1"), ("zone", "*"), ("env", "prod")])),
        Principal::And(vec![
            Principal::Exact("kuma://env/prod".into()),
            Principal::Exact("kuma://version/1".into()),
            Principal::Exact("spiffe://m/web".into()),
        ])
    );
    assert_eq!(source_principal("m", &sel(&[("team", "ops")])), Principal::Exact("kuma://team/ops".into()));
}
