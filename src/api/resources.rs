//! CRUD for every resource type: `GET` one or a page, `PUT` create-or-update (201/200),
//! `DELETE`. A request that fails any check changes nothing; an accepted write answers with
//! its change id ([`super::changes`]).

use std::sync::Arc;

use serde_json::{json, Value};

use super::changes::Announced;
use super::{ApiContext, ApiError, Reply, Request};
use crate::model::{rest, validate_name, Resource, ResourceKey, ResourceType, Spec, ValidationError};
use crate::policies::defaults::{self, DefaultsError};
use crate::policies::traffic_permission::mtls as permissions;
use crate::store::{Operation, StoreError};

/// Kuma's page size defaults (`pkg/api-server/pagination.go`).
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// `GET`, `PUT` or `DELETE` of one resource.
pub fn one(ctx: &ApiContext, req: &Request, rtype: ResourceType, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    match req.method.as_str() {
        "GET" => get(ctx, rtype, mesh, name),
        "PUT" => put(ctx, req, rtype, mesh, name),
        "DELETE" => delete(ctx, rtype, mesh, name),
        other => Err(ApiError::method_not_allowed(format!("{other} is not allowed here; use GET, PUT or DELETE"))),
    }
}

fn get(ctx: &ApiContext, rtype: ResourceType, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let res = ctx.reads.get(&ResourceKey::new(rtype, mesh, name))?;
    Ok(Reply::json(200, rest::to_json(&res)))
}

/// A page of resources (`?size`, `?offset`), sorted by mesh then name.
pub fn list(ctx: &ApiContext, req: &Request, rtype: ResourceType, mesh: Option<&str>) -> Result<Reply, ApiError> {
    let items = ctx.reads.list(rtype, mesh)?;
    let json_items: Vec<Value> = items.iter().map(|r| rest::to_json(r)).collect();
    page(req, json_items)
}

/// Slices `items` by the request's `size`/`offset` into Kuma's `{total, items, next}`.
pub fn page(req: &Request, items: Vec<Value>) -> Result<Reply, ApiError> {
    let size = match req.query_param("size") {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_field(
                    "size",
                    format!("invalid page size {text:?}: must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                ))
            }
        },
    };
    let offset = match req.query_param("offset") {
        None | Some("") => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::invalid_field("offset", format!("invalid offset {text:?}: must be a whole number"))
        })?,
    };
    let total = items.len();
    let end = offset.saturating_add(size).min(total);
    let next = (end < total).then(|| next_url(req, end, size));
    let page: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    Ok(Reply::json(200, json!({ "total": total, "items": page, "next": next })))
}

/// The same URL with `offset` moved on, absolute as Kuma builds it (host from `Host`).
fn next_url(req: &Request, offset: usize, size: usize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in req.query.iter().filter(|(k, _)| k != "offset" && k != "size") {
        query.append_pair(k, v);
    }
    query.append_pair("size", &size.to_string());
    query.append_pair("offset", &offset.to_string());
    let host = req.host.as_deref().unwrap_or("localhost");
    let scheme = if req.secure { "https" } else { "http" };
    format!("{scheme}://{host}{}?{}", req.path, query.finish())
}

