//! `wcon serve`: the public receiver, an axum app.
//!
//! Owns the HTTP surface: ingest (`/webhook/{id}`), the streaming API (`/connect/…`), the admin
//! API and monitoring (health, readiness, metrics, stats). It takes a bound listener, a buffer and a shutdown token; it never binds or
//! prints by itself.

pub mod admin;
pub mod api_error;
pub mod channels;
pub mod dispatch;
pub mod forms;
pub mod ingest;
pub mod json_limits;
pub mod metrics;
pub mod monitoring;
pub mod rate_limit;
pub mod schema;
pub mod security;
pub mod stream;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::{Buffer, BufferError, ChannelSettings};
use crate::config::WebhooksConfig;
use crate::protocol::ChannelName;
use crate::secret::Secret;
use channels::Channels;
use metrics::Metrics;
use usage::Usage;

/// What the receiver needs besides its listener and buffer.
#[derive(Debug)]
pub struct ReceiverConfig {
    /// The validated webhooks.json.
    pub webhooks: WebhooksConfig,
    /// Bearer token of the admin API; `None` disables it (403).
    pub admin_token: Option<Secret<String>>,
    /// Body limit of webhooks that set no `max_body_bytes`.
    pub max_body_bytes: u64,
    /// Origins browsers may call the API from (CORS); empty: CORS off.
    pub cors_origins: Vec<http::HeaderValue>,
    /// Bearer token of `GET /stats` (`STATS_AUTH_TOKEN`); `None`: the admin token.
    pub stats_token: Option<Secret<String>>,
}

impl ReceiverConfig {
    /// A config with the defaults: 10 MiB bodies, CORS off, no admin token.
    pub fn new(webhooks: WebhooksConfig) -> Self {
        Self {
            webhooks,
            admin_token: None,
            max_body_bytes: crate::config::webhooks::DEFAULT_MAX_BODY_BYTES,
            cors_origins: Vec::new(),
            stats_token: None,
        }
    }
}

/// Shared state of every handler.
pub struct AppState {
    /// Webhooks by id.
    pub webhooks: WebhooksConfig,
    /// Relay channels and their connections.
    pub channels: Channels,
    /// Where messages wait.
    pub buffer: Arc<dyn Buffer>,
    /// Admin bearer token.
    pub admin_token: Option<Secret<String>>,
    /// Body limit of webhooks that set none.
    pub max_body_bytes: u64,
    /// Cancelled when the receiver stops.
    pub shutdown: CancellationToken,
    /// Streaming connections, awaited on shutdown so their leases are released.
    pub streams: TaskTracker,
    /// Every channel the buffer holds for this receiver (relay and module channels).
    pub buffer_channels: Vec<ChannelName>,
    /// Prometheus series.
    pub metrics: Arc<Metrics>,
    /// Requests per webhook, for `/stats`.
    pub usage: Usage,
    /// Token of `/stats` besides the admin token.
    pub stats_token: Option<Secret<String>>,
}

/// Errors that stop the receiver.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The buffer could not set up the channels.
    #[error("cannot set up the channels in the buffer")]
    Buffer(#[source] BufferError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Builds the router (also used by tests that drive it without a socket), with security
/// headers on every answer and CORS only for `cors_origins`.
pub fn router(state: Arc<AppState>, cors_origins: Vec<http::HeaderValue>) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/health", get(monitoring::health))
        .route("/ready", get(monitoring::ready))
        .route("/metrics", get(monitoring::metrics))
        .route("/stats", get(monitoring::stats))
        .route("/webhook/{id}", post(ingest::ingest))
        .route("/webhook/{namespace}/{id}", post(ingest::ingest_namespaced))
        .route("/connect/stream/{channel}", get(stream::ws::connect))
        .route("/connect/stream/{channel}/sse", get(stream::sse::connect))
        .route("/connect/stream/{channel}/poll", get(stream::poll::poll))
        .route("/connect/ack", post(stream::ack::ack))
        .route("/connect/status/{channel}", get(stream::ack::status))
        .nest("/admin/webhook-connect", admin::router())
        // Ingest enforces each webhook's own body limit while reading.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    let routes = security::with_security_headers(routes);
    security::with_cors(routes, cors_origins)
}

/// Serves until `shutdown` is cancelled, then stops accepting, lets requests in progress finish,
/// closes streams (their leases go back to the queue) and closes the buffer.
pub async fn run(
    config: ReceiverConfig,
    listener: TcpListener,
    buffer: Arc<dyn Buffer>,
    shutdown: CancellationToken,
) -> Result<(), ReceiverError> {
    let channels = config.webhooks.channels();
    let mut settings: Vec<ChannelSettings> =
        channels.values().map(ChannelSettings::from_relay).collect();
    settings.extend(
        config
            .webhooks
            .webhooks
            .values()
            .filter_map(|w| match &w.route {
                crate::config::webhooks::Route::Modules(route) => {
                    Some(dispatch::channel_settings(route))
                }
                crate::config::webhooks::Route::Relay(_) => None,
            }),
    );
    buffer
        .configure(&settings)
        .await
        .map_err(ReceiverError::Buffer)?;
    let buffer_channels: Vec<ChannelName> = settings.iter().map(|s| s.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&buffer_channels));
    let usage = Usage::new(config.webhooks.webhooks.keys().map(|id| id.as_str()));
    let state = Arc::new(AppState {
        webhooks: config.webhooks,
        channels: Channels::new(channels),
        buffer: buffer.clone(),
        admin_token: config.admin_token,
        max_body_bytes: config.max_body_bytes,
        shutdown: shutdown.clone(),
        streams: TaskTracker::new(),
        buffer_channels,
        metrics: metrics.clone(),
        usage,
        stats_token: config.stats_token,
    });
    let dispatchers = TaskTracker::new();
    dispatch::spawn_all(&state.webhooks, &buffer, &metrics, &shutdown, &dispatchers);
    let app = router(state.clone(), config.cors_origins)
        .into_make_service_with_connect_info::<SocketAddr>();
    // Frames and answers are small writes: without TCP_NODELAY, Nagle's algorithm and delayed
    // ACKs hold some of them back for up to 40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    state.streams.close();
    state.streams.wait().await;
    dispatchers.close();
    dispatchers.wait().await;
    buffer.close().await;
    served.map_err(ReceiverError::Serve)
}

async fn root() -> impl IntoResponse {
    axum::Json(serde_json::json!({"message": "200 OK"}))
}
