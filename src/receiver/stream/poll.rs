//! `GET /connect/stream/{channel}/poll`: the long-poll transport.
//!
//! Owns one poll: checking `timeout` (1–60 s) and `max_messages` (1–100), waiting until at least
//! one message is ready (200) or the timeout passes (204), and leasing what it hands out to the
//! poll's connection id. The leases outlive the response: they end with an ack or nack through
//! `POST /connect/ack`, or when `ack_timeout` passes and the buffer redelivers them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{TokenQuery, attach, authenticate};
use crate::protocol::ServerFrame;
use crate::receiver::AppState;
use crate::receiver::api_error::ApiError;
use crate::receiver::channels::Channel;
use crate::receiver::tls::PeerCertificate;
use crate::time::now_rfc3339;

/// The query of a poll; numbers are checked by hand so bad ones get a 422 with a stable code.
#[derive(Debug, Default, Deserialize)]
pub struct PollQuery {
    /// Seconds to wait for a first message (default 30).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Most messages in one answer (default 10).
    #[serde(default)]
    pub max_messages: Option<String>,
    /// `?token=` fallback.
    #[serde(default)]
    pub token: Option<String>,
}

fn bounded(name: &str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(raw) = value else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            format!("`{name}` must be a whole number from 1 to {max}"),
        )),
    }
}

/// Forgets the poll's connection record however the request ends (answered or dropped); its
/// leases stay with the buffer until acked, nacked or timed out.
struct Detach<'a>(&'a Channel, crate::protocol::ConnectionId);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.detach(&self.1);
    }
}

/// Answers with the messages ready within `timeout`, or 204.
pub async fn poll(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    Query(query): Query<PollQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: PeerCertificate,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = TokenQuery {
        token: query.token.clone(),
    };
    let channel = authenticate(&state, &channel, &headers, &token, peer.ip(), &certificate)?;
    let timeout = bounded("timeout", query.timeout.as_deref(), 30, 60)?;
    let max_messages = bounded("max_messages", query.max_messages.as_deref(), 10, 100)?;
    let connection = attach(&state, &channel, &headers, &token, "long_poll", peer.ip())?;
    let _detach = Detach(&channel, connection.id.clone());
    // One poll holds at most `max_in_flight` leases, like any other connection.
    let limit = (max_messages as u32)
        .min(channel.config.max_in_flight)
        .max(1);
    let name = channel.name();

    let first = tokio::select! {
        biased;
        _ = connection.close.cancelled() => None,
        _ = tokio::time::sleep(Duration::from_secs(timeout)) => None,
        next = state.buffer.next(name, &connection.id, limit) => match next {
            Ok(message) => Some(message),
            Err(crate::buffer::BufferError::Closed) => None,
            Err(e) => {
                tracing::error!(channel = %name, error = %e, "cannot read from the buffer");
                return Err(ApiError::unavailable("buffer_unavailable", "the server cannot read its buffer; poll again later", 5));
            }
        },
    };
    let Some(first) = first else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut messages = vec![first];
    match state
        .buffer
        .next_ready(name, &connection.id, limit, limit as usize - 1)
        .await
    {
        Ok(more) => messages.extend(more),
        Err(e) => tracing::debug!(channel = %name, error = %e, "answering with one message"),
    }
    connection
        .messages_sent
        .fetch_add(messages.len() as u64, Ordering::Relaxed);
    let meters = state.metrics.channel(name);
    for m in &messages {
        meters.handed_out(&m.id, m.received_at);
    }
    let frames: Vec<ServerFrame> = messages
        .iter()
        .map(|m| ServerFrame::Webhook(m.to_frame()))
        .collect();
    tracing::debug!(channel = %name, connection = %connection.id, count = frames.len(), "poll answered");
    Ok(Json(serde_json::json!({
        "messages": frames,
        "connection_id": connection.id,
        "channel": name,
        "timestamp": now_rfc3339(),
    }))
    .into_response())
}
