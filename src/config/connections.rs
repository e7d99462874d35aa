//! connections.json: named connections (brokers, databases) that output modules share.
//!
//! Owns reading the file and checking each entry's `type`. Building clients belongs to the
//! modules; this version of wcon has no output modules yet, so any entry is refused clearly.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{ConfigError, ConfigErrors};

/// The whole of connections.json: name → settings (with `type`).
#[derive(Debug, Clone, Default)]
pub struct ConnectionsConfig {
    /// Entries by name, as written (after `{$VAR}` substitution).
    pub connections: BTreeMap<String, Value>,
}

impl ConnectionsConfig {
    /// Reads connections.json; a missing file is an empty config.
    pub fn load_optional(path: &Path) -> Result<Self, ConfigErrors> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let value = super::read_json(path)?;
        Self::from_json(&path.display().to_string(), value)
    }

    /// Validates a parsed connections.json document.
    pub fn from_json(file: &str, value: Value) -> Result<Self, ConfigErrors> {
        let Value::Object(entries) = value else {
            return Err(ConfigError::new(
                file,
                "",
                "expected an object of connection name → settings",
            )
            .into());
        };
        let errors: Vec<ConfigError> = entries
            .iter()
            .map(|(name, entry)| {
                let kind = entry.get("type").and_then(Value::as_str).unwrap_or("?");
                ConfigError::new(
                    file,
                    name,
                    format!("connections of type `{kind}` are for output modules, which are not supported yet by this version of wcon; remove the entry"),
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(Self {
                connections: entries.into_iter().collect(),
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}
