//! `{$VAR}` and `{$VAR:default}` substitution in every string of a config file.
//!
//! Values from the environment are used exactly as they are (a secret is never rewritten, unlike
//! the original's "sanitising"). An unset variable without a default is an error naming it.

use serde_json::Value;

/// A variable that is referenced, unset, and has no default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsetVariable {
    /// The variable's name.
    pub name: String,
    /// Where in the document it is referenced (`a.b[2].c`).
    pub path: String,
}

/// Substitutes every `{$VAR}` / `{$VAR:default}` in every string of `value`, at any depth.
/// `lookup` reads a variable (normally `std::env::var`).
pub fn substitute(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<UnsetVariable>> {
    let mut unset = Vec::new();
    walk(value, String::new(), lookup, &mut unset);
    if unset.is_empty() { Ok(()) } else { Err(unset) }
}

/// Substitutes the environment into `value` with `std::env::var`.
pub fn substitute_env(value: &mut Value) -> Result<(), Vec<UnsetVariable>> {
    substitute(value, &|name| std::env::var(name).ok())
}

fn walk(
    value: &mut Value,
    path: String,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<UnsetVariable>,
) {
    match value {
        Value::String(s) if s.contains("{$") => {
            *s = substitute_str(s, &path, lookup, unset);
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), lookup, unset);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(v, p, lookup, unset);
            }
        }
        _ => {}
    }
}

fn substitute_str(
    s: &str,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<UnsetVariable>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{$") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let reference = &after[..end];
        let (name, default) = match reference.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        let valid_name =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            // Not a variable reference (e.g. literal text): keep it as written.
            out.push_str(&rest[start..start + 2 + end + 1]);
        } else {
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => unset.push(UnsetVariable {
                    name: name.to_string(),
                    path: path.to_string(),
                }),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "PORT" => Some("5432".into()),
            "SECRET" => Some("a;b|c$(rm -rf)..//id".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_whole_embedded_and_default_references() {
        let mut v = json!({"a": "{$HOST}", "b": ["http://{$HOST}:{$PORT}/x"],
                           "c": {"d": "{$MISSING:fallback}", "e": "{$MISSING:}"}, "n": 5});
        substitute(&mut v, &lookup).unwrap();
        assert_eq!(
            v,
            json!({"a": "db.internal", "b": ["http://db.internal:5432/x"],
                             "c": {"d": "fallback", "e": ""}, "n": 5})
        );
    }

    #[test]
    fn secrets_are_used_unchanged() {
        let mut v = json!({"s": "{$SECRET}"});
        substitute(&mut v, &lookup).unwrap();
        assert_eq!(v["s"], "a;b|c$(rm -rf)..//id");
    }

    #[test]
    fn unset_variables_are_reported_with_their_path() {
        let mut v = json!({"w": {"hmac": {"secret": "{$NOPE}"}}, "x": ["{$ALSO_NOPE}"]});
        let err = substitute(&mut v, &lookup).unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(err.contains(&UnsetVariable {
            name: "NOPE".into(),
            path: "w.hmac.secret".into()
        }));
        assert!(err.contains(&UnsetVariable {
            name: "ALSO_NOPE".into(),
            path: "x[0]".into()
        }));
    }

    #[test]
    fn text_that_is_not_a_reference_is_kept() {
        let mut v = json!({"a": "price {$ 5}", "b": "{$unterminated"});
        substitute(&mut v, &lookup).unwrap();
        assert_eq!(v, json!({"a": "price {$ 5}", "b": "{$unterminated"}));
    }
}
