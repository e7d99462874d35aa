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
            "webhooks": state.webhooks().webhooks.len(),
        })),
    )
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut snapshots = Vec::new();
    for name in &state.buffer_channels() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{Buffer, ChannelSettings, Embedded};
    use crate::config::WebhooksConfig;
    use crate::receiver::channels::Channels;
    use crate::receiver::metrics::Metrics;
    use crate::receiver::usage::Usage;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    async fn state(dir: &std::path::Path) -> Arc<AppState> {
        let webhooks = WebhooksConfig::from_json(
            "t.json",
            json!({"w": {"module": "webhook_connect",
                "module-config": {"channel": "c", "channel_token": "ch_tok_0123456789abcdef"}}}),
        )
        .unwrap();
        let buffer: Arc<dyn Buffer> = Arc::new(Embedded::open(dir).unwrap());
        let channels = webhooks.channels();
        let settings: Vec<ChannelSettings> =
            channels.values().map(ChannelSettings::from_relay).collect();
        buffer.configure(&settings).await.unwrap();
        let names: Vec<_> = settings.iter().map(|s| s.name.clone()).collect();
        Arc::new(AppState {
            usage: Usage::new(webhooks.webhooks.keys().map(|k| k.as_str())),
            live_webhooks: std::sync::RwLock::new(Arc::new(webhooks)),
            channels: Channels::new(channels),
            buffer,
            admin_token: None,
            max_body_bytes: 1024,
            shutdown: CancellationToken::new(),
            streams: TaskTracker::new(),
            metrics: Arc::new(Metrics::new(&names)),
            stats_token: None,
            tls_mode: Default::default(),
        })
    }

    async fn status_and_body(r: impl IntoResponse) -> (StatusCode, serde_json::Value) {
        let r = r.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn ready_is_503_while_stopping_or_without_a_buffer_and_health_stays_200() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path()).await;
        let (code, body) = status_and_body(ready(State(s.clone())).await).await;
        assert_eq!((code, &body["status"]), (StatusCode::OK, &json!("ready")));
        s.shutdown.cancel();
        let (code, body) = status_and_body(ready(State(s.clone())).await).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["shutting_down"], true);

        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path()).await;
        s.buffer.close().await;
        let (code, body) = status_and_body(ready(State(s.clone())).await).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["buffer"], "unavailable");
        let (code, body) = status_and_body(health(State(s.clone())).await).await;
        assert_eq!(code, StatusCode::OK, "liveness: the process answers");
        assert_eq!(
            body,
            json!({"status": "unhealthy", "buffer": "unavailable", "channels": 1})
        );
    }
}
