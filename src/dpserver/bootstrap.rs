//! `POST /bootstrap` on the DP server: a dataplane's Envoy bootstrap, as kuma-dp asks for
//! it (`pkg/xds/bootstrap/handler.go`). Kuma's answers: 422 without a token when authn is
//! on, 400 when the `Host` is not one of the server certificate's names, 404 for an unknown
//! dataplane, and `{"bootstrap": <base64 YAML>, "kumaSidecarConfiguration": {...}}` (raw
//! YAML unless `Accept: application/json`).
//!
//! Request: `{"mesh", "name", "dataplaneToken", "caCert", "proxyType", ...}` plus higuma's
//! optional `adminPort` (else the Dataplane's `networking.admin.port`, then
//! `bootstrapServer.params.adminPort`). Unlike Kuma 2.4 the token is checked here too, so a
//! sidecar with a bad token is told at once instead of by a closed xDS stream.

use std::sync::{Arc, RwLock};

use base64::Engine;
use serde_json::{json, Value};

use crate::api::ApiError;
use crate::config::{Config, DpAuthn};
use crate::http::{Request, Response};
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::{SharedStore, StoreError};
use crate::tls::ServerTls;
use crate::xds::auth::Authenticator;
use crate::xds::bootstrap::{bootstrap_yaml, AdsTls, BootstrapParams};

/// What the handler reads.
#[derive(Clone)]
pub struct BootstrapContext {
    pub store: SharedStore,
    pub config: Arc<RwLock<Config>>,
    /// The DP server's TLS (None when serving plaintext).
    pub tls: Option<Arc<ServerTls>>,
    pub auth: Arc<Authenticator>,
}

/// Kuma's "wrong port" marker: kuma-dp recognises this body (Go's mux 404 text).
const NOT_FOUND_BODY: &str = "404: Page Not Found";

pub fn handle(ctx: &BootstrapContext, req: &Request) -> Response {
    if req.path != "/bootstrap" {
        return Response::text(404, NOT_FOUND_BODY);
    }
    if req.method != "POST" {
        return ApiError::method_not_allowed("use POST /bootstrap").into_response();
    }
    match post(ctx, req) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn unprocessable(detail: impl Into<String>) -> ApiError {
    ApiError::new(422, "Unprocessable Entity", detail)
}

fn post(ctx: &BootstrapContext, req: &Request) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::invalid_field(name, format!("must be a string, got {}", kind(other)))),
        }
    };
    let mesh = text("mesh")?.ok_or_else(|| ApiError::invalid_field("mesh", "is required"))?;
    let name = text("name")?.ok_or_else(|| ApiError::invalid_field("name", "is required"))?;
    match text("proxyType")?.as_deref() {
        None | Some("dataplane") => {}
        Some(other) => {
            return Err(unprocessable(format!(
                "proxyType {:?} is not supported: higuma serves sidecars (dataplane) only",
                crate::logsafe::clean(other)
            )))
        }
    }
    let token = text("dataplaneToken")?;
    let config = ctx.config.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mode = config.dp_server.authn.dp_proxy.mode();
    if mode == DpAuthn::DpToken && token.is_none() {
        return Err(unprocessable(
            "Dataplane Token is required. Generate token using 'higuma generate dataplane-token > /path/file' \
             and provide it via --token-file=/path/file argument to higuma dp run",
        ));
    }
    let admin_port = match body.get("adminPort") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|p| (1..=65535).contains(p)) {
            Some(p) => Some(p as u16),
            None => {
                return Err(ApiError::invalid_field("adminPort", format!("must be a port number 1..65535, got {v}")))
            }
        },
    };
    let params = &config.bootstrap_server.params;
    let xds_host = if !params.xds_host.is_empty() {
        params.xds_host.clone()
    } else {
        // Kuma's default: the host the dataplane used to reach this port reaches xDS too,
        // so with TLS it must be a name the certificate is valid for.
        let host = host_of(req.host.as_deref().unwrap_or("")).unwrap_or_else(|| "127.0.0.1".into());
        if let Some(tls) = &ctx.tls {
            let sans = tls.sans();
            if !sans.iter().any(|s| s.eq_ignore_ascii_case(&host)) {
                return Err(ApiError::bad_request(format!(
                    "A data plane proxy is trying to connect to the control plane using {:?} address, but the certificate in the control plane has the following SANs {sans:?}. \
                     Either change the --cp-address in higuma dp run to one of those or execute the following steps:\n\
                     1) Generate a new certificate with the address you are trying to use.\n\
                     2) Set dpServer.tlsCertFile and dpServer.tlsKeyFile (KUMA_DP_SERVER_TLS_CERT_FILE, KUMA_DP_SERVER_TLS_KEY_FILE).\n\
                     3) Restart the control plane, or wait for it to load the files.\n\
                     Or set bootstrapServer.params.xdsHost to the address Envoy should use.",
                    crate::logsafe::clean(&host)
                )));
            }
        }
        host
    };
    let key = ResourceKey::new(ResourceType::Dataplane, &mesh, &name);
    let dp = match ctx.store.get(&key) {
        Ok(dp) => dp,
        Err(StoreError::NotFound(_)) => {
            if body.get("dataplaneResource").is_some_and(|v| !v.is_null()) {
                return Err(unprocessable(
                    "dataplaneResource (the direct lifecycle) is not supported: create the Dataplane with the API \
                     first (higuma apply, or higuma dp run --dataplane-file)",
                ));
            }
            return Err(ApiError::not_found(format!(
                "Dataplane {:?} not found in mesh {:?}; create it first (higuma apply, or --dataplane-file)",
                crate::logsafe::clean(&name),
                crate::logsafe::clean(&mesh)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let Spec::Dataplane(spec) = &dp.spec else {
        return Err(ApiError::new(500, "Internal Server Error", "not a Dataplane"));
    };
    if mode == DpAuthn::DpToken {
        if let Err(denied) = futures::executor::block_on(ctx.auth.authenticate(token.as_deref(), &key)) {
            let status = if denied.code == grpcio::RpcStatusCode::PERMISSION_DENIED { 403 } else { 401 };
            let title = if status == 403 { "Forbidden" } else { "Unauthorized" };
            return Err(ApiError::new(status, title, denied.message));
        }
    }
    let tls = ctx.tls.as_ref().map(|t| AdsTls { ca_pem: text("caCert").ok().flatten().unwrap_or_else(|| t.ca_pem()) });
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
        token,
        tls,
    };
    let yaml = bootstrap_yaml(&bootstrap);
    let wants_json = req.header("Accept").is_some_and(|a| a.contains("application/json"));
    if !wants_json {
        return Ok(Response::new(200, "text/x-yaml", yaml));
    }
    Ok(Response::json(
        200,
        &json!({
            "bootstrap": base64::engine::general_purpose::STANDARD.encode(yaml),
            "kumaSidecarConfiguration": {
                "networking": {"isUsingTransparentProxy": false},
                "metrics": {"aggregate": []}
            }
        }),
    ))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
        Value::Null | Value::String(_) => "a string",
    }
}

/// The host part of a `Host` header (`[::1]:5678`, `cp:5678`, `cp`).
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
        assert_eq!(super::host_of("cp.local:5678").as_deref(), Some("cp.local"));
        assert_eq!(super::host_of("[::1]:5678").as_deref(), Some("::1"));
        assert_eq!(super::host_of("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(super::host_of(""), None);
    }
}
