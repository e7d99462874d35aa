//! The Server-Sent Events transport of the connector.
//!
//! Owns one SSE session: the request (bearer token, `X-Connector-ID`), parsing the event stream,
//! spawning a delivery per `webhook` event, sending acks and nacks through `POST /connect/ack`
//! with the connection id of the `connected` event, detecting a silent server, and a graceful
//! end that settles deliveries in progress and sends their acks.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::http_ack::{self, Reply};
use super::ws::{SETTLE_TIMEOUT, server_of, spawn_delivery};
use crate::connector::outbound::describe;
use crate::connector::{Context, Event, SessionEnd};
use crate::protocol::{ConnectionId, ServerFrame, WebhookFrame};

/// Longest line of the event stream (a webhook event carries the body twice, base64 once).
const MAX_EVENT: usize = 64 * 1024 * 1024;

/// Runs one SSE session against the server at `base` until the stream ends or shutdown.
///
/// With `upgrade_after` (an `auto` fallback), the session settles and ends with
/// [`SessionEnd::Upgrade`] once that time has passed.
pub async fn session(
    ctx: &Arc<Context>,
    base: &Url,
    upgrade_after: Option<Duration>,
) -> SessionEnd {
    let config = &ctx.config;
    let url = format!("connect/stream/{}/sse", config.channel);
    let (Some(url), Some(ack_url)) = (
        http_ack::endpoint(base, &url),
        http_ack::endpoint(base, "connect/ack"),
    ) else {
        return SessionEnd::Failed(format!("invalid server URL {base}"));
    };
    let outbound = ctx.outbound();
    let client = match outbound.http_client(config) {
        Ok(c) => c,
        Err(e) => return SessionEnd::Failed(describe(&e)),
    };
    let request = http_ack::authorized(config, client.get(url.clone()))
        .header(http::header::ACCEPT, "text/event-stream");
    let timeout = Duration::from_secs_f64(config.connection_timeout);
    let response = tokio::select! {
        _ = ctx.shutdown.cancelled() => return SessionEnd::Shutdown,
        r = tokio::time::timeout(timeout, request.send()) => match r {
            Err(_) => return SessionEnd::Failed(format!("no answer from {} within {}s", server_of(&url), config.connection_timeout)),
            Ok(Err(e)) => return SessionEnd::Failed(format!("cannot connect to {}: {}", server_of(&url), outbound.explain(&e, &url).await)),
            Ok(Ok(r)) => r,
        },
    };
    let status = response.status();
    match status.as_u16() {
        200 => {}
        401 | 403 => {
            let body = response.text().await.unwrap_or_default();
            return SessionEnd::Unauthorized(http_ack::refusal(status, &body, &config.channel));
        }
        _ => return SessionEnd::Failed(format!("the server answered {status} to the SSE request")),
    }
    let is_sse = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return SessionEnd::Failed("the server's answer is not an event stream".into());
    }
    ctx.emit(Event::Connected {
        server: server_of(&url),
        channel: config.channel.clone(),
        protocol: "sse",
    });

    let (out_tx, out_rx) = mpsc::channel::<Reply>(1024);
    let acker = tokio::spawn(http_ack::send_acks(
        ctx.config.clone(),
        client,
        ack_url,
        out_rx,
    ));
    let deliveries = TaskTracker::new();
    let session_over = CancellationToken::new();
    let mut heartbeat_timeout = config.heartbeat_timeout();
    let mut connection_id: Option<ConnectionId> = None;
    // Webhooks that came before `connected` (the original sends them in any order).
    let mut early: Vec<WebhookFrame> = Vec::new();
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut event_name = String::new();
    let mut data = String::new();

    let upgrade = async {
        match upgrade_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(upgrade);
    let end = 'session: loop {
        let chunk = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break SessionEnd::Shutdown,
            _ = &mut upgrade => break SessionEnd::Upgrade,
            r = tokio::time::timeout(heartbeat_timeout, body.next()) => r,
        };
        let chunk = match chunk {
            Err(_) => {
                break SessionEnd::Lost(format!(
                    "nothing heard from the server for {}s",
                    heartbeat_timeout.as_secs()
                ));
            }
            Ok(None) => break SessionEnd::Lost("the server ended the event stream".into()),
            Ok(Some(Err(e))) => break SessionEnd::Lost(format!("connection lost: {e}")),
            Ok(Some(Ok(c))) => c,
        };
        buffer.extend_from_slice(&chunk);
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = buffer.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let name = std::mem::take(&mut event_name);
                let payload = std::mem::take(&mut data);
                if payload.is_empty() {
                    continue;
                }
                let frame = match serde_json::from_str::<ServerFrame>(&payload) {
                    Ok(f) => f,
                    // The original's `connected` and `heartbeat` data carry no `type`.
                    Err(_) => match (
                        name.as_str(),
                        serde_json::from_str::<serde_json::Value>(&payload),
                    ) {
                        ("connected" | "heartbeat" | "error", Ok(mut v)) if v.is_object() => {
                            v["type"] = name.clone().into();
                            if name == "heartbeat" && v.get("timestamp").is_none() {
                                v["timestamp"] = "".into();
                            }
                            if name == "connected" && v.get("timestamp").is_none() {
                                v["timestamp"] = "".into();
                            }
                            if name == "error" {
                                let detail = v.get("error").cloned().unwrap_or_default();
                                v = serde_json::json!({"type": "error", "code": "server_error", "detail": detail.as_str().unwrap_or("")});
                            }
                            match serde_json::from_value::<ServerFrame>(v) {
                                Ok(f) => f,
                                Err(e) => {
                                    tracing::warn!(error = %e, event = %name, "ignoring an event that does not parse");
                                    continue;
                                }
                            }
                        }
                        _ => {
                            tracing::warn!(event = %name, "ignoring an event that does not parse");
                            continue;
                        }
                    },
                };
                match frame {
                    ServerFrame::Webhook(frame) => match &connection_id {
                        Some(id) => {
                            let id = id.clone();
                            spawn_delivery(
                                ctx,
                                &deliveries,
                                &session_over,
                                &out_tx,
                                frame,
                                move |f| (id, f),
                            );
                        }
                        None => early.push(frame),
                    },
                    ServerFrame::Connected {
                        connection_id: id,
                        heartbeat_interval_seconds,
                        ..
                    } => {
                        if let Some(interval) = heartbeat_interval_seconds {
                            heartbeat_timeout = heartbeat_timeout
                                .max(Duration::from_secs(interval.saturating_mul(3)));
                        }
                        ctx.emit(Event::Ready {
                            connection_id: id.clone(),
                        });
                        for frame in early.drain(..) {
                            let id = id.clone();
                            spawn_delivery(
                                ctx,
                                &deliveries,
                                &session_over,
                                &out_tx,
                                frame,
                                move |f| (id, f),
                            );
                        }
                        connection_id = Some(id);
                    }
                    ServerFrame::Heartbeat { .. } => {}
                    ServerFrame::Error { code, detail } => {
                        ctx.emit(Event::ServerError { code, detail })
                    }
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            } else if let Some(value) = line.strip_prefix("event:") {
                event_name = value.trim().to_string();
            }
            // `id:`, `retry:` and comments need nothing here.
        }
        if buffer.len() + data.len() > MAX_EVENT {
            break 'session SessionEnd::Lost("an event is larger than 64 MiB".into());
        }
    };
    // The stream stays open while deliveries settle: closing it gives their leases back.
    let end = settle(end, session_over, deliveries, out_tx, acker).await;
    drop(body);
    end
}

/// Lets deliveries in progress finish (on shutdown) and their acks go out, then ends.
pub(super) async fn settle(
    end: SessionEnd,
    session_over: CancellationToken,
    deliveries: TaskTracker,
    out_tx: mpsc::Sender<Reply>,
    acker: tokio::task::JoinHandle<()>,
) -> SessionEnd {
    session_over.cancel();
    deliveries.close();
    let shutting_down = matches!(end, SessionEnd::Shutdown | SessionEnd::Upgrade);
    let settle_for = if shutting_down {
        SETTLE_TIMEOUT
    } else {
        Duration::ZERO
    };
    let _ = tokio::time::timeout(settle_for, deliveries.wait()).await;
    drop(out_tx);
    if shutting_down {
        // The ack task ends once every queued ack is sent (the channel is closed and drained).
        let _ = tokio::time::timeout(Duration::from_secs(10), acker).await;
    }
    end
}
