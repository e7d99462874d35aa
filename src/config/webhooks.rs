//! webhooks.json: webhook id → how it is received and where it goes.
//!
//! Owns the file's types (the original's key names), webhook id rules, the relay settings of
//! `"module": "webhook_connect"`, and validation. It does not authenticate or deliver anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, ConfigErrors, from_value, join_path};
use crate::auth::ip_whitelist::IpRanges;
use crate::cleanup::CredentialCleanup;
use crate::modules::pipeline::{Pipeline, PipelineSpec};
use crate::modules::registry::BuildContext;
use crate::protocol::{ChannelName, WebhookId};
use crate::receiver::rate_limit::RateLimit;
use crate::receiver::schema::BodySchema;
use crate::secret::Secret;

/// The module name of a relay webhook.
pub const RELAY_MODULE: &str = "webhook_connect";

/// How the body of a webhook is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// A JSON document (validated, relayed byte for byte).
    #[default]
    Json,
    /// A form: `application/x-www-form-urlencoded` or `multipart/form-data`.
    Form,
    /// Any bytes.
    Blob,
    /// Any bytes (alias of `blob`).
    Raw,
}

/// One entry of webhooks.json, with the original's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// How the body is read (`json` by default).
    #[serde(default)]
    pub data_type: DataType,
    /// The module that receives the webhook (`webhook_connect` to relay it).
    #[serde(default)]
    pub module: Option<String>,
    /// The module's settings.
    #[serde(default, rename = "module-config")]
    pub module_config: Option<Value>,
    /// A connections.json entry the module uses.
    #[serde(default)]
    pub connection: Option<String>,
    /// Several modules in a row.
    #[serde(default)]
    pub chain: Option<Value>,
    /// How the chain runs.
    #[serde(default, rename = "chain-config")]
    pub chain_config: Option<Value>,
    /// Retry policy for modules.
    #[serde(default)]
    pub retry: Option<Value>,
    /// Request rate limit.
    #[serde(default)]
    pub rate_limit: Option<Value>,
    /// JSON Schema the body must satisfy.
    #[serde(default)]
    pub json_schema: Option<Value>,
    /// Masking of credentials in logs and stored payloads.
    #[serde(default)]
    pub credential_cleanup: Option<Value>,
    /// Proxies (addresses or CIDR ranges) whose X-Forwarded-For / X-Real-IP are believed.
    #[serde(default)]
    pub trusted_proxies: Option<Value>,
    /// Largest body accepted, in bytes (wcon addition; default 10 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// `Authorization` header match.
    #[serde(default)]
    pub authorization: Option<Value>,
    /// HTTP Basic authentication.
    #[serde(default)]
    pub basic_auth: Option<Value>,
    /// JWT bearer tokens.
    #[serde(default)]
    pub jwt: Option<Value>,
    /// HMAC signature of the body.
    #[serde(default)]
    pub hmac: Option<Value>,
    /// Sender address allow-list.
    #[serde(default)]
    pub ip_whitelist: Option<Value>,
    /// Google reCAPTCHA.
    #[serde(default)]
    pub recaptcha: Option<Value>,
    /// HTTP Digest authentication.
    #[serde(default)]
    pub digest_auth: Option<Value>,
    /// OAuth 1.0a signatures.
    #[serde(default)]
    pub oauth1: Option<Value>,
    /// OAuth 2.0 bearer tokens.
    #[serde(default)]
    pub oauth2: Option<Value>,
    /// API key in a query parameter.
    #[serde(default)]
    pub query_auth: Option<Value>,
    /// API key in a header.
    #[serde(default)]
    pub header_auth: Option<Value>,
    /// The original's top-level `topic` (kafka, mqtt); merged into `module-config`.
    #[serde(default)]
    pub topic: Option<Value>,
    /// The original's top-level `queue_name` (rabbitmq); merged into `module-config`.
    #[serde(default)]
    pub queue_name: Option<Value>,
    /// The original's top-level `redis` object (redis_publish); merged into `module-config`.
    #[serde(default)]
    pub redis: Option<Value>,
}

