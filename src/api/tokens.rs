//! `POST /tokens/dataplane`: issues a dataplane token, with Kuma's request and answer
//! (`pkg/tokens/builtin/server/webservice.go`): body `{"name", "mesh", "tags": {"k": ["v"]},
//! "type", "validFor": "24h"}`, answer the JWT as `text/plain`. `validFor` defaults to ten
//! years, as in Kuma. Disabled by `dpServer.authn.dpProxy.dpToken.enableIssuer: false`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::Value;

use super::{ApiContext, ApiError, Reply, Request};
use crate::model::ValidationError;
use crate::tokens::dataplane::{self, Identity, DEFAULT_VALID_FOR, PROXY_TYPE_DATAPLANE};
use crate::tokens::TokenError;

pub fn post_dataplane(ctx: &ApiContext, req: &Request) -> Result<Reply, ApiError> {
    if !ctx.config().dp_server.authn.dp_proxy.dp_token.enable_issuer {
        return Err(ApiError::bad_request(
            "issuing dataplane tokens is disabled (dpServer.authn.dpProxy.dpToken.enableIssuer: false)",
        ));
    }
    let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let mut errors = ValidationError::default();
    let text = |field: &str, errors: &mut ValidationError| match body.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            errors.add(field, format!("must be a string, got {other}"));
            String::new()
        }
    };
    let mesh = text("mesh", &mut errors);
    if mesh.is_empty() && errors.violations.iter().all(|v| v.field != "mesh") {
        errors.add("mesh", "cannot be empty");
    }
    let name = text("name", &mut errors);
    let r#type = text("type", &mut errors);
    if !r#type.is_empty() && r#type != PROXY_TYPE_DATAPLANE {
        errors
            .add("type", format!("{type:?} is not a valid proxy type (only {PROXY_TYPE_DATAPLANE:?})", type = r#type));
    }
    let mut tags = BTreeMap::new();
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                match v.as_array().map(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                {
                    Some(Some(values)) => {
                        tags.insert(k.clone(), values);
                    }
                    _ => errors.add(format!("tags[{k:?}]"), "must be a list of strings"),
                }
            }
        }
        Some(_) => errors.add("tags", "must be a mapping of tag name to a list of values"),
    }
    let valid_for = match text("validFor", &mut errors).as_str() {
        "" => DEFAULT_VALID_FOR,
        s => match s.parse::<crate::config::Duration>() {
            Ok(d) if !d.is_zero() => d.0,
            Ok(_) => {
                errors.add("validFor", "must be greater than 0");
                DEFAULT_VALID_FOR
            }
            Err(e) => {
                errors.add("validFor", format!("is invalid: {e}"));
                DEFAULT_VALID_FOR
            }
        },
    };
    errors.into_result()?;
    let id = Identity { mesh, name, tags, r#type };
    match dataplane::issue(&*ctx.store, &id, valid_for, SystemTime::now()) {
        Ok(token) => Ok(Reply::text(200, token)),
        Err(TokenError::MeshNotFound(m)) => {
            Err(ApiError::invalid_field("mesh", format!("mesh of name {m:?} is not found")))
        }
        Err(TokenError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::new(500, "Could not issue a token", e.to_string())),
    }
}
