//! `wcon tunnel`: the connector that dials out to `wcon serve` and delivers locally.
//!
//! Owns the reconnect loop of one channel (capped, jittered backoff forever; an auth failure
//! waits the maximum delay), what a channel's deliveries share (its current route, the process's
//! concurrency limit, the observer), and the events the command turns into lines. Running many
//! channels and reloading them is [`supervisor`]'s. It never prints: everything a person should
//! see is an [`Event`].

pub mod backoff;
pub mod deliver;
pub mod health;
pub mod in_progress;
pub mod modules;
pub mod observe;
pub mod outbound;
pub mod supervisor;
pub mod transport;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ConnectorConfig;
use crate::protocol::{ChannelName, ConnectionId, MessageId, WebhookId};
use backoff::Backoff;
use deliver::HttpDelivery;
use observe::Observer;

/// A session must stay up this long before the reconnect delay goes back to its start.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Something a person running the connector may want to see.
#[derive(Debug, Clone)]
pub enum Event {
    /// Streaming started.
    Connected {
        /// The server.
        server: String,
        /// The channel.
        channel: ChannelName,
        /// The transport.
        protocol: &'static str,
    },
    /// The server's `connected` frame.
    Ready {
        /// The server's id of this connection.
        connection_id: ConnectionId,
    },
    /// The stream ended; a new one is tried after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The server refused the channel token.
    Unauthorized {
        /// What the server said.
        detail: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// One HTTP attempt of a delivery finished.
    Attempt {
        /// The webhook.
        webhook_id: WebhookId,
        /// The message.
        message_id: MessageId,
        /// The attempt.
        attempt: deliver::Attempt,
    },
    /// A delivery ended with an ack or a nack.
    Settled {
        /// The message.
        message_id: MessageId,
        /// Ack or nack.
        verdict: deliver::Verdict,
        /// From arrival to the verdict (waiting for a permit included).
        latency: Duration,
    },
    /// A webhook arrived from the server.
    Received {
        /// The message.
        message_id: MessageId,
    },
    /// The server sent a message again (its lease passed `ack_timeout`) while this process was
    /// still delivering it or waiting for a delivery slot, or just after it acked it: it is
    /// delivered once, and that delivery's ack or nack settles the new lease.
    Duplicate {
        /// The message.
        message_id: MessageId,
        /// The delivery had ended with an ack already (the ack is sent again).
        already_acked: bool,
    },
    /// The server sent an `error` frame.
    ServerError {
        /// Its code.
        code: String,
        /// Its detail.
        detail: String,
    },
}

/// An event of one channel.
#[derive(Debug, Clone)]
pub struct Report {
    /// The channel.
    pub channel: ChannelName,
    /// What happened.
    pub event: Event,
}

/// Where a tunnel delivers: a local HTTP target, or output modules.
#[derive(Debug)]
pub enum Deliverer {
    /// HTTP mode (`--to`, `default_target`, `targets`).
    Http(HttpDelivery),
    /// Module mode (`webhooks_config`, `--webhooks`).
    Modules(modules::ModuleRoutes),
}

impl Deliverer {
    /// The deliverer `config` asks for; module mode reads and builds its files now, so a bad
    /// file stops the tunnel before it connects.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, crate::config::ConfigErrors> {
        let connections = config
            .connections_config
            .as_deref()
            .map(std::path::Path::new);
        match (&config.webhooks_config, &config.inline_route) {
            (Some(webhooks), _) => Ok(Self::Modules(modules::ModuleRoutes::load(
                std::path::Path::new(webhooks),
                connections,
            )?)),
            (None, Some(route)) => Ok(Self::Modules(modules::ModuleRoutes::inline(
                config.channel.as_str(),
                route,
                connections,
            )?)),
            (None, None) => Ok(Self::Http(HttpDelivery::new())),
        }
    }

