//! The `aws_sqs` module: sends each webhook's payload as one SQS message.
//!
//! Keys: `queue_url`, or `queue_name` (looked up with GetQueueUrl and created when missing;
//! also accepted at the top level of the webhook). The body is the payload as JSON; the
//! message attributes `webhook_id`, `message_id` and `content_type` say where it came from.
//! On a FIFO queue (`.fifo`) the webhook id is the message group and the message id the
//! de-duplication id, so a redelivery within five minutes is not queued twice.
//!
//! Connection type `aws_sqs` (or `sqs`): `aws_access_key_id`, `aws_secret_access_key` (or the
//! `AWS_*` environment), `region_name` ("us-east-1"), `endpoint_url` (moto, LocalStack).
//! Requests use SQS's JSON protocol, signed with SigV4. SendMessage answered 2xx counts as
//! delivered.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use url::Url;

use super::aws::{AwsHttp, AwsSettings, is_retryable, request_error};
use super::registry::{BuildContext, ModuleSpec};
use super::{Connections, Delivery, Module, ModuleError};
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqsConfig {
    #[serde(default)]
    queue_url: Option<Url>,
    #[serde(default)]
    queue_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqsConnectionConfig {
    #[serde(default)]
    aws_access_key_id: Option<String>,
    #[serde(default)]
    aws_secret_access_key: Option<Secret<String>>,
    #[serde(default)]
    aws_session_token: Option<Secret<String>>,
    #[serde(default, alias = "region")]
    region_name: Option<String>,
    #[serde(default)]
    endpoint_url: Option<Url>,
}

/// Where the messages go.
#[derive(Debug, Clone)]
enum Queue {
    Url(String),
    Name(String),
}

/// See the module docs.
#[derive(Debug)]
pub struct AwsSqs {
    connection: String,
    connections: Arc<Connections>,
    aws: AwsSettings,
    /// Where API calls are posted.
    endpoint: Url,
    queue: Queue,
    fifo: bool,
    /// The queue URL once known (always, with `queue_url`).
    resolved: Mutex<Option<String>>,
}

/// An error answer of the SQS API.
struct ApiError {
    status: reqwest::StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn is_missing_queue(&self) -> bool {
        self.code.ends_with("QueueDoesNotExist") || self.code.contains("NonExistentQueue")
    }

    fn into_module_error(self, what: &str) -> ModuleError {
        let text = format!(
            "aws_sqs: {what}: {} {} {}",
            self.status, self.code, self.message
        );
        if is_retryable(self.status, &self.code) {
            ModuleError::retryable(text.trim_end())
        } else {
            ModuleError::rejected(text.trim_end())
        }
    }
}

/// Whether a queue name is one SQS accepts: 1–80 letters, digits, `-` and `_`, and `.fifo`.
fn check_queue_name(name: &str) -> Result<(), String> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let ok = !base.is_empty()
        && name.len() <= 80
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "module-config.queue_name: `{name}` is not a valid queue name (1-80 letters, digits, `-`, `_`, optionally ending in `.fifo`)"
        ))
    }
}

