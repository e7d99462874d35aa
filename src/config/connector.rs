//! connector.json: what `wcon tunnel` connects to and where it delivers.
//!
//! Owns both documented shapes of the file: single channel (the original's keys, unchanged) and
//! multi channel (`cloud` `{url, connector_id}`, `concurrency`, `routes` `{channel: {token,
//! target | module… | chain…}}`, `connections`), the `CONNECTOR_*` environment variables, and the
//! layering defaults < file < environment < flags. Either shape becomes a [`ConnectorSetup`]: one
//! [`ConnectorConfig`] per channel. It does not connect anywhere.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
    /// Client certificate chain (PEM) presented to the server (mutual TLS, `--client-cert`).
    #[serde(default)]
    pub client_cert_path: Option<String>,
    /// Private key (PEM) of `client_cert_path` (`--client-key`).
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
    /// Module mode from a `routes` entry of the multi-channel shape (`module…` or `chain…`).
    #[serde(skip)]
    pub inline_route: Option<InlineRoute>,
}

/// A `routes` entry that delivers to output modules, written inline in connector.json.
#[derive(Debug, Clone, PartialEq)]
pub struct InlineRoute {
    /// The file it came from (for errors).
    pub file: String,
    /// The entry (webhooks.json keys: `module`, `module-config`, `connection`, `chain`, …).
    pub entry: Value,
    /// The file's `connections` object, if any.
    pub connections: Option<Value>,
}

/// Everything one `wcon tunnel` process runs: one config per channel, sharing one delivery limit.
#[derive(Debug, Clone)]
pub struct ConnectorSetup {
    /// One config per channel, in channel-name order.
    pub channels: Vec<ConnectorConfig>,
    /// Deliveries running at once, over every channel.
    pub concurrency: u32,
    /// Where the health and metrics server listens (off when `None`).
    pub health_listen: Option<SocketAddr>,
    /// A channel down for longer than this (seconds) makes `/health` answer 503.
    pub health_down_after: f64,
    /// True for the multi-channel shape (`routes`).
    pub multi: bool,
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
    pub fn health_down_after() -> f64 {
        60.0
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
    (
        "CONNECTOR_RECONNECT_BACKOFF_MULTIPLIER",
        "reconnect_backoff_multiplier",
        Kind::Number,
    ),
    ("CONNECTOR_CONCURRENCY", "concurrency", Kind::Number),
    ("CONNECTOR_LOG_LEVEL", "log_level", Kind::Text),
    ("CONNECTOR_LOG_FORMAT", "log_format", Kind::Text),
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
    ("CONNECTOR_HEALTH_LISTEN", "health_listen", Kind::Text),
    (
        "CONNECTOR_HEALTH_DOWN_AFTER",
        "health_down_after",
        Kind::Number,
    ),
    ("CONNECTOR_ETCD_HOST", "etcd_host", Kind::Text),
    ("CONNECTOR_ETCD_PORT", "etcd_port", Kind::Text),
    ("CONNECTOR_ETCD_PREFIX", "etcd_prefix", Kind::Text),
    ("CONNECTOR_NAMESPACE", "namespace", Kind::Text),
];

/// Every `CONNECTOR_*` variable read, for `--help` and docs.
pub fn env_names() -> impl Iterator<Item = &'static str> {
    ENV_KEYS.iter().map(|(var, _, _)| *var).chain([
        "CONNECTOR_TARGET_URL",
        "CONNECTOR_TARGET_METHOD",
        "CONNECTOR_TARGET_TIMEOUT",
    ])
}

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

/// Keys of a `routes` entry that are not webhooks.json keys.
const ROUTE_KEYS: &[&str] = &[
    "token",
    "target",
    "targets",
    "webhooks_config",
    "connections_config",
    "protocol",
];
/// Keys that say where a channel delivers.
const DELIVERY_KEYS: &[&str] = &["default_target", "targets", "webhooks_config"];