/// The `module-config` of a relay webhook (`"module": "webhook_connect"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The channel connectors subscribe to.
    pub channel: ChannelName,
    /// The token connectors present.
    pub channel_token: Secret<String>,
    /// How long a message may wait before it is dead-lettered as `expired`.
    #[serde(default = "defaults::ttl_seconds")]
    pub ttl_seconds: u64,
    /// How many unacked messages the channel holds before ingest answers 503.
    #[serde(default = "defaults::max_queue_size")]
    pub max_queue_size: u64,
    /// How many connections may stream the channel at once.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// How many unacked messages one connection may hold.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: u32,
    /// How long a delivered message may stay unacked before it is delivered again.
    #[serde(default = "defaults::ack_timeout_seconds")]
    pub ack_timeout_seconds: u64,
    /// How often heartbeats are sent (a connection silent for 3 intervals is closed).
    #[serde(default = "defaults::heartbeat_interval_seconds")]
    pub heartbeat_interval_seconds: u64,
    /// Deliveries after which a message that keeps failing is dead-lettered.
    #[serde(default = "defaults::max_delivery_attempts")]
    pub max_delivery_attempts: u32,
    /// Connector addresses (and CIDR ranges) allowed to use the streaming API; absent: any.
    #[serde(default)]
    pub allowed_connector_ips: Option<IpRanges>,
    /// New WebSocket and SSE connections one connector address may open per minute (a burst of
    /// this many, then one every `60 / n` seconds).
    #[serde(default = "defaults::max_connections_per_minute")]
    pub max_connections_per_minute: u32,
    /// Frames of a WebSocket, or HTTP acks of an open SSE stream, one connection may send per
    /// second; absent: no limit. A WebSocket over it is read more slowly; an HTTP ack over it
    /// gets 429.
    #[serde(default)]
    pub max_messages_per_second: Option<u32>,
    /// Connectors must present a client certificate (mutual TLS) that chains to the server's
    /// `--tls-client-ca`; without one every transport answers 403 `client_certificate_required`.
    #[serde(default)]
    pub require_client_cert: bool,
    /// With `require_client_cert`: the certificate's subject CN or one of its DNS names must be
    /// one of these; others get 403 `client_certificate_not_allowed`. Absent: any certificate of
    /// the CA.
    #[serde(default)]
    pub client_cert_subjects: Option<Vec<String>>,
}

mod defaults {
    pub fn ttl_seconds() -> u64 {
        86_400
    }
    pub fn max_queue_size() -> u64 {
        10_000
    }
    pub fn max_connections() -> u32 {
        10
    }
    pub fn max_in_flight() -> u32 {
        100
    }
    pub fn ack_timeout_seconds() -> u64 {
        30
    }
    pub fn heartbeat_interval_seconds() -> u64 {
        30
    }
    pub fn max_delivery_attempts() -> u32 {
        10
    }
    pub fn max_connections_per_minute() -> u32 {
        60
    }
}

impl RelayConfig {
    /// `ttl_seconds` as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }
    /// `ack_timeout_seconds` as a duration.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_seconds)
    }
    /// `heartbeat_interval_seconds` as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_seconds)
    }
}

/// What a webhook does with what it receives, once validated.
#[derive(Debug, Clone)]
pub enum Route {
    /// Store it in the channel's buffer and stream it to connectors.
    Relay(RelayConfig),
    /// Store it in the webhook's own internal channel and run its output modules from there.
    Modules(ModuleRoute),
}

/// A webhook delivered by `wcon serve` itself to output modules.
#[derive(Debug, Clone)]
pub struct ModuleRoute {
    /// The internal channel its messages wait in (see [`module_channel`]).
    pub channel: ChannelName,
    /// Its module or chain.
    pub pipeline: std::sync::Arc<crate::modules::Pipeline>,
}

/// The internal channel of a module webhook: `~modules.<id>`. `~` is not allowed in channel
/// names of webhooks.json, so it cannot collide with a relay channel, and no connector can
/// stream it.
pub fn module_channel(id: &str) -> ChannelName {
    ChannelName(format!("~modules.{id}"))
}

impl Route {
    /// The buffer channel its messages are stored in.
    pub fn channel(&self) -> &ChannelName {
        match self {
            Self::Relay(r) => &r.channel,
            Self::Modules(m) => &m.channel,
        }
    }
}