fn put(ctx: &ApiContext, req: &Request, rtype: ResourceType, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let config = ctx.config();
    if config.api_server.read_only {
        return Err(ApiError::method_not_allowed("the API server is read-only (apiServer.readOnly)"));
    }
    if rtype.is_read_only() {
        return Err(ApiError::method_not_allowed(format!("{} is written by the control plane only", rtype.name())));
    }
    let mut url_errors = ValidationError::default();
    if !rtype.is_global() {
        if let Err(e) = validate_name("mesh", mesh) {
            url_errors.add_nested("", e);
        }
    }
    if let Err(e) = validate_name("name", name) {
        url_errors.add_nested("", e);
    }
    url_errors.into_result()?;

    let body = req.body.as_deref().unwrap_or("");
    if body.trim().is_empty() {
        return Err(ApiError::bad_request("the request body is empty; send the resource as JSON or YAML"));
    }
    let document = rest::parse_document(body).map_err(ApiError::bad_request)?;
    let envelope = rest::from_json(document)?;
    let mut mismatch = ValidationError::default();
    if envelope.rtype != rtype {
        mismatch.add("type", format!("the body is a {} but the URL is for {}", envelope.rtype.name(), rtype.name()));
    }
    if envelope.name != name {
        mismatch.add("name", format!("name from the URL ({name:?}) does not match the body ({:?})", envelope.name));
    }
    if let Some(body_mesh) = &envelope.mesh {
        if !rtype.is_global() && body_mesh != mesh {
            mismatch.add("mesh", format!("mesh from the URL ({mesh:?}) does not match the body ({body_mesh:?})"));
        }
    }
    mismatch.into_result()?;

    let key = ResourceKey::new(rtype, mesh, name);
    // Writes of one key run one at a time while announced, so that their changes meet
    // their store events in order.
    let _order = ctx.changes.as_deref().map(|c| c.order(&key));
    let current = match ctx.store.get(&key) {
        Ok(c) => Some(c),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Spec::Mesh(new) = &envelope.spec {
        let old = current.as_ref().and_then(|c| match &c.spec {
            Spec::Mesh(m) => Some(m),
            _ => None,
        });
        crate::mtls::manager::validate_mesh_write(&crate::mtls::Reader(&*ctx.store), name, old, new)?;
        if current.is_some() {
            // The CAs exist before the Mesh that enables them (Kuma's `EnsureCAs`).
            crate::mtls::manager::ensure_cas(&*ctx.store, name, new).map_err(mtls_error)?;
        }
    }
    match current {
        Some(current) => {
            let mtls = match (&current.spec, &envelope.spec) {
                (Spec::Mesh(old), Spec::Mesh(new)) => permissions::turns_mtls_on(Some(old), new),
                _ => false,
            };
            let change = Announced::new(ctx, &key, Operation::Update);
            let written = ctx.store.update(&key, envelope.spec, current.meta.version);
            let id = change.finish(written.is_ok());
            let updated = written?;
            ensure_identity_ca(ctx, &updated);
            if mtls {
                warn_if_unpermitted(ctx, name);
            }
            Ok(Announced::reply(Reply::empty(200), id))
        }
        None => {
            let change = Announced::new(ctx, &key, Operation::Create);
            let created = ctx.store.create(&key.mesh, &key.name, envelope.spec);
            let id = change.finish(created.is_ok());
            let created = created?;
            ensure_identity_ca(ctx, &created);
            if let Spec::Mesh(mesh) = &created.spec {
                // A new Mesh's Secrets need the Mesh first; a CA that cannot be made undoes
                // the write, so no Mesh ever enables a CA that does not exist.
                if let Err(e) = crate::mtls::manager::ensure_cas(&*ctx.store, name, mesh) {
                    let _ = ctx.store.delete(&key);
                    return Err(mtls_error(e));
                }
                // Only on creation: Kuma never (re)creates a Mesh's defaults on update.
                let routing = config.defaults.create_mesh_routing_resources;
                defaults::ensure(&*ctx.store, name, mesh, routing).map_err(|e| match e {
                    DefaultsError::Store(e) => ApiError::from(e),
                    other => ApiError::new(500, "Internal Server Error", other.to_string()),
                })?;
                // Kuma's mesh defaults also include the mesh's dataplane-token signing key. The
                // mesh exists either way; issuing a token creates a missing key too.
                if let Err(e) = crate::tokens::keys::ensure_signing_key(&*ctx.store, name) {
                    log::warn!("tokens: cannot create the signing key of mesh {name:?}: {e}");
                }
                if permissions::turns_mtls_on(None, mesh) {
                    warn_if_unpermitted(ctx, name);
                }
            }
            Ok(Announced::reply(Reply::empty(201), id))
        }
    }
}

fn mtls_error(e: crate::mtls::MtlsError) -> ApiError {
    match e {
        crate::mtls::MtlsError::Store(e) => ApiError::from(e),
        other => ApiError::new(500, "Internal Server Error", other.to_string()),
    }
}

/// An autogenerated MeshIdentity's CA is made with its write, so it exists before any
/// dataplane needs it; the issuer makes a missing one too, so a failure here only logs.
fn ensure_identity_ca(ctx: &ApiContext, r: &Resource) {
    if let Spec::MeshIdentity(spec) = &r.spec {
        if let Err(e) = crate::mtls::manager::ensure_identity_ca(&*ctx.store, &r.meta.mesh, &r.meta.name, spec) {
            log::warn!("mtls: cannot create the CA of MeshIdentity {:?} in mesh {:?}: {e}", r.meta.name, r.meta.mesh);
        }
    }
}

/// Kuma 2.6+ denies all traffic in a mesh with mTLS on and no permission; say so when it
/// happens (see `policies::traffic_permission::mtls`).
fn warn_if_unpermitted(ctx: &ApiContext, mesh: &str) {
    match permissions::missing_permission_warning(&*ctx.store, mesh) {
        Ok(Some(w)) => log::warn!("{w}"),
        Ok(None) => {}
        Err(e) => log::warn!("mesh {mesh:?} turned mTLS on; its permissions could not be listed: {e}"),
    }
}

fn delete(ctx: &ApiContext, rtype: ResourceType, mesh: &str, name: &str) -> Result<Reply, ApiError> {
    let config = ctx.config();
    if config.api_server.read_only {
        return Err(ApiError::method_not_allowed("the API server is read-only (apiServer.readOnly)"));
    }
    if rtype.is_read_only() {
        return Err(ApiError::method_not_allowed(format!("{} is written by the control plane only", rtype.name())));
    }
    let key = ResourceKey::new(rtype, mesh, name);
    if rtype == ResourceType::Mesh && !config.store.unsafe_delete {
        // Kuma's safety net: a mesh with live dataplanes is deleted only with
        // store.unsafeDelete, because their Envoys would lose their configuration.
        ctx.store.get(&key)?;
        let dataplanes: Vec<Arc<Resource>> = ctx.store.list(ResourceType::Dataplane, Some(name))?;
        if !dataplanes.is_empty() {
            return Err(ApiError::bad_request(format!(
                "unable to delete mesh {name:?}: {} dataplane(s) still attached (delete them first, or set store.unsafeDelete / KUMA_STORE_UNSAFE_DELETE=true)",
                dataplanes.len()
            )));
        }
    }
    if rtype == ResourceType::Secret {
        crate::mtls::manager::validate_secret_delete(&crate::mtls::Reader(&*ctx.store), mesh, name)?;
    }
    let _order = ctx.changes.as_deref().map(|c| c.order(&key));
    let change = Announced::new(ctx, &key, Operation::Delete);
    let deleted = ctx.store.delete(&key);
    let id = change.finish(deleted.is_ok());
    deleted?;
    Ok(Announced::reply(Reply::empty(200), id))
}
