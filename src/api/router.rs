//! Maps a method and path to its handler, the way Kuma's API lays out its paths:
//! `/meshes/{name}`, `/meshes/{mesh}/{type}/{name}`, `/{type}` across meshes,
//! `dataplanes+insights`, `/config`, `/`.

use serde_json::json;

use super::{overview, resources, tokens, ApiContext, ApiError, Reply, Request};
use crate::model::ResourceType;

/// Kuma version whose API shapes higuma follows.
pub const KUMA_API_VERSION: &str = "2.4.0";

pub fn route(ctx: &ApiContext, req: &Request) -> Reply {
    match dispatch(ctx, req) {
        Ok(reply) => reply,
        Err(err) => err.into(),
    }
}

fn dispatch(ctx: &ApiContext, req: &Request) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method.as_str();
    match (method, segments.as_slice()) {
        ("GET", []) => Ok(index(ctx)),
        ("GET", ["config"]) => Ok(Reply::json(200, ctx.config().sanitized())),
        ("GET", ["policies"]) => Ok(policies()),
        ("POST", ["tokens", "dataplane"]) => tokens::post_dataplane(ctx, req),
        (_, ["meshes"]) => only_get(method, || resources::list(ctx, req, ResourceType::Mesh, None)),
        (_, ["meshes", name]) => resources::one(ctx, req, ResourceType::Mesh, "", name),
        (_, ["meshes", mesh, "dataplanes+insights"]) => only_get(method, || overview::list(ctx, req, Some(mesh))),
        (_, ["meshes", mesh, "dataplanes+insights", name]) => only_get(method, || overview::one(ctx, mesh, name)),
        (_, ["dataplanes+insights"]) => only_get(method, || overview::list(ctx, req, None)),
        (_, ["meshes", mesh, path]) => {
            let rtype = mesh_scoped_type(path)?;
            only_get(method, || resources::list(ctx, req, rtype, Some(mesh)))
        }
        (_, ["meshes", mesh, path, name]) => {
            let rtype = mesh_scoped_type(path)?;
            resources::one(ctx, req, rtype, mesh, name)
        }
        (_, [path]) if ResourceType::from_ws_path(path).is_some_and(|t| !t.is_global()) => {
            let rtype = mesh_scoped_type(path)?;
            only_get(method, || resources::list(ctx, req, rtype, None))
        }
        // Global types other than Mesh (GlobalSecret): `/{type}` and `/{type}/{name}`.
        (_, [path]) if ResourceType::from_ws_path(path).is_some_and(|t| t.is_global()) => {
            let rtype = ResourceType::from_ws_path(path).unwrap_or(ResourceType::Mesh);
            only_get(method, || resources::list(ctx, req, rtype, None))
        }
        (_, [path, name]) if ResourceType::from_ws_path(path).is_some_and(|t| t.is_global()) => {
            let rtype = ResourceType::from_ws_path(path).unwrap_or(ResourceType::Mesh);
            resources::one(ctx, req, rtype, "", name)
        }
        _ => Err(ApiError::not_found(format!("no such path: {}", req.path))),
    }
}

fn mesh_scoped_type(path: &str) -> Result<ResourceType, ApiError> {
    match ResourceType::from_ws_path(path) {
        Some(t) if !t.is_global() => Ok(t),
        _ => Err(ApiError::not_found(format!(
            "unknown resource type {path:?}; known: {}",
            ResourceType::ALL.iter().filter(|t| !t.is_global()).map(|t| t.ws_path()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn only_get(method: &str, f: impl FnOnce() -> Result<Reply, ApiError>) -> Result<Reply, ApiError> {
    if method == "GET" {
        f()
    } else {
        Err(ApiError::method_not_allowed(format!("{method} is not allowed on a collection; use GET")))
    }
}

fn index(ctx: &ApiContext) -> Reply {
    Reply::json(
        200,
        json!({
            "hostname": gethostname::gethostname().to_string_lossy(),
            // kumactl checks this field to recognise a Kuma-compatible control plane.
            "tagline": "Kuma",
            "product": "Higuma",
            "version": env!("CARGO_PKG_VERSION"),
            "basedOnKuma": KUMA_API_VERSION,
            "instanceId": ctx.instance_id,
            "clusterId": "",
            "gui": "not available in higuma",
        }),
    )
}

fn policies() -> Reply {
    let items: Vec<_> = ResourceType::ALL
        .iter()
        .filter(|t| t.is_policy())
        .map(|t| {
            json!({
                "name": t.name(),
                "path": t.ws_path(),
                "readOnly": false,
                "singularDisplayName": t.name(),
                "pluralDisplayName": t.ws_path(),
                "isExperimental": false,
                "isTargetRefBased": false,
            })
        })
        .collect();
    Reply::json(200, json!({ "policies": items }))
}