/// A validated webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// How the body is read.
    pub data_type: DataType,
    /// Largest accepted body in bytes; `None`: the receiver's global limit.
    pub max_body_bytes: Option<u64>,
    /// Where it goes.
    pub route: Route,
    /// Every authentication method configured for it (`trusted_proxies` included).
    pub auth: std::sync::Arc<crate::auth::Authenticator>,
    /// Its `json_schema`, compiled.
    pub schema: Option<std::sync::Arc<BodySchema>>,
    /// Its `rate_limit`.
    pub rate_limit: Option<std::sync::Arc<RateLimit>>,
    /// Its `credential_cleanup` (the default when absent).
    pub cleanup: CredentialCleanup,
}

/// The whole of webhooks.json, validated.
#[derive(Debug, Clone, Default)]
pub struct WebhooksConfig {
    /// Webhooks by id.
    pub webhooks: BTreeMap<WebhookId, Webhook>,
}

/// Default body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Names a webhook id may not take (they are routes or look like them).
const RESERVED_IDS: &[&str] = &[
    "stats",
    "health",
    "docs",
    "openapi.json",
    "redoc",
    "api",
    "admin",
    "root",
    "system",
    "internal",
    "favicon.ico",
    "robots.txt",
];

/// Checks a webhook id against the original's rules.
pub fn check_webhook_id(id: &str) -> Result<(), String> {
    let valid_chars = id
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphanumeric() || (i > 0 && (c == '_' || c == '-')));
    if id.is_empty() || id.len() > 64 || !valid_chars {
        return Err(
            "a webhook id is 1 to 64 letters, digits, `_` or `-`, starting with a letter or digit"
                .into(),
        );
    }
    let lower = id.to_ascii_lowercase();
    if RESERVED_IDS.contains(&lower.as_str()) {
        return Err(format!("`{id}` is a reserved name"));
    }
    if ["_", "internal_", "system_", "admin_"]
        .iter()
        .any(|p| lower.starts_with(p))
        || ["_internal", "_system", "_admin"]
            .iter()
            .any(|s| lower.ends_with(s))
    {
        return Err(format!("`{id}` uses a reserved prefix or suffix"));
    }
    if id.contains("__") || id.contains("--") {
        return Err(format!("`{id}` repeats `_` or `-`"));
    }
    Ok(())
}

/// Checks a channel name: letters, digits, `.`, `_`, `-`, at most 64, no `..`.
pub fn check_channel_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "channel `{name}` must be 1 to 64 letters, digits, `.`, `_` or `-`, start with a letter or digit, and not contain `..`"
        ))
    }
}

impl WebhooksConfig {
    /// Reads and validates webhooks.json; output modules are built with `modules`.
    pub fn load(path: &Path, modules: &BuildContext) -> Result<Self, ConfigErrors> {
        let value = super::read_json(path)?;
        Self::from_json_with(&path.display().to_string(), value, modules)
    }

    /// Validates a parsed webhooks.json document with no connections.json, as the receiver
    /// would (internal hosts refused unless allowed by the environment).
    pub fn from_json(file: &str, value: Value) -> Result<Self, ConfigErrors> {
        let modules = BuildContext {
            connections: Default::default(),
            network: crate::modules::NetworkPolicy::receiver_from_env(),
        };
        Self::from_json_with(file, value, &modules)
    }

