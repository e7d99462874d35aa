//! The connector's health and metrics server (`wcon tunnel --health-listen`): `GET /health`
//! (200 healthy, 503 when a channel has been down too long) and `GET /metrics` (Prometheus).
//!
//! It takes a bound listener and serves until shutdown; it never binds or prints by itself.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::observe::Observer;

/// The router (also used by tests without a socket).
pub fn router(observer: Arc<Observer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(observer)
}

/// Serves `/health` and `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    observer: Arc<Observer>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(observer))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn health(State(observer): State<Arc<Observer>>) -> impl IntoResponse {
    let (healthy, body) = observer.health();
    let status = if healthy {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(observer): State<Arc<Observer>>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        observer.metrics(),
    )
}
