//! The admin API under `/admin/webhook-connect`: channels, their stats and dead letters.
//!
//! Owns admin authentication (bearer `WEBHOOK_CONNECT_ADMIN_TOKEN`, constant time; 403 when no
//! admin token is configured) and the original's response shapes.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api_error::ApiError;
use super::channels::Channel;
use crate::buffer::BufferStats;
use crate::time::{now_rfc3339, rfc3339};

/// The admin routes (nested under `/admin/webhook-connect`).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/channels", get(list_channels))
        .route("/channels/{channel}", get(channel_detail))
        .route("/channels/{channel}/stats", get(channel_stats))
        .route("/channels/{channel}/dead-letters", get(dead_letters))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "Admin API disabled. Set WEBHOOK_CONNECT_ADMIN_TOKEN environment variable.",
        ));
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing authorization header"))?;
    let token = presented
        .strip_prefix("Bearer ")
        .unwrap_or(presented)
        .trim();
    if expected.matches(token) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid admin token"))
    }
}

fn channel(state: &AppState, name: &str) -> Result<Arc<Channel>, ApiError> {
    state
        .channels
        .get(name)
        .ok_or_else(|| ApiError::not_found("channel not found"))
}

async fn stats_json(state: &AppState, channel: &Channel) -> Result<Value, ApiError> {
    let stats: BufferStats = state.buffer.stats(channel.name()).await.map_err(|e| {
        tracing::error!(channel = %channel.name(), error = %e, "cannot read channel stats");
        ApiError::unavailable("buffer_unavailable", "the buffer cannot be read", 5)
    })?;
    let mut v = serde_json::to_value(stats).expect("stats serialise");
    v["channel"] = json!(channel.name());
    v["connected_clients"] = json!(channel.connection_count());
    Ok(v)
}

fn webhook_ids(state: &AppState, channel: &Channel) -> Vec<String> {
    state
        .webhooks
        .webhooks
        .values()
        .filter(|w| w.route.channel() == channel.name())
        .map(|w| w.id.to_string())
        .collect()
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let buffer = state.buffer.healthy().await;
    let connections: usize = state.channels.iter().map(|c| c.connection_count()).sum();
    Json(json!({
        "status": if buffer { "healthy" } else { "unhealthy" },
        "buffer": buffer,
        "channels_count": state.channels.len(),
        "connections_count": connections,
        "timestamp": now_rfc3339(),
    }))
}

async fn list_channels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let list: Vec<Value> = state
        .channels
        .iter()
        .map(|c| {
            json!({
                "name": c.name(),
                "webhook_id": webhook_ids(&state, c).first(),
                "webhook_ids": webhook_ids(&state, c),
                "created_at": rfc3339(c.created_at()),
                "ttl_seconds": c.config.ttl_seconds,
                "max_queue_size": c.config.max_queue_size,
                "max_connections": c.config.max_connections,
                "connected_clients": c.connection_count(),
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

async fn channel_detail(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let cfg = &c.config;
    Ok(Json(json!({
        "name": c.name(),
        "webhook_id": webhook_ids(&state, &c).first(),
        "created_at": rfc3339(c.created_at()),
        "config": {
            "name": c.name(),
            "webhook_ids": webhook_ids(&state, &c),
            "ttl_seconds": cfg.ttl_seconds,
            "max_queue_size": cfg.max_queue_size,
            "max_in_flight": cfg.max_in_flight,
            "ack_timeout_seconds": cfg.ack_timeout_seconds,
            "max_connections": cfg.max_connections,
            "heartbeat_interval_seconds": cfg.heartbeat_interval_seconds,
            "max_delivery_attempts": cfg.max_delivery_attempts,
        },
        "stats": stats_json(&state, &c).await?,
        "connected_clients": c.connection_views(),
    })))
}

async fn channel_stats(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    Ok(Json(stats_json(&state, &c).await?))
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    100
}

async fn dead_letters(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let limit = page.limit.clamp(1, 1000);
    let dead = state
        .buffer
        .dead_letters(c.name(), limit, page.offset)
        .await
        .map_err(|e| {
            tracing::error!(channel = %c.name(), error = %e, "cannot read dead letters");
            ApiError::unavailable("buffer_unavailable", "the buffer cannot be read", 5)
        })?;
    let total = state
        .buffer
        .stats(c.name())
        .await
        .map(|s| s.messages_dead_lettered)
        .unwrap_or(0);
    let messages: Vec<Value> = dead
        .iter()
        .map(|d| {
            let m = &d.message;
            json!({
                "message_id": m.id,
                "channel": m.channel,
                "webhook_id": m.webhook_id,
                "sequence": m.sequence,
                "timestamp": rfc3339(m.received_at),
                "expires_at": rfc3339(m.expires_at),
                "delivery_count": m.delivery_count,
                "state": "dead_lettered",
                "reason": d.reason.as_str(),
                "error": d.error,
                "dead_lettered_at": rfc3339(d.dead_lettered_at),
                "headers": m.headers,
                "payload": m.payload(),
            })
        })
        .collect();
    Ok(Json(
        json!({"channel": c.name(), "count": messages.len(), "total": total, "messages": messages}),
    ))
}
