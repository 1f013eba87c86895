//! Maps a method and path to its handler, the way Kuma's API lays out its paths:
//! `/meshes/{name}`, `/meshes/{mesh}/{type}/{name}`, `/{type}` across meshes,
//! `dataplanes+insights`, `/config`, `/`.

use serde_json::json;

use super::authn::{self, Authz, User};
use super::{
    changes, control_plane, inspect, overview, resources, tokens, user_tokens, ApiContext, ApiError, Reply, Request,
};
use crate::model::ResourceType;

/// Kuma version whose API shapes higuma follows.
pub const KUMA_API_VERSION: &str = "2.4.0";

pub fn route(ctx: &ApiContext, req: &Request) -> Reply {
    let result = authn::authenticate(ctx, req).and_then(|user| dispatch(ctx, req, &user));
    match result {
        Ok(reply) => reply,
        Err(err) => err.into(),
    }
}

fn dispatch(ctx: &ApiContext, req: &Request, user: &User) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method.as_str();
    let config = ctx.config();
    // Every resource path is checked against access.static before anything is read.
    let guard = |rtype: ResourceType| Authz { config: &config, user }.resource(method, rtype);
    match (method, segments.as_slice()) {
        ("GET", []) => Ok(index(ctx)),
        ("GET", ["config"]) => Ok(Reply::json(200, config.sanitized())),
        ("GET", ["policies"]) => Ok(policies(ctx)),
        ("GET", ["who-am-i"]) => Ok(user_tokens::who_am_i(user)),
        (_, ["changes"]) => only_get(method, || changes::list(ctx, req, user)),
        (_, ["changes", id]) => inspect_get(method, || changes::one(ctx, id, user)),
        (_, ["control-plane", "status"]) => inspect_get(method, || Ok(control_plane::status(ctx))),
        ("POST", ["tokens", "user"]) => user_tokens::generate(ctx, req, user),
        (_, ["tokens", "user"]) => Err(ApiError::method_not_allowed(format!("{method} is not allowed here; use POST"))),
        ("POST", ["tokens", "dataplane"]) => {
            Authz { config: &config, user }.generate_dataplane_token()?;
            tokens::post_dataplane(ctx, req)
        }
        (_, ["meshes"]) => {
            guard(ResourceType::Mesh)?;
            only_get(method, || resources::list(ctx, req, ResourceType::Mesh, None))
        }
        (_, ["meshes", name]) => {
            guard(ResourceType::Mesh)?;
            resources::one(ctx, req, ResourceType::Mesh, "", name)
        }
        (_, ["meshes", mesh, "dataplanes+insights"]) => only_get(method, || overview::list(ctx, req, Some(mesh))),
        (_, ["meshes", mesh, "dataplanes+insights", name]) => only_get(method, || overview::one(ctx, mesh, name)),
        (_, ["dataplanes+insights"]) => only_get(method, || overview::list(ctx, req, None)),
        (_, ["meshes", mesh, "dataplanes+xds"]) => only_get(method, || overview::streams(ctx, mesh)),
        (_, ["meshes", mesh, "dataplanes", name, "policies"]) => {
            inspect_get(method, || inspect::dataplane_policies(ctx, mesh, name))
        }
        (_, ["meshes", mesh, "dataplanes", name, "rules"]) => {
            inspect_get(method, || inspect::dataplane_rules(ctx, mesh, name))
        }
        (_, ["meshes", mesh, "dataplanes", name, "xds"]) => {
            // The config a dataplane was sent: `access.static.viewConfigDump`, as Kuma guards
            // its config dump.
            Authz { config: &config, user }.view_config_dump()?;
            inspect_get(method, || inspect::dataplane_xds(ctx, mesh, name))
        }
        (_, ["meshes", mesh, path, name, "dataplanes"]) => match ResourceType::from_ws_path(path) {
            Some(rtype) if rtype.is_policy() => {
                inspect_get(method, || inspect::policy_dataplanes(ctx, rtype, mesh, name))
            }
            _ => Err(ApiError::not_found(format!("{path:?} is not a policy type; no dataplanes to inspect"))),
        },
        (_, ["meshes", mesh, path]) => {
            let rtype = mesh_scoped_type(path)?;
            guard(rtype)?;
            only_get(method, || resources::list(ctx, req, rtype, Some(mesh)))
        }
        (_, ["meshes", mesh, path, name]) => {
            let rtype = mesh_scoped_type(path)?;
            guard(rtype)?;
            resources::one(ctx, req, rtype, mesh, name)
        }
        (_, [path]) if ResourceType::from_ws_path(path).is_some_and(|t| !t.is_global()) => {
            let rtype = mesh_scoped_type(path)?;
            guard(rtype)?;
            only_get(method, || resources::list(ctx, req, rtype, None))
        }
        // Global types other than Mesh (GlobalSecret): `/{type}` and `/{type}/{name}`.
        (_, [path]) if ResourceType::from_ws_path(path).is_some_and(|t| t.is_global()) => {
            let rtype = ResourceType::from_ws_path(path).unwrap_or(ResourceType::Mesh);
            guard(rtype)?;
            only_get(method, || resources::list(ctx, req, rtype, None))
        }
        (_, [path, name]) if ResourceType::from_ws_path(path).is_some_and(|t| t.is_global()) => {
            let rtype = ResourceType::from_ws_path(path).unwrap_or(ResourceType::Mesh);
            guard(rtype)?;
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

fn inspect_get(method: &str, f: impl FnOnce() -> Result<Reply, ApiError>) -> Result<Reply, ApiError> {
    if method == "GET" {
        f()
    } else {
        Err(ApiError::method_not_allowed(format!("{method} is not allowed: inspect endpoints are read-only; use GET")))
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
            "gui": "The gui is available at /gui",
        }),
    )
}

/// Kuma's `GET /policies`: every policy type of the registry, sorted by name.
fn policies(ctx: &ApiContext) -> Reply {
    let read_only = ctx.config().api_server.read_only;
    let mut types: Vec<ResourceType> = ResourceType::policies().collect();
    types.sort_by_key(|t| t.name());
    let items: Vec<_> = types
        .iter()
        .map(|t| {
            json!({
                "name": t.name(),
                "readOnly": read_only,
                "path": t.ws_path(),
                "singularDisplayName": t.singular_display_name(),
                "pluralDisplayName": t.plural_display_name(),
                "isExperimental": false,
                "isTargetRefBased": t.is_target_ref_policy(),
                "isInbound": t.has_from_target_ref(),
                "isOutbound": t.has_to_target_ref(),
            })
        })
        .collect();
    Reply::json(200, json!({ "policies": items }))
}
