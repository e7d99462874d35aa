//! HTTP-mode delivery: replay one message to its local target and decide ack or nack.
//!
//! Owns the request (raw body byte for byte, original headers minus hop-by-hop ones, target
//! headers, `X-Webhook-*` headers), local retries with backoff, and the classification of
//! outcomes: 2xx → ack; connect error, timeout, 408, 425, 429, 5xx → retry then nack(retry);
//! other statuses → nack without retry (dead letter).

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::backoff::Backoff;
use crate::config::{ConnectorConfig, TargetConfig};
use crate::message::frame_body;
use crate::protocol::WebhookFrame;

/// Headers of the original request that are never replayed.
const NOT_REPLAYED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "proxy-connection",
];

/// Longest local retry delay.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// What to tell the server about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target accepted it.
    Ack,
    /// It was not accepted; `retry` says whether the server should deliver it again.
    Nack {
        /// Deliver again later (`true`) or dead-letter now (`false`).
        retry: bool,
        /// Why, in words (kept with a dead letter).
        reason: String,
    },
}

/// One HTTP attempt, reported as it happens.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1 for the first attempt of this delivery.
    pub number: u32,
    /// The target's status, if it answered.
    pub status: Option<StatusCode>,
    /// Why there is no status (connect error, timeout).
    pub error: Option<String>,
    /// How long the attempt took.
    pub latency: Duration,
}

/// Delivers messages to HTTP targets with one shared connection pool.
#[derive(Debug, Clone)]
pub struct HttpDelivery {
    client: reqwest::Client,
}

impl Default for HttpDelivery {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpDelivery {
    /// A delivery client. Redirects are not followed: a webhook answered with 3xx is reported,
    /// so the target address can be fixed.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .expect("a reqwest client with default TLS always builds");
        Self { client }
    }

    /// Delivers `frame` per `config`'s target for its webhook, retrying locally; calls
    /// `on_attempt` after each attempt.
    pub async fn deliver(
        &self,
        config: &ConnectorConfig,
        frame: &WebhookFrame,
        on_attempt: &(dyn Fn(&Attempt) + Send + Sync),
    ) -> Verdict {
        let Some(target) = config.target_for(&frame.webhook_id) else {
            return Verdict::Nack {
                retry: false,
                reason: format!("no target for webhook `{}`", frame.webhook_id),
            };
        };
        let deadline = Duration::from_secs_f64(config.ack_timeout);
        match tokio::time::timeout(deadline, self.deliver_to(target, frame, on_attempt)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::Nack {
                retry: true,
                reason: format!("delivery did not finish within {}s", config.ack_timeout),
            },
        }
    }

    async fn deliver_to(
        &self,
        target: &TargetConfig,
        frame: &WebhookFrame,
        on_attempt: &(dyn Fn(&Attempt) + Send + Sync),
    ) -> Verdict {
        let attempts = if target.retry_enabled {
            target.retry_max_attempts.max(1)
        } else {
            1
        };
        let mut backoff = Backoff::new(
            Duration::from_secs_f64(target.retry_delay_seconds),
            MAX_RETRY_DELAY,
            target.retry_backoff_multiplier,
        );
        let body = frame_body(frame);
        let method = Method::from_bytes(target.method.to_ascii_uppercase().as_bytes())
            .unwrap_or(Method::POST);
        let mut last_reason = String::new();
        for number in 1..=attempts {
            let headers = request_headers(target, frame, number);
            let started = Instant::now();
            let result = self
                .client
                .request(method.clone(), target.url.clone())
                .headers(headers)
                .timeout(target.timeout())
                .body(body.clone())
                .send()
                .await;
            let latency = started.elapsed();
            let (status, error) = match &result {
                Ok(r) => (Some(r.status()), None),
                Err(e) => (None, Some(describe(e))),
            };
            on_attempt(&Attempt {
                number,
                status,
                error: error.clone(),
                latency,
            });
            let retry_after = match result {
                Ok(response) => {
                    let status = response.status();
                    // Drain the body so the connection can be reused.
                    let retry_after = parse_retry_after(response.headers());
                    let _ = response.bytes().await;
                    if status.is_success() {
                        return Verdict::Ack;
                    }
                    last_reason = format!("target answered {status}");
                    if !is_retryable(status) {
                        return Verdict::Nack {
                            retry: false,
                            reason: last_reason,
                        };
                    }
                    retry_after
                }
                Err(_) => {
                    last_reason = error.unwrap_or_default();
                    None
                }
            };
            if number < attempts {
                let delay = retry_after
                    .unwrap_or_else(|| backoff.next_delay())
                    .min(MAX_RETRY_DELAY);
                tokio::time::sleep(delay).await;
            }
        }
        Verdict::Nack {
            retry: true,
            reason: last_reason,
        }
    }
}

/// Statuses worth retrying: the target may accept later.
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error()
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "target timed out".into()
    } else if e.is_connect() {
        "cannot connect to target".into()
    } else {
        "request to target failed".into()
    }
}

/// The headers of a delivery: original ones (minus hop-by-hop), then the target's, then ours.
pub fn request_headers(target: &TargetConfig, frame: &WebhookFrame, attempt: u32) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &frame.headers {
        if NOT_REPLAYED.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    for (name, value) in &target.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) && frame.body_b64.is_none() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let ours = [
        ("x-webhook-message-id", frame.message_id.to_string()),
        ("x-webhook-id", frame.webhook_id.to_string()),
        ("x-webhook-attempt", attempt.to_string()),
        ("x-webhook-sequence", frame.sequence.to_string()),
        (
            "x-webhook-delivery-count",
            frame.delivery_count.unwrap_or(1).to_string(),
        ),
    ];
    for (name, value) in ours {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn frame() -> WebhookFrame {
        let mut headers = BTreeMap::new();
        headers.insert("host".into(), "public.example".into());
        headers.insert("content-length".into(), "12".into());
        headers.insert("connection".into(), "keep-alive".into());
        headers.insert("stripe-signature".into(), "t=1,v1=ab".into());
        headers.insert("content-type".into(), "application/json".into());
        WebhookFrame {
            message_id: "msg_1".into(),
            sequence: 3,
            webhook_id: "stripe".into(),
            timestamp: "t".into(),
            headers,
            payload: serde_json::json!({}),
            body_b64: Some("e30=".into()),
            delivery_count: Some(2),
            expires_at: None,
            source_ip: None,
        }
    }

    #[test]
    fn headers_keep_the_originals_and_add_ours() {
        let mut target = TargetConfig::new("http://localhost:3000".parse().unwrap());
        target.headers.insert("x-extra".into(), "1".into());
        let h = request_headers(&target, &frame(), 2);
        assert_eq!(h["stripe-signature"], "t=1,v1=ab");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-extra"], "1");
        assert_eq!(h["x-webhook-message-id"], "msg_1");
        assert_eq!(h["x-webhook-id"], "stripe");
        assert_eq!(h["x-webhook-attempt"], "2");
        assert!(
            !h.contains_key("host")
                && !h.contains_key("content-length")
                && !h.contains_key("connection")
        );
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 425, 429, 500, 502, 503] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 404, 409, 422, 301] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
