//! The `Buffer` trait: where accepted webhooks wait until a connector acked them.
//!
//! This module owns the queue contract every backend keeps (durable enqueue, leases per
//! connection, ack / nack / release, ack timeouts, TTL and dead letters, stats). It does not
//! know about HTTP or WebSockets: the receiver calls it.

#[cfg(test)]
mod contract;
pub mod embedded;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::RelayConfig;
use crate::message::{Message, MessageMeta};
use crate::protocol::{ChannelName, ConnectionId, MessageId, WebhookId};

pub use embedded::Embedded;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{QueueType, RabbitBuffer, RabbitOptions};
#[cfg(feature = "redis")]
pub use redis::{RedisBuffer, RedisOptions};

/// The limits a buffer enforces for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSettings {
    /// The channel.
    pub name: ChannelName,
    /// Unacked messages (queued, waiting for a retry, or in flight) before enqueue is refused.
    pub max_queue_size: u64,
    /// Time to live of a message.
    pub ttl: Duration,
    /// How long a lease lasts without an ack.
    pub ack_timeout: Duration,
    /// Deliveries after which a failing message is dead-lettered.
    pub max_delivery_attempts: u32,
}

impl ChannelSettings {
    /// The settings of a relay channel from webhooks.json.
    pub fn from_relay(relay: &RelayConfig) -> Self {
        Self {
            name: relay.channel.clone(),
            max_queue_size: relay.max_queue_size,
            ttl: relay.ttl(),
            ack_timeout: relay.ack_timeout(),
            max_delivery_attempts: relay.max_delivery_attempts,
        }
    }
}

/// A webhook to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its channel.
    pub channel: ChannelName,
    /// The webhook it was posted to.
    pub webhook_id: WebhookId,
    /// The sender's address.
    pub source_ip: Option<IpAddr>,
    /// Request headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// The raw body.
    pub body: Bytes,
}

impl NewMessage {
    /// The message to store: a new id, received now, expiring `ttl` from now, never delivered.
    pub fn into_message(self, ttl: Duration, sequence: u64) -> Message {
        let received_at = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        Message {
            id: MessageId::generate(),
            channel: self.channel,
            webhook_id: self.webhook_id,
            sequence,
            received_at,
            expires_at: received_at
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            source_ip: self.source_ip,
            headers: self.headers,
            body: self.body,
            delivery_count: 0,
        }
    }
}

/// What was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The new message's id.
    pub id: MessageId,
    /// Its sequence number in the channel.
    pub sequence: u64,
}

/// What a nack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    /// Back in the queue, delivered again after a backoff.
    Requeued,
    /// Moved to the dead letters.
    DeadLettered,
}

/// Why a message became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// It outlived `ttl_seconds`.
    Expired,
    /// The connector nacked it without retry (e.g. the target answered 4xx).
    Rejected,
    /// It failed `max_delivery_attempts` times.
    MaxAttempts,
}

impl DeadReason {
    /// The stable text of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::MaxAttempts => "max_attempts",
        }
    }
}

/// A dead letter: the message and why it died.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message, body included.
    pub message: Message,
    /// Why.
    pub reason: DeadReason,
    /// The last error reported for it (e.g. "target answered 400 Bad Request").
    pub error: Option<String>,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
}

/// A message leased to a connection, as the admin API lists it.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The message, without its body.
    pub meta: MessageMeta,
    /// The connection holding the lease.
    pub connection: ConnectionId,
}

/// Which dead letters an admin operation (replay, purge) applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadSelection {
    /// These messages; ids that are not dead letters of the channel are skipped.
    Ids(Vec<MessageId>),
    /// Every dead letter of the channel.
    All,
    /// Those dead-lettered in `[since, until)`; an open end is unbounded.
    Between {
        /// Inclusive lower bound on `dead_lettered_at`.
        since: Option<DateTime<Utc>>,
        /// Exclusive upper bound on `dead_lettered_at`.
        until: Option<DateTime<Utc>>,
    },
}

impl DeadSelection {
    /// Whether `dead` is selected.
    pub fn matches(&self, dead: &DeadLetter) -> bool {
        match self {
            Self::Ids(ids) => ids.contains(&dead.message.id),
            Self::All => true,
            Self::Between { since, until } => {
                since.is_none_or(|s| dead.dead_lettered_at >= s)
                    && until.is_none_or(|u| dead.dead_lettered_at < u)
            }
        }
    }
}

/// Counts of one channel, as the admin API shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferStats {
    /// Waiting for a connector (including those waiting for a retry).
    pub messages_queued: u64,
    /// Delivered and not yet acked.
    pub messages_in_flight: u64,
    /// Acked since the channel was created.
    pub messages_delivered: u64,
    /// Expired since the channel was created.
    pub messages_expired: u64,
    /// Dead letters now held.
    pub messages_dead_lettered: u64,
    /// Messages dead-lettered since the channel was created (replays and purges do not lower
    /// it). Not part of the documented ChannelStats shape: `GET /metrics` reports it.
    #[serde(default, skip_serializing)]
    pub messages_dead_lettered_total: u64,
}

/// A channel token rotated through the admin API, as every instance on the backend sees it.
/// Only SHA-256 digests (lowercase hex) are kept; the plain token is shown once, to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRotation {
    /// Digest of the token in force now.
    pub current_sha256: String,
    /// Digest of the token it replaced, accepted until `previous_valid_until`.
    pub previous_sha256: Option<String>,
    /// End of the grace period of the previous token.
    pub previous_valid_until: Option<DateTime<Utc>>,
    /// When the rotation happened.
    pub rotated_at: DateTime<Utc>,
}

