//! `dataplanes+insights`: each Dataplane with its DataplaneInsight, as Kuma's
//! DataplaneOverview, filtered by `name` (substring) and `tag=key:value` (repeatable); and
//! `dataplanes+xds`: where each type's exchange stands for the mesh's dataplanes connected
//! to this instance (last ACKed and NACKed versions, Envoy's error).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::resources::page;
use super::{ApiContext, ApiError, Reply, Request};
use crate::model::rest::format_time;
use crate::model::{ResourceKey, ResourceType, Spec};

pub fn list(ctx: &ApiContext, req: &Request, mesh: Option<&str>) -> Result<Reply, ApiError> {
    let mut tag_filters = Vec::new();
    for (_, v) in req.query.iter().filter(|(k, _)| k == "tag") {
        match v.split_once(':') {
            Some((key, value)) if !key.is_empty() => tag_filters.push((key.to_string(), value.to_string())),
            _ => return Err(ApiError::invalid_field("tag", format!("invalid tag filter {v:?}: expected key:value"))),
        }
    }
    let name_filter = req.query_param("name").unwrap_or("");
    let dataplanes = ctx.reads.list(ResourceType::Dataplane, mesh)?;
    let insights: HashMap<(String, String), Value> = ctx
        .reads
        .list(ResourceType::DataplaneInsight, mesh)?
        .iter()
        .map(|r| ((r.meta.mesh.clone(), r.meta.name.clone()), r.spec.to_json()))
        .collect();
    let items: Vec<Value> = dataplanes
        .iter()
        .filter(|dp| dp.meta.name.contains(name_filter))
        .filter(|dp| match &dp.spec {
            Spec::Dataplane(spec) => tag_filters.iter().all(|(k, v)| {
                spec.networking.inbound.iter().any(|i| i.tags.get(k).is_some_and(|t| v.is_empty() || t == v))
            }),
            _ => false,
        })
        .map(|dp| {
            let insight = insights.get(&(dp.meta.mesh.clone(), dp.meta.name.clone())).cloned();
            overview_json(dp, insight)
        })
        .collect();
    page(req, items)
}

pub fn one(ctx: &ApiContext, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let dp = ctx.reads.get(&ResourceKey::new(ResourceType::Dataplane, mesh, name))?;
    let insight = match ctx.reads.get(&ResourceKey::new(ResourceType::DataplaneInsight, mesh, name)) {
        Ok(r) => Some(r.spec.to_json()),
        Err(crate::store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Reply::json(200, overview_json(&dp, insight)))
}

fn overview_json(dp: &crate::model::Resource, insight: Option<Value>) -> Value {
    json!({
        "type": "DataplaneOverview",
        "mesh": dp.meta.mesh,
        "name": dp.meta.name,
        "creationTime": format_time(dp.meta.creation_time),
        "modificationTime": format_time(dp.meta.modification_time),
        "dataplane": dp.spec.to_json(),
        "dataplaneInsight": insight.unwrap_or_else(|| json!({})),
    })
}

/// `GET /meshes/{mesh}/dataplanes+xds`: `{total, items}` of the connected dataplanes.
pub fn streams(ctx: &ApiContext, mesh: &str) -> Result<Reply, ApiError> {
    let items: Vec<Value> = match &ctx.xds {
        Some(x) => x.mesh_streams(mesh).iter().map(|s| s.to_json()).collect(),
        None => Vec::new(),
    };
    Ok(Reply::json(200, json!({"total": items.len(), "items": items, "instance": ctx.instance_id})))
}
