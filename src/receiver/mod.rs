//! `wcon serve`: the public receiver, an axum app.
//!
//! Owns the HTTP surface: ingest (`/webhook/{id}`), the streaming API (`/connect/…`), the admin
//! API (on the public listener, or alone on its own), monitoring (health, readiness, metrics,
//! stats), over HTTP or TLS. It takes bound listeners, a buffer and a shutdown token; it never
//! binds or prints by itself.

pub mod admin;
pub mod api_error;
pub mod channels;
pub mod dispatch;
pub mod forms;
pub mod ingest;
pub mod json_limits;
pub mod metrics;
pub mod monitoring;
pub mod openapi;
pub mod rate_limit;
pub mod schema;
pub mod security;
pub mod stream;
pub mod tls;
pub mod tokens;
pub mod usage;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
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
    /// Serve HTTPS (and WSS) with this certificate, and send HSTS; `None`: plain HTTP.
    pub tls: Option<Arc<tls::ServerTls>>,
    /// Serve the admin API here (plain HTTP) and not on the public listener.
    pub admin_listener: Option<TcpListener>,
    /// New webhooks.json contents to switch to while running (live reload).
    pub reloads: Option<mpsc::Receiver<Reload>>,
    /// Bearer token of `GET /stats` (`STATS_AUTH_TOKEN`); `None`: the admin token.
    pub stats_token: Option<Secret<String>>,
}

/// A request to switch to a reloaded webhooks.json; `done` gets a summary or why it was refused.
#[derive(Debug)]
pub struct Reload {
    /// The new, validated webhooks.json.
    pub webhooks: WebhooksConfig,
    /// Answered once the switch is done (or refused, the old config still running).
    pub done: oneshot::Sender<Result<channels::ChannelChanges, ReceiverError>>,
}

impl ReceiverConfig {
    /// A config with the defaults: 10 MiB bodies, CORS off, no admin token.
    pub fn new(webhooks: WebhooksConfig) -> Self {
        Self {
            webhooks,
            admin_token: None,
            max_body_bytes: crate::config::webhooks::DEFAULT_MAX_BODY_BYTES,
            cors_origins: Vec::new(),
            tls: None,
            admin_listener: None,
            reloads: None,
            stats_token: None,
        }
    }
}

/// What the public router carries besides the streaming and ingest routes.
#[derive(Debug, Clone, Default)]
pub struct RouterOptions {
    /// Origins browsers may call the API from (CORS); empty: CORS off.
    pub cors_origins: Vec<http::HeaderValue>,
    /// Send `Strict-Transport-Security` (the listener is TLS).
    pub hsts: bool,
    /// Leave the admin API out (it has its own listener).
    pub without_admin: bool,
}

/// Shared state of every handler.
pub struct AppState {
    /// Webhooks by id (swapped whole by a reload; see [`AppState::webhooks`]).
    live_webhooks: RwLock<Arc<WebhooksConfig>>,
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
    /// Prometheus series.
    pub metrics: Arc<Metrics>,
    /// Requests per webhook, for `/stats`.
    pub usage: Usage,
    /// Token of `/stats` besides the admin token.
    pub stats_token: Option<Secret<String>>,
    /// TLS and client certificates of the public listener (reloads are checked against it).
    pub tls_mode: TlsMode,
}

impl AppState {
    /// The webhooks.json in force now; a request keeps the one it started with.
    pub fn webhooks(&self) -> Arc<WebhooksConfig> {
        self.live_webhooks.read().expect("webhooks lock").clone()
    }

    /// Every channel the buffer holds for this receiver now (relay and module channels).
    pub fn buffer_channels(&self) -> Vec<ChannelName> {
        buffer_channels(&self.webhooks())
    }
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
    /// A channel requires client certificates the server cannot verify.
    #[error("{0}")]
    ClientCertificates(String),
}

/// A channel with `require_client_cert` needs a server that verifies client certificates
/// (TLS with `--tls-client-ca`); the error says which channel and what to add.
pub fn check_client_certificates(
    webhooks: &WebhooksConfig,
    tls: Option<&tls::ServerTls>,
) -> Result<(), String> {
    client_certificate_problem(webhooks, TlsMode::of(tls))
}

/// Whether the public listener is TLS, and whether it verifies client certificates.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsMode {
    /// HTTPS and WSS.
    pub tls: bool,
    /// `--tls-client-ca` is set.
    pub client_ca: bool,
}

impl TlsMode {
    fn of(tls: Option<&tls::ServerTls>) -> Self {
        Self {
            tls: tls.is_some(),
            client_ca: tls.is_some_and(|t| t.verifies_client_certificates()),
        }
    }
}

