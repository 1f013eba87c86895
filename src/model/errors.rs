//! Validation errors: every violation names the field (Kuma's path syntax,
//! `networking.inbound[0].tags`) and says what is wrong with the value.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ValidationError {
    pub violations: Vec<Violation>,
}

impl ValidationError {
    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError { violations: vec![Violation { field: field.into(), reason: reason.into() }] }
    }

    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.violations.push(Violation { field: field.into(), reason: reason.into() });
    }

    /// Adds `other`'s violations with their fields prefixed by `prefix` (e.g. `conf`).
    pub fn add_nested(&mut self, prefix: &str, other: ValidationError) {
        for v in other.violations {
            let field = match (prefix.is_empty(), v.field.is_empty()) {
                (true, _) => v.field,
                (false, true) => prefix.to_string(),
                (false, false) if v.field.starts_with('[') => format!("{prefix}{}", v.field),
                (false, false) => format!("{prefix}.{}", v.field),
            };
            self.violations.push(Violation { field, reason: v.reason });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` when nothing was added, so validators can collect and then return.
    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if v.field.is_empty() {
                write!(f, "{}", v.reason)?;
            } else {
                write!(f, "{}: {}", v.field, v.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_join_with_dots_and_brackets() {
        let mut inner = ValidationError::default();
        inner.add("tags", "must contain kuma.io/service");
        inner.add("[2]", "bad");
        let mut outer = ValidationError::default();
        outer.add_nested("networking.inbound[0]", inner);
        assert_eq!(outer.violations[0].field, "networking.inbound[0].tags");
        assert_eq!(outer.violations[1].field, "networking.inbound[0][2]");
        assert_eq!(
            outer.to_string(),
            "networking.inbound[0].tags: must contain kuma.io/service; networking.inbound[0][2]: bad"
        );
    }
}
