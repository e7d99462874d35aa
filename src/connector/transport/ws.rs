//! The WebSocket transport of the connector.
//!
//! Owns one session: the handshake (bearer token, `X-Connector-ID`), reading frames, spawning a
//! delivery per webhook, sending acks, nacks and heartbeats, detecting a silent server, and a
//! graceful end that settles deliveries in progress and sends their acks before closing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::connector::deliver::Verdict;
use crate::connector::in_progress::{Claim, Followed};
use crate::connector::outbound::describe;
use crate::connector::{Context, Event, SessionEnd};
use crate::protocol::{ChannelName, ConnectorFrame, ServerFrame, WebhookFrame};
use crate::time::now_rfc3339;

/// How often the connector sends its own heartbeat.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);
/// Most frames written before one flush.
const MAX_BATCH: usize = 64;
/// Longest wait for deliveries in progress when shutting down.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `ws(s)://host[/prefix]/connect/stream/{channel}` from the server's http(s) base URL.
pub fn stream_url(base: &Url, channel: &ChannelName) -> Option<Url> {
    let mut url = base.clone();
    let scheme = match base.scheme() {
        "https" | "wss" => "wss",
        _ => "ws",
    };
    url.set_scheme(scheme).ok()?;
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/connect/stream/{channel}"));
    url.set_query(None);
    Some(url)
}

/// Runs one WebSocket session until the stream ends or shutdown.
pub async fn session(ctx: &Arc<Context>, url: &Url) -> SessionEnd {
    let config = &ctx.config;
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return SessionEnd::Failed(format!("invalid server URL: {e}")),
    };
    let auth = format!("Bearer {}", config.token.expose());
    match http::HeaderValue::from_str(&auth) {
        Ok(v) => {
            request.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        Err(_) => {
            return SessionEnd::Unauthorized(
                "the token has characters a header cannot carry".into(),
            );
        }
    }
    if let Some(id) = &config.connector_id
        && let Ok(v) = http::HeaderValue::from_str(id.as_str())
    {
        request.headers_mut().insert("x-connector-id", v);
    }
    let outbound = ctx.outbound();
    let connect = outbound.websocket(request);
    let timeout = Duration::from_secs_f64(config.connection_timeout);
    let socket = tokio::select! {
        _ = ctx.shutdown.cancelled() => return SessionEnd::Shutdown,
        r = tokio::time::timeout(timeout, connect) => match r {
            Err(_) => return SessionEnd::Failed(format!("no answer from {} within {}s", server_of(url), config.connection_timeout)),
            Ok(Err(WsError::Http(response))) => {
                let status = response.status();
                let detail = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                return match status.as_u16() {
                    401 | 403 => SessionEnd::Unauthorized(super::http_ack::refusal(status, &detail, &config.channel)),
                    _ => SessionEnd::Failed(format!("the server answered {status} {}", detail.chars().take(200).collect::<String>())),
                };
            }
            Ok(Err(e)) => return SessionEnd::Failed(format!("cannot connect to {}: {}", server_of(url), describe(&e))),
            Ok(Ok((socket, _))) => socket,
        },
    };
    ctx.emit(Event::Connected {
        server: server_of(url),
        channel: config.channel.clone(),
        protocol: "websocket",
    });
    stream(ctx, socket).await
}

pub(super) fn server_of(url: &Url) -> String {
    let scheme = if matches!(url.scheme(), "wss" | "https") {
        "https"
    } else {
        "http"
    };
    match url.port() {
        Some(p) => format!("{scheme}://{}:{p}", url.host_str().unwrap_or("?")),
        None => format!("{scheme}://{}", url.host_str().unwrap_or("?")),
    }
}

