//! connector.json: what `wcon tunnel` connects to and where it delivers.
//!
//! Owns the single-channel HTTP-mode file of the original (keys unchanged), the `CONNECTOR_*`
//! environment variables, and the layering defaults < file < environment < flags. It does not
//! connect anywhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::{ConfigError, ConfigErrors, from_value};
use crate::protocol::{ChannelName, ConnectorId, WebhookId};
use crate::secret::Secret;

/// The streaming transport a connector uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// WebSocket (default).
    #[default]
    Websocket,
    /// Server-Sent Events with acks over HTTP.
    Sse,
    /// Long polling with acks over HTTP.
    LongPoll,
    /// Try WebSocket, then SSE, then long-poll.
    Auto,
}

/// A local HTTP destination.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Where to send the webhook.
    pub url: Url,
    /// HTTP method (POST by default).
    #[serde(default = "defaults::method")]
    pub method: String,
    /// Extra headers set on every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    #[serde(default = "defaults::timeout_seconds")]
    pub timeout_seconds: f64,
    /// Retry retryable failures locally before nacking.
    #[serde(default = "defaults::yes")]
    pub retry_enabled: bool,
    /// Attempts per delivery (the first included).
    #[serde(default = "defaults::retry_max_attempts")]
    pub retry_max_attempts: u32,
    /// Delay before the second attempt.
    #[serde(default = "defaults::retry_delay_seconds")]
    pub retry_delay_seconds: f64,
    /// Growth of the delay between attempts (capped at 60 s).
    #[serde(default = "defaults::retry_backoff_multiplier")]
    pub retry_backoff_multiplier: f64,
}

impl TargetConfig {
    /// A POST target with the documented defaults.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            method: defaults::method(),
            headers: BTreeMap::new(),
            timeout_seconds: defaults::timeout_seconds(),
            retry_enabled: true,
            retry_max_attempts: defaults::retry_max_attempts(),
            retry_delay_seconds: defaults::retry_delay_seconds(),
            retry_backoff_multiplier: defaults::retry_backoff_multiplier(),
        }
    }

    /// `timeout_seconds` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds)
    }
}

/// connector.json, single-channel shape, with the original's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Base URL of `wcon serve` (http or https; ws/wss is derived).
    pub cloud_url: Url,
    /// The channel to stream.
    pub channel: ChannelName,
    /// The channel token.
    pub token: Secret<String>,
    /// Streaming transport.
    #[serde(default)]
    pub protocol: Protocol,
    /// First reconnect delay, seconds.
    #[serde(default = "defaults::reconnect_delay")]
    pub reconnect_delay: f64,
    /// Largest reconnect delay, seconds.
    #[serde(default = "defaults::max_reconnect_delay")]
    pub max_reconnect_delay: f64,
    /// Growth of the reconnect delay.
    #[serde(default = "defaults::reconnect_backoff_multiplier")]
    pub reconnect_backoff_multiplier: f64,
    /// A connection silent for this long (seconds) is dead and is replaced.
    #[serde(default = "defaults::heartbeat_timeout")]
    pub heartbeat_timeout: f64,
    /// Timeout of one connection attempt, seconds.
    #[serde(default = "defaults::connection_timeout")]
    pub connection_timeout: f64,
    /// Deliveries running at once.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: u32,
    /// Longest a delivery (all its local attempts) may take before it is nacked, seconds.
    #[serde(default = "defaults::ack_timeout")]
    pub ack_timeout: f64,
    /// Target of webhooks without their own entry in `targets`.
    #[serde(default)]
    pub default_target: Option<TargetConfig>,
    /// Targets by webhook id.
    #[serde(default)]
    pub targets: BTreeMap<WebhookId, TargetConfig>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    #[serde(default)]
    pub log_level: Option<String>,
    /// Log format (`text` or `json`).
    #[serde(default)]
    pub log_format: Option<String>,
    /// Verify the server's TLS certificate (the default); `false` only on purpose (`--insecure`).
    #[serde(default = "defaults::yes")]
    pub verify_ssl: bool,
    /// Extra CA certificates (PEM) to trust besides the webpki roots (`--ca-cert`).
    #[serde(default)]
    pub ca_cert_path: Option<String>,
    /// Client certificate (PEM) for mTLS.
    #[serde(default)]
    pub client_cert_path: Option<String>,
    /// Client key (PEM) for mTLS.
    #[serde(default)]
    pub client_key_path: Option<String>,
    /// Sent as `X-Connector-ID`.
    #[serde(default)]
    pub connector_id: Option<ConnectorId>,
    /// Module mode: a webhooks.json.
    #[serde(default)]
    pub webhooks_config: Option<String>,
    /// Module mode: a connections.json.
    #[serde(default)]
    pub connections_config: Option<String>,
    /// etcd mode (not offered by wcon).
    #[serde(default)]
    pub etcd_host: Option<Value>,
    /// etcd mode (not offered by wcon).
    #[serde(default)]
    pub etcd_port: Option<Value>,
    /// etcd mode (not offered by wcon).
    #[serde(default)]
    pub etcd_prefix: Option<Value>,
    /// etcd mode (not offered by wcon).
    #[serde(default)]
    pub namespace: Option<Value>,
}