fn client_certificate_problem(webhooks: &WebhooksConfig, mode: TlsMode) -> Result<(), String> {
    let requiring: Vec<String> = webhooks
        .channels()
        .values()
        .filter(|c| c.require_client_cert)
        .map(|c| format!("`{}`", c.channel))
        .collect();
    if requiring.is_empty() || mode.client_ca {
        return Ok(());
    }
    let missing = if !mode.tls {
        "TLS (--tls-cert, --tls-key) and a CA for client certificates (--tls-client-ca / WEBHOOK_CONNECT_TLS_CLIENT_CA)"
    } else {
        "a CA for client certificates (--tls-client-ca / WEBHOOK_CONNECT_TLS_CLIENT_CA)"
    };
    Err(format!(
        "channel {} has `require_client_cert`, but the server cannot verify client certificates: add {missing}, or remove `require_client_cert`",
        requiring.join(", ")
    ))
}

/// Builds the public app: the routes, with the security headers on every answer, HSTS over TLS
/// and CORS only for the configured origins.
pub fn router(state: Arc<AppState>, options: RouterOptions) -> security::Secured {
    let mut routes = Router::new()
        .route("/", get(root))
        .route("/health", get(monitoring::health))
        .route("/ready", get(monitoring::ready))
        .route("/metrics", get(monitoring::metrics))
        .route("/stats", get(monitoring::stats))
        .route("/openapi.json", get(openapi::serve))
        .route("/webhook/{id}", post(ingest::ingest))
        .route("/webhook/{namespace}/{id}", post(ingest::ingest_namespaced))
        .route("/connect/stream/{channel}", get(stream::ws::connect))
        .route("/connect/stream/{channel}/sse", get(stream::sse::connect))
        .route("/connect/stream/{channel}/poll", get(stream::poll::poll))
        .route("/connect/ack", post(stream::ack::ack))
        .route("/connect/status/{channel}", get(stream::ack::status));
    if !options.without_admin {
        routes = with_admin_routes(routes);
    }
    let routes = routes
        // Ingest enforces each webhook's own body limit while reading.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    security::with_security_headers(
        security::with_cors(routes, options.cors_origins),
        options.hsts,
    )
}

/// The admin listener's app: the admin API alone, with the security headers.
pub fn admin_router(state: Arc<AppState>) -> security::Secured {
    let routes = with_admin_routes(Router::new()).with_state(state);
    security::with_security_headers(routes, false)
}

/// The admin API, and the seeds' path of rotate-token.
fn with_admin_routes(routes: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    routes
        .nest("/admin/webhook-connect", admin::router())
        .route(
            "/admin/channels/{channel}/rotate-token",
            post(admin::rotate_token),
        )
}

