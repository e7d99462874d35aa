//! The receiver's monitoring endpoints: `GET /health` (liveness), `GET /ready` (readiness),
//! `GET /metrics` (Prometheus) and `GET /stats` (requests per webhook).
//!
//! `/health`, `/ready` and `/metrics` need no token, as the docs show them probed and scraped;
//! `/stats` needs `STATS_AUTH_TOKEN` when set, else the admin token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::AppState;
use super::api_error::ApiError;
use super::metrics::ChannelSnapshot;

/// `GET /health`: 200 while the process serves requests, with the docs' shape
/// `{"status","buffer","channels"}` saying whether the buffer answers.
pub async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let buffer_ok = state.buffer.healthy().await;
    Json(json!({
        "status": if buffer_ok { "healthy" } else { "unhealthy" },
        "buffer": if buffer_ok { "connected" } else { "unavailable" },
        "channels": state.channels.len(),
    }))
}

/// `GET /ready`: 200 when the configuration is loaded, the buffer answers and the receiver is
/// not shutting down; 503 otherwise, so a load balancer sends webhooks elsewhere.
pub async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let buffer_ok = state.buffer.healthy().await;
    let stopping = state.shutdown.is_cancelled();
    let ready = buffer_ok && !stopping;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "buffer": if buffer_ok { "connected" } else { "unavailable" },
            "config": "loaded",
            "shutting_down": stopping,
            "channels": state.channels.len(),
            "webhooks": state.webhooks.webhooks.len(),
        })),
    )
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut snapshots = Vec::new();
    for name in &state.buffer_channels {
        match state.buffer.stats(name).await {
            Ok(stats) => snapshots.push(ChannelSnapshot {
                channel: name.clone(),
                stats,
                connections: state
                    .channels
                    .get(name.as_str())
                    .map(|c| u64::try_from(c.connection_count()).unwrap_or(u64::MAX)),
            }),
            Err(e) => {
                tracing::warn!(channel = %name, error = %e, "cannot read channel stats for /metrics");
            }
        }
    }
    let body = state.metrics.encode(snapshots);
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /stats`: requests per webhook over the last minute, hour and day.
pub async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(state.usage.snapshot()).into_response())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(stats_token) = &state.stats_token else {
        return super::admin::authorize(state, headers);
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing authorization header"))?;
    let token = presented
        .strip_prefix("Bearer ")
        .unwrap_or(presented)
        .trim();
    let admin_ok = state.admin_token.as_ref().is_some_and(|t| t.matches(token));
    if stats_token.matches(token) || admin_ok {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid stats token"))
    }
}
