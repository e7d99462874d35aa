//! A webhook's `json_schema`: the JSON Schema its body must satisfy.
//!
//! Compiled once at start-up with the `jsonschema` crate (draft from `$schema`, 2020-12 when
//! absent; draft 7 and the others work too). Remote `$ref`s are not fetched: a receiver must
//! not make requests its senders choose. A body that fails gets 422 with every failing path.

use std::fmt;

use serde_json::Value;

/// Most failures listed in one answer.
const MAX_LISTED: usize = 20;

/// A compiled schema.
pub struct BodySchema {
    validator: jsonschema::Validator,
}

impl fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodySchema").finish_non_exhaustive()
    }
}

/// One way the body failed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaFailure {
    /// JSON Pointer into the body (`""` is the whole body).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl BodySchema {
    /// Compiles `schema`; the error says why it is not a valid schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::options()
            .build(schema)
            .map(|validator| Self { validator })
            .map_err(|e| format!("not a valid JSON Schema: {e}"))
    }

    /// Checks a body; `Err` lists the failures (at most 20), in document order.
    pub fn check(&self, body: &Value) -> Result<(), Vec<SchemaFailure>> {
        let failures: Vec<SchemaFailure> = self
            .validator
            .iter_errors(body)
            .take(MAX_LISTED)
            .map(|e| SchemaFailure {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_every_failing_path() {
        let schema = BodySchema::compile(&json!({
            "type": "object",
            "required": ["id", "amount"],
            "properties": {"id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}
        }))
        .unwrap();
        assert!(schema.check(&json!({"id": "a", "amount": 3})).is_ok());
        let failures = schema.check(&json!({"id": 5, "amount": -1})).unwrap_err();
        let paths: Vec<&str> = failures.iter().map(|f| f.path.as_str()).collect();
        assert!(
            paths.contains(&"/id") && paths.contains(&"/amount"),
            "{failures:?}"
        );
        let missing = schema.check(&json!({})).unwrap_err();
        assert!(missing[0].message.contains("required"), "{missing:?}");
    }

    #[test]
    fn draft_7_and_bad_schemas() {
        let d7 = BodySchema::compile(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "items": [{"type": "string"}]
        }))
        .unwrap();
        assert!(d7.check(&json!([1])).is_err());
        assert!(BodySchema::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
