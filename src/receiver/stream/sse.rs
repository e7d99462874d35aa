//! `GET /connect/stream/{channel}/sse`: the Server-Sent Events transport.
//!
//! Owns one SSE connection's life: the `connected` event, streaming leased messages as `webhook`
//! events (`id:` = message id, at most `max_in_flight` unacked), heartbeats, an `error` event
//! before the server ends the stream on purpose, and releasing its leases the moment the stream
//! ends (client gone, admin disconnect, shutdown). Acks arrive through `POST /connect/ack`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use tokio::sync::mpsc;

use super::{TokenQuery, attach, authenticate};
use crate::protocol::{PROTOCOL_VERSION, ServerFrame, error_code};
use crate::receiver::AppState;
use crate::receiver::api_error::ApiError;
use crate::receiver::channels::{Channel, Connection};
use crate::receiver::tls::PeerCertificate;
use crate::time::now_rfc3339;

/// Events queued between the producer and the HTTP body; small, so a slow reader pushes back.
const QUEUED_EVENTS: usize = 16;

/// Starts an SSE stream once the token and `max_connections` allow it.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    Query(query): Query<TokenQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: PeerCertificate,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let channel = authenticate(&state, &channel, &headers, &query, peer.ip(), &certificate)?;
    let connection = attach(&state, &channel, &headers, &query, "sse", peer.ip())?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(QUEUED_EVENTS);
    state
        .streams
        .spawn(serve(state.clone(), channel, connection, tx));
    let mut response = Sse::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    }))
    .into_response();
    let h = response.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    Ok(response)
}

/// The event for a frame: `event:` is the frame's type, `data:` its JSON.
pub fn event(frame: &ServerFrame) -> Event {
    let name = match frame {
        ServerFrame::Connected { .. } => "connected",
        ServerFrame::Webhook(_) => "webhook",
        ServerFrame::Heartbeat { .. } => "heartbeat",
        ServerFrame::Error { .. } => "error",
    };
    let data = serde_json::to_string(frame).expect("frames always serialise");
    let event = Event::default().event(name);
    let event = match frame {
        ServerFrame::Webhook(w) => event.id(w.message_id.as_str()),
        _ => event,
    };
    event.data(data)
}

async fn serve(
    state: Arc<AppState>,
    channel: Arc<Channel>,
    connection: Arc<Connection>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    tracing::info!(channel = %channel.name(), connection = %connection.id, connector = %connection.connector_id, remote = %connection.remote_ip, "connector attached (sse)");
    let reason = produce(&state, &channel, &connection, &tx).await;
    let released = state
        .buffer
        .release(channel.name(), &connection.id)
        .await
        .unwrap_or(0);
    channel.detach(&connection.id);
    tracing::info!(channel = %channel.name(), connection = %connection.id, released, reason, "connector detached (sse)");
}

async fn produce(
    state: &AppState,
    channel: &Channel,
    connection: &Connection,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) -> &'static str {
    let send = |frame: ServerFrame| async move { tx.send(Ok(event(&frame))).await.is_ok() };
    let connected = ServerFrame::Connected {
        connection_id: connection.id.clone(),
        channel: channel.name().clone(),
        timestamp: now_rfc3339(),
        protocol_version: Some(PROTOCOL_VERSION),
        max_in_flight: Some(channel.config.max_in_flight),
        heartbeat_interval_seconds: Some(channel.config.heartbeat_interval_seconds),
    };
    if !send(connected).await {
        return "connection lost";
    }
    let interval = channel.config.heartbeat_interval();
    let meters = state.metrics.channel(channel.name());
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let goodbye = |code: &str, detail: &str| ServerFrame::Error {
        code: code.to_string(),
        detail: detail.to_string(),
    };
    loop {
        // Only wait for a message while there is room for its event: a slow reader holds no
        // lease it cannot take yet.
        let permit = tokio::select! {
            biased;
            _ = tx.closed() => return "connection lost",
            _ = connection.close.cancelled() => return close(state, connection, tx, &goodbye).await,
            p = tx.reserve() => match p { Ok(p) => p, Err(_) => return "connection lost" },
        };
        tokio::select! {
            biased;
            _ = tx.closed() => return "connection lost",
            _ = connection.close.cancelled() => {
                drop(permit);
                return close(state, connection, tx, &goodbye).await;
            }
            _ = heartbeat.tick() => {
                let now = now_rfc3339();
                permit.send(Ok(event(&ServerFrame::Heartbeat { timestamp: now.clone(), server_time: Some(now) })));
            }
            next = state.buffer.next(channel.name(), &connection.id, channel.config.max_in_flight) => match next {
                Ok(message) => {
                    meters.handed_out(&message.id, message.received_at);
                    permit.send(Ok(event(&ServerFrame::Webhook(message.to_frame()))));
                    connection.messages_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(crate::buffer::BufferError::Closed) => {
                    drop(permit);
                    connection.close.cancelled().await;
                    return close(state, connection, tx, &goodbye).await;
                }
                Err(e) => {
                    tracing::error!(channel = %channel.name(), error = %e, "cannot read from the buffer");
                    permit.send(Ok(event(&goodbye(error_code::BUFFER_UNAVAILABLE, "the server cannot read its buffer; reconnect later"))));
                    return error_code::BUFFER_UNAVAILABLE;
                }
            }
        }
    }
}

async fn close(
    state: &AppState,
    connection: &Connection,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
    goodbye: &impl Fn(&str, &str) -> ServerFrame,
) -> &'static str {
    let (code, detail) = if state.shutdown.is_cancelled() {
        (
            error_code::SHUTTING_DOWN,
            "the server is shutting down; reconnect",
        )
    } else {
        connection.close_reason()
    };
    let _ = tx.try_send(Ok(event(&goodbye(code, detail))));
    code
}