/// Serves until `shutdown` is cancelled, then stops accepting, lets requests in progress finish,
/// closes streams (their leases go back to the queue) and closes the buffer.
pub async fn run(
    config: ReceiverConfig,
    listener: TcpListener,
    buffer: Arc<dyn Buffer>,
    shutdown: CancellationToken,
) -> Result<(), ReceiverError> {
    check_client_certificates(&config.webhooks, config.tls.as_deref())
        .map_err(ReceiverError::ClientCertificates)?;
    let channels = config.webhooks.channels();
    buffer
        .configure(&buffer_settings(&config.webhooks))
        .await
        .map_err(ReceiverError::Buffer)?;
    let metrics = Arc::new(Metrics::new(&buffer_channels(&config.webhooks)));
    let usage = Usage::new(config.webhooks.webhooks.keys().map(|id| id.as_str()));
    let channels = Channels::new(channels);
    let mut webhooks = config.webhooks;
    webhooks.forget_channel_tokens();
    let state = Arc::new(AppState {
        live_webhooks: RwLock::new(Arc::new(webhooks)),
        channels,
        buffer: buffer.clone(),
        admin_token: config.admin_token,
        max_body_bytes: config.max_body_bytes,
        shutdown: shutdown.clone(),
        streams: TaskTracker::new(),
        metrics: metrics.clone(),
        usage,
        stats_token: config.stats_token,
        tls_mode: TlsMode::of(config.tls.as_deref()),
    });
    tokens::load(&state).await.map_err(ReceiverError::Buffer)?;
    let dispatchers = TaskTracker::new();
    dispatchers.spawn(tokens::watch(state.clone(), shutdown.clone()));
    let mut generation = shutdown.child_token();
    dispatch::spawn_all(
        &state.webhooks(),
        &buffer,
        &metrics,
        &generation,
        &dispatchers,
    );
    if let Some(mut reloads) = config.reloads {
        let (state, dispatchers) = (state.clone(), dispatchers.clone());
        tokio::spawn(async move {
            while let Some(Reload { webhooks, done }) = reloads.recv().await {
                let result = apply_reload(&state, webhooks, &dispatchers, &mut generation).await;
                let _ = done.send(result);
            }
        });
    }
    let options = RouterOptions {
        cors_origins: config.cors_origins,
        hsts: config.tls.is_some(),
        without_admin: config.admin_listener.is_some(),
    };
    let app = router(state.clone(), options);
    let (tls, admin_listener) = (config.tls, config.admin_listener);
    // Whichever server ends first (an error) stops the other one too.
    let public = async {
        let served = match tls {
            None => {
                // Frames and answers are small writes: without TCP_NODELAY, Nagle's algorithm and
                // delayed ACKs hold some of them back for up to 40 ms.
                let listener = listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                });
                axum::serve(
                    listener,
                    axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app),
                )
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
            }
            Some(tls) => {
                // `WithPeer` gives each request the peer address (`ConnectInfo`) and its client
                // certificate; TCP_NODELAY is already set.
                match tls::TlsListener::new(listener, tls) {
                    Ok(listener) => {
                        axum::serve(listener, tls::WithPeer(app))
                            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        shutdown.cancel();
        served
    };
    let admin = async {
        let Some(listener) = admin_listener else {
            return Ok(());
        };
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            SocketAddr,
        >(admin_router(state.clone()));
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        served
    };
    let (served, admin_served) = tokio::join!(public, admin);
    let served = served.and(admin_served);
    state.streams.close();
    state.streams.wait().await;
    dispatchers.close();
    dispatchers.wait().await;
    buffer.close().await;
    served.map_err(ReceiverError::Serve)
}

/// What the buffer must know of every channel (relay channels and module webhooks' queues).
fn buffer_channels(webhooks: &WebhooksConfig) -> Vec<ChannelName> {
    buffer_settings(webhooks)
        .into_iter()
        .map(|s| s.name)
        .collect()
}

fn buffer_settings(webhooks: &WebhooksConfig) -> Vec<ChannelSettings> {
    let mut settings: Vec<ChannelSettings> = webhooks
        .channels()
        .values()
        .map(ChannelSettings::from_relay)
        .collect();
    settings.extend(webhooks.webhooks.values().filter_map(|w| match &w.route {
        crate::config::webhooks::Route::Modules(route) => Some(dispatch::channel_settings(route)),
        crate::config::webhooks::Route::Relay(_) => None,
    }));
    settings
}

/// Switches a running receiver to a new webhooks.json: the buffer learns the new channel
/// settings first (a failure refuses the reload and keeps the old config), then new requests see
/// the new webhooks, channels are updated, and module dispatchers restart (the old ones settle
/// their deliveries and release their leases). Messages already stored are untouched.
async fn apply_reload(
    state: &AppState,
    webhooks: WebhooksConfig,
    dispatchers: &TaskTracker,
    generation: &mut CancellationToken,
) -> Result<channels::ChannelChanges, ReceiverError> {
    client_certificate_problem(&webhooks, state.tls_mode)
        .map_err(ReceiverError::ClientCertificates)?;
    state
        .buffer
        .configure(&buffer_settings(&webhooks))
        .await
        .map_err(ReceiverError::Buffer)?;
    let mut webhooks = webhooks;
    let changes = state.channels.replace(webhooks.channels());
    webhooks.forget_channel_tokens();
    let webhooks = Arc::new(webhooks);
    *state.live_webhooks.write().expect("webhooks lock") = webhooks.clone();
    generation.cancel();
    *generation = state.shutdown.child_token();
    dispatch::spawn_all(
        &webhooks,
        &state.buffer,
        &state.metrics,
        generation,
        dispatchers,
    );
    Ok(changes)
}

async fn root() -> impl IntoResponse {
    axum::Json(serde_json::json!({"message": "200 OK"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_requiring_client_certificates_need_tls_with_a_client_ca() {
        let relay = |channel: &str, require: bool| {
            serde_json::json!({"module": "webhook_connect", "module-config": {
                "channel": channel, "channel_token": "ch_tok_0123456789", "require_client_cert": require}})
        };
        let webhooks = WebhooksConfig::from_json(
            "w.json",
            serde_json::json!({"a": relay("secure", true), "b": relay("open", false)}),
        )
        .unwrap();
        let plain = TlsMode::default();
        let tls_only = TlsMode {
            tls: true,
            client_ca: false,
        };
        let with_ca = TlsMode {
            tls: true,
            client_ca: true,
        };
        let e = client_certificate_problem(&webhooks, plain).unwrap_err();
        assert!(
            e.contains("`secure`") && !e.contains("`open`") && e.contains("--tls-cert"),
            "{e}"
        );
        let e = client_certificate_problem(&webhooks, tls_only).unwrap_err();
        assert!(
            e.contains("--tls-client-ca") && !e.contains("--tls-cert"),
            "{e}"
        );
        assert!(client_certificate_problem(&webhooks, with_ca).is_ok());
        let without =
            WebhooksConfig::from_json("w.json", serde_json::json!({"b": relay("open", false)}))
                .unwrap();
        assert!(client_certificate_problem(&without, plain).is_ok());
        assert!(check_client_certificates(&without, None).is_ok());
    }
}
