//! The receiver's channels: their settings, token checks and the live connections on each.
//!
//! Owns which connector may stream which channel (bearer channel token, constant time; an
//! unknown channel looks exactly like a bad token) and `max_connections`. Messages themselves
//! live in the buffer, not here.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::protocol::{ChannelName, ConnectionId, ConnectorId};

/// One relay channel as the receiver serves it.
#[derive(Debug)]
pub struct Channel {
    /// Its settings from webhooks.json.
    pub config: RelayConfig,
    token_digest: [u8; 32],
    created_at: DateTime<Utc>,
    connections: Mutex<HashMap<ConnectionId, Arc<Connection>>>,
}

/// A live streaming connection.
#[derive(Debug)]
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

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The channel has `max_connections` connections.
    Full,
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

fn new_channel(config: RelayConfig) -> Arc<Channel> {
    Arc::new(Channel {
        token_digest: digest(config.channel_token.expose()),
        config,
        created_at: Utc::now(),
        connections: Mutex::new(HashMap::new()),
    })
}

fn digest(token: &str) -> [u8; 32] {
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
            match channels.remove(&name) {
                Some(old) if old.config == config => {
                    next.insert(name, old);
                }
                Some(old) => {
                    old.close_all();
                    changes.changed.push(name.clone());
                    next.insert(name, new_channel(config));
                }
                None => {
                    changes.added.push(name.clone());
                    next.insert(name, new_channel(config));
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
        let presented = digest(token);
        // Compare against a dummy digest for unknown channels so timing does not tell them apart.
        let channel = self.get(name);
        let expected = channel.as_ref().map_or([0u8; 32], |c| c.token_digest);
        let equal: bool = subtle::ConstantTimeEq::ct_eq(&presented[..], &expected[..]).into();
        channel.filter(|_| equal)
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

    /// Admits a connection unless the channel is at `max_connections`.
    pub fn attach(
        &self,
        protocol: &'static str,
        connector_id: Option<ConnectorId>,
        remote_ip: IpAddr,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Connection>, AttachError> {
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
            c.close.cancel();
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
                allowed_connector_ips: None,
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
}
