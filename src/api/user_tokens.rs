//! `POST /tokens/user` (Kuma's user token web service) and `GET /who-am-i`.
//!
//! Request: `{"name": "john.doe@example.com", "groups": ["users"], "validFor": "24h"}`;
//! answer: the token as `text/plain`. Only `access.static.generateUserToken` may call it.

use serde_json::{json, Value};

use super::authn::{Authz, User};
use super::{ApiContext, ApiError, Reply, Request};
use crate::model::ValidationError;

pub fn generate(ctx: &ApiContext, req: &Request, user: &User) -> Result<Reply, ApiError> {
    let config = ctx.config();
    Authz { config: &config, user }.generate_user_token()?;
    if !config.api_server.authn.tokens.enable_issuer {
        return Err(ApiError::bad_request(
            "the user token issuer is disabled (apiServer.authn.tokens.enableIssuer: false)",
        ));
    }
    let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let Value::Object(body) = body else { return Err(ApiError::bad_request("the body must be a JSON object")) };
    let mut errors = ValidationError::default();
    for key in body.keys().filter(|k| !matches!(k.as_str(), "name" | "groups" | "validFor")) {
        errors.add(key, "unknown field; expected name, groups, validFor");
    }
    let name = match body.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.add("name", "cannot be empty");
            String::new()
        }
        Some(other) => {
            errors.add("name", format!("must be a string, got {other}"));
            String::new()
        }
    };
    let mut groups = Vec::new();
    match body.get("groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, g) in items.iter().enumerate() {
                match g.as_str() {
                    Some(g) if !g.is_empty() => groups.push(g.to_string()),
                    _ => errors.add(format!("groups[{i}]"), format!("must be a non-empty string, got {g}")),
                }
            }
        }
        Some(other) => errors.add("groups", format!("must be a list of strings, got {other}")),
    }
    let valid_for = match body.get("validFor") {
        Some(Value::String(text)) if !text.is_empty() => match text.parse::<crate::config::Duration>() {
            Ok(d) if !d.is_zero() => Some(d.as_std()),
            Ok(_) => {
                errors.add("validFor", "must be greater than 0");
                None
            }
            Err(e) => {
                errors.add("validFor", format!("is invalid: {e}"));
                None
            }
        },
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.add("validFor", "cannot be empty");
            None
        }
        Some(other) => {
            errors.add("validFor", format!("must be a duration string like \"24h\", got {other}"));
            None
        }
    };
    if !errors.violations.is_empty() {
        return Err(ApiError {
            status: 400,
            title: "Invalid request".into(),
            detail: errors.to_string(),
            invalid_parameters: errors.violations,
        });
    }
    let valid_for = valid_for.unwrap_or_default();
    let token = ctx
        .tokens
        .issue(&User { name, groups }, valid_for)
        .map_err(|e| ApiError::new(500, "Could not issue a token", e.to_string()))?;
    Ok(Reply::text(200, token))
}

/// Kuma's `GET /who-am-i`.
pub fn who_am_i(user: &User) -> Reply {
    Reply::json(200, json!({"name": user.name, "groups": user.groups}))
}