    /// Delivers one message and says ack or nack.
    pub async fn deliver(
        &self,
        config: &ConnectorConfig,
        frame: &crate::protocol::WebhookFrame,
        on_attempt: &(dyn Fn(&deliver::Attempt) + Send + Sync),
    ) -> deliver::Verdict {
        match self {
            Self::Http(http) => http.deliver(config, frame, on_attempt).await,
            Self::Modules(routes) => {
                let deadline = Duration::from_secs_f64(config.ack_timeout);
                routes.deliver(frame, deadline, on_attempt).await
            }
        }
    }
}

/// Errors that stop the connector.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The config cannot be turned into a stream URL.
    #[error("cannot build the stream URL from `{0}`")]
    Url(String),
    /// The TLS settings (`ca_cert_path`) cannot be used.
    #[error(transparent)]
    Tls(#[from] outbound::OutboundError),
}

/// How a streaming session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// Shutdown was requested and in-flight deliveries were settled.
    Shutdown,
    /// The server refused the token (HTTP 401/403).
    Unauthorized(String),
    /// The stream could not be set up (connect error, refused upgrade, bad answer).
    Failed(String),
    /// The stream was up and ended: connection lost, server silent or gone.
    Lost(String),
    /// An `auto` fallback session ended on purpose, after settling, to try a better transport.
    Upgrade,
}

/// How long `auto` stays on a fallback transport before trying a better one again.
pub const UPGRADE_AFTER: Duration = Duration::from_secs(120);

/// A streaming transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket.
    WebSocket,
    /// Server-Sent Events.
    Sse,
    /// Long polling.
    LongPoll,
}

impl Transport {
    /// The transports `protocol` tries, best first.
    pub fn ladder(protocol: crate::config::connector::Protocol) -> &'static [Transport] {
        use crate::config::connector::Protocol;
        match protocol {
            Protocol::Websocket => &[Transport::WebSocket],
            Protocol::Sse => &[Transport::Sse],
            Protocol::LongPoll => &[Transport::LongPoll],
            Protocol::Auto => &[Transport::WebSocket, Transport::Sse, Transport::LongPoll],
        }
    }
}

/// Where a channel's deliveries go now: swapped whole by a reload, read once per delivery, so a
/// delivery in progress finishes where it started.
#[derive(Debug)]
pub struct Route {
    /// The channel's config (targets, `ack_timeout`).
    pub config: Arc<ConnectorConfig>,
    /// The deliverer built from it.
    pub delivery: Deliverer,
}

/// What a channel's sessions need, shared across reconnects.
pub struct Context {
    /// The configuration the stream was opened with (server, channel, token, transport).
    pub config: Arc<ConnectorConfig>,
    /// Where messages go now.
    route: RwLock<Arc<Route>>,
    /// Deliveries running at once, shared by every channel of the process.
    pub permits: Arc<Semaphore>,
    /// TLS and proxies of the connection to the server, as last read (see [`Self::outbound`]).
    outbound: std::sync::Mutex<outbound::Outbound>,
    /// Where events go.
    pub events: mpsc::UnboundedSender<Report>,
    /// Health and metrics.
    pub observer: Arc<Observer>,
    /// Messages being delivered or waiting for a slot, so a copy sent again is not delivered
    /// twice (across this channel's reconnects too).
    pub in_progress: in_progress::InProgress,
    /// Cancelled to stop this channel (settling deliveries in progress).
    pub shutdown: CancellationToken,
}

impl Context {
    /// A channel context delivering through `route`; fails when its TLS settings cannot be used
    /// (e.g. an unreadable `ca_cert_path`).
    pub fn new(
        route: Route,
        permits: Arc<Semaphore>,
        events: mpsc::UnboundedSender<Report>,
        observer: Arc<Observer>,
        shutdown: CancellationToken,
    ) -> Result<Self, ConnectorError> {
        Ok(Self {
            outbound: std::sync::Mutex::new(outbound::Outbound::from_config(&route.config)?),
            config: route.config.clone(),
            route: RwLock::new(Arc::new(route)),
            permits,
            events,
            observer,
            in_progress: in_progress::InProgress::default(),
            shutdown,
        })
    }

