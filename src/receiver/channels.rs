//! The receiver's channels: their settings, token checks and the live connections on each.
//!
//! Owns which connector may stream which channel (bearer channel token, constant time; an
//! unknown channel looks exactly like a bad token; only SHA-256 digests of tokens are kept),
//! `allowed_connector_ips`, `max_connections`, and the per-connector rate limits
//! (`max_connections_per_minute` per address, `max_messages_per_second` per connection, both
//! `governor` limiters). Messages themselves live in the buffer, not here.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::protocol::{ChannelName, ConnectionId, ConnectorId};

/// One relay channel as the receiver serves it.
pub struct Channel {
    /// Its settings from webhooks.json.
    pub config: RelayConfig,
    token_digest: [u8; 32],
    created_at: DateTime<Utc>,
    connections: Mutex<HashMap<ConnectionId, Arc<Connection>>>,
    /// New WebSocket/SSE connections per connector address.
    connects: DefaultKeyedRateLimiter<IpAddr>,
}

/// A live streaming connection.
pub struct Connection {
    /// Server-chosen id.
    pub id: ConnectionId,
    /// The connector's own name (`X-Connector-ID`).
    pub connector_id: ConnectorId,
    /// `websocket`, `sse` or `long_poll`.
    pub protocol: &'static str,
    /// The connector's address.
    pub remote_ip: IpAddr,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    last_heartbeat_ms: AtomicI64,
    /// Messages sent on it.
    pub messages_sent: AtomicU64,
    /// Acks received on it.
    pub messages_acked: AtomicU64,
    /// Nacks received on it.
    pub messages_nacked: AtomicU64,
    /// Cancelled to close the connection (admin disconnect, shutdown).
    pub close: CancellationToken,
    /// `max_messages_per_second` of what the connector sends on it.
    messages: Option<DefaultDirectRateLimiter>,
}

impl Connection {
    /// Records a sign of life.
    pub fn touch(&self) {
        self.last_heartbeat_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The last sign of life.
    pub fn last_heartbeat(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.last_heartbeat_ms.load(Ordering::Relaxed))
            .unwrap_or_default()
    }

