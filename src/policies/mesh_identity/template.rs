//! The Go-template subset MeshIdentity's `spiffeID.trustDomain` and `spiffeID.path` use:
//! text with `{{ .Field }}` and `{{ label "key" }}` actions. Anything else is refused when
//! the MeshIdentity is written, as Kuma refuses a template that does not parse.

use crate::model::Tags;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
    Label(String),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                out.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err("unclosed action: missing \"}}\"".to_string());
            };
            out.push(action(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err("unexpected \"}}\" outside an action".to_string());
        }
        if !rest.is_empty() {
            out.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(out))
    }

    /// The text with `fields` and `labels` substituted; a missing label is an error, a
    /// missing field renders empty (Go's zero value).
    pub fn render(&self, fields: &BTreeMap<&str, &str>, labels: &Tags) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(fields.get(f.as_str()).copied().unwrap_or("")),
                Piece::Label(k) => match labels.get(k) {
                    Some(v) => out.push_str(v),
                    None => return Err(format!("label {k} not found")),
                },
            }
        }
        Ok(out)
    }
}

fn action(inner: &str) -> Result<Piece, String> {
    if let Some(field) = inner.strip_prefix('.') {
        if !field.is_empty() && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Ok(Piece::Field(field.to_string()));
        }
        return Err(format!("bad field in action {{{{{inner}}}}}"));
    }
    if let Some(arg) = inner.strip_prefix("label") {
        let arg = arg.trim();
        if let Some(key) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
            if !key.is_empty() && !key.contains('"') {
                return Ok(Piece::Label(key.to_string()));
            }
        }
        return Err(format!("label takes one quoted key, got {{{{{inner}}}}}"));
    }
    Err(format!("function or action {{{{{inner}}}}} is not supported: use {{{{ .Field }}}} or {{{{ label \"key\" }}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_labels() {
        let t = Template::parse("{{ .Mesh }}.{{.Zone}}.mesh.local").unwrap();
        let fields = BTreeMap::from([("Mesh", "default"), ("Zone", "east")]);
        assert_eq!(t.render(&fields, &Tags::new()).unwrap(), "default.east.mesh.local");
        let t = Template::parse("/workload/{{ label \"kuma.io/workload\" }}").unwrap();
        let labels = Tags::from([("kuma.io/workload".to_string(), "web".to_string())]);
        assert_eq!(t.render(&fields, &labels).unwrap(), "/workload/web");
        assert_eq!(t.render(&fields, &Tags::new()).unwrap_err(), "label kuma.io/workload not found");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        for bad in ["{{ .Mesh", "{{ printf \"x\" }}", "{{ label kuma }}", "a}}", "{{ . }}", "{{ label \"\" }}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
