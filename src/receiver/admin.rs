//! The admin API under `/admin/webhook-connect`: channels, their stats, queued and in-flight
//! messages, dead letters (list, detail, replay, purge), token rotation, connections
//! (disconnect) and overview.
//!
//! Owns admin authentication (bearer `WEBHOOK_CONNECT_ADMIN_TOKEN`, constant time; 403 when no
//! admin token is configured) and the original's response shapes. It does not store anything
//! itself: every count and message comes from the buffer, which all instances share.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api_error::ApiError;
use super::channels::Channel;
use crate::buffer::{BufferError, BufferStats, DeadLetter, DeadSelection};
use crate::message::MessageMeta;
use crate::protocol::{ConnectionId, MessageId};
use crate::time::{now_rfc3339, rfc3339};

/// The admin routes (nested under `/admin/webhook-connect`).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/channels", get(list_channels))
        .route("/channels/{channel}", get(channel_detail))
        .route("/channels/{channel}/stats", get(channel_stats))
        .route(
            "/channels/{channel}/dead-letters",
            get(dead_letters).delete(purge_dead_letters),
        )
        .route(
            "/channels/{channel}/dead-letters/replay",
            post(replay_dead_letters),
        )
        .route("/channels/{channel}/dead-letters/{id}", get(dead_letter))
        .route("/channels/{channel}/messages", get(messages))
        .route("/channels/{channel}/rotate-token", post(rotate_token))
        .route(
            "/channels/{channel}/connections/{connection}",
            delete(disconnect),
        )
        .route("/overview", get(overview))
}

/// Logs a buffer failure and answers 503 without its cause.
fn buffer_error(channel: &Channel, what: &'static str, e: BufferError) -> ApiError {
    tracing::error!(channel = %channel.name(), error = %e, "{what}");
    ApiError::unavailable("buffer_unavailable", "the buffer cannot be read", 5)
}

pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
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
        .webhooks()
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
                "webhook_id": webhook_ids(&state, &c).first(),
                "webhook_ids": webhook_ids(&state, &c),
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
    let messages: Vec<Value> = dead.iter().map(dead_json).collect();
    Ok(Json(
        json!({"channel": c.name(), "count": messages.len(), "total": total, "messages": messages}),
    ))
}

fn dead_json(d: &DeadLetter) -> Value {
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
}

async fn dead_letter(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let dead = state
        .buffer
        .dead_letter(c.name(), &MessageId::from(id.as_str()))
        .await
        .map_err(|e| buffer_error(&c, "cannot read a dead letter", e))?
        .ok_or_else(|| ApiError::not_found("no such dead letter in this channel"))?;
    let mut v = dead_json(&dead);
    v["source_ip"] = json!(dead.message.source_ip.map(|ip| ip.to_string()));
    v["body_b64"] = json!(base64::engine::general_purpose::STANDARD.encode(&dead.message.body));
    v["body_len"] = json!(dead.message.body.len());
    Ok(Json(v))
}

/// The body of replay and purge: exactly one of `ids`, `all: true` or a `since`/`until` range.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectionBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    since: Option<DateTime<Utc>>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

fn invalid_selection(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_selection",
        detail,
    )
}

fn selection(
    body: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
    ranges: bool,
) -> Result<DeadSelection, ApiError> {
    let expected = if ranges {
        r#"send {"ids":[…]}, {"all":true} or {"since":"<RFC 3339>","until":"<RFC 3339>"}"#
    } else {
        r#"send {"ids":[…]} or {"all":true}"#
    };
    let Json(body) =
        body.map_err(|e| invalid_selection(&format!("{}; {expected}", e.body_text())))?;
    let range = body.since.is_some() || body.until.is_some();
    let chosen = usize::from(body.ids.is_some()) + usize::from(body.all) + usize::from(range);
    if chosen != 1 || (range && !ranges) {
        return Err(invalid_selection(expected));
    }
    if let Some(ids) = body.ids {
        if ids.is_empty() {
            return Err(invalid_selection(
                "`ids` is empty; name at least one message id",
            ));
        }
        return Ok(DeadSelection::Ids(
            ids.iter().map(|i| MessageId::from(i.as_str())).collect(),
        ));
    }
    if body.all {
        return Ok(DeadSelection::All);
    }
    if let (Some(since), Some(until)) = (body.since, body.until)
        && since >= until
    {
        return Err(invalid_selection("`since` must be before `until`"));
    }
    Ok(DeadSelection::Between {
        since: body.since,
        until: body.until,
    })
}

async fn replay_dead_letters(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let selection = selection(body, true)?;
    let ids = state
        .buffer
        .replay_dead(c.name(), &selection)
        .await
        .map_err(|e| buffer_error(&c, "cannot replay dead letters", e))?;
    tracing::info!(channel = %c.name(), count = ids.len(), "dead letters replayed");
    Ok(Json(json!({
        "channel": c.name(),
        "replayed": ids.len(),
        "message_ids": ids,
    })))
}

async fn purge_dead_letters(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let selection = selection(body, false)?;
    let ids = state
        .buffer
        .purge_dead(c.name(), &selection)
        .await
        .map_err(|e| buffer_error(&c, "cannot purge dead letters", e))?;
    tracing::info!(channel = %c.name(), count = ids.len(), "dead letters purged");
    Ok(Json(json!({
        "channel": c.name(),
        "purged": ids.len(),
        "message_ids": ids,
    })))
}

