//! The `rabbitmq` module: publishes each webhook to a RabbitMQ queue.
//!
//! Keys: `queue_name` (required; the original also accepts it at the webhook's top level).
//! Connection type `rabbitmq`: `host` ("localhost"), `port` (5672), `user` ("guest"), `pass`
//! ("guest"), `vhost` ("/"). The queue is declared durable once per channel; the payload is
//! published as JSON to the default exchange, persistent (delivery mode 2), with the request
//! headers as AMQP headers, content type `application/json` and the message id as
//! `message_id`. Publisher confirms are on: a delivery is `Ok` only after the broker acked it.
//!
//! One connection and channel are shared per connection name; after the connection or channel
//! breaks they are dropped and the next delivery opens new ones. This module does not retry by
//! itself, and never puts the password in an error.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::registry::{BuildContext, ModuleSpec};
use super::settings::{Password, number};
use super::{Connections, Delivery, Module, ModuleError};

/// How long connecting (TCP, AMQP handshake, channel, confirm mode) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to confirm one message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RabbitMqConfig {
    queue_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RabbitMqSettings {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port", deserialize_with = "number")]
    port: u16,
    #[serde(default = "guest", alias = "username")]
    user: String,
    #[serde(default = "guest_password", alias = "password")]
    pass: Password,
    #[serde(default = "default_vhost", alias = "virtual_host")]
    vhost: String,
}

fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> u16 {
    5672
}
fn guest() -> String {
    "guest".into()
}
fn guest_password() -> Password {
    Password("guest".into())
}
fn default_vhost() -> String {
    "/".into()
}

impl RabbitMqSettings {
    /// The AMQP URI; it holds the password, so it never leaves this module.
    fn uri(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "amqp://{}:{}@{host}:{}/{}",
            utf8_percent_encode(&self.user, NON_ALPHANUMERIC),
            utf8_percent_encode(self.pass.expose(), NON_ALPHANUMERIC),
            self.port,
            utf8_percent_encode(&self.vhost, NON_ALPHANUMERIC),
        )
    }
}

/// The shared connection of one connections.json entry: one channel in confirm mode, and the
/// queues already declared on it.
struct Publisher {
    connection: Connection,
    channel: Channel,
    declared: Mutex<HashSet<String>>,
}

impl Publisher {
    async fn connect(settings: &RabbitMqSettings) -> Result<Self, ModuleError> {
        let open = async {
            let properties =
                ConnectionProperties::default().with_connection_name("wcon rabbitmq module".into());
            let connection = Connection::connect(&settings.uri(), properties).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(Self {
                connection,
                channel,
                declared: Mutex::default(),
            })
        };
        let place = format!("rabbitmq at `{}:{}`", settings.host, settings.port);
        match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
            Ok(Ok(publisher)) => Ok(publisher),
            Ok(Err(e)) => Err(classify(&e).context(format!("cannot connect to {place}"))),
            Err(_) => Err(ModuleError::Retryable(format!(
                "cannot connect to {place}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    fn broken(&self) -> bool {
        !self.connection.status().connected() || !self.channel.status().connected()
    }

    async fn publish(&self, queue: &str, delivery: &Delivery) -> Result<(), ModuleError> {
        let known = self
            .declared
            .lock()
            .expect("declared queues poisoned")
            .contains(queue);
        if !known {
            self.channel
                .queue_declare(
                    ShortString::from(queue),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| classify(&e).context(format!("cannot declare queue `{queue}`")))?;
            self.declared
                .lock()
                .expect("declared queues poisoned")
                .insert(queue.to_owned());
        }

        let mut headers = FieldTable::default();
        for (name, value) in &delivery.headers {
            headers.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(delivery.message_id.to_string()))
            .with_headers(headers);
        let body = delivery.payload_json();
        let confirm = self
            .channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .map_err(|e| classify(&e).context(format!("cannot publish to queue `{queue}`")))?;
        let confirmation = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(result) => result
                .map_err(|e| classify(&e).context(format!("no confirm for queue `{queue}`")))?,
            Err(_) => {
                return Err(ModuleError::Retryable(format!(
                    "rabbitmq did not confirm the message to queue `{queue}` within {}s",
                    CONFIRM_TIMEOUT.as_secs()
                )));
            }
        };
        if confirmation.is_ack() {
            Ok(())
        } else {
            // A nack means the broker could not take it now (e.g. a full disk); it asks for a
            // retry, not a rejection.
            Err(ModuleError::Retryable(format!(
                "rabbitmq refused (nack) the message to queue `{queue}`"
            )))
        }
    }
}

/// Errors the broker gives for a wrong setup (rights, a queue declared differently, a bad
/// vhost) are for good; the rest (network, a closed connection) may pass.
fn classify(error: &lapin::Error) -> ModuleError {
    if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
        let for_good = matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::NOTFOUND
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::CONTENTTOOLARGE
            ) | AMQPErrorKind::Hard(
                AMQPHardError::NOTALLOWED
                    | AMQPHardError::INVALIDPATH
                    | AMQPHardError::FRAMEERROR
                    | AMQPHardError::NOTIMPLEMENTED
            )
        );
        if for_good {
            return ModuleError::rejected(error);
        }
    }
    ModuleError::retryable(error)
}

/// See the module docs.
pub struct RabbitMqModule {
    connection: String,
    settings: Arc<RabbitMqSettings>,
    connections: Arc<Connections>,
    queue: String,
}

impl std::fmt::Debug for RabbitMqModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqModule")
            .field("connection", &self.connection)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl RabbitMqModule {
    /// Checks the config; connects on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["rabbitmq"])?;
        let settings: RabbitMqSettings = connection.settings()?;
        let config: RabbitMqConfig = spec.config()?;
        if config.queue_name.trim().is_empty() || config.queue_name.len() > 255 {
            return Err("module-config.queue_name: must be 1 to 255 characters".into());
        }
        Ok(Self {
            connection: connection.name.clone(),
            settings: Arc::new(settings),
            connections: ctx.connections.clone(),
            queue: config.queue_name,
        })
    }

    async fn publisher(&self) -> Result<Arc<Publisher>, ModuleError> {
        let settings = self.settings.clone();
        let build = || async move { Publisher::connect(&settings).await };
        let publisher = self.connections.client(&self.connection, build).await?;
        if !publisher.broken() {
            return Ok(publisher);
        }
        self.forget(&publisher);
        let settings = self.settings.clone();
        self.connections
            .client(&self.connection, || async move {
                Publisher::connect(&settings).await
            })
            .await
    }

    fn forget(&self, publisher: &Arc<Publisher>) {
        self.connections.forget::<Publisher>(&self.connection);
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let _ = publisher.connection.close(200, "reconnecting".into()).await;
        });
    }
}

#[async_trait]
impl Module for RabbitMqModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let publisher = self.publisher().await?;
        let result = publisher.publish(&self.queue, delivery).await;
        if result.is_err() && publisher.broken() {
            self.forget(&publisher);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_escapes_credentials_and_the_vhost() {
        let settings: RabbitMqSettings = serde_json::from_value(serde_json::json!({
            "host": "mq", "port": "5673", "user": "a@b", "pass": "p/w:d", "vhost": "/"
        }))
        .unwrap();
        assert_eq!(settings.uri(), "amqp://a%40b:p%2Fw%3Ad@mq:5673/%2F");
        assert!(!format!("{settings:?}").contains("p/w"));
    }
}
