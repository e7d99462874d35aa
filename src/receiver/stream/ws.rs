//! `GET /connect/stream/{channel}`: the WebSocket transport.
//!
//! Owns one connection's life: the `connected` frame, streaming leased messages (at most
//! `max_in_flight` unacked), acks and nacks, heartbeats both ways, closing a connection silent
//! for three heartbeat intervals, and releasing its leases the moment it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::HeaderMap;
use tokio::sync::mpsc;

use super::{TokenQuery, attach, authenticate};
use crate::protocol::{ConnectorFrame, MessageId, PROTOCOL_VERSION, ServerFrame, error_code};
use crate::receiver::AppState;
use crate::receiver::api_error::ApiError;
use crate::receiver::channels::{Channel, Connection};
use crate::receiver::metrics::ChannelMetrics;
use crate::receiver::tls::PeerCertificate;
use crate::time::now_rfc3339;

/// Most frames written before one flush.
const MAX_BATCH: usize = 64;

/// Most acks recorded by one buffer call.
const MAX_ACK_BATCH: usize = 256;

/// Largest frame a connector may send (acks are tiny).
const MAX_CONNECTOR_FRAME: usize = 64 * 1024;

/// Upgrades to a WebSocket once the token and `max_connections` allow it.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    Query(query): Query<TokenQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: PeerCertificate,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Authenticate before looking at the upgrade, so a plain GET learns nothing either.
    let channel = authenticate(&state, &channel, &headers, &query, peer.ip(), &certificate)?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "websocket_required",
            "this endpoint needs a WebSocket upgrade",
        )
    })?;
    let connection = attach(&state, &channel, &headers, &query, "websocket", peer.ip())?;
    let tracker = state.streams.clone();
    Ok(upgrade
        .max_message_size(MAX_CONNECTOR_FRAME)
        .on_upgrade(move |socket| tracker.track_future(serve(state, channel, connection, socket)))
        .into_response())
}

async fn serve(
    state: Arc<AppState>,
    channel: Arc<Channel>,
    connection: Arc<Connection>,
    socket: WebSocket,
) {
    tracing::info!(channel = %channel.name(), connection = %connection.id, connector = %connection.connector_id, remote = %connection.remote_ip, "connector attached");
    let (control_tx, control_rx) = mpsc::channel::<ServerFrame>(64);
    let (sink, stream) = socket.split();
    let reason = tokio::select! {
        r = write_loop(&state, &channel, &connection, sink, control_rx) => r,
        r = read_loop(&state, &channel, &connection, stream, control_tx) => r,
    };
    let released = state
        .buffer
        .release(channel.name(), &connection.id)
        .await
        .unwrap_or(0);
    channel.detach(&connection.id);
    tracing::info!(channel = %channel.name(), connection = %connection.id, released, reason, "connector detached");
}

fn text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(
        serde_json::to_string(frame)
            .expect("frames always serialise")
            .into(),
    )
}

async fn write_loop(
    state: &AppState,
    channel: &Channel,
    connection: &Connection,
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut control: mpsc::Receiver<ServerFrame>,
) -> &'static str {
    let interval = channel.config.heartbeat_interval();
    let meters = state.metrics.channel(channel.name());
    let connected = ServerFrame::Connected {
        connection_id: connection.id.clone(),
        channel: channel.name().clone(),
        timestamp: now_rfc3339(),
        protocol_version: Some(PROTOCOL_VERSION),
        max_in_flight: Some(channel.config.max_in_flight),
        heartbeat_interval_seconds: Some(channel.config.heartbeat_interval_seconds),
    };
    if sink.send(text(&connected)).await.is_err() {
        return "send failed";
    }
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let closing = |code: &str, detail: &str| {
        text(&ServerFrame::Error {
            code: code.to_string(),
            detail: detail.to_string(),
        })
    };
    loop {
        tokio::select! {
            biased;
            _ = connection.close.cancelled() => {
                let (code, detail) = if state.shutdown.is_cancelled() {
                    (error_code::SHUTTING_DOWN, "the server is shutting down; reconnect")
                } else {
                    connection.close_reason()
                };
                let _ = sink.send(closing(code, detail)).await;
                let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: 1001, reason: code.into() }))).await;
                return code;
            }
            Some(frame) = control.recv() => {
                if sink.send(text(&frame)).await.is_err() { return "send failed"; }
            }
            _ = heartbeat.tick() => {
                let silent = chrono::Utc::now() - connection.last_heartbeat();
                if silent.to_std().unwrap_or_default() > interval * 3 {
                    let _ = sink.send(closing(error_code::HEARTBEAT_TIMEOUT, "nothing heard for three heartbeat intervals")).await;
                    return error_code::HEARTBEAT_TIMEOUT;
                }
                let now = now_rfc3339();
                let frame = ServerFrame::Heartbeat { timestamp: now.clone(), server_time: Some(now) };
                if sink.send(text(&frame)).await.is_err() { return "send failed"; }
            }
            next = state.buffer.next(channel.name(), &connection.id, channel.config.max_in_flight) => {
                match next {
                    Ok(message) => {
                        // Queue this frame and any others already waiting, then flush once:
                        // under load that is one write for many frames instead of one each.
                        let mut batch = vec![message];
                        if let Ok(more) = state.buffer.next_ready(channel.name(), &connection.id, channel.config.max_in_flight, MAX_BATCH - 1).await {
                            batch.extend(more);
                        }
                        for message in batch {
                            meters.handed_out(&message.id, message.received_at);
                            let frame = ServerFrame::Webhook(message.to_frame());
                            if sink.feed(text(&frame)).await.is_err() { return "send failed"; }
                            connection.messages_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        if sink.flush().await.is_err() { return "send failed"; }
                    }
                    Err(crate::buffer::BufferError::Closed) => {
                        // Shutting down: the close branch sends the goodbye.
                        connection.close.cancelled().await;
                    }
                    Err(e) => {
                        tracing::error!(channel = %channel.name(), error = %e, "cannot read from the buffer");
                        let _ = sink.send(closing(error_code::BUFFER_UNAVAILABLE, "the server cannot read its buffer; reconnect later")).await;
                        return error_code::BUFFER_UNAVAILABLE;
                    }
                }
            }
        }
    }
}

