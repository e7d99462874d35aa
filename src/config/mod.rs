//! Configuration files: webhooks.json, connections.json and connector.json.
//!
//! This module owns reading, `{$VAR}` substitution, parsing into types that cannot hold a wrong
//! value, and validation that reports every problem at once with the file, the key and (for an
//! unknown key) the nearest valid key. It never touches the network.

pub mod connections;
pub mod connector;
pub mod env;
pub mod watch;
pub mod webhooks;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use connections::ConnectionsConfig;
pub use connector::{ConnectorConfig, TargetConfig};
pub use webhooks::{RelayConfig, WebhookConfig, WebhooksConfig};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<env>`/`<flags>`) the problem is in.
    pub file: String,
    /// Where in the document (`stripe.module-config.channel`); empty for the whole file.
    pub path: String,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: `{}`: {}", self.file, self.path, self.message)
        }
    }
}

/// Every problem found while loading one or more config files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems in the configuration:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    /// A problem at `path` in `file`.
    pub fn new(
        file: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// Joins two paths of a document with a dot.
pub fn join_path(base: &str, key: &str) -> String {
    match (base.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}.{key}"),
    }
}

/// Reads a JSON file, substitutes `{$VAR}` references, and returns the document.
pub fn read_json(path: &Path) -> Result<serde_json::Value, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&file, "", format!("cannot read the file: {e}")))?;
    parse_json_text(&file, &text)
}

/// Parses JSON text and substitutes `{$VAR}` references; `file` names it in errors.
pub fn parse_json_text(file: &str, text: &str) -> Result<serde_json::Value, ConfigErrors> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        ConfigError::new(
            file,
            "",
            format!(
                "not valid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    env::substitute_env(&mut value).map_err(|unset| {
        ConfigErrors(
            unset
                .into_iter()
                .map(|u| {
                    ConfigError::new(
                        file,
                        u.path,
                        format!("environment variable `{}` is not set and has no default (write `{{${}:default}}` to give one)", u.name, u.name),
                    )
                })
                .collect(),
        )
    })?;
    Ok(value)
}

/// Deserialises `value` into `T`, turning serde's message into a [`ConfigError`] that names the
/// key's path and, for an unknown key, the nearest valid one.
pub fn from_value<T: DeserializeOwned>(
    file: &str,
    base_path: &str,
    value: serde_json::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.path().to_string();
        let path = if inner == "." {
            base_path.to_string()
        } else {
            join_path(base_path, &inner)
        };
        ConfigError::new(file, path, explain_serde_error(&err.inner().to_string()))
    })
}

fn unknown_key(serde_message: &str) -> Option<String> {
    let rest = serde_message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a sentence with the
/// nearest valid key; leaves other messages as they are.
pub fn explain_serde_error(serde_message: &str) -> String {
    let Some(key) = unknown_key(serde_message) else {
        return serde_message.to_string();
    };
    let expected: Vec<&str> = serde_message
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    unknown_key_message(&key, &expected)
}

/// "unknown key `modul`; did you mean `module`?" (or the list of valid keys when none is close).
pub fn unknown_key_message(key: &str, valid: &[&str]) -> String {
    match nearest(key, valid) {
        Some(best) => format!("unknown key `{key}`; did you mean `{best}`?"),
        None if valid.is_empty() => format!("unknown key `{key}`"),
        None => format!("unknown key `{key}`; valid keys: {}", valid.join(", ")),
    }
}

/// The candidate closest to `word`, if any is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Where `wcon serve` finds its files.
#[derive(Debug, Clone)]
pub struct ConfigPaths {
    /// webhooks.json
    pub webhooks: PathBuf,
    /// connections.json (optional file)
    pub connections: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        channel: String,
        channel_token: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn unknown_keys_name_the_path_and_the_nearest_key() {
        let v = serde_json::json!({"inner": {"channel": "c", "chanel_token": "t"}});
        let err = from_value::<Outer>("webhooks.json", "stripe", v).unwrap_err();
        assert_eq!(err.path, "stripe.inner.chanel_token");
        assert_eq!(
            err.message,
            "unknown key `chanel_token`; did you mean `channel_token`?"
        );
        assert_eq!(
            err.to_string(),
            "webhooks.json: `stripe.inner.chanel_token`: unknown key `chanel_token`; did you mean `channel_token`?"
        );
    }

    #[test]
    fn far_keys_list_the_valid_ones() {
        assert_eq!(
            unknown_key_message("zzz", &["module", "chain"]),
            "unknown key `zzz`; valid keys: module, chain"
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let v = serde_json::json!({"inner": {"channel": 5, "channel_token": "t"}});
        let err = from_value::<Outer>("f.json", "", v).unwrap_err();
        assert_eq!(err.path, "inner.channel");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn unset_variables_are_config_errors() {
        let err = parse_json_text(
            "w.json",
            r#"{"a":{"secret":"{$WCON_TEST_SURELY_UNSET_VAR}"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.0[0].path, "a.secret");
        assert!(err.0[0].message.contains("WCON_TEST_SURELY_UNSET_VAR"));
    }
}
