//! `credential_cleanup`: keeps secrets found in webhooks out of logs and storage.
//!
//! A header or JSON object key is sensitive when it is listed in `fields` or its name contains
//! one of the usual words (`key`, `token`, `auth`, `secret`, `password`, `credential`,
//! `signature`, `cookie`, `session`), case-insensitively, at any depth. Its value is replaced
//! by `***REDACTED***` (`mode: mask`) or the entry is dropped (`mode: remove`).
//!
//! It applies to what output modules receive (payload and headers) and so to what they write
//! and log, on by default as in the original. Unlike the original, it does not touch what is
//! relayed to a tunnel: the raw body stays byte for byte so signatures still verify, unless
//! the webhook says `apply_to_relay: true`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The replacement of a masked value.
pub const MASK: &str = "***REDACTED***";

/// Words that make a name sensitive.
const USUAL_WORDS: &[&str] = &[
    "key",
    "token",
    "auth",
    "secret",
    "password",
    "credential",
    "signature",
    "cookie",
    "session",
];

/// Mask or remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replace the value with [`MASK`].
    #[default]
    Mask,
    /// Drop the entry.
    Remove,
}

/// A webhook's cleanup policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialCleanup {
    /// Off: nothing is changed.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Mask or remove.
    #[serde(default)]
    pub mode: Mode,
    /// Extra names to treat as sensitive (exact, case-insensitive).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Also clean what is relayed to tunnels (rewrites JSON bodies: signatures over the body
    /// will no longer verify).
    #[serde(default)]
    pub apply_to_relay: bool,
}

fn yes() -> bool {
    true
}

impl Default for CredentialCleanup {
    /// The original's default: on, masking the usual names.
    fn default() -> Self {
        Self {
            enabled: true,
            mode: Mode::Mask,
            fields: Vec::new(),
            apply_to_relay: false,
        }
    }
}

impl CredentialCleanup {
    /// Reads a `credential_cleanup` block.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let mut cleanup: Self = serde_json::from_value(value.clone())
            .map_err(|e| crate::config::explain_serde_error(&e.to_string()))?;
        for field in &mut cleanup.fields {
            *field = field.to_ascii_lowercase();
        }
        Ok(cleanup)
    }

    /// Whether `name` is sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.fields.contains(&lower) || USUAL_WORDS.iter().any(|w| lower.contains(w))
    }

    /// Cleans every object key of a JSON document, at any depth.
    pub fn clean_json(&self, value: &mut Value) {
        if !self.enabled {
            return;
        }
        match value {
            Value::Object(map) => {
                let sensitive: Vec<String> = map
                    .keys()
                    .filter(|k| self.is_sensitive(k))
                    .cloned()
                    .collect();
                for key in sensitive {
                    match self.mode {
                        Mode::Mask => {
                            map.insert(key, Value::String(MASK.into()));
                        }
                        Mode::Remove => {
                            map.remove(&key);
                        }
                    }
                }
                map.values_mut().for_each(|v| self.clean_json(v));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.clean_json(v)),
            _ => {}
        }
    }

    /// Cleans headers by name.
    pub fn clean_headers(&self, headers: &mut BTreeMap<String, String>) {
        if !self.enabled {
            return;
        }
        match self.mode {
            Mode::Mask => headers
                .iter_mut()
                .filter(|(k, _)| self.is_sensitive(k))
                .for_each(|(_, v)| *v = MASK.into()),
            Mode::Remove => headers.retain(|k, _| !self.is_sensitive(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_usual_and_listed_names_at_any_depth() {
        let cleanup = CredentialCleanup::from_json(&json!({"fields": ["card_number"]})).unwrap();
        let mut doc = json!({
            "id": 1,
            "api_key": "k",
            "nested": [{"Password": "p", "Card_Number": "4242", "amount": 5}]
        });
        cleanup.clean_json(&mut doc);
        assert_eq!(
            doc,
            json!({"id": 1, "api_key": MASK, "nested": [{"Password": MASK, "Card_Number": MASK, "amount": 5}]})
        );
    }

    #[test]
    fn removes_and_cleans_headers() {
        let cleanup = CredentialCleanup::from_json(&json!({"mode": "remove"})).unwrap();
        let mut headers: BTreeMap<String, String> = [
            ("authorization".to_string(), "Bearer x".to_string()),
            ("stripe-signature".to_string(), "t=1,v1=2".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ]
        .into();
        cleanup.clean_headers(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["content-type"]);
        let mut doc = json!({"token": "t", "a": 1});
        cleanup.clean_json(&mut doc);
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn disabled_changes_nothing_and_unknown_keys_are_refused() {
        let off = CredentialCleanup::from_json(&json!({"enabled": false})).unwrap();
        let mut doc = json!({"secret": "s"});
        off.clean_json(&mut doc);
        assert_eq!(doc, json!({"secret": "s"}));
        assert!(CredentialCleanup::from_json(&json!({"mode": "hide"})).is_err());
        assert!(CredentialCleanup::from_json(&json!({"field": []})).is_err());
    }
}