#[derive(Debug, Deserialize)]
struct MessagesQuery {
    #[serde(default = "default_state")]
    state: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_state() -> String {
    "queued".into()
}

fn meta_json(m: &MessageMeta, now: DateTime<Utc>) -> Value {
    json!({
        "message_id": m.id,
        "webhook_id": m.webhook_id,
        "sequence": m.sequence,
        "timestamp": rfc3339(m.received_at),
        "age_seconds": (now - m.received_at).num_seconds().max(0),
        "delivery_count": m.delivery_count,
        "expires_at": rfc3339(m.expires_at),
        "body_len": m.body_len,
    })
}

async fn messages(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<MessagesQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let limit = query.limit.clamp(1, 1000);
    let now = Utc::now();
    let messages: Vec<Value> = match query.state.as_str() {
        "queued" => state
            .buffer
            .queued(c.name(), limit)
            .await
            .map_err(|e| buffer_error(&c, "cannot list queued messages", e))?
            .iter()
            .map(|m| {
                let mut v = meta_json(m, now);
                v["state"] = json!("queued");
                v
            })
            .collect(),
        "in_flight" => state
            .buffer
            .in_flight(c.name(), limit)
            .await
            .map_err(|e| buffer_error(&c, "cannot list messages in flight", e))?
            .iter()
            .map(|l| {
                let mut v = meta_json(&l.meta, now);
                v["state"] = json!("in_flight");
                v["connection_id"] = json!(l.connection);
                v
            })
            .collect(),
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                format!("unknown state `{other}`; use `queued` or `in_flight`"),
            ));
        }
    };
    Ok(Json(json!({
        "channel": c.name(),
        "state": query.state,
        "count": messages.len(),
        "messages": messages,
    })))
}

async fn disconnect(
    State(state): State<Arc<AppState>>,
    Path((name, connection)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let id = ConnectionId(connection);
    let Some(conn) = c.connection(&id) else {
        if state
            .channels
            .iter()
            .any(|other| other.connection(&id).is_some())
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "wrong_channel",
                "Connection not on this channel",
            ));
        }
        return Err(ApiError::not_found("connection not found"));
    };
    // The stream's task sees the token, sends an `error` frame, closes the socket and
    // releases the connection's leases.
    conn.close_because(super::channels::CloseCause::Admin);
    tracing::info!(channel = %c.name(), connection = %id, "connection closed by an administrator");
    Ok(Json(json!({"status": "disconnected", "connection_id": id})))
}

/// Longest grace period a rotation accepts: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default = "default_grace")]
    grace_period_seconds: u64,
}

fn default_grace() -> u64 {
    3600
}

/// `POST /channels/{ch}/rotate-token` (also `/admin/channels/{ch}/rotate-token`): a new token,
/// shown once; the old one stays valid for `grace_period_seconds` (default 3600, 0 = refused
/// at once). An empty body takes the default.
pub async fn rotate_token(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let c = channel(&state, &name)?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody {
            grace_period_seconds: default_grace(),
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    r#"{e}; send {{"grace_period_seconds": N}} with N from 0 to {MAX_GRACE_SECONDS}"#
                ),
            )
        })?
    };
    if body.grace_period_seconds > MAX_GRACE_SECONDS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_grace_period",
            format!("`grace_period_seconds` must be at most {MAX_GRACE_SECONDS} (30 days)"),
        ));
    }
    let grace = std::time::Duration::from_secs(body.grace_period_seconds);
    let rotated = super::tokens::rotate(&state, &c, grace)
        .await
        .map_err(|e| {
            tracing::error!(channel = %c.name(), error = %e, "cannot store a token rotation");
            ApiError::unavailable(
                "buffer_unavailable",
                "the rotation cannot be stored; the old token stays in force",
                5,
            )
        })?;
    let expires = rfc3339(rotated.old_token_expires_at);
    Ok(Json(json!({
        "channel": c.name(),
        "new_token": rotated.new_token.expose(),
        "old_token_expires_at": expires,
        "message": format!(
            "Token rotated. The old token is valid until {expires}; update your connectors with the new token, it is shown only once."
        ),
    })))
}

async fn overview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let buffer = state.buffer.healthy().await;
    let connections: usize = state.channels.iter().map(|c| c.connection_count()).sum();
    let mut channels = serde_json::Map::new();
    for c in state.channels.iter() {
        let mut entry = json!({
            "webhook_id": webhook_ids(&state, &c).first(),
            "connected_clients": c.connection_count(),
            "max_connections": c.config.max_connections,
            "ttl_seconds": c.config.ttl_seconds,
        });
        if let Ok(stats) = state.buffer.stats(c.name()).await {
            entry["stats"] = serde_json::to_value(stats).expect("stats serialise");
        }
        channels.insert(c.name().to_string(), entry);
    }
    Ok(Json(json!({
        "timestamp": now_rfc3339(),
        "health": {
            "buffer": buffer,
            "buffer_backend": state.buffer.backend(),
            "channels_count": state.channels.len(),
            "connections_count": connections,
        },
        "total_channels": state.channels.len(),
        "total_connections": connections,
        "channels": channels,
    })))
}
