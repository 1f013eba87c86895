//! MeshTrafficPermission: golden RBAC filters, principals of `from` rules and `rules`
//! matchers, and coexistence with TrafficPermission.

use super::*;
use crate::policies::core::testing::check_golden;
use crate::policies::traffic_permission::plugin::tests::{allowed, resolve_in};

const DIR: &str = "src/policies/mesh_traffic_permission/testdata";

#[test]
fn golden_allow_deny_shadow_and_negated_subsets() {
    check_golden(DIR, "01.from-actions", "backend-1");
}

#[test]
fn golden_replaces_traffic_permission_only_on_the_inbounds_it_selects() {
    check_golden(DIR, "02.coexistence", "backend-1");
}

#[test]
fn golden_rules_deny_before_allow_and_with_from() {
    check_golden(DIR, "03.rules", "backend-1");
}

const BACKEND: &str = r#"
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
    - {port: 8080, tags: {kuma.io/service: backend}}
    - {port: 8081, tags: {kuma.io/service: other}}
"#;

fn mtp(name: &str, top: &str, from: &[(&str, &str)]) -> String {
    let from: Vec<String> =
        from.iter().map(|(target, action)| format!("{{targetRef: {target}, default: {{action: {action}}}}}")).collect();
    format!(
        "---\ntype: MeshTrafficPermission\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n  from: [{}]\n",
        from.join(", ")
    )
}

fn rbac(r: &ResolvedProxy, i: usize) -> &InboundRbac {
    r.inbounds[i].conf.rbac.as_ref().expect("an RBAC conf")
}

fn spiffe(s: &str) -> Principal {
    Principal::Exact(format!("spiffe://default/{s}"))
}

fn kuma(k: &str, v: &str) -> Principal {
    Principal::Exact(format!("kuma://{k}/{v}"))
}

fn not(p: Principal) -> Principal {
    Principal::Not(Box::new(p))
}

/// Kuma's rules example (`multiple-mtp`): every rule but the zone=us-east Deny one is a
/// principal, in rule order, negations as notId. Kuma's `mtp-2` overrides `mtp-1` there (2.4
/// merged the greatest name last); under 2.6's order the zones policy needs the smaller name.
#[test]
fn kumas_multiple_permissions_example_in_principals() {
    let input = format!(
        "{BACKEND}{}{}",
        mtp("z-mesh", "{kind: Mesh}", &[("{kind: Mesh}", "Allow")]),
        mtp(
            "a-zones",
            "{kind: Mesh}",
            &[
                ("{kind: MeshSubset, tags: {zone: us-east}}", "Deny"),
                ("{kind: MeshSubset, tags: {env: dev}}", "Allow"),
                ("{kind: MeshSubset, tags: {env: prod}}", "Allow"),
            ]
        )
    );
    let r = resolve_in(&input, "backend-1", true);
    let (name, principals) = allowed(&r, 0).unwrap();
    assert_eq!(name, "MeshTrafficPermission");
    let and = Principal::And;
    assert_eq!(
        principals,
        vec![
            and(vec![kuma("env", "prod"), kuma("zone", "us-east")]),
            and(vec![kuma("env", "dev"), kuma("zone", "us-east")]),
            and(vec![kuma("env", "prod"), not(kuma("zone", "us-east"))]),
            and(vec![kuma("env", "dev"), not(kuma("zone", "us-east"))]),
            and(vec![not(kuma("env", "dev")), not(kuma("env", "prod")), not(kuma("zone", "us-east"))]),
        ]
    );
    assert_eq!(rbac(&r, 0).shadow_deny, None);
}

#[test]
fn on_equal_kinds_the_smallest_name_wins() {
    // Kuma 2.6+ (2.4 let the greatest name win): `a-deny` is merged last.
    let input = format!(
        "{BACKEND}{}{}",
        mtp("a-deny", "{kind: Mesh}", &[("{kind: Mesh}", "Deny")]),
        mtp("b-allow", "{kind: Mesh}", &[("{kind: Mesh}", "Allow")])
    );
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0), None);
    // A more specific top-level kind outranks any name.
    let input = format!(
        "{BACKEND}{}{}",
        mtp("a-deny", "{kind: Mesh}", &[("{kind: Mesh}", "Deny")]),
        mtp("z-allow", "{kind: MeshService, name: backend}", &[("{kind: Mesh}", "Allow")])
    );
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0).map(|a| a.1), Some(vec![Principal::Any]));
    assert_eq!(allowed(&r, 1), None, "other: only a-deny selects it");
}

