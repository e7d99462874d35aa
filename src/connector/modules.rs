//! Module-mode delivery: run a message through the output modules of a local webhooks.json.
//!
//! The message's `webhook_id` selects the entry (or `default`); its module or chain runs with
//! the tunnel's network policy (every host allowed: the tunnel lives in the private network on
//! purpose) and the webhook's `retry` block. Success acks; a retryable failure nacks for
//! redelivery; a rejection, or no entry for the webhook, nacks to the dead letters. Modules
//! and their connections are built once at start-up and shared by every delivery.
//! Authentication keys of the local file are ignored, as in the original: the receiver
//! already authenticated the sender.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::deliver::{Attempt, Verdict};
use crate::config::connector::InlineRoute;
use crate::config::webhooks::Route;
use crate::config::{ConfigError, ConfigErrors, ConnectionsConfig, WebhooksConfig, join_path};
use crate::message::frame_body;
use crate::modules::registry::BuildContext;
use crate::modules::{Connections, Delivery, NetworkPolicy, payload_of};
use crate::protocol::WebhookFrame;

/// The local webhooks.json of a tunnel in module mode, with its modules built.
#[derive(Debug)]
pub struct ModuleRoutes {
    webhooks: WebhooksConfig,
}

impl ModuleRoutes {
    /// Reads and builds `webhooks` (and `connections`, when given).
    pub fn load(webhooks: &Path, connections: Option<&Path>) -> Result<Self, ConfigErrors> {
        let connections = load_connections(connections)?;
        let file = webhooks.display().to_string();
        let webhooks = WebhooksConfig::load(webhooks, &build_context(&connections))?;
        Self::checked(&file, webhooks)
    }

    /// Builds the `module`/`chain` written in the `routes` entry of `channel` (every webhook
    /// of the channel goes through it), with the file's `connections` or a `connections_config`.
    pub fn inline(
        channel: &str,
        route: &InlineRoute,
        connections: Option<&Path>,
    ) -> Result<Self, ConfigErrors> {
        let connections = match &route.connections {
            Some(value) => {
                ConnectionsConfig::from_json(&route.file, value.clone()).map_err(|e| {
                    ConfigErrors(
                        e.0.into_iter()
                            .map(|mut e| {
                                e.path = join_path("connections", &e.path);
                                e
                            })
                            .collect(),
                    )
                })?
            }
            None => load_connections(connections)?,
        };
        let doc = serde_json::json!({ "default": route.entry });
        let webhooks =
            WebhooksConfig::from_json_with(&route.file, doc, &build_context(&connections))
                .map_err(|e| {
                    ConfigErrors(
                        e.0.into_iter()
                            .map(|mut e| {
                                let rest = e.path.strip_prefix("default").unwrap_or(&e.path);
                                e.path = format!("routes.{channel}{rest}");
                                e
                            })
                            .collect(),
                    )
                })?;
        Self::checked(&route.file, webhooks)
    }

    fn checked(file: &str, webhooks: WebhooksConfig) -> Result<Self, ConfigErrors> {
        let relays: Vec<ConfigError> = webhooks
            .webhooks
            .values()
            .filter(|w| matches!(w.route, Route::Relay(_)))
            .map(|w| {
                ConfigError::new(
                    file,
                    w.id.as_str(),
                    "a tunnel in module mode delivers to output modules; a `webhook_connect` entry belongs in the receiver's webhooks.json",
                )
            })
            .collect();
        if !relays.is_empty() {
            return Err(ConfigErrors(relays));
        }
        Ok(Self { webhooks })
    }

    /// Delivers one message; reports one attempt (the whole chain) to `on_attempt`.
    pub async fn deliver(
        &self,
        frame: &WebhookFrame,
        deadline: Duration,
        on_attempt: &(dyn Fn(&Attempt) + Send + Sync),
    ) -> Verdict {
        let Some(webhook) = self.webhooks.resolve(frame.webhook_id.as_str()) else {
            return Verdict::Nack {
                retry: false,
                reason: format!(
                    "no entry for webhook `{}` in the tunnel's webhooks.json",
                    frame.webhook_id
                ),
            };
        };
        let Route::Modules(route) = &webhook.route else {
            unreachable!("relay entries are refused when the file is loaded");
        };
        let mut delivery = delivery_of(frame, webhook.data_type);
        delivery.clean(&webhook.cleanup);
        let started = Instant::now();
        let outcome = match tokio::time::timeout(deadline, route.pipeline.run(&delivery)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(crate::modules::ModuleError::Retryable(format!(
                "modules did not finish within {}s",
                deadline.as_secs_f64()
            ))),
        };
        on_attempt(&Attempt {
            number: frame.delivery_count.unwrap_or(1),
            status: None,
            error: Some(match &outcome {
                Ok(()) => format!("ok ({})", route.pipeline.labels().join(", ")),
                Err(e) => e.to_string(),
            }),
            latency: started.elapsed(),
        });
        match outcome {
            Ok(()) => Verdict::Ack,
            Err(e) => Verdict::Nack {
                retry: e.is_retryable(),
                reason: e.to_string(),
            },
        }
    }
}

fn load_connections(path: Option<&Path>) -> Result<ConnectionsConfig, ConfigErrors> {
    match path {
        Some(path) if !path.exists() => {
            Err(ConfigError::new(path.display().to_string(), "", "the file does not exist").into())
        }
        Some(path) => ConnectionsConfig::load_optional(path),
        None => Ok(ConnectionsConfig::default()),
    }
}

fn build_context(connections: &ConnectionsConfig) -> BuildContext {
    BuildContext {
        connections: Arc::new(Connections::new(connections)),
        network: NetworkPolicy::Tunnel,
    }
}

/// The module view of a received frame.
pub fn delivery_of(frame: &WebhookFrame, data_type: crate::config::webhooks::DataType) -> Delivery {
    let body = frame_body(frame);
    Delivery {
        message_id: frame.message_id.clone(),
        webhook_id: frame.webhook_id.clone(),
        sequence: frame.sequence,
        received_at: DateTime::parse_from_rfc3339(&frame.timestamp)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now()),
        source_ip: frame.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
        payload: payload_of(&body, &frame.headers, data_type),
        headers: frame.headers.clone(),
        body,
    }
}
