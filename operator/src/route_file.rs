//! A route file (`--routes-dir`) read the way the API server reads a `PegasusTableRoute`: the
//! right `apiVersion` and `kind`, and a body that fits the CRD's own schema (the one `crdgen`
//! prints): no unknown fields, every value of its declared type (`table: 12345` is an integer,
//! not a table name), required fields present, enums and length limits kept. Patterns and the
//! CEL rules are checked by [`crate::reconcile::validate`], for both sources.
//!
//! The types in [`crate::crd`] stay lenient on purpose: objects from the API server have been
//! checked and pruned already, and a field added by a newer CRD must not stop an older operator
//! from reading them.

use std::sync::OnceLock;

use kube::{CustomResourceExt, Resource};
use serde_json::Value;

use crate::crd::PegasusTableRoute;

/// Parses and checks a route file's text.
pub fn parse(text: &str) -> Result<PegasusTableRoute, String> {
    let value: Value = serde_saphyr::from_str(text)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_owned())?;
    check(&value)?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The openAPIV3Schema of the CRD's served version.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(PegasusTableRoute::crd())
            .ok()
            .and_then(|crd| {
                crd["spec"]["versions"]
                    .as_array()?
                    .iter()
                    .find(|v| v["name"] == PegasusTableRoute::version(&()).as_ref())
                    .map(|v| v["schema"]["openAPIV3Schema"].clone())
            })
            .unwrap_or(Value::Null)
    })
}

fn check(value: &Value) -> Result<(), String> {
    let Value::Object(fields) = value else {
        return Err(format!(
            "expected a PegasusTableRoute mapping, found {}",
            kind_of(value)
        ));
    };
    let api_version = PegasusTableRoute::api_version(&());
    let kind = PegasusTableRoute::kind(&());
    if fields.get("apiVersion").and_then(Value::as_str) != Some(api_version.as_ref()) {
        return Err(format!(
            "apiVersion: expected {api_version}, found {}",
            fields.get("apiVersion").map_or("nothing".into(), show)
        ));
    }
    if fields.get("kind").and_then(Value::as_str) != Some(kind.as_ref()) {
        return Err(format!(
            "kind: expected {kind}, found {}",
            fields.get("kind").map_or("nothing".into(), show)
        ));
    }
    if let Some(meta) = fields.get("metadata")
        && !meta.is_object()
    {
        return Err(format!(
            "metadata: expected a mapping, found {}",
            kind_of(meta)
        ));
    }
    let body: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    conforms(&Value::Object(body), schema(), "")
}

