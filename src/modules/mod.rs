//! Output modules: where a webhook goes when it is not (only) relayed to a tunnel.
//!
//! Owns the [`Module`] trait, the [`Delivery`] a module receives and the [`ModuleError`] it
//! answers with. The registry of module names is in [`registry`], shared connections in
//! [`connections`], the chain runner in [`pipeline`], the per-webhook retry policy in
//! [`retry`] and the SSRF policy in [`network`]. Each module is one file.
//!
//! A module's `deliver` returns `Ok` only once the destination accepted the webhook; an error
//! says whether trying again may help ([`ModuleError::Retryable`]) or not
//! ([`ModuleError::Rejected`]). Error texts never contain secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::webhooks::DataType;
use crate::message::Message;
use crate::protocol::{MessageId, WebhookId};

pub mod connections;
pub mod network;
pub mod pipeline;
pub mod reach;
pub mod registry;
pub mod retry;
pub mod settings;

pub mod activemq;
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
pub mod aws_sqs;
pub mod clickhouse;
#[cfg(feature = "gcp")]
pub mod gcp_pubsub;
pub mod http_webhook;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod log;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgresql;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis_publish;
#[cfg(feature = "redis")]
pub mod redis_rq;
#[cfg(feature = "aws")]
pub mod s3;
pub mod save_to_disk;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod sql_common;
mod table;
pub mod websocket;
#[cfg(feature = "zeromq")]
pub mod zeromq;

pub use connections::{Connection, Connections};
pub use network::NetworkPolicy;
pub use pipeline::Pipeline;

/// One webhook handed to a module.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message id (stable across redeliveries; destinations can de-duplicate on it).
    pub message_id: MessageId,
    /// The webhook it was posted to.
    pub webhook_id: WebhookId,
    /// Per-channel sequence number (0 when the webhook was not relayed).
    pub sequence: u64,
    /// When the receiver accepted it.
    pub received_at: DateTime<Utc>,
    /// The sender's address, when known.
    pub source_ip: Option<IpAddr>,
    /// Request headers, names lowercased (after credential cleanup, when configured).
    pub headers: BTreeMap<String, String>,
    /// The raw body exactly as received.
    pub body: Bytes,
    /// The body as JSON: the document itself for JSON bodies, the fields of a urlencoded form,
    /// otherwise the text (or, for non-UTF-8 bytes, `{"base64": …}`). Credential cleanup, when
    /// configured, has been applied to it.
    pub payload: Value,
}

impl Delivery {
    /// Builds the delivery of a stored message.
    pub fn from_message(message: &Message, data_type: DataType) -> Self {
        Self {
            message_id: message.id.clone(),
            webhook_id: message.webhook_id.clone(),
            sequence: message.sequence,
            received_at: message.received_at,
            source_ip: message.source_ip,
            headers: message.headers.clone(),
            payload: payload_of(&message.body, &message.headers, data_type),
            body: message.body.clone(),
        }
    }

    /// Applies a webhook's credential cleanup to the payload and headers (never to `body`).
    pub fn clean(&mut self, cleanup: &crate::cleanup::CredentialCleanup) {
        cleanup.clean_json(&mut self.payload);
        cleanup.clean_headers(&mut self.headers);
    }

    /// The payload serialized as compact JSON: what most modules write.
    pub fn payload_json(&self) -> String {
        self.payload.to_string()
    }

    /// `{"payload": …, "headers": …}`: the envelope several modules publish.
    pub fn envelope(&self, include_headers: bool) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("payload".into(), self.payload.clone());
        if include_headers {
            map.insert("headers".into(), headers_json(&self.headers));
        }
        Value::Object(map)
    }
}

/// The headers as a JSON object.
pub fn headers_json(headers: &BTreeMap<String, String>) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The JSON view of a body; see [`Delivery::payload`].
pub fn payload_of(body: &[u8], headers: &BTreeMap<String, String>, data_type: DataType) -> Value {
    if data_type != DataType::Form
        && let Ok(value) = serde_json::from_slice::<Value>(body)
        && (data_type == DataType::Json || value.is_object() || value.is_array())
    {
        return value;
    }
    let is_urlencoded = headers
        .get("content-type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if data_type == DataType::Form && is_urlencoded {
        let mut fields = serde_json::Map::new();
        for (k, v) in form_urlencoded::parse(body) {
            fields.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        return Value::Object(fields);
    }
    match std::str::from_utf8(body) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => {
            use base64::Engine as _;
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(body) })
        }
    }
}

/// Why a module did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// The destination may accept it later (unreachable, timed out, overloaded).
    #[error("{0}")]
    Retryable(String),
    /// The destination refused it, or the module cannot work as configured: retrying is useless.
    #[error("{0}")]
    Rejected(String),
}

impl ModuleError {
    /// A retryable error from anything displayable.
    pub fn retryable(error: impl fmt::Display) -> Self {
        Self::Retryable(error.to_string())
    }

    /// A rejection from anything displayable.
    pub fn rejected(error: impl fmt::Display) -> Self {
        Self::Rejected(error.to_string())
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// Prefixes the message with where it happened, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        let prefix = format!("{what}: ");
        let with = |m: String| {
            if m.starts_with(&prefix) {
                m
            } else {
                format!("{prefix}{m}")
            }
        };
        match self {
            Self::Retryable(m) => Self::Retryable(with(m)),
            Self::Rejected(m) => Self::Rejected(with(m)),
        }
    }
}

/// A request that got no answer, as `"{context}: timed out|cannot connect|request failed:
/// causes…"`, without the URL (it may carry credentials). Retryable, except a request that
/// could not even be built.
pub(crate) fn http_request_error(context: &str, e: &reqwest::Error) -> ModuleError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut causes = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push_str(": ");
        causes.push_str(&cause.to_string());
        source = cause.source();
    }
    let message = format!("{context}: {what}{causes}");
    if e.is_builder() {
        ModuleError::Rejected(message)
    } else {
        ModuleError::Retryable(message)
    }
}

/// An output module: delivers one webhook to one destination.
///
/// Implementations are built once per webhook (from its `module-config`), shared by every
/// delivery, and safe to call concurrently.
#[async_trait]
pub trait Module: Send + Sync + fmt::Debug {
    /// Delivers; `Ok` only once the destination accepted it.
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError>;
}

/// Helpers for module unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A JSON delivery of `body` with a content-type header.
    pub fn delivery(body: &[u8]) -> Delivery {
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_owned(), "application/json".to_owned());
        Delivery {
            message_id: MessageId::generate(),
            webhook_id: WebhookId::from("orders"),
            sequence: 1,
            received_at: Utc::now(),
            source_ip: None,
            payload: payload_of(body, &headers, DataType::Json),
            headers,
            body: Bytes::copy_from_slice(body),
        }
    }
}
