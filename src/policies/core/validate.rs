//! Validation helpers shared by the policy specs; messages are Kuma's.

use crate::model::duration::ProtoDuration;
use crate::model::selector::{validate_selectors, validate_service_only_selectors, Selector};
use crate::model::ValidationError;

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// `field` must be set and greater than zero.
pub(crate) fn require_positive_duration(errors: &mut ValidationError, field: &str, d: Option<ProtoDuration>) {
    match d {
        None => errors.add(field, "has to be defined"),
        Some(d) if d.is_zero() => errors.add(field, "must have a positive value"),
        Some(_) => {}
    }
}

/// `field`, when set, must be greater than zero.
pub(crate) fn positive_duration_when_set(errors: &mut ValidationError, field: &str, d: Option<ProtoDuration>) {
    if d.is_some_and(|d| d.is_zero()) {
        errors.add(field, "has to be greater than 0 when defined");
    }
}

pub(crate) fn percentage_u32(errors: &mut ValidationError, field: &str, v: Option<u32>) {
    if let Some(v) = v {
        if v > 100 {
            errors.add(field, format!("has to be in [0 - 100] range, got {v}"));
        }
    }
}

pub(crate) fn status_code(errors: &mut ValidationError, field: String, code: u32) {
    if !(100..=599).contains(&code) {
        errors.add(field, format!("must be in range [100, 599], got {code}"));
    }
}

/// Sources (`kuma.io/service` required) and destinations (only `kuma.io/service`) of the
/// policies that attach to outbound clusters.
pub(crate) fn validate_outbound_policy_selectors(sources: &[Selector], destinations: &[Selector]) -> ValidationError {
    let mut errors = validate_selectors("sources", sources, true);
    errors.add_nested("", validate_service_only_selectors("destinations", destinations));
    errors
}