/// Errors of a buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The channel holds `max_queue_size` unacked messages.
    #[error("channel `{0}` is full")]
    Full(ChannelName),
    /// No such channel is configured.
    #[error("channel `{0}` is not configured")]
    UnknownChannel(ChannelName),
    /// The storage failed; nothing was stored.
    #[error("the buffer's storage failed: {0}")]
    Storage(String),
    /// The buffer is shutting down.
    #[error("the buffer is closed")]
    Closed,
}

/// A durable message queue with one logical queue per channel.
#[async_trait]
pub trait Buffer: Send + Sync + 'static {
    /// Creates or updates channels (at start-up and on reload). Channels not listed keep their
    /// stored messages but accept nothing new.
    async fn configure(&self, channels: &[ChannelSettings]) -> Result<(), BufferError>;

    /// Stores a message durably; returns only once it would survive a crash.
    async fn enqueue(&self, message: NewMessage) -> Result<Stored, BufferError>;

    /// Waits for the next message for `connection` and leases it to that connection, once the
    /// connection holds fewer than `max_in_flight` leases. Cancel-safe: a lease is taken only
    /// when the message is returned.
    async fn next(
        &self,
        channel: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
    ) -> Result<Message, BufferError>;

    /// Leases, without waiting for new ones, up to `max` more messages that are ready now (to
    /// send them in one batch after `next`). The default takes them from `next` while it
    /// answers at once; a backend over the network leases them in one round trip.
    async fn next_ready(
        &self,
        channel: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
        max: usize,
    ) -> Result<Vec<Message>, BufferError> {
        use futures_util::FutureExt as _;
        let mut ready = Vec::new();
        while ready.len() < max {
            match self.next(channel, connection, max_in_flight).now_or_never() {
                Some(Ok(m)) => ready.push(m),
                Some(Err(e)) if ready.is_empty() => return Err(e),
                _ => break,
            }
        }
        Ok(ready)
    }

    /// Acks a message leased to `connection`. `Ok(false)`: it was not in flight there (ignored).
    async fn ack(
        &self,
        channel: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
    ) -> Result<bool, BufferError>;

    /// Acks several messages leased to `connection`, each as [`Self::ack`] would, in order: one
    /// answer per id (`false`: not in flight there, or acked earlier in the same list). Every
    /// ack is applied when this returns. The default acks them one by one; a backend over the
    /// network applies them in one round trip.
    async fn ack_many(
        &self,
        channel: &ChannelName,
        connection: &ConnectionId,
        ids: &[MessageId],
    ) -> Result<Vec<bool>, BufferError> {
        let mut acked = Vec::with_capacity(ids.len());
        for id in ids {
            acked.push(self.ack(channel, connection, id).await?);
        }
        Ok(acked)
    }

    /// Nacks a message leased to `connection`; `None` when it was not in flight there.
    async fn nack(
        &self,
        channel: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
        retry: bool,
        reason: Option<String>,
    ) -> Result<Option<NackOutcome>, BufferError>;

    /// Returns every lease of `connection` to the queue at once (it disconnected).
    async fn release(
        &self,
        channel: &ChannelName,
        connection: &ConnectionId,
    ) -> Result<usize, BufferError>;

    /// Counts of a channel.
    async fn stats(&self, channel: &ChannelName) -> Result<BufferStats, BufferError>;

    /// Dead letters of a channel, oldest first.
    async fn dead_letters(
        &self,
        channel: &ChannelName,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DeadLetter>, BufferError>;

    /// Metadata of queued (not in flight) messages, oldest first.
    async fn queued(
        &self,
        channel: &ChannelName,
        limit: usize,
    ) -> Result<Vec<MessageMeta>, BufferError>;

    /// Metadata of messages in flight and who holds them, oldest first.
    async fn in_flight(
        &self,
        channel: &ChannelName,
        limit: usize,
    ) -> Result<Vec<InFlight>, BufferError>;

    /// One dead letter, body included; `None` when it is not a dead letter of the channel.
    async fn dead_letter(
        &self,
        channel: &ChannelName,
        id: &MessageId,
    ) -> Result<Option<DeadLetter>, BufferError>;

    /// Moves the selected dead letters back to the queue with their attempts reset to 0, in
    /// sequence order, regardless of `max_queue_size` (an operator asked for it). Returns the
    /// ids replayed; they are durable in the queue when this returns.
    async fn replay_dead(
        &self,
        channel: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError>;

    /// Deletes the selected dead letters for good. Returns the ids deleted.
    async fn purge_dead(
        &self,
        channel: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError>;

    /// The last rotation of a channel's token, if it was ever rotated. It overrides the token
    /// of the config file.
    async fn token_rotation(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<TokenRotation>, BufferError>;

    /// Stores a rotation durably (it survives restarts and is seen by every instance).
    async fn save_token_rotation(
        &self,
        channel: &ChannelName,
        rotation: &TokenRotation,
    ) -> Result<(), BufferError>;

    /// Whether the backend is reachable and writable.
    async fn healthy(&self) -> bool;

    /// The backend's name for operators (the admin overview, `wcon dash`): the implementing
    /// type's name in lowercase, e.g. `embedded`.
    fn backend(&self) -> String {
        let name = std::any::type_name::<Self>();
        name.rsplit("::").next().unwrap_or(name).to_lowercase()
    }

    /// Writes out whatever is pending (acks, counters) and stops; called on shutdown.
    async fn close(&self);
}
