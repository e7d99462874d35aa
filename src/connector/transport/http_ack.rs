//! What the HTTP transports (SSE and long-poll) share: the HTTP client, endpoint URLs, and the
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

/// The HTTP client of a session: the configured connect timeout, TLS settings and proxies
/// (`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` as reqwest reads them).
pub(super) fn client(config: &ConnectorConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs_f64(config.connection_timeout))
        .tcp_nodelay(true)
        .danger_accept_invalid_certs(!config.verify_ssl);
    if let Some(path) = &config.ca_cert_path {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the CA certificate {path}: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("the CA certificate {path} is not PEM: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
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
                        Ok(r) if r.status().is_server_error() => {
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
