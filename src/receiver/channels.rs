//! The receiver's channels: their settings, token checks and the live connections on each.
//!
//! Owns which connector may stream which channel (bearer channel token, constant time; an
//! unknown channel looks exactly like a bad token; after a rotation the new token, and the
//! previous one until its grace deadline; only SHA-256 digests of tokens are kept),
//! `allowed_connector_ips`, `max_connections`, and the per-connector rate limits
//! (`max_connections_per_minute` per address, `max_messages_per_second` per connection, both
//! `governor` limiters). Messages themselves live in the buffer, not here.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::buffer::TokenRotation;
use crate::config::RelayConfig;
use crate::protocol::{ChannelName, ConnectionId, ConnectorId};

/// One relay channel as the receiver serves it.
pub struct Channel {
    /// Its settings from webhooks.json (`channel_token` blanked: only digests are kept).
    pub config: RelayConfig,
    /// Digest of the token written in webhooks.json.
    config_token: [u8; 32],
    tokens: Mutex<Tokens>,
    /// Held while a rotation is written, so that two rotations do not interleave.
    pub rotating: tokio::sync::Mutex<()>,
    created_at: DateTime<Utc>,
    connections: Mutex<HashMap<ConnectionId, Arc<Connection>>>,
    /// New WebSocket/SSE connections per connector address.
    connects: DefaultKeyedRateLimiter<IpAddr>,
}

/// The token digests a channel accepts; `Debug` shows neither digest.
#[derive(Clone, PartialEq, Eq)]
struct Tokens {
    current: [u8; 32],
    /// The replaced token and the end of its grace period.
    previous: Option<([u8; 32], DateTime<Utc>)>,
}

impl Tokens {
    /// Whether `presented` is accepted at `now`, in constant time over both digests.
    fn accepts(&self, presented: &[u8; 32], now: DateTime<Utc>) -> bool {
        let current: bool = subtle::ConstantTimeEq::ct_eq(&presented[..], &self.current[..]).into();
        let (previous_digest, valid) = match &self.previous {
            Some((d, until)) => (*d, now < *until),
            None => ([0u8; 32], false),
        };
        let previous: bool =
            subtle::ConstantTimeEq::ct_eq(&presented[..], &previous_digest[..]).into();
        current | (previous & valid)
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field(
                "previous_valid_until",
                &self.previous.map(|(_, until)| until),
            )
            .finish_non_exhaustive()
    }
}

fn decode_digest(hex_digest: &str) -> Option<[u8; 32]> {
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// Why the receiver closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// `DELETE …/connections/{id}` of the admin API.
    Admin = 0,
    /// The token it authenticated with was rotated and its grace period ended.
    TokenExpired = 1,
    /// A reload of webhooks.json changed or removed its channel.
    Reconfigured = 2,
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
    /// Cancelled to close the connection (admin disconnect, token expiry, shutdown).
    pub close: CancellationToken,
    /// Digest of the token it authenticated with (`Debug` hides it).
    token_digest: crate::secret::Secret<[u8; 32]>,
    /// Why it was closed (a [`CloseCause`] as `u8`), told to the connector in its `error` frame.
    close_cause: std::sync::atomic::AtomicU8,
    /// `max_messages_per_second` of what the connector sends on it.
    messages: Option<DefaultDirectRateLimiter>,
}

