//! Kuma's inspect endpoints (reference §5): which policies reach a dataplane and where they
//! attach, its targetRef rules, the xDS config it was served, and which dataplanes a policy
//! reaches.
//!
//! Matching runs on the engine the reconciler uses: a [`MeshContext`] built from the store,
//! with the mesh's policies of *every* type (the reconciler's contexts hold only the types
//! some plugin enforces, so a type stored before its plugin exists is still shown), and
//! `policies::core`'s selection and rules.

use crate::model::Tags;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{ApiContext, ApiError, Reply};
use crate::model::dataplane::{DataplaneSpec, Inbound, Outbound};
use crate::model::selector::SERVICE_TAG;
use crate::model::{rest, Resource, ResourceKey, ResourceType, Spec};
use crate::policies::core::matching;
use crate::policies::core::oldstyle::{self, Attachment as OldStyleAttachment};
use crate::policies::core::rules::{Rule, Subset, Tag};
use crate::policies::core::set::PolicySet;
use crate::store::{ResourceReader, SharedStore, StoreError};
use crate::xds::context::MeshContext;
use crate::xds::generate::GenerateError;

/// Every dataplane higuma serves is a sidecar (builtin gateways are not served).
const SIDECAR: &str = "SidecarDataplane";

/// The store as the context builder reads it.
struct StoreReader<'a>(&'a SharedStore);

impl ResourceReader for StoreReader<'_> {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        self.0.get(key)
    }
    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>, StoreError> {
        self.0.list(rtype, mesh)
    }
}

/// The mesh's context with every policy type in its policy set.
fn mesh_view(store: &SharedStore, mesh: &str) -> Result<MeshContext, ApiError> {
    let base = MeshContext::build(&StoreReader(store), mesh, None).map_err(|e| match e {
        GenerateError::Store(e) => ApiError::from(e),
        other => ApiError::new(500, "Internal Server Error", other.to_string()),
    })?;
    let mut lists = Vec::new();
    for t in ResourceType::policies() {
        lists.push((t, store.list(t, Some(mesh))?));
    }
    Ok(MeshContext { policies: Arc::new(PolicySet::from_lists(lists)), ..base })
}

fn dataplane<'a>(
    view: &'a MeshContext,
    mesh: &str,
    name: &str,
) -> Result<(&'a Arc<Resource>, &'a DataplaneSpec), ApiError> {
    let dp = view
        .dataplanes
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("Dataplane {name:?} not found in mesh {mesh:?}")))?;
    match &dp.spec {
        Spec::Dataplane(spec) => Ok((dp, spec)),
        _ => Err(ApiError::new(500, "Internal Server Error", format!("{name:?} is not a Dataplane"))),
    }
}

/// Where a policy attaches on a dataplane (Kuma's `inspect.Attachment`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Attachment {
    kind: &'static str,
    name: String,
    service: String,
}

impl Attachment {
    /// Kuma sorts attachments by their Go `%s` form, `{type name service}`.
    fn sort_key(&self) -> String {
        format!("{{{} {} {}}}", self.kind, self.name, self.service)
    }

    fn dataplane() -> Attachment {
        Attachment { kind: "dataplane", name: String::new(), service: String::new() }
    }

    /// `<dataplane ip>:<port>:<workload port>`, Kuma's InboundInterface.
    fn inbound(spec: &DataplaneSpec, i: &Inbound) -> Attachment {
        let name = format!("{}:{}:{}", i.effective_address(&spec.networking), i.port, i.effective_service_port());
        Attachment { kind: "inbound", name, service: i.service().to_string() }
    }

    /// `<ip>:<port>`, Kuma's OutboundInterface.
    fn outbound(o: &Outbound) -> Attachment {
        Attachment {
            kind: "outbound",
            name: format!("{}:{}", o.effective_address(), o.port),
            service: o.service().to_string(),
        }
    }

    fn service(service: &str) -> Attachment {
        Attachment { kind: "service", name: service.to_string(), service: service.to_string() }
    }

    fn to_json(&self) -> Value {
        json!({"type": self.kind, "name": self.name, "service": self.service})
    }
}