/// What one item read from the socket means.
enum Incoming {
    Frame(Result<ConnectorFrame, String>),
    /// Ping or pong: nothing to do.
    Nothing,
    /// The stream ended, for this reason.
    End(&'static str),
}

fn incoming(item: Option<Result<WsMessage, axum::Error>>) -> Incoming {
    let Some(Ok(msg)) = item else {
        return Incoming::End("connection lost");
    };
    Incoming::Frame(match msg {
        WsMessage::Text(t) => {
            serde_json::from_str::<ConnectorFrame>(t.as_str()).map_err(|e| e.to_string())
        }
        WsMessage::Binary(_) => {
            Err("binary frames are not part of the protocol; send JSON text frames".to_string())
        }
        WsMessage::Ping(_) | WsMessage::Pong(_) => return Incoming::Nothing,
        WsMessage::Close(_) => return Incoming::End("closed by connector"),
    })
}

async fn read_loop(
    state: &AppState,
    channel: &Channel,
    connection: &Connection,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    control: mpsc::Sender<ServerFrame>,
) -> &'static str {
    let meters = state.metrics.channel(channel.name());
    let mut last_error_frame = Instant::now() - Duration::from_secs(60);
    let mut suppressed = 0u64;
    // A frame read after a run of acks, handled once they are recorded.
    let mut held: Option<Incoming> = None;
    loop {
        let item = match held.take() {
            Some(item) => item,
            None => {
                let item = stream.next().await;
                // Over `max_messages_per_second`, frames are read more slowly: nothing is
                // lost, the connector's socket fills up instead.
                connection.until_message_allowed().await;
                connection.touch();
                incoming(item)
            }
        };
        let frame = match item {
            Incoming::End(reason) => {
                tracing::debug!(suppressed, "stream ended");
                return reason;
            }
            Incoming::Nothing => continue,
            Incoming::Frame(frame) => frame,
        };
        match frame {
            Ok(ConnectorFrame::Ack { message_id }) => {
                // Acks that arrived together (already read from the socket, nothing waited
                // for) are recorded in one buffer call: with Redis one round trip for all.
                let mut ids = vec![message_id];
                while ids.len() < MAX_ACK_BATCH {
                    let Some(item) = stream.next().now_or_never() else {
                        break;
                    };
                    connection.until_message_allowed().await;
                    connection.touch();
                    match incoming(item) {
                        Incoming::Frame(Ok(ConnectorFrame::Ack { message_id })) => {
                            ids.push(message_id);
                        }
                        Incoming::Nothing => {}
                        other => {
                            held = Some(other);
                            break;
                        }
                    }
                }
                record_acks(state, channel, connection, &meters, ids).await;
            }
            Ok(ConnectorFrame::Nack {
                message_id,
                retry,
                reason,
            }) => {
                match state
                    .buffer
                    .nack(
                        channel.name(),
                        &connection.id,
                        &message_id,
                        retry,
                        reason.clone(),
                    )
                    .await
                {
                    Ok(Some(outcome)) => {
                        connection.messages_nacked.fetch_add(1, Ordering::Relaxed);
                        meters.settled(&message_id);
                        tracing::info!(channel = %channel.name(), %message_id, connection = %connection.id, outcome = super::outcome_name(outcome), retry, reason = reason.as_deref().unwrap_or(""), "delivery nacked");
                    }
                    Ok(None) => {
                        tracing::debug!(channel = %channel.name(), %message_id, "nack for a message not in flight here, ignored")
                    }
                    Err(e) => {
                        tracing::error!(channel = %channel.name(), %message_id, error = %e, "cannot record nack")
                    }
                }
            }
            Ok(ConnectorFrame::Heartbeat { .. }) => {}
            Err(problem) => {
                // Answer bad frames, but at most a few per second, and keep reading.
                if last_error_frame.elapsed() >= Duration::from_millis(100) {
                    last_error_frame = Instant::now();
                    let detail = format!("frame ignored: {problem}");
                    let _ = control.try_send(ServerFrame::Error {
                        code: error_code::INVALID_FRAME.into(),
                        detail,
                    });
                } else {
                    suppressed += 1;
                }
            }
        }
    }
}

/// Records acks in one buffer call; each is counted and logged once the buffer applied it.
async fn record_acks(
    state: &AppState,
    channel: &Channel,
    connection: &Connection,
    meters: &ChannelMetrics,
    ids: Vec<MessageId>,
) {
    match state
        .buffer
        .ack_many(channel.name(), &connection.id, &ids)
        .await
    {
        Ok(acked) => {
            for (message_id, acked) in ids.iter().zip(acked) {
                if acked {
                    connection.messages_acked.fetch_add(1, Ordering::Relaxed);
                    meters.acked(message_id);
                    tracing::info!(channel = %channel.name(), %message_id, connection = %connection.id, outcome = "ack", "delivery acked");
                } else {
                    tracing::debug!(channel = %channel.name(), %message_id, "ack for a message not in flight here, ignored")
                }
            }
        }
        Err(e) => {
            for message_id in &ids {
                tracing::error!(channel = %channel.name(), %message_id, error = %e, "cannot record ack");
            }
        }
    }
}