/// Rewrites one layer's multi-channel spellings into the keys used below: `cloud.url` →
/// `cloud_url`, `cloud.connector_id` → `connector_id`, `concurrency` → `max_concurrent_requests`.
fn normalize(file: &str, layer: &Layer) -> Result<Layer, ConfigErrors> {
    let mut out = layer.clone();
    if let Some(cloud) = out.remove("cloud") {
        let Value::Object(cloud) = cloud else {
            return Err(ConfigError::new(
                file,
                "cloud",
                "expected an object `{\"url\": …, \"connector_id\": …}`",
            )
            .into());
        };
        for (key, value) in cloud {
            match key.as_str() {
                "url" => out.insert("cloud_url".into(), value),
                "connector_id" | "token" => out.insert(key, value),
                other => {
                    return Err(ConfigError::new(
                        file,
                        format!("cloud.{other}"),
                        super::unknown_key_message(other, &["url", "connector_id", "token"]),
                    )
                    .into());
                }
            };
        }
    }
    if let Some(n) = out.remove("concurrency") {
        out.insert("max_concurrent_requests".into(), n);
    }
    Ok(out)
}

impl ConnectorSetup {
    /// Builds the setup from layers, later ones winning key by key (defaults < file < env <
    /// flags); `routes` merge channel by channel. `file` names the first layer's source in errors.
    pub fn from_layers(file: &str, layers: &[Layer]) -> Result<Self, ConfigErrors> {
        let mut merged = Layer::new();
        for layer in layers {
            for (k, v) in normalize(file, layer)? {
                match (k.as_str(), merged.get_mut(&k), v) {
                    ("routes", Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
                    (_, _, v) => {
                        merged.insert(k, v);
                    }
                }
            }
        }
        let health_listen = match merged.remove("health_listen") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(Value::String(text)) => Some(text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    file,
                    "health_listen",
                    format!("`{text}` is not an address like 127.0.0.1:9090"),
                )
            })?),
            Some(_) => {
                return Err(ConfigError::new(
                    file,
                    "health_listen",
                    "expected an address like \"127.0.0.1:9090\"",
                )
                .into());
            }
        };
        let health_down_after = match merged.remove("health_down_after") {
            None => defaults::health_down_after(),
            Some(v) => match v.as_f64() {
                Some(s) if positive(s) => s,
                _ => {
                    return Err(ConfigError::new(
                        file,
                        "health_down_after",
                        "must be a positive number of seconds",
                    )
                    .into());
                }
            },
        };
        let connections = merged.remove("connections");
        let Some(routes) = merged.remove("routes") else {
            if connections.is_some() {
                return Err(ConfigError::new(file, "connections", "`connections` belongs to the multi-channel shape (`routes`); a single-channel file names a `connections_config` file").into());
            }
            let config = ConnectorConfig::from_merged(file, merged, None)?;
            return Ok(Self {
                concurrency: config.max_concurrent_requests,
                channels: vec![config],
                health_listen,
                health_down_after,
                multi: false,
            });
        };
        let Value::Object(routes) = routes else {
            return Err(
                ConfigError::new(file, "routes", "expected an object of channel → route").into(),
            );
        };
        if routes.is_empty() {
            return Err(ConfigError::new(file, "routes", "no channel: add at least one route `{\"<channel>\": {\"token\": …, \"target\": …}}`").into());
        }
        if merged.contains_key("channel") {
            return Err(ConfigError::new(file, "channel", "`channel` is for the single-channel shape; with `routes`, each channel is a key of `routes`").into());
        }
        if let Some(c) = &connections
            && !c.is_object()
        {
            return Err(ConfigError::new(
                file,
                "connections",
                "expected an object of connection name → settings",
            )
            .into());
        }
        let shared_token = merged.remove("token");
        let mut channels = Vec::new();
        let mut errors: Vec<ConfigError> = Vec::new();
        for (name, route) in routes {
            let at = format!("routes.{name}");
            let Value::Object(mut route) = route else {
                errors.push(ConfigError::new(
                    file,
                    &at,
                    "expected an object with `token` and `target`, `module` or `chain`",
                ));
                continue;
            };
            let mut m = merged.clone();
            m.insert("channel".into(), Value::String(name.clone()));
            match route.remove("token").or_else(|| shared_token.clone()) {
                Some(token) => {
                    m.insert("token".into(), token);
                }
                None => {
                    errors.push(ConfigError::new(
                        file,
                        format!("{at}.token"),
                        "`token` is required (the channel token of this route)",
                    ));
                    continue;
                }
            }
            let own: Layer = route
                .iter()
                .filter(|(k, _)| ROUTE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            route.retain(|k, _| !ROUTE_KEYS.contains(&k.as_str()));
            let inline = !route.is_empty();
            if inline && !route.contains_key("module") && !route.contains_key("chain") {
                let mut valid: Vec<&str> = ROUTE_KEYS.to_vec();
                valid.extend(["module", "chain"]);
                for key in route.keys() {
                    errors.push(ConfigError::new(
                        file,
                        format!("{at}.{key}"),
                        super::unknown_key_message(key, &valid),
                    ));
                }
                continue;
            }
            let own_delivery = inline
                || own.contains_key("target")
                || own.contains_key("targets")
                || own.contains_key("webhooks_config");
            if own_delivery {
                // A route's own delivery replaces one set for every channel (e.g. CONNECTOR_TARGET_URL).
                for key in DELIVERY_KEYS {
                    m.remove(*key);
                }
            }
            for (k, v) in own {
                match (k.as_str(), v) {
                    ("target", Value::String(url)) => {
                        m.insert("default_target".into(), serde_json::json!({ "url": url }));
                    }
                    ("target", v) => {
                        m.insert("default_target".into(), v);
                    }
                    (_, v) => {
                        m.insert(k, v);
                    }
                }
            }
            let inline = inline.then(|| InlineRoute {
                file: file.to_string(),
                entry: Value::Object(route),
                connections: connections.clone(),
            });
            match ConnectorConfig::from_merged(file, m, inline) {
                Ok(c) => channels.push(c),
                Err(ConfigErrors(found)) => {
                    for mut e in found {
                        let root = e.path.split('.').next().unwrap_or("");
                        if ROUTE_KEYS.contains(&root) || DELIVERY_KEYS.contains(&root) {
                            let path = e.path.replacen("default_target", "target", 1);
                            e.path = format!("{at}.{path}");
                        }
                        if !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            concurrency: channels[0].max_concurrent_requests,
            channels,
            health_listen,
            health_down_after,
            multi: true,
        })
    }

    /// The local files this setup reads (module mode), for watching.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let mut out: Vec<std::path::PathBuf> = self
            .channels
            .iter()
            .flat_map(|c| [c.webhooks_config.as_ref(), c.connections_config.as_ref()])
            .flatten()
            .map(std::path::PathBuf::from)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl ConnectorConfig {
    /// Builds a single-channel config from layers (see [`ConnectorSetup::from_layers`]).
    pub fn from_layers(file: &str, layers: &[Layer]) -> Result<Self, ConfigErrors> {
        let setup = ConnectorSetup::from_layers(file, layers)?;
        if setup.multi {
            return Err(
                ConfigError::new(file, "routes", "expected the single-channel shape").into(),
            );
        }
        Ok(setup.channels.into_iter().next().expect("one channel"))
    }

    fn from_merged(
        file: &str,
        mut merged: Layer,
        inline_route: Option<InlineRoute>,
    ) -> Result<Self, ConfigErrors> {
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
        // `wss://host/connect/stream`, as the multi-channel docs write it, is the server `wss://host`.
        if let Some(Value::String(url)) = merged.get_mut("cloud_url") {
            let trimmed = url.trim_end_matches('/');
            if let Some(base) = trimmed.strip_suffix("/connect/stream") {
                *url = base.to_string();
            }
        }
        let mut config: Self = from_value(file, "", Value::Object(merged))?;
        config.inline_route = inline_route;
        config.validate(file)?;
        Ok(config)
    }

    /// True when `other` streams the same way (server, channel, token, transport, timings):
    /// only where it delivers may differ.
    pub fn same_stream(&self, other: &Self) -> bool {
        self.cloud_url == other.cloud_url
            && self.channel == other.channel
            && self.token.expose() == other.token.expose()
            && self.protocol == other.protocol
            && self.connector_id == other.connector_id
            && self.reconnect_delay == other.reconnect_delay
            && self.max_reconnect_delay == other.max_reconnect_delay
            && self.reconnect_backoff_multiplier == other.reconnect_backoff_multiplier
            && self.heartbeat_timeout == other.heartbeat_timeout
            && self.connection_timeout == other.connection_timeout
            && self.max_concurrent_requests == other.max_concurrent_requests
            && self.verify_ssl == other.verify_ssl
            && self.ca_cert_path == other.ca_cert_path
            && self.client_cert_path == other.client_cert_path
            && self.client_key_path == other.client_key_path
    }

    fn validate(&self, file: &str) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
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
        match (&self.client_cert_path, &self.client_key_path) {
            (Some(_), None) => errors.push(ConfigError::new(
                file,
                "client_key_path",
                "`client_cert_path` needs its private key: give `client_key_path` (--client-key, CONNECTOR_CLIENT_KEY_PATH)",
            )),
            (None, Some(_)) => errors.push(ConfigError::new(
                file,
                "client_cert_path",
                "`client_key_path` needs its certificate: give `client_cert_path` (--client-cert, CONNECTOR_CLIENT_CERT_PATH)",
            )),
            _ => {}
        }
        for (key, path) in [
            ("client_cert_path", &self.client_cert_path),
            ("client_key_path", &self.client_key_path),
        ] {
            if path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                errors.push(ConfigError::new(
                    file,
                    key,
                    "must name a PEM file (remove the key for no client certificate)",
                ));
            }
        }
        if self.ca_cert_path.as_deref().is_some_and(str::is_empty) {
            errors.push(ConfigError::new(
                file,
                "ca_cert_path",
                "must name a PEM file of the CA that signed the server's certificate",
            ));
        }
        let module_mode = self.webhooks_config.is_some() || self.inline_route.is_some();
        if self.webhooks_config.is_some() && self.inline_route.is_some() {
            errors.push(ConfigError::new(
                file,
                "webhooks_config",
                "choose one: a `webhooks_config` file or `module`/`chain` written in the route",
            ));
        }
        if self
            .inline_route
            .as_ref()
            .is_some_and(|r| r.connections.is_some())
            && self.connections_config.is_some()
        {
            errors.push(ConfigError::new(
                file,
                "connections_config",
                "choose one: `connections` written in connector.json or a `connections_config` file",
            ));
        }
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
    fn tls_settings_and_client_certificates_are_taken() {
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
        // A certificate needs its key, and the other way round.
        l.insert("client_cert_path".into(), json!("/etc/wcon/client.pem"));
        let err = ConnectorConfig::from_layers("c.json", &[l.clone()]).unwrap_err();
        assert!(
            err.to_string().contains("`client_key_path`")
                && err.to_string().contains("--client-key"),
            "{err}"
        );
        let mut key_only = base();
        key_only.insert("client_key_path".into(), json!("/etc/wcon/client.key"));
        let err = ConnectorConfig::from_layers("c.json", &[key_only]).unwrap_err();
        assert!(err.to_string().contains("--client-cert"), "{err}");
        l.insert("client_key_path".into(), json!("/etc/wcon/client.key"));
        let c = ConnectorConfig::from_layers("c.json", &[l.clone()]).unwrap();
        assert_eq!(
            (c.client_cert_path.as_deref(), c.client_key_path.as_deref()),
            (Some("/etc/wcon/client.pem"), Some("/etc/wcon/client.key"))
        );
        // file < environment < flags, key by key.
        let env = env_layer(&|k| match k {
            "CONNECTOR_CLIENT_CERT_PATH" => Some("/env/c.pem".into()),
            "CONNECTOR_CLIENT_KEY_PATH" => Some("/env/k.pem".into()),
            _ => None,
        })
        .unwrap();
        let flags = layer(json!({"client_cert_path": "/flag/c.pem"}));
        let c = ConnectorConfig::from_layers("c.json", &[l.clone(), env.clone()]).unwrap();
        assert_eq!(c.client_cert_path.as_deref(), Some("/env/c.pem"));
        let c = ConnectorConfig::from_layers("c.json", &[l.clone(), env, flags]).unwrap();
        assert_eq!(
            (c.client_cert_path.as_deref(), c.client_key_path.as_deref()),
            (Some("/flag/c.pem"), Some("/env/k.pem"))
        );
        l.insert("client_key_path".into(), json!(""));
        let err = ConnectorConfig::from_layers("c.json", &[l]).unwrap_err();
        assert!(err.to_string().contains("must name a PEM file"), "{err}");
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

    #[test]
    fn the_documented_multi_channel_file_gives_one_config_per_channel() {
        let doc = layer(json!({
            "cloud": {"url": "wss://webhook-cloud.example.com/connect/stream", "connector_id": "prod-processor-01"},
            "concurrency": 20,
            "routes": {
                "stripe-payments": {"token": "t1", "module": "kafka", "connection": "kafka_cluster", "module-config": {"topic": "payment-events"}},
                "github-events": {"token": "t2", "chain": [{"module": "log"}], "chain-config": {"execution": "parallel"}},
                "shop": {"token": "t3", "target": "http://localhost:3000/shop"}
            },
            "connections": {"kafka_cluster": {"type": "kafka", "bootstrap_servers": "k:9092"}}
        }));
        let s = ConnectorSetup::from_layers("connector.json", std::slice::from_ref(&doc)).unwrap();
        assert!(s.multi);
        assert_eq!(s.concurrency, 20);
        let names: Vec<&str> = s.channels.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(names, ["github-events", "shop", "stripe-payments"]);
        let stripe = &s.channels[2];
        assert_eq!(
            stripe.cloud_url.as_str(),
            "wss://webhook-cloud.example.com/"
        );
        assert_eq!(stripe.token.expose(), "t1");
        assert_eq!(
            stripe.connector_id.as_ref().unwrap().as_str(),
            "prod-processor-01"
        );
        let inline = stripe.inline_route.as_ref().unwrap();
        assert_eq!(inline.entry["module"], "kafka");
        assert!(inline.connections.is_some());
        assert_eq!(
            s.channels[1].default_target.as_ref().unwrap().url.path(),
            "/shop"
        );
        // Environment over file, flags over environment; a flag route replaces that channel only.
        let env = env_layer(&|k| (k == "CONNECTOR_CONCURRENCY").then(|| "5".into())).unwrap();
        let flags =
            layer(json!({"routes": {"shop": {"token": "t9", "target": "http://127.0.0.1:9/x"}}}));
        let s = ConnectorSetup::from_layers("connector.json", &[doc, env, flags]).unwrap();
        assert_eq!(s.concurrency, 5);
        assert_eq!(s.channels.len(), 3);
        assert_eq!(s.channels[1].token.expose(), "t9");
        assert_eq!(
            s.channels[1].default_target.as_ref().unwrap().url.as_str(),
            "http://127.0.0.1:9/x"
        );
    }

    #[test]
    fn multi_channel_mistakes_name_the_route() {
        let doc = layer(json!({
            "cloud": {"url": "http://127.0.0.1:8000"},
            "routes": {
                "a": {"target": "http://localhost:1/"},
                "b": {"token": "x", "tagret": "http://localhost:1/"},
                "c": {"token": "x", "target": "ftp://nope/"}
            }
        }));
        let err = ConnectorSetup::from_layers("connector.json", &[doc])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`routes.a.token`: `token` is required"),
            "{err}"
        );
        assert!(
            err.contains("`routes.b.tagret`: unknown key `tagret`; did you mean `target`?"),
            "{err}"
        );
        assert!(err.contains("`routes.c.target.url`"), "{err}");
        // A shared token (--token, CONNECTOR_TOKEN) covers routes without their own.
        let doc = layer(json!({
            "cloud_url": "http://127.0.0.1:8000", "token": "shared",
            "routes": {"a": {"target": "http://localhost:1/"}}
        }));
        let s = ConnectorSetup::from_layers("c.json", &[doc]).unwrap();
        assert_eq!(s.channels[0].token.expose(), "shared");
        let doc = layer(
            json!({"cloud_url": "http://127.0.0.1:8000", "channel": "x", "token": "t", "routes": {"a": {"target": "http://localhost:1/"}}}),
        );
        let err = ConnectorSetup::from_layers("c.json", &[doc])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`channel` is for the single-channel shape"),
            "{err}"
        );
    }

    #[test]
    fn every_documented_variable_is_read() {
        let names: Vec<&str> = env_names().collect();
        for documented in [
            "CONNECTOR_CLOUD_URL",
            "CONNECTOR_CHANNEL",
            "CONNECTOR_TOKEN",
            "CONNECTOR_PROTOCOL",
            "CONNECTOR_RECONNECT_DELAY",
            "CONNECTOR_MAX_RECONNECT_DELAY",
            "CONNECTOR_HEARTBEAT_TIMEOUT",
            "CONNECTOR_CONNECTION_TIMEOUT",
            "CONNECTOR_MAX_CONCURRENT_REQUESTS",
            "CONNECTOR_ACK_TIMEOUT",
            "CONNECTOR_LOG_LEVEL",
            "CONNECTOR_CA_CERT_PATH",
            "CONNECTOR_CLIENT_CERT_PATH",
            "CONNECTOR_CLIENT_KEY_PATH",
            "CONNECTOR_VERIFY_SSL",
            "CONNECTOR_ID",
            "CONNECTOR_WEBHOOKS_CONFIG",
            "CONNECTOR_CONNECTIONS_CONFIG",
            "CONNECTOR_ETCD_HOST",
            "CONNECTOR_ETCD_PORT",
            "CONNECTOR_ETCD_PREFIX",
            "CONNECTOR_NAMESPACE",
            "CONNECTOR_TARGET_URL",
            "CONNECTOR_TARGET_METHOD",
            "CONNECTOR_TARGET_TIMEOUT",
        ] {
            assert!(names.contains(&documented), "{documented}");
        }
        let env = env_layer(&|k| match k {
            "CONNECTOR_CLOUD_URL" => Some("http://127.0.0.1:1".into()),
            "CONNECTOR_CHANNEL" => Some("c".into()),
            "CONNECTOR_TOKEN" => Some("t".into()),
            "CONNECTOR_TARGET_URL" => Some("http://127.0.0.1:2/h".into()),
            "CONNECTOR_HEALTH_LISTEN" => Some("127.0.0.1:0".into()),
            "CONNECTOR_HEARTBEAT_TIMEOUT" => Some("2.5".into()),
            _ => None,
        })
        .unwrap();
        let s = ConnectorSetup::from_layers("<env>", &[env]).unwrap();
        assert_eq!(s.health_listen.unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(s.channels[0].heartbeat_timeout, 2.5);
    }
}
