//! connections.json: named connections (brokers, databases) that output modules share.
//!
//! Owns reading the file and checking each entry's shape and `type`. Building clients belongs
//! to [`crate::modules::Connections`].

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
            .filter_map(|(name, entry)| {
                check_entry(entry)
                    .err()
                    .map(|m| ConfigError::new(file, name, m))
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

/// Connection types modules accept (the original's names and common aliases).
pub const CONNECTION_TYPES: &[&str] = &[
    "rabbitmq",
    "redis",
    "redis-rq",
    "redis_rq",
    "kafka",
    "s3",
    "clickhouse",
    "mqtt",
    "postgresql",
    "postgres",
    "mysql",
    "mariadb",
    "aws_sqs",
    "sqs",
    "gcp_pubsub",
    "activemq",
];

fn check_entry(entry: &Value) -> Result<(), String> {
    let Value::Object(map) = entry else {
        return Err("a connection is an object with a `type` and its settings".into());
    };
    match map.get("type") {
        Some(Value::String(kind)) if CONNECTION_TYPES.contains(&kind.as_str()) => Ok(()),
        Some(Value::String(kind)) => Err(match super::nearest(kind, CONNECTION_TYPES) {
            Some(near) => format!("unknown connection type `{kind}`; did you mean `{near}`?"),
            None => format!(
                "unknown connection type `{kind}`; known types: {}",
                CONNECTION_TYPES.join(", ")
            ),
        }),
        _ => Err(format!(
            "needs a `type`, one of: {}",
            CONNECTION_TYPES.join(", ")
        )),
    }
}
