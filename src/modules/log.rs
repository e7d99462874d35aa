//! The `log` module: writes each webhook as one JSON line to standard output.
//!
//! Keys: `pretty_print` (false) and `redact_sensitive` (true: values of headers that carry
//! credentials are replaced by `***`). Standard output is the module's destination, which is
//! why this is the one place in the library that writes to it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::registry::ModuleSpec;
use super::{Delivery, Module, ModuleError};

/// Header names whose values `redact_sensitive` hides.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-hmac-signature",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogConfig {
    #[serde(default)]
    pretty_print: bool,
    #[serde(default = "yes")]
    redact_sensitive: bool,
}

fn yes() -> bool {
    true
}

/// Where the lines go.
pub type LogSink = Arc<Mutex<dyn Write + Send>>;

/// See the module docs.
pub struct LogModule {
    pretty_print: bool,
    redact_sensitive: bool,
    sink: LogSink,
}

impl std::fmt::Debug for LogModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogModule")
            .field("pretty_print", &self.pretty_print)
            .field("redact_sensitive", &self.redact_sensitive)
            .finish_non_exhaustive()
    }
}

impl LogModule {
    /// Builds it from its spec, writing to standard output.
    pub fn build(spec: &ModuleSpec<'_>) -> Result<Self, String> {
        spec.no_connection()?;
        let config: LogConfig = spec.config()?;
        Ok(Self::with_sink(
            config.pretty_print,
            config.redact_sensitive,
            Arc::new(Mutex::new(std::io::stdout())),
        ))
    }

    /// Builds it writing to `sink`.
    pub fn with_sink(pretty_print: bool, redact_sensitive: bool, sink: LogSink) -> Self {
        Self {
            pretty_print,
            redact_sensitive,
            sink,
        }
    }

    fn record(&self, delivery: &Delivery) -> Value {
        let headers: serde_json::Map<String, Value> = delivery
            .headers
            .iter()
            .map(|(k, v)| {
                let shown = if self.redact_sensitive && SENSITIVE_HEADERS.contains(&k.as_str()) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.clone(), Value::String(shown.to_owned()))
            })
            .collect();
        json!({
            "webhook_id": delivery.webhook_id,
            "message_id": delivery.message_id,
            "received_at": crate::time::rfc3339(delivery.received_at),
            "headers": headers,
            "payload": delivery.payload,
        })
    }
}

#[async_trait]
impl Module for LogModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let record = self.record(delivery);
        let mut line = if self.pretty_print {
            serde_json::to_vec_pretty(&record)
        } else {
            serde_json::to_vec(&record)
        }
        .map_err(ModuleError::rejected)?;
        line.push(b'\n');
        let mut sink = self.sink.lock().expect("log sink poisoned");
        sink.write_all(&line)
            .and_then(|()| sink.flush())
            .map_err(|e| ModuleError::retryable(format!("log: cannot write: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;

    #[tokio::test]
    async fn writes_one_json_line_with_secrets_redacted() {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let module = LogModule::with_sink(false, true, buffer.clone());
        let mut d = delivery(br#"{"amount":5}"#);
        d.headers
            .insert("authorization".into(), "Bearer s3cr3t".into());
        module.deliver(&d).await.unwrap();
        let out = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1);
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["payload"]["amount"], 5);
        assert_eq!(line["headers"]["authorization"], "***");
        assert!(!out.contains("s3cr3t"));
    }
}