async fn stream<S>(ctx: &Arc<Context>, socket: tokio_tungstenite::WebSocketStream<S>) -> SessionEnd
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<ConnectorFrame>(1024);
    let deliveries = TaskTracker::new();
    // Deliveries not yet started stop when the session ends; started ones finish.
    let session_over = CancellationToken::new();
    let mut heartbeat_timeout = ctx.config.heartbeat_timeout();

    let writer = async {
        let mut beat = tokio::time::interval_at(
            tokio::time::Instant::now() + HEARTBEAT_EVERY,
            HEARTBEAT_EVERY,
        );
        loop {
            tokio::select! {
                frame = out_rx.recv() => match frame {
                    Some(frame) => {
                        // Write this ack and any others already waiting, then flush once.
                        let mut next = Some(frame);
                        let mut written = 0;
                        while let Some(frame) = next.take() {
                            let text = serde_json::to_string(&frame).expect("frames always serialise");
                            if sink.feed(WsMessage::Text(text.into())).await.is_err() { return sink; }
                            written += 1;
                            if written < MAX_BATCH {
                                next = out_rx.try_recv().ok();
                            }
                        }
                        if sink.flush().await.is_err() { return sink; }
                    }
                    None => return sink,
                },
                _ = beat.tick() => {
                    let text = serde_json::to_string(&ConnectorFrame::Heartbeat { timestamp: Some(now_rfc3339()) }).expect("frames always serialise");
                    if sink.send(WsMessage::Text(text.into())).await.is_err() { return sink; }
                }
            }
        }
    };
    tokio::pin!(writer);

    let end = loop {
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break SessionEnd::Shutdown,
            mut sink = &mut writer => {
                let _ = sink.close().await;
                break SessionEnd::Lost("connection lost while sending".into());
            }
            r = tokio::time::timeout(heartbeat_timeout, source.next()) => r,
        };
        let message = match next {
            Err(_) => {
                break SessionEnd::Lost(format!(
                    "nothing heard from the server for {}s",
                    heartbeat_timeout.as_secs()
                ));
            }
            Ok(None) => break SessionEnd::Lost("the server closed the connection".into()),
            Ok(Some(Err(e))) => break SessionEnd::Lost(format!("connection lost: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match message {
            WsMessage::Text(t) => t,
            WsMessage::Close(frame) => {
                let why = frame
                    .map(|f| f.reason.to_string())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "closed".into());
                break SessionEnd::Lost(format!("the server closed the connection ({why})"));
            }
            _ => continue,
        };
        match serde_json::from_str::<ServerFrame>(text.as_str()) {
            Ok(ServerFrame::Webhook(frame)) => {
                spawn_delivery(ctx, &deliveries, &session_over, &out_tx, frame, |f| f)
            }
            Ok(ServerFrame::Connected {
                connection_id,
                heartbeat_interval_seconds,
                ..
            }) => {
                if let Some(interval) = heartbeat_interval_seconds {
                    // A server that beats every N s is dead after 3 N s of silence.
                    heartbeat_timeout =
                        heartbeat_timeout.max(Duration::from_secs(interval.saturating_mul(3)));
                }
                ctx.emit(Event::Ready { connection_id });
            }
            Ok(ServerFrame::Heartbeat { .. }) => {
                let _ = out_tx.try_send(ConnectorFrame::Heartbeat {
                    timestamp: Some(now_rfc3339()),
                });
            }
            Ok(ServerFrame::Error { code, detail }) => {
                ctx.emit(Event::ServerError { code, detail })
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a frame that does not parse"),
        }
    };

    // Let deliveries in progress finish and queue their acks, then flush them and close.
    session_over.cancel();
    deliveries.close();
    let settle_for = if matches!(end, SessionEnd::Shutdown) {
        SETTLE_TIMEOUT
    } else {
        Duration::ZERO
    };
    let _ = tokio::time::timeout(settle_for, deliveries.wait()).await;
    drop(out_tx);
    if matches!(end, SessionEnd::Shutdown) {
        // The writer ends once every queued ack is sent (the channel is closed and drained).
        if let Ok(mut sink) = tokio::time::timeout(Duration::from_secs(10), &mut writer).await {
            let _ = sink.send(WsMessage::Close(None)).await;
            let _ = sink.close().await;
        }
    }
    end
}

/// How long a lease is taken to last from a copy's arrival: the connector's `ack_timeout`, which
/// should match the channel's `ack_timeout_seconds` on the server (both default to 30 s; the
/// `connected` frame does not carry the server's).
fn lease_time(ctx: &Context) -> Duration {
    Duration::from_secs_f64(ctx.config.ack_timeout.max(0.0))
}

/// How much of a lease must be left to start a delivery: 5 s, or a quarter of a short lease.
fn lease_margin(lease: Duration) -> Duration {
    (lease / 4).min(Duration::from_secs(5))
}

/// The ack or nack frame of a verdict.
fn reply_frame(message_id: &crate::protocol::MessageId, verdict: &Verdict) -> ConnectorFrame {
    match verdict {
        Verdict::Ack => ConnectorFrame::Ack {
            message_id: message_id.clone(),
        },
        Verdict::Nack { retry, reason } => ConnectorFrame::Nack {
            message_id: message_id.clone(),
            retry: *retry,
            reason: Some(reason.clone()),
        },
    }
}

