//! The `kafka` module: produces each webhook to a Kafka topic.
//!
//! Keys: `topic` (required; the original also accepts it at the webhook's top level), `key`
//! (a fixed message key written on every message, e.g. to pin all webhooks of one endpoint to
//! one partition; none by default), `partition` (none: the partitioner picks), and
//! `forward_headers` (false: true copies the request headers into Kafka headers). The value is
//! the payload as JSON.
//!
//! Connection type `kafka`: `bootstrap_servers` ("localhost:9092"), and optionally
//! `security_protocol`, `client_id`, every `sasl_*` key (passed to librdkafka as `sasl.*`,
//! e.g. `sasl_mechanism` → `sasl.mechanism`, `sasl_username`, `sasl_password`), and
//! `message_timeout_ms` (30000; wcon's own key: how long a message may wait for the broker
//! before the delivery counts as failed). This build has no TLS for Kafka (`ssl`/`sasl_ssl`
//! need rdkafka's OpenSSL feature) and supports SASL PLAIN.
//!
//! One producer is shared per connection (acks=all, idempotence on). A delivery is `Ok` only
//! once the delivery report says the brokers have the message; retriable broker errors and
//! timeouts are `Retryable`, a message too large or an unknown topic is `Rejected`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::Value;

use super::registry::{BuildContext, ModuleSpec};
use super::settings::{flag, optional_number};
use super::{Connections, Delivery, Module, ModuleError};

/// How long a send may wait for room in the producer's local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaConfig {
    topic: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "optional_number")]
    partition: Option<i32>,
    #[serde(default, deserialize_with = "flag")]
    forward_headers: bool,
}

/// The connection entry: known keys, plus every `sasl_*` key.
#[derive(Deserialize)]
struct KafkaSettings {
    #[serde(default = "default_bootstrap")]
    bootstrap_servers: String,
    #[serde(default)]
    security_protocol: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "optional_number")]
    message_timeout_ms: Option<u32>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

fn default_bootstrap() -> String {
    "localhost:9092".into()
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl KafkaSettings {
    /// The librdkafka configuration; refuses keys it does not know.
    fn client_config(&self, connection: &str) -> Result<ClientConfig, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                self.message_timeout_ms.unwrap_or(30_000).to_string(),
            );
        if let Some(protocol) = &self.security_protocol {
            config.set("security.protocol", protocol);
        }
        config.set(
            "client.id",
            self.client_id.as_deref().unwrap_or("wcon-kafka-module"),
        );
        for (key, value) in &self.rest {
            let Some(rest) = key.strip_prefix("sasl_") else {
                return Err(format!(
                    "connection `{connection}`.{key}: unknown key; a kafka connection takes bootstrap_servers, security_protocol, client_id, message_timeout_ms and sasl_* keys"
                ));
            };
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "connection `{connection}`.{key}: expected a string"
                    ));
                }
            };
            config.set(format!("sasl.{}", rest.replace('_', ".")), value);
        }
        Ok(config)
    }
}

/// The shared producer of one connection.
struct Producer(FutureProducer);

/// See the module docs.
pub struct KafkaModule {
    connection: String,
    client_config: ClientConfig,
    connections: Arc<Connections>,
    topic: String,
    key: Option<String>,
    partition: Option<i32>,
    forward_headers: bool,
}

impl std::fmt::Debug for KafkaModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaModule")
            .field("connection", &self.connection)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaModule {
    /// Checks the config; the producer is created on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["kafka"])?;
        let settings: KafkaSettings = connection.settings()?;
        let client_config = settings.client_config(&connection.name)?;
        let config: KafkaConfig = spec.config()?;
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if config.topic.is_empty()
            || config.topic.len() > 249
            || !config.topic.chars().all(legal)
            || config.topic == "."
            || config.topic == ".."
        {
            return Err(format!(
                "module-config.topic: `{}` is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)",
                config.topic
            ));
        }
        if config.partition.is_some_and(|p| p < 0) {
            return Err("module-config.partition: must be 0 or more".into());
        }
        Ok(Self {
            connection: connection.name.clone(),
            client_config,
            connections: ctx.connections.clone(),
            topic: config.topic,
            key: config.key,
            partition: config.partition,
            forward_headers: config.forward_headers,
        })
    }

    async fn producer(&self) -> Result<Arc<Producer>, ModuleError> {
        self.connections
            .client(&self.connection, || async {
                self.client_config
                    .create::<FutureProducer>()
                    .map(Producer)
                    .map_err(|e| {
                        classify(&e).context(format!(
                            "cannot create the producer of connection `{}`",
                            self.connection
                        ))
                    })
            })
            .await
    }
}

/// Sorts a produce error into try-again or give-up, without echoing config values.
fn classify(error: &KafkaError) -> ModuleError {
    use RDKafkaErrorCode as C;
    match error {
        // Its text includes the value, which may be a password.
        KafkaError::ClientConfig(_, description, key, _) => {
            ModuleError::Rejected(format!("invalid kafka setting `{key}`: {description}"))
        }
        KafkaError::ClientCreation(_) => ModuleError::rejected(error),
        _ => match error.rdkafka_error_code() {
            Some(
                C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::MessageBatchTooLarge
                | C::UnknownTopic
                | C::UnknownTopicOrPartition
                | C::UnknownPartition
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::UnsupportedSASLMechanism
                | C::InvalidRequiredAcks
                | C::InvalidArgument
                | C::InvalidRecord
                | C::PolicyViolation,
            ) => ModuleError::rejected(error),
            _ => ModuleError::retryable(error),
        },
    }
}

#[async_trait]
impl Module for KafkaModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let producer = self.producer().await?;
        let value = delivery.payload_json();
        let mut record = FutureRecord::<str, str>::to(&self.topic).payload(value.as_str());
        if let Some(key) = &self.key {
            record = record.key(key.as_str());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        if self.forward_headers {
            let mut headers = OwnedHeaders::new_with_capacity(delivery.headers.len());
            for (name, value) in &delivery.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_str()),
                });
            }
            record = record.headers(headers);
        }
        match producer.0.send(record, QUEUE_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err((error, _message)) => {
                if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
                    // An idempotent producer that hit a fatal error cannot be used again.
                    self.connections.forget::<Producer>(&self.connection);
                }
                Err(classify(&error).context(format!("cannot produce to topic `{}`", self.topic)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_keys_pass_through_and_other_keys_are_refused() {
        let settings: KafkaSettings = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": "k:9092", "security_protocol": "sasl_plaintext",
            "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "hunter22"
        }))
        .unwrap();
        let config = settings.client_config("k").unwrap();
        assert_eq!(config.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(config.get("sasl.password"), Some("hunter22"));
        assert_eq!(config.get("acks"), Some("all"));
        assert!(!format!("{settings:?}").contains("hunter22"));

        let settings: KafkaSettings =
            serde_json::from_value(serde_json::json!({"bootstrap": "x"})).unwrap();
        let err = settings.client_config("k").unwrap_err();
        assert!(err.contains("bootstrap"), "{err}");
    }

    #[test]
    fn config_errors_do_not_echo_values() {
        let err = classify(&KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "bad".into(),
            "sasl.password".into(),
            "hunter22".into(),
        ));
        assert!(!err.to_string().contains("hunter22"), "{err}");
        assert!(!err.is_retryable());
    }
}