    /// Validates a parsed webhooks.json document; `file` names it in errors.
    pub fn from_json_with(
        file: &str,
        value: Value,
        modules: &BuildContext,
    ) -> Result<Self, ConfigErrors> {
        let Value::Object(entries) = value else {
            return Err(
                ConfigError::new(file, "", "expected an object of webhook id → settings").into(),
            );
        };
        let mut errors = Vec::new();
        let mut webhooks = BTreeMap::new();
        for (id, entry) in entries {
            if let Err(e) = check_webhook_id(&id) {
                errors.push(ConfigError::new(file, &id, e));
                continue;
            }
            match from_value::<WebhookConfig>(file, &id, entry)
                .map_err(|e| vec![e])
                .and_then(|c| c.validate(file, &id, modules))
            {
                Ok(w) => {
                    webhooks.insert(WebhookId(id), w);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        let config = Self { webhooks };
        errors.extend(config.check_shared_channels(file));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The webhook for `id`, or the `default` catch-all.
    pub fn resolve(&self, id: &str) -> Option<&Webhook> {
        self.webhooks
            .get(&WebhookId(id.to_string()))
            .or_else(|| self.webhooks.get(&WebhookId("default".into())))
    }

    /// Drops the plain channel tokens of relay webhooks: once the receiver has their digests
    /// ([`crate::receiver::channels::Channels`]), nothing else needs them in memory.
    pub fn forget_channel_tokens(&mut self) {
        for w in self.webhooks.values_mut() {
            if let Route::Relay(r) = &mut w.route {
                r.channel_token = Secret::default();
            }
        }
    }

    /// Every relay channel, with its settings (webhooks sharing a channel share one entry).
    pub fn channels(&self) -> BTreeMap<ChannelName, RelayConfig> {
        let mut out = BTreeMap::new();
        for w in self.webhooks.values() {
            if let Route::Relay(r) = &w.route {
                out.entry(r.channel.clone()).or_insert_with(|| r.clone());
            }
        }
        out
    }

    fn check_shared_channels(&self, file: &str) -> Vec<ConfigError> {
        let mut seen: BTreeMap<&ChannelName, (&WebhookId, &RelayConfig)> = BTreeMap::new();
        let mut errors = Vec::new();
        for (id, w) in &self.webhooks {
            let Route::Relay(r) = &w.route else {
                continue;
            };
            match seen.get(&r.channel) {
                Some((first, other)) if *other != r => errors.push(ConfigError::new(
                    file,
                    join_path(id.as_str(), "module-config"),
                    format!("channel `{}` is also used by webhook `{first}` with different settings; webhooks sharing a channel must use the same token and limits", r.channel),
                )),
                Some(_) => {}
                None => {
                    seen.insert(&r.channel, (id, r));
                }
            }
        }
        errors
    }
}

impl WebhookConfig {
    /// The module keys of this entry.
    pub fn pipeline_spec(&self) -> PipelineSpec {
        let mut legacy = serde_json::Map::new();
        for (key, value) in [
            ("topic", &self.topic),
            ("queue_name", &self.queue_name),
            ("redis", &self.redis),
        ] {
            if let Some(v) = value {
                legacy.insert(key.to_owned(), v.clone());
            }
        }
        PipelineSpec {
            module: self.module.clone(),
            module_config: self.module_config.clone(),
            connection: self.connection.clone(),
            chain: self.chain.clone(),
            chain_config: self.chain_config.clone(),
            retry: self.retry.clone(),
            legacy,
        }
    }

    fn validate(
        self,
        file: &str,
        id: &str,
        modules: &BuildContext,
    ) -> Result<Webhook, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let schema = self.json_schema.as_ref().and_then(|v| {
            if self.data_type != DataType::Json {
                errors.push(ConfigError::new(
                    file,
                    join_path(id, "json_schema"),
                    "`json_schema` checks JSON bodies: it needs `data_type` json",
                ));
                return None;
            }
            BodySchema::compile(v)
                .map_err(|e| errors.push(ConfigError::new(file, join_path(id, "json_schema"), e)))
                .ok()
        });
        let rate_limit = self.rate_limit.as_ref().and_then(|v| {
            RateLimit::from_json(v)
                .map_err(|e| errors.push(ConfigError::new(file, join_path(id, "rate_limit"), e)))
                .ok()
        });
        let cleanup = match &self.credential_cleanup {
            None => CredentialCleanup::default(),
            Some(v) => CredentialCleanup::from_json(v).unwrap_or_else(|e| {
                errors.push(ConfigError::new(
                    file,
                    join_path(id, "credential_cleanup"),
                    e,
                ));
                CredentialCleanup::default()
            }),
        };
        let auth = crate::auth::Authenticator::from_config(file, id, &self)
            .map_err(|mut e| errors.append(&mut e))
            .ok();
        if self.module.as_deref() == Some(RELAY_MODULE) {
            for (key, present) in [
                ("chain", self.chain.is_some()),
                ("chain-config", self.chain_config.is_some()),
                ("connection", self.connection.is_some()),
                ("retry", self.retry.is_some()),
            ] {
                if present {
                    errors.push(ConfigError::new(
                        file,
                        join_path(id, key),
                        format!("`{key}` is for output modules; a `{RELAY_MODULE}` webhook relays to tunnels, where the tunnel's own webhooks.json chooses modules"),
                    ));
                }
            }
        }
        let route = match self.module.as_deref() {
            Some(RELAY_MODULE) => match self.module_config {
                None => {
                    errors.push(ConfigError::new(file, join_path(id, "module-config"), "a `webhook_connect` webhook needs `module-config` with `channel` and `channel_token`"));
                    None
                }
                Some(mc) => {
                    match from_value::<RelayConfig>(file, &join_path(id, "module-config"), mc) {
                        Ok(relay) => {
                            let at = join_path(id, "module-config");
                            if let Err(e) = check_channel_name(relay.channel.as_str()) {
                                errors.push(ConfigError::new(file, join_path(&at, "channel"), e));
                            }
                            if relay.channel_token.expose().len() < 8 {
                                errors.push(ConfigError::new(
                                    file,
                                    join_path(&at, "channel_token"),
                                    "the channel token must be at least 8 characters",
                                ));
                            }
                            if relay
                                .allowed_connector_ips
                                .as_ref()
                                .is_some_and(|ips| ips.0.is_empty())
                            {
                                errors.push(ConfigError::new(
                                    file,
                                    join_path(&at, "allowed_connector_ips"),
                                    "an empty list would refuse every connector; list addresses or CIDR ranges, or remove the key",
                                ));
                            }
                            if let Some(subjects) = &relay.client_cert_subjects {
                                let at = join_path(&at, "client_cert_subjects");
                                if !relay.require_client_cert {
                                    errors.push(ConfigError::new(
                                        file,
                                        &at,
                                        "`client_cert_subjects` needs `\"require_client_cert\": true`",
                                    ));
                                }
                                if subjects.is_empty() {
                                    errors.push(ConfigError::new(
                                        file,
                                        &at,
                                        "an empty list would refuse every connector; list certificate names (CN or DNS name), or remove the key",
                                    ));
                                }
                                if subjects.iter().any(|n| n.trim().is_empty()) {
                                    errors.push(ConfigError::new(
                                        file,
                                        &at,
                                        "names must not be empty",
                                    ));
                                }
                            }
                            if relay.max_messages_per_second == Some(0) {
                                errors.push(ConfigError::new(
                                    file,
                                    join_path(&at, "max_messages_per_second"),
                                    "must be greater than 0 (remove the key for no limit)",
                                ));
                            }
                            for (key, value) in [
                                ("ttl_seconds", relay.ttl_seconds),
                                ("max_queue_size", relay.max_queue_size),
                                ("max_connections", u64::from(relay.max_connections)),
                                ("max_in_flight", u64::from(relay.max_in_flight)),
                                ("ack_timeout_seconds", relay.ack_timeout_seconds),
                                (
                                    "heartbeat_interval_seconds",
                                    relay.heartbeat_interval_seconds,
                                ),
                                (
                                    "max_delivery_attempts",
                                    u64::from(relay.max_delivery_attempts),
                                ),
                                (
                                    "max_connections_per_minute",
                                    u64::from(relay.max_connections_per_minute),
                                ),
                            ] {
                                if value == 0 {
                                    errors.push(ConfigError::new(
                                        file,
                                        join_path(&at, key),
                                        "must be greater than 0",
                                    ));
                                }
                            }
                            Some(Route::Relay(relay))
                        }
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    }
                }
            },
            _ => {
                if self.chain.is_none() && self.module.is_none() {
                    errors.push(ConfigError::new(
                        file,
                        id,
                        format!("needs a `module` or a `chain` (for a relay: `\"module\": \"{RELAY_MODULE}\"`)"),
                    ));
                    None
                } else {
                    match Pipeline::build(file, id, &self.pipeline_spec(), modules) {
                        Ok(pipeline) => Some(Route::Modules(ModuleRoute {
                            channel: module_channel(id),
                            pipeline: std::sync::Arc::new(pipeline),
                        })),
                        Err(mut e) => {
                            errors.append(&mut e);
                            None
                        }
                    }
                }
            }
        };
        if let Some(0) = self.max_body_bytes {
            errors.push(ConfigError::new(
                file,
                join_path(id, "max_body_bytes"),
                "must be greater than 0",
            ));
        }
        match (route, auth, errors.is_empty()) {
            (Some(route), Some(auth), true) => Ok(Webhook {
                id: WebhookId(id.to_string()),
                data_type: self.data_type,
                max_body_bytes: self.max_body_bytes,
                route,
                auth: std::sync::Arc::new(auth),
                schema: schema.map(std::sync::Arc::new),
                rate_limit: rate_limit.map(std::sync::Arc::new),
                cleanup,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn relay(channel: &str) -> Value {
        json!({"module": "webhook_connect", "module-config": {"channel": channel, "channel_token": "ch_tok_secret123"}})
    }

    #[test]
    fn a_relay_webhook_gets_the_documented_defaults() {
        let c =
            WebhooksConfig::from_json("w.json", json!({"stripe_relay": relay("stripe-payments")}))
                .unwrap();
        let channels = c.channels();
        let r = &channels[&ChannelName::from("stripe-payments")];
        assert_eq!(
            (
                r.ttl_seconds,
                r.max_queue_size,
                r.max_connections,
                r.max_in_flight
            ),
            (86_400, 10_000, 10, 100)
        );
        assert_eq!(r.ack_timeout_seconds, 30);
        assert_eq!(
            c.webhooks[&WebhookId::from("stripe_relay")].max_body_bytes,
            None
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_nearest_key() {
        let err = WebhooksConfig::from_json("w.json", json!({"a": {"modul": "webhook_connect"}}))
            .unwrap_err();
        assert_eq!(err.0[0].path, "a.modul");
        assert!(
            err.0[0].message.contains("did you mean `module`"),
            "{}",
            err.0[0].message
        );
        let mut v = relay("c");
        v["module-config"]["ttl_second"] = json!(5);
        let err = WebhooksConfig::from_json("w.json", json!({"a": v})).unwrap_err();
        assert_eq!(err.0[0].path, "a.module-config.ttl_second");
        assert!(err.0[0].message.contains("`ttl_seconds`"));
    }

    #[test]
    fn module_keys_on_a_relay_are_refused_clearly() {
        let mut v = relay("c");
        v["chain"] = json!(["log"]);
        let err = WebhooksConfig::from_json("w.json", json!({"a": v})).unwrap_err();
        assert!(
            err.0[0].message.contains("for output modules"),
            "{}",
            err.0[0].message
        );
        assert_eq!(err.0[0].path, "a.chain");
    }

    #[test]
    fn module_webhooks_get_an_internal_channel() {
        let c = WebhooksConfig::from_json(
            "w.json",
            json!({"orders": {"module": "log"}, "relay": relay("c")}),
        )
        .unwrap();
        let orders = &c.webhooks[&WebhookId::from("orders")];
        assert_eq!(orders.route.channel().as_str(), "~modules.orders");
        assert_eq!(
            c.channels().len(),
            1,
            "internal channels are not relay channels"
        );
        assert!(check_channel_name("~modules.orders").is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = WebhooksConfig::from_json(
            "w.json",
            json!({"_bad": relay("c"), "b": {"module": "nope"}, "c": relay("bad..name")}),
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn webhook_id_rules_match_the_original() {
        for ok in ["stripe", "a", "github_push", "x-1", "default"] {
            assert!(check_webhook_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_x",
            "-x",
            "admin",
            "stats",
            "admin_x",
            "x_admin",
            "a__b",
            "a--b",
            "a.b",
            &"x".repeat(65),
        ] {
            assert!(check_webhook_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channels_shared_by_webhooks_must_agree() {
        let mut other = relay("c");
        other["module-config"]["channel_token"] = json!("another-token");
        let err =
            WebhooksConfig::from_json("w.json", json!({"a": relay("c"), "b": other})).unwrap_err();
        assert!(err.0[0].message.contains("different settings"));
        assert!(
            WebhooksConfig::from_json("w.json", json!({"a": relay("c"), "b": relay("c")})).is_ok()
        );
    }

    #[test]
    fn auth_keys_build_the_webhook_authenticator() {
        let mut v = relay("c");
        v["hmac"] = json!({"secret": "whsec_abc", "format": "stripe"});
        v["trusted_proxies"] = json!(["10.0.0.0/8"]);
        let c =
            WebhooksConfig::from_json("w.json", json!({"a": v.clone(), "b": relay("c")})).unwrap();
        assert_eq!(c.webhooks[&WebhookId::from("a")].auth.methods(), ["hmac"]);
        assert!(c.webhooks[&WebhookId::from("b")].auth.is_empty());
        v["hmac"]["format"] = json!("strype");
        v["ip_whitelist"] = json!(["10.0.0.1/8"]);
        let err = WebhooksConfig::from_json("w.json", json!({"a": v})).unwrap_err();
        let paths: Vec<_> = err
            .0
            .iter()
            .map(|e| (e.file.as_str(), e.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            [("w.json", "a.ip_whitelist[0]"), ("w.json", "a.hmac.format")],
            "{err}"
        );
    }

    #[test]
    fn connector_limits_are_read_and_checked() {
        let mut v = relay("c");
        v["module-config"]["allowed_connector_ips"] = json!(["10.0.0.0/8", "192.168.1.100"]);
        v["module-config"]["max_messages_per_second"] = json!(50);
        let c = WebhooksConfig::from_json("w.json", json!({"a": v.clone()})).unwrap();
        let r = &c.channels()[&ChannelName::from("c")];
        let ips = r.allowed_connector_ips.as_ref().unwrap();
        assert!(ips.contains("10.1.2.3".parse().unwrap()));
        assert!(!ips.contains("192.168.1.101".parse().unwrap()));
        assert_eq!(
            (r.max_connections_per_minute, r.max_messages_per_second),
            (60, Some(50))
        );
        v["module-config"]["max_messages_per_second"] = json!(0);
        v["module-config"]["allowed_connector_ips"] = json!([]);
        let err = WebhooksConfig::from_json("w.json", json!({"a": v.clone()})).unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "a.module-config.allowed_connector_ips",
                "a.module-config.max_messages_per_second"
            ],
            "{err}"
        );
        v["module-config"]["allowed_connector_ips"] = json!(["10.0.0.1/8"]);
        let err = WebhooksConfig::from_json("w.json", json!({"a": v})).unwrap_err();
        assert!(err.0[0].message.contains("host bits"), "{err}");
    }

    #[test]
    fn client_certificate_options_are_read_and_checked() {
        let mut v = relay("c");
        let c = WebhooksConfig::from_json("w.json", json!({"a": v.clone()})).unwrap();
        let r = &c.channels()[&ChannelName::from("c")];
        assert!(!r.require_client_cert && r.client_cert_subjects.is_none());
        v["module-config"]["require_client_cert"] = json!(true);
        v["module-config"]["client_cert_subjects"] = json!(["connector-a", "b.example.com"]);
        let c = WebhooksConfig::from_json("w.json", json!({"a": v.clone()})).unwrap();
        let r = &c.channels()[&ChannelName::from("c")];
        assert!(r.require_client_cert);
        assert_eq!(
            r.client_cert_subjects.as_deref().unwrap(),
            ["connector-a", "b.example.com"]
        );
        // Subjects without the requirement, or an empty list, are mistakes.
        v["module-config"]["require_client_cert"] = json!(false);
        v["module-config"]["client_cert_subjects"] = json!([]);
        let err = WebhooksConfig::from_json("w.json", json!({"a": v.clone()})).unwrap_err();
        let messages: Vec<_> = err
            .0
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(messages.len(), 2, "{err}");
        assert!(
            messages
                .iter()
                .all(|(p, _)| *p == "a.module-config.client_cert_subjects"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("needs `\"require_client_cert\": true`"),
            "{err}"
        );
        // A misspelt key names the nearest one.
        v["module-config"] = json!({"channel": "c", "channel_token": "ch_tok_0123456789", "require_client_certs": true});
        let err = WebhooksConfig::from_json("w.json", json!({"a": v})).unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean `require_client_cert`"),
            "{err}"
        );
    }

    #[test]
    fn default_catches_unknown_ids() {
        let c = WebhooksConfig::from_json("w.json", json!({"default": relay("c")})).unwrap();
        assert_eq!(c.resolve("anything").unwrap().id.as_str(), "default");
    }
}