/// Every (attachment, policy) of `dp`, of the types `only` names (all when `None`), each
/// attachment's policies in the order the engine ranks or merges them.
fn attachments(
    view: &MeshContext,
    dp: &Resource,
    spec: &DataplaneSpec,
    only: Option<ResourceType>,
) -> Vec<(Attachment, Arc<Resource>)> {
    let set = &view.policies;
    let net = &spec.networking;
    let mut out: Vec<(Attachment, Arc<Resource>)> = Vec::new();
    // Destination services come from the resolved clusters (routing decides them), and
    // resolving is the costly part: only for a type that attaches per service.
    let mut destinations: Option<Vec<String>> = None;
    for t in ResourceType::policies().filter(|t| only.is_none_or(|o| o == *t)) {
        let list = set.of(t);
        if list.is_empty() {
            continue;
        }
        if t.is_target_ref_policy() {
            // Kuma 2.4 shows every targetRef policy as a `dataplane` attachment.
            for i in matching::matched(set, t, spec) {
                if let Some(p) = list.get(i as usize) {
                    out.push((Attachment::dataplane(), p.clone()));
                }
            }
            continue;
        }
        let Some(kind) = list.iter().find_map(|r| r.spec.old_style()).map(|p| p.attachment()) else { continue };
        match kind {
            OldStyleAttachment::Outbound => {
                for o in &net.outbound {
                    if let Some(p) = oldstyle::select_outbound(list, spec, o.service()) {
                        out.push((Attachment::outbound(o), p.clone()));
                    }
                }
            }
            OldStyleAttachment::Service => {
                let services = destinations.get_or_insert_with(|| {
                    let mut v: Vec<String> =
                        view.resolve(dp, spec).clusters.iter().map(|c| c.service.clone()).collect();
                    v.sort();
                    v.dedup();
                    v
                });
                for svc in services.iter() {
                    if let Some(p) = oldstyle::select_outbound(list, spec, svc) {
                        out.push((Attachment::service(svc), p.clone()));
                    }
                }
            }
            OldStyleAttachment::InboundBest => {
                for i in &net.inbound {
                    if let Some(p) = oldstyle::select_inbound(list, &i.tags) {
                        out.push((Attachment::inbound(spec, i), p.clone()));
                    }
                }
            }
            OldStyleAttachment::InboundAll => {
                for i in &net.inbound {
                    for p in oldstyle::select_inbound_all(list, &i.tags) {
                        out.push((Attachment::inbound(spec, i), p.clone()));
                    }
                }
            }
        }
    }
    out
}

/// `GET /meshes/{mesh}/dataplanes/{name}/policies`.
pub fn dataplane_policies(ctx: &ApiContext, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let view = mesh_view(&ctx.store, mesh)?;
    let (dp, spec) = dataplane(&view, mesh, name)?;
    // By attachment, then by type name (as Go prints a map), policies in engine order.
    let mut grouped: BTreeMap<String, (Attachment, BTreeMap<&'static str, Vec<Value>>)> = BTreeMap::new();
    for (a, p) in attachments(&view, dp, spec, None) {
        let entry = grouped.entry(a.sort_key()).or_insert_with(|| (a, BTreeMap::new()));
        entry.1.entry(p.rtype().name()).or_default().push(rest::to_json(&p));
    }
    let items: Vec<Value> = grouped
        .into_values()
        .map(|(a, by_type)| {
            let mut item = a.to_json();
            item["matchedPolicies"] =
                Value::Object(by_type.into_iter().map(|(t, v)| (t.to_string(), Value::Array(v))).collect());
            item
        })
        .collect();
    Ok(Reply::json(200, json!({"kind": SIDECAR, "total": items.len(), "items": items})))
}

/// Kuma's `DestinationClusterName`: the service alone when it is the only tag, else
/// `<service>-<16 hex>` of SHA-256 over the sorted `key` `value` pairs.
pub fn destination_cluster_name(tags: &Tags) -> String {
    let service = tags.get(SERVICE_TAG).map(String::as_str).unwrap_or("");
    if tags.len() == 1 && !service.is_empty() {
        return service.to_string();
    }
    let mut bytes = Vec::new();
    for (k, v) in tags {
        bytes.extend_from_slice(k.as_bytes());
        bytes.extend_from_slice(v.as_bytes());
    }
    let digest = openssl::sha::sha256(&bytes);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{service}-{hex}")
}

fn rule_json(kind: &str, policy_type: ResourceType, rule: &Rule) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind));
    m.insert("policyType".into(), Value::from(policy_type.name()));
    m.insert("subset".into(), json!(rule.subset.to_map()));
    m.insert("conf".into(), rule.conf.clone());
    let origins: Vec<Value> = rule.origin.iter().map(|k| json!({"mesh": k.mesh, "name": k.name})).collect();
    m.insert("origins".into(), Value::Array(origins));
    m
}

fn located(mut m: Map<String, Value>, name: String, addresses: Vec<String>, tags: &Tags) -> Value {
    let service = tags.get(SERVICE_TAG).cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("type".into(), m.remove("type").unwrap_or_default());
    out.insert("name".into(), Value::from(name));
    out.insert("addresses".into(), json!(addresses));
    out.insert("service".into(), Value::from(service));
    out.insert("tags".into(), json!(tags));
    out.extend(m);
    Value::Object(out)
}

