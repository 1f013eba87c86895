//! `POST /bootstrap`: the Envoy bootstrap of a dataplane, in Kuma's JSON answer shape
//! (`{"bootstrap": <base64 YAML>, "kumaSidecarConfiguration": {...}}`).
//!
//! Request: `{"mesh": "...", "name": "...", "adminPort": 9901}`; `adminPort` is optional
//! (the Dataplane's `networking.admin.port`, then `bootstrapServer.params.adminPort`).

use base64::Engine;
use serde_json::{json, Value};

use super::{ApiContext, ApiError, Reply, Request};
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::StoreError;
use crate::xds::bootstrap::{bootstrap_yaml, BootstrapParams};

pub fn post(ctx: &ApiContext, req: &Request) -> Result<Reply, ApiError> {
    let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let field = |name: &str| -> Result<String, ApiError> {
        match body.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(ApiError::invalid_field(name, format!("must be a non-empty string, got {other}"))),
            None => Err(ApiError::invalid_field(name, "is required")),
        }
    };
    let mesh = field("mesh")?;
    let name = field("name")?;
    let admin_port = match body.get("adminPort") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|p| (1..=65535).contains(p)) {
            Some(p) => Some(p as u16),
            None => {
                return Err(ApiError::invalid_field("adminPort", format!("must be a port number 1..65535, got {v}")))
            }
        },
    };
    let dp = match ctx.store.get(&ResourceKey::new(ResourceType::Dataplane, &mesh, &name)) {
        Ok(dp) => dp,
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::not_found(format!(
                "Dataplane {name:?} not found in mesh {mesh:?}; create it first (higuma apply, or --dataplane-file)"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let Spec::Dataplane(spec) = &dp.spec else {
        return Err(ApiError::new(500, "Internal Server Error", "not a Dataplane"));
    };
    let config = ctx.config();
    let params = &config.bootstrap_server.params;
    let xds_host = if !params.xds_host.is_empty() {
        params.xds_host.clone()
    } else {
        // Kuma's default: the host the dataplane used to reach us reaches the xDS port too.
        host_of(req.host.as_deref().unwrap_or("")).unwrap_or_else(|| "127.0.0.1".into())
    };
    let bootstrap = BootstrapParams {
        mesh,
        name,
        service: spec.networking.inbound.first().map(|i| i.service().to_string()).unwrap_or_default(),
        xds_host,
        xds_port: if params.xds_port != 0 { params.xds_port } else { config.dp_server.port },
        xds_connect_timeout: params.xds_connect_timeout.0,
        admin_address: params.admin_address.clone(),
        admin_port: admin_port
            .or_else(|| spec.networking.admin.as_ref().map(|a| a.port as u16))
            .unwrap_or(params.admin_port),
    };
    let yaml = bootstrap_yaml(&bootstrap);
    Ok(Reply::json(
        200,
        json!({
            "bootstrap": base64::engine::general_purpose::STANDARD.encode(yaml),
            "kumaSidecarConfiguration": {
                "networking": {"isUsingTransparentProxy": false},
                "metrics": {"aggregate": []}
            }
        }),
    ))
}

/// The host part of a `Host` header (`[::1]:5681`, `cp:5681`, `cp`).
fn host_of(header: &str) -> Option<String> {
    let h = header.trim();
    if h.is_empty() {
        return None;
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map(|(ip, _)| ip.to_string());
    }
    Some(h.rsplit_once(':').map(|(host, _)| host).unwrap_or(h).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_header_parsing() {
        assert_eq!(super::host_of("cp.local:5681").as_deref(), Some("cp.local"));
        assert_eq!(super::host_of("[::1]:5681").as_deref(), Some("::1"));
        assert_eq!(super::host_of("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(super::host_of(""), None);
    }
}