/// Delivers one webhook in its own task (once a concurrency permit is free) and queues its ack
/// or nack, wrapped by `tag`, on `out`. Shared by every transport.
///
/// A message already in progress on this channel (the server sent it again because its lease
/// passed `ack_timeout` while it waited for a slot or was being delivered) is not delivered
/// again: this copy follows the delivery in progress and sends its verdict, which settles the
/// newest lease (see [`crate::connector::in_progress`]).
///
/// Once a slot is free, a delivery starts only while its lease has at least [`lease_margin`]
/// left. Otherwise the server is about to hand the message out again, perhaps to another
/// connector, and delivering it here would deliver it twice. The protocol has no way to extend
/// a lease, so the message is nacked with `retry: true` instead, undelivered: the server
/// requeues it at once for a connector with room (a nack of a lease already gone is ignored).
pub(super) fn spawn_delivery<T: Send + 'static>(
    ctx: &Arc<Context>,
    deliveries: &TaskTracker,
    session_over: &CancellationToken,
    out: &mpsc::Sender<T>,
    frame: WebhookFrame,
    tag: impl FnOnce(ConnectorFrame) -> T + Send + 'static,
) {
    let ctx = ctx.clone();
    let out = out.clone();
    let session_over = session_over.clone();
    let arrived = std::time::Instant::now();
    ctx.emit(Event::Received {
        message_id: frame.message_id.clone(),
    });
    deliveries.spawn(async move {
        let lease = lease_time(&ctx);
        let lease_ends = arrived + lease;
        let message_id = frame.message_id.clone();
        let mut reported = false;
        let delivery = loop {
            match ctx.in_progress.claim(&message_id, lease_ends) {
                Claim::Deliver(delivery) => break delivery,
                Claim::Follow(follower) => {
                    if !reported {
                        reported = true;
                        ctx.emit(Event::Duplicate {
                            message_id: message_id.clone(),
                            already_acked: false,
                        });
                    }
                    match follower.outcome().await {
                        Followed::Settled(verdict) => {
                            let _ = out.send(tag(reply_frame(&message_id, &verdict))).await;
                            return;
                        }
                        Followed::Superseded => return,
                        Followed::Abandoned => continue,
                    }
                }
                Claim::AckedAlready => {
                    ctx.emit(Event::Duplicate {
                        message_id: message_id.clone(),
                        already_acked: true,
                    });
                    let _ = out.send(tag(reply_frame(&message_id, &Verdict::Ack))).await;
                    return;
                }
            }
        };
        // Dropping `delivery` unfinished (the session ended first) hands over to a follower.
        let permit = tokio::select! {
            biased;
            _ = session_over.cancelled() => return,
            p = ctx.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let left = delivery
            .lease_ends()
            .saturating_duration_since(std::time::Instant::now());
        let verdict = if left < lease_margin(lease) {
            drop(permit);
            Verdict::Nack {
                retry: true,
                reason: format!(
                    "waited {:.1}s for a delivery slot; its lease was about to expire",
                    arrived.elapsed().as_secs_f64()
                ),
            }
        } else {
            let webhook_id = frame.webhook_id.clone();
            let report = |attempt: &crate::connector::deliver::Attempt| {
                ctx.emit(Event::Attempt {
                    webhook_id: webhook_id.clone(),
                    message_id: message_id.clone(),
                    attempt: attempt.clone(),
                });
            };
            let route = ctx.route();
            let verdict = route.delivery.deliver(&route.config, &frame, &report).await;
            drop(permit);
            verdict
        };
        if let Some(verdict) = delivery.finish(verdict.clone()) {
            let _ = out.send(tag(reply_frame(&message_id, &verdict))).await;
        }
        ctx.emit(Event::Settled {
            message_id,
            verdict,
            latency: arrived.elapsed(),
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls() {
        let c: ChannelName = "stripe-payments".into();
        let u = |s: &str| stream_url(&s.parse().unwrap(), &c).unwrap().to_string();
        assert_eq!(
            u("http://127.0.0.1:8000"),
            "ws://127.0.0.1:8000/connect/stream/stripe-payments"
        );
        assert_eq!(
            u("https://hooks.example.com/relay/"),
            "wss://hooks.example.com/relay/connect/stream/stripe-payments"
        );
    }
}