mod defaults {
    pub fn method() -> String {
        "POST".into()
    }
    pub fn timeout_seconds() -> f64 {
        30.0
    }
    pub fn yes() -> bool {
        true
    }
    pub fn retry_max_attempts() -> u32 {
        3
    }
    pub fn retry_delay_seconds() -> f64 {
        1.0
    }
    pub fn retry_backoff_multiplier() -> f64 {
        2.0
    }
    pub fn reconnect_delay() -> f64 {
        1.0
    }
    pub fn max_reconnect_delay() -> f64 {
        60.0
    }
    pub fn reconnect_backoff_multiplier() -> f64 {
        2.0
    }
    pub fn heartbeat_timeout() -> f64 {
        60.0
    }
    pub fn connection_timeout() -> f64 {
        30.0
    }
    pub fn max_concurrent_requests() -> u32 {
        10
    }
    pub fn ack_timeout() -> f64 {
        30.0
    }
}

/// How an environment variable's text becomes a JSON value.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Number,
    Bool,
}

/// `CONNECTOR_*` variables and the key each sets.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("CONNECTOR_CLOUD_URL", "cloud_url", Kind::Text),
    ("CONNECTOR_CHANNEL", "channel", Kind::Text),
    ("CONNECTOR_TOKEN", "token", Kind::Text),
    ("CONNECTOR_PROTOCOL", "protocol", Kind::Text),
    ("CONNECTOR_RECONNECT_DELAY", "reconnect_delay", Kind::Number),
    (
        "CONNECTOR_MAX_RECONNECT_DELAY",
        "max_reconnect_delay",
        Kind::Number,
    ),
    (
        "CONNECTOR_HEARTBEAT_TIMEOUT",
        "heartbeat_timeout",
        Kind::Number,
    ),
    (
        "CONNECTOR_CONNECTION_TIMEOUT",
        "connection_timeout",
        Kind::Number,
    ),
    (
        "CONNECTOR_MAX_CONCURRENT_REQUESTS",
        "max_concurrent_requests",
        Kind::Number,
    ),
    ("CONNECTOR_ACK_TIMEOUT", "ack_timeout", Kind::Number),
    ("CONNECTOR_LOG_LEVEL", "log_level", Kind::Text),
    ("CONNECTOR_VERIFY_SSL", "verify_ssl", Kind::Bool),
    ("CONNECTOR_CA_CERT_PATH", "ca_cert_path", Kind::Text),
    ("CONNECTOR_CLIENT_CERT_PATH", "client_cert_path", Kind::Text),
    ("CONNECTOR_CLIENT_KEY_PATH", "client_key_path", Kind::Text),
    ("CONNECTOR_ID", "connector_id", Kind::Text),
    ("CONNECTOR_WEBHOOKS_CONFIG", "webhooks_config", Kind::Text),
    (
        "CONNECTOR_CONNECTIONS_CONFIG",
        "connections_config",
        Kind::Text,
    ),
];

/// One layer of settings: key → JSON value, as a file, the environment or flags give them.
pub type Layer = Map<String, Value>;