impl AwsSqs {
    /// Builds it from its spec (validates only; connects on the first delivery).
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["aws_sqs", "sqs"])?;
        let config: SqsConfig = spec.config()?;
        let settings: SqsConnectionConfig = connection.settings()?;
        let aws = AwsSettings::resolve(
            &connection.name,
            settings.aws_access_key_id,
            settings.aws_secret_access_key,
            settings.aws_session_token,
            settings.region_name,
            settings.endpoint_url,
            |name| std::env::var(name).ok(),
        )?;
        let queue = match (config.queue_url, config.queue_name) {
            (Some(url), None) => Queue::Url(url.to_string()),
            (None, Some(name)) => {
                check_queue_name(&name)?;
                Queue::Name(name)
            }
            (Some(_), Some(_)) => {
                return Err(
                    "module-config: give either `queue_url` or `queue_name`, not both".into(),
                );
            }
            (None, None) => {
                return Err("module-config: `queue_url` or `queue_name` is required".into());
            }
        };
        let endpoint = match (&aws.endpoint, &queue) {
            (Some(endpoint), _) => endpoint.clone(),
            // A queue URL names its regional endpoint.
            (None, Queue::Url(url)) => {
                let url = Url::parse(url).map_err(|e| format!("module-config.queue_url: {e}"))?;
                let origin = url.origin().ascii_serialization();
                Url::parse(&origin).map_err(|e| format!("module-config.queue_url: {e}"))?
            }
            (None, Queue::Name(_)) => {
                Url::parse(&format!("https://sqs.{}.amazonaws.com/", aws.region))
                    .map_err(|e| format!("region `{}`: {e}", aws.region))?
            }
        };
        let (fifo, resolved) = match &queue {
            Queue::Url(url) => (url.ends_with(".fifo"), Some(url.clone())),
            Queue::Name(name) => (name.ends_with(".fifo"), None),
        };
        Ok(Self {
            connection: connection.name.clone(),
            connections: ctx.connections.clone(),
            aws,
            endpoint,
            queue,
            fifo,
            resolved: Mutex::new(resolved),
        })
    }

    /// One call of the JSON protocol.
    async fn call(
        &self,
        action: &str,
        body: &Value,
    ) -> Result<Result<Value, ApiError>, ModuleError> {
        let http = self
            .connections
            .client(&self.connection, || async { AwsHttp::new() })
            .await?;
        let body = serde_json::to_vec(body).map_err(ModuleError::rejected)?;
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            ("x-amz-target".to_owned(), format!("AmazonSQS.{action}")),
        ];
        let signed = self
            .aws
            .sign("sqs", "POST", &self.endpoint, &headers, &body)?;
        let mut request = http.0.post(self.endpoint.clone());
        for (name, value) in headers.iter().chain(&signed) {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| request_error("aws_sqs", &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| request_error("aws_sqs", &e))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(value));
        }
        let code = value
            .get("__type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .to_owned();
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Err(ApiError {
            status,
            code,
            message,
        }))
    }

    /// The queue URL: known, looked up, or the queue is created.
    async fn queue_url(&self) -> Result<String, ModuleError> {
        let mut resolved = self.resolved.lock().await;
        if let Some(url) = &*resolved {
            return Ok(url.clone());
        }
        let Queue::Name(name) = &self.queue else {
            unreachable!("a queue_url is resolved from the start")
        };
        let url = match self
            .call("GetQueueUrl", &json!({"QueueName": name}))
            .await?
        {
            Ok(answer) => answer,
            Err(e) if e.is_missing_queue() => {
                let mut create = json!({"QueueName": name});
                if self.fifo {
                    create["Attributes"] = json!({"FifoQueue": "true"});
                }
                self.call("CreateQueue", &create)
                    .await?
                    .map_err(|e| e.into_module_error(&format!("cannot create queue `{name}`")))?
            }
            Err(e) => return Err(e.into_module_error(&format!("cannot find queue `{name}`"))),
        };
        let url = url
            .get("QueueUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ModuleError::retryable(format!("aws_sqs: no QueueUrl in the answer for `{name}`"))
            })?
            .to_owned();
        *resolved = Some(url.clone());
        Ok(url)
    }
}

#[async_trait]
impl Module for AwsSqs {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let queue_url = self.queue_url().await?;
        let string = |v: &str| json!({"DataType": "String", "StringValue": v});
        let mut attributes = serde_json::Map::new();
        attributes.insert("webhook_id".into(), string(delivery.webhook_id.as_str()));
        attributes.insert("message_id".into(), string(delivery.message_id.as_str()));
        if let Some(ct) = delivery
            .headers
            .get("content-type")
            .filter(|v| !v.is_empty())
        {
            attributes.insert("content_type".into(), string(ct));
        }
        let mut request = json!({
            "QueueUrl": queue_url,
            "MessageBody": delivery.payload_json(),
            "MessageAttributes": attributes,
        });
        if self.fifo {
            request["MessageGroupId"] = json!(delivery.webhook_id.as_str());
            request["MessageDeduplicationId"] = json!(delivery.message_id.as_str());
        }
        match self.call("SendMessage", &request).await? {
            Ok(_) => Ok(()),
            Err(e) if e.is_missing_queue() && matches!(self.queue, Queue::Name(_)) => {
                // Deleted since it was looked up: look it up (or create it) again next time.
                *self.resolved.lock().await = None;
                Err(ModuleError::retryable(format!(
                    "aws_sqs: queue `{queue_url}` no longer exists; it is created again on the next attempt"
                )))
            }
            Err(e) => Err(e.into_module_error(&format!("queue `{queue_url}` refused the message"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for good in ["orders", "a-b_c", "events.fifo"] {
            assert!(check_queue_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".fifo", "a/b", "has space", &"x".repeat(81)] {
            assert!(check_queue_name(bad).is_err(), "{bad}");
        }
    }
}