/// Whether `value` fits the structural schema `schema`; the error names the field, as
/// `spec.primary.metaServers[0]`.
fn conforms(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let at = |what: String| {
        if path.is_empty() {
            what
        } else {
            format!("{path}: {what}")
        }
    };
    if value.is_null() {
        return if schema["nullable"] == true {
            Ok(())
        } else {
            Err(at("must not be null".into()))
        };
    }
    let expected = schema["type"].as_str().unwrap_or_default();
    let fits = match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !fits {
        return Err(at(format!(
            "expected {}, found {} {}",
            article(expected),
            kind_of(value),
            show(value)
        )));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let allowed: Vec<String> = allowed.iter().map(show).collect();
        return Err(at(format!(
            "{} is not one of {}",
            show(value),
            allowed.join(", ")
        )));
    }
    match value {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64()
                && n < min
            {
                return Err(at(format!("shorter than {min} characters")));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && n > max
            {
                return Err(at(format!("longer than {max} characters")));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64()
                && n < min
            {
                return Err(at(format!("fewer than {min} items")));
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && n > max
            {
                return Err(at(format!("more than {max} items")));
            }
            for (i, item) in items.iter().enumerate() {
                conforms(item, &schema["items"], &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(fields) => {
            let Some(properties) = schema["properties"].as_object() else {
                // A free-form mapping.
                return Ok(());
            };
            for (key, v) in fields {
                let inner = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match properties.get(key) {
                    Some(s) => conforms(v, s, &inner)?,
                    None => return Err(format!("{inner}: unknown field")),
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(key) = required.as_str()
                    && !fields.contains_key(key)
                {
                    return Err(at(format!("{key} is required")));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn article(type_: &str) -> String {
    match type_ {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        other => format!("a {other}"),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 64 {
        format!("{}...", &text[..text.floor_char_boundary(64)])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {name: temp}\n";

    fn file(spec: &str) -> String {
        format!("{HEAD}spec:\n{spec}")
    }

    #[test]
    fn a_valid_file_parses() {
        let route = parse(&file(
            "  table: temp\n  zone: az1\n  primary: {cluster: c1, metaServers: ['10.0.0.1:34601']}\n  backup: {cluster: c2, metaServers: ['meta-b:1']}\n  active: backup\n  failover: {mode: Automatic}\n",
        ))
        .expect("valid");
        assert_eq!(route.spec.table, "temp");
        assert_eq!(route.metadata.name.as_deref(), Some("temp"));
        let minimal = parse(&file(
            "  table: '12345'\n  primary: {cluster: c1, metaServers: ['h:1']}\n",
        ))
        .expect("a quoted number is a string");
        assert_eq!(minimal.spec.table, "12345");
    }

    /// Each is refused, and the reason names the field.
    #[test]
    fn files_the_api_server_would_refuse_are_refused() {
        let p = "  primary: {cluster: c1, metaServers: ['h:1']}\n";
        let cases: Vec<(String, &str)> = vec![
            (
                file(&format!("  table: 12345\n{p}")),
                "spec.table: expected a string, found an integer 12345",
            ),
            (
                file(&format!("  table: true\n{p}")),
                "spec.table: expected a string, found a boolean",
            ),
            (
                file(&format!("  table: 1.5\n{p}")),
                "spec.table: expected a string",
            ),
            (
                file(&format!("  table: temp\n  tabel: temp\n{p}")),
                "spec.tabel: unknown field",
            ),
            (
                file(&format!("  table: temp\n{p}  extra: 1\n")),
                "spec.extra: unknown field",
            ),
            (
                file("  table: temp\n  primary: {cluster: c1, metaServers: ['h:1'], weight: 3}\n"),
                "spec.primary.weight: unknown field",
            ),
            (
                file("  table: temp\n  primary: {cluster: c1, metaServers: [34601]}\n"),
                "spec.primary.metaServers[0]: expected a string",
            ),
            (
                file("  table: temp\n  primary: {cluster: c1}\n"),
                "spec.primary: metaServers is required",
            ),
            (
                file(&format!("  table: temp\n  active: sideways\n{p}")),
                "spec.active: \"sideways\" is not one of",
            ),
            (
                file(&format!(
                    "  table: temp\n  failover: {{mode: Sometimes}}\n{p}"
                )),
                "spec.failover.mode",
            ),
            (
                file(&format!(
                    "  table: temp\n  failover: {{mode: Manual, window: 3s}}\n{p}"
                )),
                "spec.failover.window: unknown field",
            ),
            (
                file(&format!("  table: ''\n{p}")),
                "spec.table: shorter than 1 characters",
            ),
            (
                file(&format!("  table: temp\n  zone: {}\n{p}", "z".repeat(64))),
                "spec.zone: longer than 63",
            ),
            (
                file("  table: temp\n  primary: {cluster: c1, metaServers: []}\n"),
                "spec.primary.metaServers: fewer than 1 items",
            ),
            (file(p), "spec: table is required"),
            (
                file("  table: temp\n  primary: null\n"),
                "spec.primary: must not be null",
            ),
            (
                format!(
                    "{HEAD}spec: {{table: temp, primary: {{cluster: c1, metaServers: ['h:1']}}}}\nspecs: {{}}\n"
                ),
                "specs: unknown field",
            ),
            (HEAD.to_owned(), "spec is required"),
            (
                file(&format!("  table: temp\n{p}"))
                    .replace("kind: PegasusTableRoute", "kind: Route"),
                "kind: expected PegasusTableRoute, found \"Route\"",
            ),
            (
                file(&format!("  table: temp\n{p}")).replace("metaproxy.pegasus.io/v1alpha1", "v1"),
                "apiVersion: expected metaproxy.pegasus.io/v1alpha1",
            ),
            (
                file(&format!("  table: temp\n{p}"))
                    .replace("metadata: {name: temp}", "metadata: temp"),
                "metadata: expected a mapping",
            ),
            (
                "- a list\n".to_owned(),
                "expected a PegasusTableRoute mapping, found a list",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(want), "{text}\nwanted {want:?} in {err:?}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn the_schema_is_the_crds() {
        assert_eq!(
            schema()["properties"]["spec"]["properties"]["table"]["type"],
            "string"
        );
    }
}