/// Reads the `CONNECTOR_*` variables into a layer (the default target from
/// `CONNECTOR_TARGET_URL`, `CONNECTOR_TARGET_METHOD`, `CONNECTOR_TARGET_TIMEOUT`).
pub fn env_layer(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigErrors> {
    let mut layer = Layer::new();
    let mut errors = Vec::new();
    for (var, key, kind) in ENV_KEYS {
        let Some(text) = lookup(var) else { continue };
        match parse_env(&text, *kind) {
            Some(v) => {
                layer.insert((*key).to_string(), v);
            }
            None => errors.push(ConfigError::new(
                "<environment>",
                *var,
                format!("`{text}` is not a valid value"),
            )),
        }
    }
    if let Some(url) = lookup("CONNECTOR_TARGET_URL") {
        let mut target = Map::new();
        target.insert("url".into(), Value::String(url));
        if let Some(m) = lookup("CONNECTOR_TARGET_METHOD") {
            target.insert("method".into(), Value::String(m));
        }
        if let Some(t) = lookup("CONNECTOR_TARGET_TIMEOUT") {
            match parse_env(&t, Kind::Number) {
                Some(v) => {
                    target.insert("timeout_seconds".into(), v);
                }
                None => errors.push(ConfigError::new(
                    "<environment>",
                    "CONNECTOR_TARGET_TIMEOUT",
                    format!("`{t}` is not a number"),
                )),
            }
        }
        layer.insert("default_target".into(), Value::Object(target));
    }
    if errors.is_empty() {
        Ok(layer)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn parse_env(text: &str, kind: Kind) -> Option<Value> {
    match kind {
        Kind::Text => Some(Value::String(text.to_string())),
        Kind::Number => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(|n| {
                if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f >= 0.0) {
                    Value::from(n.as_f64().expect("checked") as u64)
                } else {
                    Value::Number(n)
                }
            }),
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(Value::Bool(true)),
            "false" | "0" | "no" => Some(Value::Bool(false)),
            _ => None,
        },
    }
}

/// Reads a connector.json into a layer (after `{$VAR}` substitution).
pub fn file_layer(path: &Path) -> Result<Layer, ConfigErrors> {
    match super::read_json(path)? {
        Value::Object(map) => Ok(map),
        _ => Err(ConfigError::new(path.display().to_string(), "", "expected a JSON object").into()),
    }
}

impl ConnectorConfig {
    /// Builds the config from layers, later ones winning key by key (defaults < file < env < flags).
    /// `file` names the first layer's source in errors.
    pub fn from_layers(file: &str, layers: &[Layer]) -> Result<Self, ConfigErrors> {
        let mut merged = Layer::new();
        for layer in layers {
            for (k, v) in layer {
                merged.insert(k.clone(), v.clone());
            }
        }
        if merged.contains_key("routes") || merged.contains_key("cloud") {
            return Err(ConfigError::new(file, "routes", "the multi-channel connector shape (`cloud`, `routes`) is not supported yet by this version of wcon; run one `wcon tunnel` per channel").into());
        }
        for required in ["cloud_url", "channel", "token"] {
            if !merged.contains_key(required) {
                return Err(ConfigError::new(
                    file,
                    required,
                    format!(
                        "`{required}` is required (flag, `CONNECTOR_{}` or connector.json)",
                        required.to_ascii_uppercase()
                    ),
                )
                .into());
            }
        }
        let config: Self = from_value(file, "", Value::Object(merged))?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let not_yet = |key: &str, what: &str| {
            ConfigError::new(
                file,
                key,
                format!("{what} is not supported yet by this version of wcon"),
            )
        };
        if let Err(e) = super::webhooks::check_channel_name(self.channel.as_str()) {
            errors.push(ConfigError::new(file, "channel", e));
        }
        if !matches!(self.cloud_url.scheme(), "http" | "https" | "ws" | "wss") {
            errors.push(ConfigError::new(
                file,
                "cloud_url",
                "must be an http:// or https:// URL",
            ));
        }
        if !positive(self.reconnect_delay) {
            errors.push(ConfigError::new(
                file,
                "reconnect_delay",
                "must be greater than 0",
            ));
        }
        if !at_least(self.max_reconnect_delay, self.reconnect_delay) {
            errors.push(ConfigError::new(
                file,
                "max_reconnect_delay",
                "must be at least `reconnect_delay`",
            ));
        }
        if !at_least(self.reconnect_backoff_multiplier, 1.0) {
            errors.push(ConfigError::new(
                file,
                "reconnect_backoff_multiplier",
                "must be at least 1",
            ));
        }
        for (key, v) in [
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("connection_timeout", self.connection_timeout),
            ("ack_timeout", self.ack_timeout),
        ] {
            if !positive(v) {
                errors.push(ConfigError::new(
                    file,
                    key,
                    "must be a positive number of seconds",
                ));
            }
        }
        if self.max_concurrent_requests == 0 {
            errors.push(ConfigError::new(
                file,
                "max_concurrent_requests",
                "must be at least 1",
            ));
        }
        for (key, present) in [
            ("client_cert_path", self.client_cert_path.is_some()),
            ("client_key_path", self.client_key_path.is_some()),
        ] {
            if present {
                errors.push(not_yet(key, "client certificates (mutual TLS)"));
            }
        }
        if self.ca_cert_path.as_deref().is_some_and(str::is_empty) {
            errors.push(ConfigError::new(
                file,
                "ca_cert_path",
                "must name a PEM file of the CA that signed the server's certificate",
            ));
        }
        let module_mode = self.webhooks_config.is_some();
        if self.connections_config.is_some() && !module_mode {
            errors.push(ConfigError::new(
                file,
                "connections_config",
                "`connections_config` is for module mode: also give `webhooks_config` (or `--webhooks FILE`)",
            ));
        }
        if module_mode && (self.default_target.is_some() || !self.targets.is_empty()) {
            errors.push(ConfigError::new(
                file,
                "webhooks_config",
                "choose one delivery mode: `webhooks_config` (output modules) or `default_target`/`targets` (HTTP), not both",
            ));
        }
        if self.etcd_host.is_some()
            || self.etcd_port.is_some()
            || self.etcd_prefix.is_some()
            || self.namespace.is_some()
        {
            errors.push(ConfigError::new(
                file,
                "etcd_host",
                "etcd mode is not offered by wcon; use `webhooks_config` files or HTTP targets",
            ));
        }
        if !module_mode && self.default_target.is_none() && self.targets.is_empty() {
            errors.push(ConfigError::new(
                file,
                "default_target",
                "no delivery target: give `default_target` or `targets` (or `--to localhost:3000`), or `webhooks_config` for output modules (or `--webhooks FILE`)",
            ));
        }
        for (at, t) in self
            .default_target
            .iter()
            .map(|t| ("default_target".to_string(), t))
            .chain(
                self.targets
                    .iter()
                    .map(|(id, t)| (format!("targets.{id}"), t)),
            )
        {
            if !matches!(t.url.scheme(), "http" | "https") {
                errors.push(ConfigError::new(
                    file,
                    format!("{at}.url"),
                    "must be an http:// or https:// URL",
                ));
            }
            if http::Method::from_bytes(t.method.to_ascii_uppercase().as_bytes()).is_err() {
                errors.push(ConfigError::new(
                    file,
                    format!("{at}.method"),
                    format!("`{}` is not an HTTP method", t.method),
                ));
            }
            if !positive(t.timeout_seconds) {
                errors.push(ConfigError::new(
                    file,
                    format!("{at}.timeout_seconds"),
                    "must be a positive number of seconds",
                ));
            }
            if t.retry_max_attempts == 0 || t.retry_max_attempts > 20 {
                errors.push(ConfigError::new(
                    file,
                    format!("{at}.retry_max_attempts"),
                    "must be between 1 and 20",
                ));
            }
            if !(0.0..=60.0).contains(&t.retry_delay_seconds) {
                errors.push(ConfigError::new(
                    file,
                    format!("{at}.retry_delay_seconds"),
                    "must be between 0 and 60",
                ));
            }
            if !(1.0..=10.0).contains(&t.retry_backoff_multiplier) {
                errors.push(ConfigError::new(
                    file,
                    format!("{at}.retry_backoff_multiplier"),
                    "must be between 1 and 10",
                ));
            }
            for (name, value) in &t.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(value).is_err()
                {
                    errors.push(ConfigError::new(
                        file,
                        format!("{at}.headers.{name}"),
                        "not a valid HTTP header",
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The target for a webhook id: its own, else the default.
    pub fn target_for(&self, webhook_id: &WebhookId) -> Option<&TargetConfig> {
        self.targets
            .get(webhook_id)
            .or(self.default_target.as_ref())
    }

    /// `heartbeat_timeout` as a duration.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_timeout)
    }
}

/// A number of seconds a `Duration` can hold: positive, finite, below a billion.
fn positive(seconds: f64) -> bool {
    seconds > 0.0 && seconds < 1e9
}

/// `value >= min`, false for NaN.
fn at_least(value: f64, min: f64) -> bool {
    value >= min
}

/// Turns `--to` text into a target URL: `3000`, `localhost:3000`, `http://host:port/path`.
pub fn parse_target(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
        format!("http://localhost:{text}")
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("`{text}` is not a target address ({e}); try `localhost:3000` or `http://localhost:3000/webhooks`"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{text}` is not an http:// or https:// address"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(v: Value) -> Layer {
        v.as_object().unwrap().clone()
    }

    fn base() -> Layer {
        layer(
            json!({"cloud_url": "http://127.0.0.1:8000", "channel": "stripe-payments", "token": "ch_tok_x",
                     "default_target": {"url": "http://localhost:3000/webhooks"}}),
        )
    }

    #[test]
    fn the_documented_file_parses_with_defaults() {
        let c = ConnectorConfig::from_layers("connector.json", &[base()]).unwrap();
        assert_eq!(c.max_concurrent_requests, 10);
        assert_eq!(c.protocol, Protocol::Websocket);
        let t = c.default_target.unwrap();
        assert_eq!(
            (t.method.as_str(), t.retry_max_attempts, t.timeout_seconds),
            ("POST", 3, 30.0)
        );
        assert_eq!(format!("{:?}", c.token), "\"***\"");
    }

    #[test]
    fn later_layers_win() {
        let env = env_layer(&|k| match k {
            "CONNECTOR_CHANNEL" => Some("from-env".into()),
            "CONNECTOR_MAX_CONCURRENT_REQUESTS" => Some("4".into()),
            _ => None,
        })
        .unwrap();
        let flags = layer(json!({"max_concurrent_requests": 7}));
        let c = ConnectorConfig::from_layers("connector.json", &[base(), env, flags]).unwrap();
        assert_eq!(c.channel.as_str(), "from-env");
        assert_eq!(c.max_concurrent_requests, 7);
    }

    #[test]
    fn targets_route_by_webhook_id() {
        let mut l = base();
        l.insert(
            "targets".into(),
            json!({"github": {"url": "http://localhost:4000/gh"}}),
        );
        let c = ConnectorConfig::from_layers("c.json", &[l]).unwrap();
        assert_eq!(c.target_for(&"github".into()).unwrap().url.path(), "/gh");
        assert_eq!(
            c.target_for(&"other".into()).unwrap().url.path(),
            "/webhooks"
        );
    }

    #[test]
    fn missing_and_unknown_keys_are_explained() {
        let mut l = base();
        l.remove("token");
        let err = ConnectorConfig::from_layers("c.json", &[l]).unwrap_err();
        assert!(err.to_string().contains("`token` is required"), "{err}");
        let mut l = base();
        l.insert("max_concurent_requests".into(), json!(3));
        let err = ConnectorConfig::from_layers("c.json", &[l]).unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean `max_concurrent_requests`"),
            "{err}"
        );
    }

    #[test]
    fn tls_settings_are_taken_and_client_certificates_refused() {
        let mut l = base();
        l.insert("verify_ssl".into(), json!(false));
        l.insert("ca_cert_path".into(), json!("/etc/wcon/ca.pem"));
        let c = ConnectorConfig::from_layers("c.json", &[l.clone()]).unwrap();
        assert!(!c.verify_ssl);
        assert_eq!(c.ca_cert_path.as_deref(), Some("/etc/wcon/ca.pem"));
        let env = env_layer(&|k| (k == "CONNECTOR_VERIFY_SSL").then(|| "true".into())).unwrap();
        assert!(
            ConnectorConfig::from_layers("c.json", &[l.clone(), env])
                .unwrap()
                .verify_ssl
        );
        l.insert("client_cert_path".into(), json!("/etc/wcon/client.pem"));
        let err = ConnectorConfig::from_layers("c.json", &[l]).unwrap_err();
        assert!(err.to_string().contains("client certificates"), "{err}");
    }

    #[test]
    fn target_shorthands() {
        assert_eq!(
            parse_target("3000").unwrap().as_str(),
            "http://localhost:3000/"
        );
        assert_eq!(
            parse_target("localhost:3000").unwrap().as_str(),
            "http://localhost:3000/"
        );
        assert_eq!(
            parse_target("http://127.0.0.1:9/hook").unwrap().as_str(),
            "http://127.0.0.1:9/hook"
        );
        assert!(parse_target("ftp://x").is_err());
    }
}