#[test]
fn inbounds_no_mesh_traffic_permission_selects_keep_traffic_permissions_rbac() {
    let tp = "---\ntype: TrafficPermission\nmesh: default\nname: web-to-other\nsources: [{match: {kuma.io/service: web}}]\ndestinations: [{match: {kuma.io/service: other}}]\n";
    let input =
        format!("{BACKEND}{tp}{}", mtp("backend", "{kind: MeshService, name: backend}", &[("{kind: Mesh}", "Allow")]));
    let r = resolve_in(&input, "backend-1", true);
    assert_eq!(allowed(&r, 0), Some(("MeshTrafficPermission".to_string(), vec![Principal::Any])));
    assert_eq!(allowed(&r, 1), Some(("web-to-other".to_string(), vec![spiffe("web")])));
}

#[test]
fn shadow_denied_clients_are_allowed_and_in_the_shadow_rules() {
    let input = format!(
        "{BACKEND}{}",
        mtp(
            "p",
            "{kind: Mesh}",
            &[("{kind: MeshService, name: batch}", "AllowWithShadowDeny"), ("{kind: MeshService, name: web}", "Allow")]
        )
    );
    let r = resolve_in(&input, "backend-1", true);
    let x = rbac(&r, 0);
    // Rule order: the two subsets are disjoint, most tags first, in Kuma's component order.
    let allowed: Vec<Principal> = x.allow.as_ref().unwrap().principals.clone();
    assert_eq!(allowed.len(), 2);
    assert!(allowed.contains(&spiffe("web")) && allowed.contains(&spiffe("batch")));
    assert_eq!(x.shadow_deny.as_ref().map(|s| s.principals.clone()), Some(vec![spiffe("batch")]));
}

#[test]
fn with_mtls_off_nothing_is_enforced() {
    let input = format!("{BACKEND}{}", mtp("p", "{kind: Mesh}", &[("{kind: Mesh}", "Deny")]));
    let r = resolve_in(&input, "backend-1", false);
    assert!(r.inbounds.iter().all(|i| i.conf.rbac.is_none()));
}

fn rules(name: &str, top: &str, deny: &[&str], shadow: &[&str], allow: &[&str]) -> String {
    let list = |ids: &[&str]| -> String {
        let m: Vec<String> = ids
            .iter()
            .map(|id| {
                let (t, v) = id.split_once(' ').unwrap();
                format!("{{spiffeID: {{type: {t}, value: '{v}'}}}}")
            })
            .collect();
        format!("[{}]", m.join(", "))
    };
    format!(
        "---\ntype: MeshTrafficPermission\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n  rules:\n    - default: {{deny: {}, allowWithShadowDeny: {}, allow: {}}}\n",
        list(deny),
        list(shadow),
        list(allow)
    )
}

#[test]
fn rules_deny_wins_over_allow_whichever_policy_says_it() {
    let input = format!(
        "{BACKEND}{}{}",
        rules("owner", "{kind: MeshService, name: backend}", &[], &[], &["Prefix spiffe://default/"]),
        rules("operator", "{kind: Mesh}", &["Exact spiffe://default/legacy"], &[], &[])
    );
    let r = resolve_in(&input, "backend-1", true);
    let expected = Principal::And(vec![not(spiffe("legacy")), Principal::Prefix("spiffe://default/".into())]);
    assert_eq!(allowed(&r, 0).map(|a| a.1), Some(vec![expected]));
    // `other` has only the operator's deny: nothing allows anyone (rules deny by default).
    assert_eq!(allowed(&r, 1), None);
}

#[test]
fn rules_without_deny_are_a_plain_list_and_shadow_is_allowed_and_shadowed() {
    let input = format!(
        "{BACKEND}{}",
        rules("p", "{kind: Mesh}", &[], &["Exact spiffe://default/batch"], &["Exact spiffe://default/web"])
    );
    let r = resolve_in(&input, "backend-1", true);
    let x = rbac(&r, 0);
    assert_eq!(x.allow.as_ref().unwrap().principals, vec![spiffe("web"), spiffe("batch")]);
    assert_eq!(x.shadow_deny.as_ref().unwrap().principals, vec![spiffe("batch")]);
}

#[test]
fn from_and_rules_on_one_inbound_combine_in_kumas_order() {
    let input = format!(
        "{BACKEND}{}{}",
        rules("a-rules", "{kind: Mesh}", &["Exact spiffe://default/legacy"], &[], &["Exact spiffe://default/batch"]),
        mtp("b-from", "{kind: Mesh}", &[("{kind: Mesh}", "Allow"), ("{kind: MeshService, name: web}", "Deny")])
    );
    let r = resolve_in(&input, "backend-1", true);
    // Denied: rules' deny, then from's Deny rule (web); allowed: rules' allow, then from's
    // Allow rule (everyone but web).
    let expected = Principal::And(vec![
        not(Principal::Or(vec![spiffe("legacy"), spiffe("web")])),
        Principal::Or(vec![spiffe("batch"), not(spiffe("web"))]),
    ]);
    assert_eq!(allowed(&r, 0).map(|a| a.1), Some(vec![expected]));
}
