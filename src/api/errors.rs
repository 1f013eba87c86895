//! Errors the API answers with, in Kuma's JSON error shape:
//! `{"type","status","title","detail","invalid_parameters":[{"field","reason"}]}` plus the
//! deprecated `details`/`causes` that older kumactl versions read.

use serde_json::{json, Value};

use crate::model::{ValidationError, Violation};
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub invalid_parameters: Vec<Violation>,
}

impl ApiError {
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError { status, title: title.into(), detail: detail.into(), invalid_parameters: Vec::new() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "Bad Request", detail)
    }

    /// A 400 naming one field.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        Self::invalid(ValidationError::single(field, reason))
    }

    pub fn invalid(err: ValidationError) -> Self {
        ApiError {
            status: 400,
            title: "Invalid resource".into(),
            detail: err.to_string(),
            invalid_parameters: err.violations,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "Not Found", detail)
    }

    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(405, "Method Not Allowed", detail)
    }

    pub fn into_response(self) -> crate::http::Response {
        crate::http::Response::json(self.status, &self.body())
    }

    pub fn body(&self) -> Value {
        let params: Vec<Value> =
            self.invalid_parameters.iter().map(|v| json!({"field": v.field, "reason": v.reason})).collect();
        let causes: Vec<Value> =
            self.invalid_parameters.iter().map(|v| json!({"field": v.field, "message": v.reason})).collect();
        json!({
            "type": "/std-errors",
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "invalid_parameters": params,
            "details": self.detail,
            "causes": causes,
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let detail = err.to_string();
        match err {
            StoreError::NotFound(_) => ApiError::not_found(detail),
            // Kuma answers 500 for a lost compare-and-swap; 409 tells the client to retry.
            StoreError::AlreadyExists(_) | StoreError::Conflict(_) => ApiError::new(409, "Conflict", detail),
            StoreError::MeshNotFound(mesh) => {
                ApiError::invalid_field("mesh", format!("mesh of name {mesh:?} is not found"))
            }
            StoreError::OwnerNotFound { .. } => ApiError::bad_request(detail),
            StoreError::Unavailable(_) => ApiError::new(503, "Service Unavailable", detail),
            StoreError::Internal(_) => ApiError::new(500, "Internal Server Error", detail),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::invalid(err)
    }
}