/// `GET /meshes/{mesh}/dataplanes/{name}/rules`: per targetRef type, a `ClientSubset` per
/// `from` rule of each inbound and a `DestinationSubset` per distinct outbound with the rule
/// its tags compute to; sorted by name, then type.
pub fn dataplane_rules(ctx: &ApiContext, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let view = mesh_view(&ctx.store, mesh)?;
    let (_, spec) = dataplane(&view, mesh, name)?;
    let set = &view.policies;
    let net = &spec.networking;
    let mut items: Vec<(String, String, Value)> = Vec::new();
    for t in ResourceType::policies().filter(|t| t.is_target_ref_policy()) {
        let matched = matching::matched(set, t, spec);
        if matched.is_empty() {
            continue;
        }
        let options = t.rules_merge();
        for inbound in &net.inbound {
            let rules = matching::from_rules(set, t, &matched, &inbound.tags, options);
            let name = destination_cluster_name(&inbound.tags);
            let address = format!("{}:{}", inbound.effective_address(net), inbound.port);
            for rule in &rules.rules {
                let item =
                    located(rule_json("ClientSubset", t, rule), name.clone(), vec![address.clone()], &inbound.tags);
                items.push((name.clone(), "ClientSubset".into(), item));
            }
        }
        let to = matching::to_rules(set, t, &matched, options);
        if to.is_empty() {
            continue;
        }
        // One entry per distinct destination cluster, with every outbound address using it.
        let mut by_cluster: Vec<(String, &Outbound, &Rule, Vec<String>)> = Vec::new();
        for o in &net.outbound {
            let name = destination_cluster_name(&o.tags);
            let address = format!("{}:{}", o.effective_address(), o.port);
            if let Some(entry) = by_cluster.iter_mut().find(|e| e.0 == name) {
                if !entry.3.contains(&address) {
                    entry.3.push(address);
                }
                continue;
            }
            let query =
                Subset::new(o.tags.iter().map(|(k, v)| Tag { key: k.clone(), value: v.clone(), not: false }).collect());
            if let Some(rule) = to.compute_for(&query) {
                by_cluster.push((name, o, rule, vec![address]));
            }
        }
        for (name, o, rule, addresses) in by_cluster {
            let item = located(rule_json("DestinationSubset", t, rule), name.clone(), addresses, &o.tags);
            items.push((name, "DestinationSubset".into(), item));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let items: Vec<Value> = items.into_iter().map(|(_, _, v)| v).collect();
    Ok(Reply::json(200, json!({"total": items.len(), "items": items})))
}

/// `GET /meshes/{mesh}/{policy type}/{name}/dataplanes`: every dataplane the policy
/// reaches, with where it attaches.
pub fn policy_dataplanes(ctx: &ApiContext, rtype: ResourceType, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let key = ResourceKey::new(rtype, mesh, name);
    ctx.store.get(&key)?;
    let view = mesh_view(&ctx.store, mesh)?;
    let mut names: Vec<&String> = view.dataplanes.keys().collect();
    names.sort();
    let mut items = Vec::new();
    for dp_name in names {
        let Some(dp) = view.dataplanes.get(dp_name) else { continue };
        let Spec::Dataplane(spec) = &dp.spec else { continue };
        let mut found: Vec<Attachment> = attachments(&view, dp, spec, Some(rtype))
            .into_iter()
            .filter(|(_, p)| p.key() == key)
            .map(|(a, _)| a)
            .collect();
        if found.is_empty() {
            continue;
        }
        found.sort_by_key(Attachment::sort_key);
        found.dedup();
        items.push(json!({
            "kind": SIDECAR,
            "dataplane": {"mesh": mesh, "name": dp_name},
            "attachments": found.iter().map(Attachment::to_json).collect::<Vec<_>>(),
        }));
    }
    Ok(Reply::json(200, json!({"total": items.len(), "items": items})))
}

/// `GET /meshes/{mesh}/dataplanes/{name}/xds`: what higuma last served the dataplane and
/// what it ACKed, in the shape of Envoy's config dump.
pub fn dataplane_xds(ctx: &ApiContext, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let key = ResourceKey::new(ResourceType::Dataplane, mesh, name);
    ctx.store.get(&key)?;
    let served = ctx.xds.as_ref().and_then(|x| x.dataplane_xds(&key)).ok_or_else(|| {
        ApiError::not_found(format!(
            "Dataplane {name:?} in mesh {mesh:?} is not connected to this control plane instance ({})",
            ctx.instance_id
        ))
    })?;
    Ok(Reply::json(200, crate::xds::inspect::config_dump(&served)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cluster_names_follow_kuma() {
        assert_eq!(destination_cluster_name(&tags(&[(SERVICE_TAG, "backend")])), "backend");
        let name = destination_cluster_name(&tags(&[(SERVICE_TAG, "web"), ("kuma.io/protocol", "http")]));
        // SHA-256 of "kuma.io/protocolhttpkuma.io/serviceweb", first 8 bytes.
        let digest = openssl::sha::sha256(b"kuma.io/protocolhttpkuma.io/serviceweb");
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(name, format!("web-{hex}"));
        assert_eq!(name.len(), "web-".len() + 16);
    }

    #[test]
    fn attachments_sort_as_kuma_prints_them() {
        let mut v = [
            Attachment::service("a"),
            Attachment { kind: "outbound", name: "127.0.0.1:1".into(), service: "a".into() },
            Attachment { kind: "inbound", name: "10.0.0.1:1:2".into(), service: "web".into() },
            Attachment::dataplane(),
        ];
        v.sort_by_key(Attachment::sort_key);
        let kinds: Vec<&str> = v.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["dataplane", "inbound", "outbound", "service"]);
    }
}
