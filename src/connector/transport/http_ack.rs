//! What the HTTP transports (SSE and long-poll) share: endpoint URLs, reading a refusal, and the
//! task that sends acks and nacks through `POST /connect/ack`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use url::Url;

use crate::config::ConnectorConfig;
use crate::protocol::{ConnectionId, ConnectorFrame};

/// An ack or nack, and the connection holding the message's lease.
pub(super) type Reply = (ConnectionId, ConnectorFrame);

/// Acks sent at once.
const ACKS_AT_ONCE: usize = 16;
/// Tries of one ack before it is given up (the lease then times out and is redelivered).
const ACK_TRIES: u32 = 3;

/// What a 401 or 403 answer means, for the person running the connector: a refused token, or
/// the server's own reason and code (e.g. an address outside `allowed_connector_ips`, or
/// `client_certificate_required` on a channel that needs `--client-cert`).
pub(super) fn refusal(
    status: http::StatusCode,
    body: &str,
    channel: &crate::protocol::ChannelName,
) -> String {
    let body = serde_json::from_str::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|v| v.get(name).and_then(|d| d.as_str()).map(str::to_string))
    };
    let printable =
        |s: String| -> String { s.chars().take(300).filter(|c| !c.is_control()).collect() };
    match (status.as_u16(), field("detail")) {
        (403, Some(detail)) => {
            let code = field("code")
                .map(|c| format!(" {}", printable(c)))
                .unwrap_or_default();
            format!(
                "the server refused the connection to `{channel}` ({status}{code}: {})",
                printable(detail)
            )
        }
        _ => format!("the server refused the channel token for `{channel}` ({status})"),
    }
}

/// `http(s)://host[/prefix]/{path}` from the server's base URL.
pub(super) fn endpoint(base: &Url, path: &str) -> Option<Url> {
    let mut url = base.clone();
    let scheme = match base.scheme() {
        "https" | "wss" => "https",
        _ => "http",
    };
    url.set_scheme(scheme).ok()?;
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{path}"));
    url.set_query(None);
    Some(url)
}

/// A request with the channel token and `X-Connector-ID`.
pub(super) fn authorized(
    config: &ConnectorConfig,
    request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    let request = request.bearer_auth(config.token.expose());
    match &config.connector_id {
        Some(id) => request.header("x-connector-id", id.as_str()),
        None => request,
    }
}

/// Sends every reply queued on `replies` until the channel closes (all its senders dropped).
pub(super) async fn send_acks(
    config: Arc<ConnectorConfig>,
    client: reqwest::Client,
    ack_url: Url,
    replies: mpsc::Receiver<Reply>,
) {
    let stream =
        futures_util::stream::unfold(
            replies,
            |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
        );
    stream
        .for_each_concurrent(ACKS_AT_ONCE, |(connection_id, frame)| {
            let (config, client, ack_url) = (&config, &client, &ack_url);
            async move {
                let (message_id, query, body) = match &frame {
                    ConnectorFrame::Ack { message_id } => (
                        message_id.clone(),
                        vec![("message_id", message_id.to_string()), ("status", "ack".into())],
                        serde_json::json!({}),
                    ),
                    ConnectorFrame::Nack {
                        message_id,
                        retry,
                        reason,
                    } => (
                        message_id.clone(),
                        vec![
                            ("message_id", message_id.to_string()),
                            ("status", "nack".into()),
                            ("retry", retry.to_string()),
                        ],
                        serde_json::json!({"reason": reason}),
                    ),
                    ConnectorFrame::Heartbeat { .. } => return,
                };
                for attempt in 1..=ACK_TRIES {
                    let request = client
                        .post(ack_url.clone())
                        .query(&query)
                        .header("x-connection-id", connection_id.as_str())
                        .json(&body)
                        .timeout(Duration::from_secs_f64(config.connection_timeout));
                    match authorized(config, request).send().await {
                        Ok(r) if r.status().is_success() => return,
                        // 5xx, or 429 (`max_messages_per_second`): the next try may get through.
                        Ok(r) if r.status().is_server_error() || r.status() == http::StatusCode::TOO_MANY_REQUESTS => {
                            tracing::debug!(%message_id, status = %r.status(), attempt, "ack not recorded, trying again")
                        }
                        Ok(r) => {
                            tracing::warn!(%message_id, status = %r.status(), "the server refused the ack; the message will be redelivered");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(%message_id, error = %e, attempt, "ack not sent, trying again")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                tracing::warn!(%message_id, "ack not sent; the message will be redelivered");
            }
        })
        .await;
}