    /// Takes one message from the connection's rate; `Err` is how long until one is allowed.
    pub fn take_message(&self) -> Result<(), Duration> {
        match &self.messages {
            None => Ok(()),
            Some(limit) => limit
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Waits until the connection's rate allows one more message (WebSocket backpressure).
    pub async fn until_message_allowed(&self) {
        if let Some(limit) = &self.messages {
            limit.until_ready().await;
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("connector_id", &self.connector_id)
            .field("protocol", &self.protocol)
            .field("remote_ip", &self.remote_ip)
            .finish_non_exhaustive()
    }
}

/// What the admin API shows of a connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    /// See [`Connection::id`].
    pub connection_id: ConnectionId,
    /// See [`Connection::connector_id`].
    pub connector_id: ConnectorId,
    /// The channel.
    pub channel: ChannelName,
    /// See [`Connection::protocol`].
    pub protocol: &'static str,
    /// RFC 3339.
    pub connected_at: String,
    /// RFC 3339.
    pub last_heartbeat_at: String,
    /// Always `connected` while listed.
    pub state: &'static str,
    /// Messages sent.
    pub messages_received: u64,
    /// Acks.
    pub messages_acked: u64,
    /// Nacks.
    pub messages_nacked: u64,
    /// Messages sent and not yet acked or nacked.
    pub in_flight_count: u64,
    /// Address.
    pub remote_ip: String,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The channel has `max_connections` connections.
    Full,
    /// The address opened `max_connections_per_minute` connections; one is allowed after this.
    TooFast(Duration),
}

/// Every relay channel of the receiver.
#[derive(Debug, Default)]
pub struct Channels {
    channels: BTreeMap<ChannelName, Arc<Channel>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Channels {
    /// The channels of a validated webhooks.json.
    pub fn new(configs: BTreeMap<ChannelName, RelayConfig>) -> Self {
        let channels = configs
            .into_iter()
            .map(|(name, mut config)| {
                let token_digest = digest(config.channel_token.expose());
                // Only the digest stays in memory.
                config.channel_token = crate::secret::Secret::default();
                let per_minute =
                    NonZeroU32::new(config.max_connections_per_minute).unwrap_or(NonZeroU32::MIN);
                let channel = Channel {
                    token_digest,
                    connects: RateLimiter::keyed(Quota::per_minute(per_minute)),
                    config,
                    created_at: Utc::now(),
                    connections: Mutex::new(HashMap::new()),
                };
                (name, Arc::new(channel))
            })
            .collect();
        Self { channels }
    }

    /// The channel, if `token` is its token. An unknown channel and a wrong token are the same
    /// `None`, so connectors cannot enumerate channels.
    pub fn authenticate(&self, name: &str, token: &str) -> Option<Arc<Channel>> {
        let presented = digest(token);
        // Compare against a dummy digest for unknown channels so timing does not tell them apart.
        let (channel, expected) = match self.channels.get(&ChannelName::from(name)) {
            Some(c) => (Some(c), c.token_digest),
            None => (None, [0u8; 32]),
        };
        let equal: bool = subtle::ConstantTimeEq::ct_eq(&presented[..], &expected[..]).into();
        channel.filter(|_| equal).cloned()
    }

    /// A channel by name, for the admin API.
    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.get(&ChannelName::from(name)).cloned()
    }

    /// All channels.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Channel>> {
        self.channels.values()
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

impl Channel {
    /// The channel's name.
    pub fn name(&self) -> &ChannelName {
        &self.config.channel
    }

    /// When the receiver created it.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// Whether `ip` may use the channel (`allowed_connector_ips`).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.config
            .allowed_connector_ips
            .as_ref()
            .is_none_or(|ips| ips.contains(ip))
    }

    /// Admits a connection unless its address opens connections too fast (WebSocket and SSE
    /// only: a long poll is one request of a session) or the channel is at `max_connections`.
    pub fn attach(
        &self,
        protocol: &'static str,
        connector_id: Option<ConnectorId>,
        remote_ip: IpAddr,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Connection>, AttachError> {
        if protocol != "long_poll" {
            // Bound the memory of the per-address table under a spray of addresses.
            if self.connects.len() > 10_000 {
                self.connects.retain_recent();
            }
            self.connects.check_key(&remote_ip).map_err(|not_until| {
                AttachError::TooFast(not_until.wait_time_from(DefaultClock::default().now()))
            })?;
        }
        let mut connections = self.connections.lock().expect("connections lock");
        if connections.len() >= self.config.max_connections as usize {
            return Err(AttachError::Full);
        }
        let id = ConnectionId(format!(
            "{}_{:012x}",
            short(protocol),
            rand::random::<u64>() & 0xffff_ffff_ffff
        ));
        let now = Utc::now();
        let connection = Arc::new(Connection {
            connector_id: connector_id.unwrap_or_else(|| ConnectorId(id.0.clone())),
            id: id.clone(),
            protocol,
            remote_ip,
            connected_at: now,
            last_heartbeat_ms: AtomicI64::new(now.timestamp_millis()),
            messages_sent: AtomicU64::new(0),
            messages_acked: AtomicU64::new(0),
            messages_nacked: AtomicU64::new(0),
            close: shutdown.child_token(),
            messages: self
                .config
                .max_messages_per_second
                .and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
        });
        connections.insert(id, connection.clone());
        Ok(connection)
    }

    /// Forgets a connection.
    pub fn detach(&self, id: &ConnectionId) {
        self.connections
            .lock()
            .expect("connections lock")
            .remove(id);
    }

    /// A live connection by id.
    pub fn connection(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .expect("connections lock")
            .get(id)
            .cloned()
    }

    /// How many connections are live.
    pub fn connection_count(&self) -> usize {
        self.connections.lock().expect("connections lock").len()
    }

    /// The live connections, for the admin API.
    pub fn connection_views(&self) -> Vec<ConnectionView> {
        let connections = self.connections.lock().expect("connections lock");
        let mut views: Vec<ConnectionView> = connections
            .values()
            .map(|c| {
                let sent = c.messages_sent.load(Ordering::Relaxed);
                let acked = c.messages_acked.load(Ordering::Relaxed);
                let nacked = c.messages_nacked.load(Ordering::Relaxed);
                ConnectionView {
                    connection_id: c.id.clone(),
                    connector_id: c.connector_id.clone(),
                    channel: self.config.channel.clone(),
                    protocol: c.protocol,
                    connected_at: crate::time::rfc3339(c.connected_at),
                    last_heartbeat_at: crate::time::rfc3339(c.last_heartbeat()),
                    state: "connected",
                    messages_received: sent,
                    messages_acked: acked,
                    messages_nacked: nacked,
                    in_flight_count: sent.saturating_sub(acked + nacked),
                    remote_ip: c.remote_ip.to_string(),
                }
            })
            .collect();
        views.sort_by(|a, b| a.connected_at.cmp(&b.connected_at));
        views
    }
}

fn short(protocol: &str) -> &'static str {
    match protocol {
        "websocket" => "wsc",
        "sse" => "sse",
        _ => "poll",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn channels(max_connections: u32) -> Channels {
        let mut m = BTreeMap::new();
        m.insert(
            ChannelName::from("c"),
            RelayConfig {
                channel: "c".into(),
                channel_token: Secret::new("right-token".into()),
                ttl_seconds: 60,
                max_queue_size: 10,
                max_connections,
                max_in_flight: 10,
                ack_timeout_seconds: 30,
                heartbeat_interval_seconds: 30,
                max_delivery_attempts: 10,
                allowed_connector_ips: Some(
                    serde_json::from_value(serde_json::json!(["10.0.0.0/8", "127.0.0.1"])).unwrap(),
                ),
                max_connections_per_minute: 3,
                max_messages_per_second: Some(2),
            },
        );
        Channels::new(m)
    }

    #[test]
    fn tokens_and_unknown_channels() {
        let c = channels(1);
        assert!(c.authenticate("c", "right-token").is_some());
        assert!(c.authenticate("c", "wrong-token").is_none());
        assert!(c.authenticate("nope", "right-token").is_none());
    }

    #[test]
    fn max_connections() {
        let c = channels(1);
        let ch = c.get("c").unwrap();
        let stop = CancellationToken::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let first = ch.attach("websocket", None, ip, &stop).unwrap();
        assert_eq!(
            ch.attach("websocket", None, ip, &stop).unwrap_err(),
            AttachError::Full
        );
        ch.detach(&first.id);
        assert!(ch.attach("websocket", None, ip, &stop).is_ok());
    }

    #[test]
    fn addresses_and_rates() {
        let c = channels(100);
        let ch = c.get("c").unwrap();
        assert!(ch.allows("10.9.8.7".parse().unwrap()));
        assert!(ch.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!ch.allows("192.0.2.1".parse().unwrap()));
        let stop = CancellationToken::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            ch.attach("sse", None, ip, &stop).unwrap();
        }
        assert!(matches!(
            ch.attach("websocket", None, ip, &stop),
            Err(AttachError::TooFast(wait)) if wait > Duration::from_secs(5)
        ));
        // Another address has its own allowance, and polls are not counted.
        assert!(
            ch.attach("sse", None, "10.0.0.1".parse().unwrap(), &stop)
                .is_ok()
        );
        let poll = ch.attach("long_poll", None, ip, &stop).unwrap();
        assert!(poll.take_message().is_ok() && poll.take_message().is_ok());
        assert!(poll.take_message().is_err());
    }
}
