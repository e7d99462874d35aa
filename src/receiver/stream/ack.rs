//! `POST /connect/ack` and `GET /connect/status/{channel}`: the HTTP side of SSE and long-poll.
//!
//! Owns acks and nacks sent over HTTP (query parameters as the original, or a JSON body),
//! authenticated with the channel token and matched to the connection that holds the lease, and
//! the channel status a connector may read with its token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{TokenQuery, authenticate, presented_token};
use crate::protocol::{ConnectionId, MessageId};
use crate::receiver::AppState;
use crate::receiver::api_error::ApiError;
use crate::receiver::channels::Channel;
use crate::receiver::tls::PeerCertificate;
use crate::time::now_rfc3339;

/// An ack or nack, from the query string or a JSON body (the body wins field by field).
#[derive(Debug, Default, Deserialize)]
pub struct AckParams {
    /// The message.
    #[serde(default)]
    pub message_id: Option<String>,
    /// `ack` (default); anything else is a nack.
    #[serde(default)]
    pub status: Option<String>,
    /// For a nack: deliver again later (default) or dead-letter now.
    #[serde(default)]
    pub retry: Option<Value>,
    /// For a nack: why.
    #[serde(default)]
    pub reason: Option<String>,
    /// The connection holding the lease, when `X-Connection-ID` is not sent.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// Only used with the `?token=` fallback.
    #[serde(default)]
    pub token: Option<String>,
    /// The channel, optional: the token identifies it.
    #[serde(default)]
    pub channel: Option<String>,
}

fn unprocessable(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_parameter",
        detail,
    )
}

fn parse_retry(v: Option<&Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(unprocessable("`retry` must be true or false")),
        },
        Some(_) => Err(unprocessable("`retry` must be true or false")),
    }
}

/// Records an ack or nack for a message leased to `X-Connection-ID`.
pub async fn ack(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AckParams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: PeerCertificate,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut p = query;
    if !body.is_empty() {
        if body.len() > 64 * 1024 {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "an ack body is at most 64 KiB",
            ));
        }
        let b: AckParams = serde_json::from_slice(&body)
            .map_err(|e| unprocessable(format!("the body is not an ack object: {e}")))?;
        p.message_id = b.message_id.or(p.message_id);
        p.status = b.status.or(p.status);
        p.retry = b.retry.or(p.retry);
        p.reason = b.reason.or(p.reason);
        p.connection_id = b.connection_id.or(p.connection_id);
        p.channel = b.channel.or(p.channel);
    }
    let message_id = p
        .message_id
        .filter(|m| !m.is_empty())
        .ok_or_else(|| unprocessable("`message_id` is required"))?;
    let connection_id = headers
        .get("x-connection-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(p.connection_id)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| unprocessable("`X-Connection-ID` is required"))?;
    let retry = parse_retry(p.retry.as_ref())?;
    let is_ack = p.status.as_deref().is_none_or(|s| s == "ack");
    let token_query = TokenQuery { token: p.token };
    let token = presented_token(&headers, &token_query)
        .ok_or_else(|| ApiError::unauthorized("missing channel token"))?;
    let channel = channel_for(&state, p.channel.as_deref(), token).ok_or_else(|| {
        tracing::warn!(remote_ip = %peer.ip(), "ack refused: invalid channel token");
        ApiError::unauthorized("invalid channel token")
    })?;
    super::check_address(&channel, peer.ip())?;
    super::check_certificate(&channel, &certificate, peer.ip())?;
    let connection_id = ConnectionId(connection_id);
    let message_id = MessageId(message_id);
    if let Some(c) = channel.connection(&connection_id) {
        c.take_message().map_err(|wait| {
            super::rate_limited(
                format!(
                    "connection `{connection_id}` sends more than {} messages a second (max_messages_per_second)",
                    channel.config.max_messages_per_second.unwrap_or_default()
                ),
                wait,
            )
        })?;
        c.touch();
    }
    let not_in_flight = || ApiError::not_found("message not in flight on this connection");
    let storage = |e: crate::buffer::BufferError| {
        tracing::error!(channel = %channel.name(), error = %e, "cannot record an acknowledgment");
        ApiError::unavailable(
            "buffer_unavailable",
            "the acknowledgment could not be recorded; send it again",
            1,
        )
    };
    if is_ack {
        let acked = state
            .buffer
            .ack(channel.name(), &connection_id, &message_id)
            .await
            .map_err(storage)?;
        if !acked {
            return Err(not_in_flight());
        }
        if let Some(c) = channel.connection(&connection_id) {
            c.messages_acked.fetch_add(1, Ordering::Relaxed);
        }
        state.metrics.channel(channel.name()).acked(&message_id);
        tracing::info!(channel = %channel.name(), %message_id, connection = %connection_id, outcome = "ack", "delivery acked");
    } else {
        let outcome = state
            .buffer
            .nack(
                channel.name(),
                &connection_id,
                &message_id,
                retry,
                p.reason.clone(),
            )
            .await
            .map_err(storage)?
            .ok_or_else(not_in_flight)?;
        if let Some(c) = channel.connection(&connection_id) {
            c.messages_nacked.fetch_add(1, Ordering::Relaxed);
        }
        state.metrics.channel(channel.name()).settled(&message_id);
        tracing::info!(channel = %channel.name(), %message_id, connection = %connection_id, outcome = super::outcome_name(outcome), retry, reason = p.reason.as_deref().unwrap_or(""), "delivery nacked");
    }
    Ok(Json(json!({"status": "ok", "message_id": message_id})))
}

/// The channel `token` opens: the named one, or the one whose token it is.
fn channel_for(state: &AppState, name: Option<&str>, token: &str) -> Option<Arc<Channel>> {
    match name {
        Some(name) => state.channels.authenticate(name, token),
        None => state
            .channels
            .iter()
            .find_map(|c| state.channels.authenticate(c.name().as_str(), token)),
    }
}

/// `{"channel","connected":true,"stats":ChannelStats,"server_time"}` for a token holder.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    Query(query): Query<TokenQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: PeerCertificate,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let channel = authenticate(&state, &channel, &headers, &query, peer.ip(), &certificate)?;
    let stats = state.buffer.stats(channel.name()).await.map_err(|e| {
        tracing::error!(channel = %channel.name(), error = %e, "cannot read channel stats");
        ApiError::unavailable("buffer_unavailable", "the buffer cannot be read", 5)
    })?;
    let mut stats = serde_json::to_value(stats).expect("stats serialise");
    stats["channel"] = json!(channel.name());
    stats["connected_clients"] = json!(channel.connection_count());
    Ok(Json(json!({
        "channel": channel.name(),
        "connected": true,
        "stats": stats,
        "server_time": now_rfc3339(),
    })))
}