impl Connection {
    /// Records a sign of life.
    pub fn touch(&self) {
        self.last_heartbeat_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Closes it, remembering why (a shutdown closes it through `close`'s parent instead).
    pub fn close_because(&self, cause: CloseCause) {
        self.close_cause.store(cause as u8, Ordering::Relaxed);
        self.close.cancel();
    }

    /// Why it was closed, when not by a shutdown: the code and detail of its `error` frame.
    pub fn close_reason(&self) -> (&'static str, &'static str) {
        use crate::protocol::error_code;
        match self.close_cause.load(Ordering::Relaxed) {
            c if c == CloseCause::TokenExpired as u8 => (
                error_code::TOKEN_EXPIRED,
                "the channel token of this connection was rotated and its grace period ended; reconnect with the new token",
            ),
            c if c == CloseCause::Reconfigured as u8 => (
                error_code::CHANNEL_RECONFIGURED,
                "the channel's settings changed (webhooks.json was reloaded); reconnect",
            ),
            _ => (
                error_code::DISCONNECTED,
                "an administrator closed this connection",
            ),
        }
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

/// Every relay channel of the receiver; replaced as a whole by a reload of webhooks.json.
#[derive(Debug, Default)]
pub struct Channels {
    channels: RwLock<BTreeMap<ChannelName, Arc<Channel>>>,
}

/// What [`Channels::replace`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChannelChanges {
    /// New channels.
    pub added: Vec<ChannelName>,
    /// Channels gone (their connections were closed; their messages stay in the buffer).
    pub removed: Vec<ChannelName>,
    /// Channels with a new token or new limits (their connections were closed, so connectors
    /// reconnect under the new settings; a connector with a revoked token is refused).
    pub changed: Vec<ChannelName>,
}

/// A channel of `config`; only the digest of its token stays in memory.
fn new_channel(mut config: RelayConfig) -> Arc<Channel> {
    let config_token = token_digest(config.channel_token.expose());
    config.channel_token = crate::secret::Secret::default();
    let per_minute = NonZeroU32::new(config.max_connections_per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(Channel {
        config_token,
        tokens: Mutex::new(Tokens {
            current: config_token,
            previous: None,
        }),
        rotating: tokio::sync::Mutex::new(()),
        connects: RateLimiter::keyed(Quota::per_minute(per_minute)),
        config,
        created_at: Utc::now(),
        connections: Mutex::new(HashMap::new()),
    })
}

/// The SHA-256 digest of a channel token, as channels compare and store them.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Channels {
    /// The channels of a validated webhooks.json.
    pub fn new(configs: BTreeMap<ChannelName, RelayConfig>) -> Self {
        let channels = configs
            .into_iter()
            .map(|(name, config)| (name, new_channel(config)))
            .collect();
        Self {
            channels: RwLock::new(channels),
        }
    }

    /// Switches to the channels of a reloaded webhooks.json. Unchanged channels keep their
    /// connections; changed and removed ones close theirs (leases go back to the queue).
    pub fn replace(&self, configs: BTreeMap<ChannelName, RelayConfig>) -> ChannelChanges {
        let mut changes = ChannelChanges::default();
        let mut channels = self.channels.write().expect("channels lock");
        let mut next = BTreeMap::new();
        for (name, config) in configs {
            let fresh = new_channel(config);
            match channels.remove(&name) {
                Some(old)
                    if old.config == fresh.config && old.config_token == fresh.config_token =>
                {
                    next.insert(name, old);
                }
                Some(old) => {
                    old.close_all();
                    // A token rotated through the admin API keeps overriding the file's.
                    let tokens = old.tokens.lock().expect("tokens lock").clone();
                    if tokens.current != old.config_token || tokens.previous.is_some() {
                        *fresh.tokens.lock().expect("tokens lock") = tokens;
                    }
                    changes.changed.push(name.clone());
                    next.insert(name, fresh);
                }
                None => {
                    changes.added.push(name.clone());
                    next.insert(name, fresh);
                }
            }
        }
        for (name, old) in std::mem::take(&mut *channels) {
            old.close_all();
            changes.removed.push(name);
        }
        *channels = next;
        changes
    }

    /// The channel, if `token` is its token. An unknown channel and a wrong token are the same
    /// `None`, so connectors cannot enumerate channels.
    pub fn authenticate(&self, name: &str, token: &str) -> Option<Arc<Channel>> {
        let presented = token_digest(token);
        // Compare against dummy digests for unknown channels so timing does not tell them apart.
        let (channel, tokens) = match self.get(name) {
            Some(c) => (
                Some(c.clone()),
                c.tokens.lock().expect("tokens lock").clone(),
            ),
            None => (
                None,
                Tokens {
                    current: [0u8; 32],
                    previous: None,
                },
            ),
        };
        let accepted = tokens.accepts(&presented, Utc::now());
        channel.filter(|_| accepted)
    }

    /// A channel by name, for the admin API.
    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels
            .read()
            .expect("channels lock")
            .get(&ChannelName::from(name))
            .cloned()
    }

    /// All channels (a snapshot).
    pub fn iter(&self) -> impl Iterator<Item = Arc<Channel>> + use<> {
        let all: Vec<Arc<Channel>> = self
            .channels
            .read()
            .expect("channels lock")
            .values()
            .cloned()
            .collect();
        all.into_iter()
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.read().expect("channels lock").len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.channels.read().expect("channels lock").is_empty()
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

    /// Takes a rotation (from the admin API or the buffer) as the channel's tokens: its current
    /// token replaces the config file's. Returns whether anything changed; a rotation whose
    /// digests are not 64 hex characters is ignored with `false`.
    pub fn apply_rotation(&self, rotation: &TokenRotation) -> bool {
        let Some(current) = decode_digest(&rotation.current_sha256) else {
            return false;
        };
        let previous = match (&rotation.previous_sha256, rotation.previous_valid_until) {
            (Some(d), Some(until)) => decode_digest(d).map(|d| (d, until)),
            _ => None,
        };
        let new = Tokens { current, previous };
        let mut tokens = self.tokens.lock().expect("tokens lock");
        let changed = *tokens != new;
        *tokens = new;
        changed
    }

    /// The digest of the token in force now (lowercase hex).
    pub fn current_token_sha256(&self) -> String {
        hex::encode(self.tokens.lock().expect("tokens lock").current)
    }

    /// Live connections whose token the channel no longer accepts at `now` (a rotated token
    /// past its grace period).
    pub fn connections_with_expired_tokens(&self, now: DateTime<Utc>) -> Vec<Arc<Connection>> {
        let tokens = self.tokens.lock().expect("tokens lock").clone();
        self.connections
            .lock()
            .expect("connections lock")
            .values()
            .filter(|c| !tokens.accepts(c.token_digest.expose(), now))
            .cloned()
            .collect()
    }

    /// Whether `ip` may use the channel (`allowed_connector_ips`).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.config
            .allowed_connector_ips
            .as_ref()
            .is_none_or(|ips| ips.contains(ip))
    }

    /// Admits a connection unless its address opens connections too fast (WebSocket and SSE
    /// only: a long poll is one request of a session) or the channel is at `max_connections`. `token_digest` is the digest of the
    /// token it authenticated with (see [`token_digest`]).
    pub fn attach(
        &self,
        token_digest: [u8; 32],
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
            token_digest: crate::secret::Secret::new(token_digest),
            close_cause: std::sync::atomic::AtomicU8::new(CloseCause::Admin as u8),
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

    /// Closes every live connection (the channel was changed or removed by a reload).
    pub fn close_all(&self) {
        for c in self.connections.lock().expect("connections lock").values() {
            c.close_because(CloseCause::Reconfigured);
        }
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
                require_client_cert: false,
                client_cert_subjects: None,
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
        let t = token_digest("right-token");
        let first = ch.attach(t, "websocket", None, ip, &stop).unwrap();
        assert_eq!(
            ch.attach(t, "websocket", None, ip, &stop).unwrap_err(),
            AttachError::Full
        );
        ch.detach(&first.id);
        assert!(ch.attach(t, "websocket", None, ip, &stop).is_ok());
    }

    #[test]
    fn a_rotation_replaces_the_token_and_keeps_the_old_one_until_its_deadline() {
        let c = channels(5);
        let ch = c.get("c").unwrap();
        let stop = CancellationToken::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let old = ch
            .attach(token_digest("right-token"), "websocket", None, ip, &stop)
            .unwrap();
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(60);
        let rotation = TokenRotation {
            current_sha256: hex::encode(token_digest("new-token")),
            previous_sha256: Some(ch.current_token_sha256()),
            previous_valid_until: Some(until),
            rotated_at: now,
        };
        assert!(ch.apply_rotation(&rotation));
        assert!(
            !ch.apply_rotation(&rotation),
            "the same rotation changes nothing"
        );
        assert!(c.authenticate("c", "new-token").is_some());
        assert!(c.authenticate("c", "right-token").is_some(), "in grace");
        assert!(ch.connections_with_expired_tokens(now).is_empty());
        let expired = ch.connections_with_expired_tokens(until);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, old.id);

        let ended = TokenRotation {
            previous_valid_until: Some(now - chrono::Duration::seconds(1)),
            ..rotation
        };
        ch.apply_rotation(&ended);
        assert!(c.authenticate("c", "right-token").is_none(), "after grace");
        assert!(c.authenticate("c", "new-token").is_some());
        assert!(!ch.apply_rotation(&TokenRotation {
            current_sha256: "not hex".into(),
            ..ended
        }));
    }

    #[test]
    fn a_closed_connection_tells_why() {
        let c = channels(10);
        let ch = c.get("c").unwrap();
        let (stop, ip) = (CancellationToken::new(), "127.0.0.1".parse().unwrap());
        let t = token_digest("right-token");
        let by_admin = ch.attach(t, "websocket", None, ip, &stop).unwrap();
        by_admin.close_because(CloseCause::Admin);
        assert!(by_admin.close.is_cancelled());
        assert_eq!(by_admin.close_reason().0, "disconnected_by_admin");
        let expired = ch.attach(t, "sse", None, ip, &stop).unwrap();
        expired.close_because(CloseCause::TokenExpired);
        assert_eq!(expired.close_reason().0, "token_expired");
        let reloaded = ch.attach(t, "sse", None, ip, &stop).unwrap();
        ch.close_all();
        assert!(reloaded.close.is_cancelled());
        assert_eq!(reloaded.close_reason().0, "channel_reconfigured");
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
        let t = token_digest("right-token");
        for _ in 0..3 {
            ch.attach(t, "sse", None, ip, &stop).unwrap();
        }
        assert!(matches!(
            ch.attach(t, "websocket", None, ip, &stop),
            Err(AttachError::TooFast(wait)) if wait > Duration::from_secs(5)
        ));
        // Another address has its own allowance, and polls are not counted.
        assert!(
            ch.attach(t, "sse", None, "10.0.0.1".parse().unwrap(), &stop)
                .is_ok()
        );
        let poll = ch.attach(t, "long_poll", None, ip, &stop).unwrap();
        assert!(poll.take_message().is_ok() && poll.take_message().is_ok());
        assert!(poll.take_message().is_err());
    }
}