    /// The TLS settings for a new session. Files named by `ca_cert_path`, `client_cert_path`
    /// and `client_key_path` are read again, so a renewed client certificate is presented from
    /// the next connection on; if they cannot be used now (e.g. half-written), the ones read
    /// before are.
    pub fn outbound(&self) -> outbound::Outbound {
        let mut last = self
            .outbound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = &self.config;
        if config.ca_cert_path.is_some() || config.client_cert_path.is_some() {
            match outbound::Outbound::from_config(config) {
                Ok(fresh) => *last = fresh,
                Err(e) => {
                    tracing::warn!(channel = %config.channel, error = %e, "cannot read the TLS files again; this connection uses the ones read before");
                }
            }
        }
        last.clone()
    }

    /// Reports an event (and records it for health and metrics); a closed receiver is not an
    /// error.
    pub fn emit(&self, event: Event) {
        self.observer.record(&self.config.channel, &event);
        let _ = self.events.send(Report {
            channel: self.config.channel.clone(),
            event,
        });
    }

    /// The route deliveries starting now use.
    pub fn route(&self) -> Arc<Route> {
        self.route.read().expect("route lock").clone()
    }

    /// Sends new deliveries through `route`; those in progress finish on the old one.
    pub fn set_route(&self, route: Route) {
        *self.route.write().expect("route lock") = Arc::new(route);
    }
}

/// Runs one channel until its `shutdown` is cancelled: connect, stream, deliver, reconnect.
pub async fn run_channel(ctx: Arc<Context>) -> Result<(), ConnectorError> {
    let config = ctx.config.clone();
    let shutdown = ctx.shutdown.clone();
    let ws_url = transport::ws::stream_url(&config.cloud_url, &config.channel)
        .ok_or_else(|| ConnectorError::Url(config.cloud_url.to_string()))?;
    let mut backoff = Backoff::new(
        Duration::from_secs_f64(config.reconnect_delay),
        Duration::from_secs_f64(config.max_reconnect_delay),
        config.reconnect_backoff_multiplier,
    );
    let ladder = Transport::ladder(config.protocol);
    let mut level = 0usize;
    loop {
        let started = Instant::now();
        // On a fallback, `auto` goes back up after a while.
        let upgrade_after = (level > 0).then_some(UPGRADE_AFTER);
        let end = match ladder[level] {
            Transport::WebSocket => transport::ws::session(&ctx, &ws_url).await,
            Transport::Sse => transport::sse::session(&ctx, &config.cloud_url, upgrade_after).await,
            Transport::LongPoll => {
                transport::long_poll::session(&ctx, &config.cloud_url, upgrade_after).await
            }
        };
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = match end {
            SessionEnd::Shutdown => return Ok(()),
            SessionEnd::Upgrade => {
                level = 0;
                continue;
            }
            SessionEnd::Unauthorized(detail) => {
                let retry_in = backoff.max();
                ctx.emit(Event::Unauthorized { detail, retry_in });
                retry_in
            }
            SessionEnd::Failed(reason) if level + 1 < ladder.len() => {
                // `auto`: this transport does not get through; try the next one now.
                level += 1;
                ctx.emit(Event::Disconnected {
                    reason,
                    retry_in: Duration::ZERO,
                });
                continue;
            }
            SessionEnd::Failed(reason) => {
                // Every transport failed: start again from the best one after the delay.
                level = 0;
                let retry_in = backoff.next_delay();
                ctx.emit(Event::Disconnected { reason, retry_in });
                retry_in
            }
            SessionEnd::Lost(reason) => {
                let retry_in = backoff.next_delay();
                ctx.emit(Event::Disconnected { reason, retry_in });
                retry_in
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
