//! The RabbitMQ buffer (`--buffer rabbitmq`): durable queues per channel, for several
//! `wcon serve` instances on one RabbitMQ (3.10 or newer).
//!
//! Owns the queue layout, leases (one AMQP channel and consumer per wcon connection, prefetch =
//! `max_in_flight`), ack timeouts, retries with backoff, TTL and dead letters, counters,
//! sequences and rotated tokens. Queues of channel `c` under prefix `p` (default `wcon.`):
//! - `p.c` the queue (quorum by default, or classic): `x-max-length` = `max_queue_size` with
//!   `x-overflow: reject-publish`, so a full queue nacks the publish (→ 503). RabbitMQ counts
//!   only *ready* messages against it: messages delivered to consumers (in flight, or
//!   prefetched up to `max_in_flight` per connection) and those waiting for a retry do not
//!   count. Per-message expiration = what is left of `ttl_seconds`; expired messages are
//!   dead-lettered by RabbitMQ (at-least-once on quorum queues) to `p.c.expired`, from where an
//!   instance moves them to the dead letters with reason `expired`. A message past its TTL
//!   that reaches a consumer is dead-lettered there instead of being delivered.
//! - `p.c.retry.<ms>` one delay queue per backoff step (500 ms doubling to 60 s,
//!   `x-message-ttl`, dead-lettered back to `p.c`; declared on first use): a nack with retry
//!   republishes the message there (attempts + 1 in the body), confirmed, then acks the
//!   delivery.
//! - `p.c.dead` the dead letters (why, when, the message). Listing, fetching, replaying and
//!   purging take them all with `basic.get` under the channel lock and put back what stays
//!   (so these admin calls read every dead letter of the channel: O(dead letters)).
//! - `p.c.state` one message with the counters (delivered, expired, dead-lettered in total)
//!   and the rotated token (digests only), replaced under the channel lock.
//! - `p.c.lock` the channel lock: an exclusive queue (one connection at a time; the broker
//!   drops it when that connection dies).
//! - `p.c.seq` a stream: one tick per stored message; its offset + 1 is the sequence, so
//!   sequences are unique and increasing across instances (gaps where a publish was refused).
//!   `p.c.done` a stream of messages that left the queue or came back. Every instance reads
//!   both and keeps the index `queued` lists from (a queue cannot be browsed without
//!   disturbing it). Both streams keep at most [`STREAM_MAX_BYTES`]; an instance started
//!   after older ticks were dropped does not list those messages (they are still delivered).
//!
//! Enqueue: tick → sequence → publish with publisher confirm → 200. Concurrent enqueues share
//! one confirm channel and confirm independently. Acks and dead letters update the counters
//! and the index in the background (every [`FLUSH_INTERVAL`]; `stats` flushes this
//! instance's first). Leases live in the instance that holds the wcon connection; `ack` /
//! `nack` arriving through another instance, and the in-flight part of `stats` /
//! `in_flight` / `queued`, are asked of every instance over the `p.rpc` fanout exchange
//! (instances are counted as consumers of `p.presence`).
//!
//! Delivery counts are exact for retries and ack timeouts (the attempts travel in the body);
//! deliveries returned by the broker (a connection released or lost) add RabbitMQ's
//! `x-delivery-count` on quorum queues, or 1 when redelivered on classic queues. A message
//! whose lease timed out is republished at the end of the queue (or returned to its head
//! when the queue is full). When RabbitMQ is unreachable, calls fail (ingest answers 503,
//! `/health/ready` says the buffer is down) and the next call connects again.

mod link;
mod log;
mod rpc;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, BasicProperties, Channel, Consumer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use self::link::{
    Link, Locked, Published, declare, declare_raw, header_int, number, publish_on, storage, table,
    text, timed,
};
use self::log::{DoneEvent, Index};
use super::{
    Buffer, BufferError, BufferStats, ChannelSettings, DeadLetter, DeadReason, DeadSelection,
    InFlight, NackOutcome, NewMessage, Stored, TokenRotation,
};
use crate::message::{Message, MessageMeta};
use crate::protocol::{ChannelName, ConnectionId, MessageId};
use crate::secret::Secret;

/// Deliveries prefetched by a connection that has not asked for this long are given back,
/// so that a connection that stopped asking does not sit on them.
const IDLE_GIVE_BACK: Duration = Duration::from_millis(500);
/// How often ack timeouts are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// How often counters and the index are written (each write takes the channel lock, which
/// is a queue declared and deleted: RabbitMQ metadata work, so not too often).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Backoff steps of retries (ms); one delay queue each.
const RETRY_STEPS_MS: [u64; 8] = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000];
/// Retention of the `seq` and `done` streams.
pub const STREAM_MAX_BYTES: i64 = 256 * 1024 * 1024;
/// How long a tick or done event may take to come back through this instance's reader.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// Which kind of queue holds a channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated, durable (Raft); the default.
    #[default]
    Quorum,
    /// Classic queues (one node; dead-lettering is at-most-once).
    Classic,
}

impl QueueType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

/// Where the RabbitMQ buffer connects and which queues it uses.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// `amqp://user:password@host:port/vhost` (or `amqps://`).
    pub url: Secret<String>,
    /// Prefix of every queue name (deployments sharing one RabbitMQ need their own).
    pub prefix: String,
    /// Quorum or classic queues.
    pub queue_type: QueueType,
}

/// The RabbitMQ buffer. Cheap to clone; `close` (or the last clone dropped) stops its tasks.
#[derive(Clone)]
pub struct RabbitBuffer {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    prefix: String,
    queue_type: QueueType,
    channels: Mutex<HashMap<ChannelName, Arc<Chan>>>,
    rpc: rpc::Rpc,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The queue names of one channel.
pub(super) struct Names {
    main: String,
    expired: String,
    dead: String,
    seq: String,
    done: String,
    state: String,
    lock: String,
}

impl Names {
    fn new(prefix: &str, channel: &ChannelName) -> Self {
        let base = format!("{prefix}{}", channel.as_str());
        Self {
            expired: format!("{base}.expired"),
            dead: format!("{base}.dead"),
            seq: format!("{base}.seq"),
            done: format!("{base}.done"),
            state: format!("{base}.state"),
            lock: format!("{base}.lock"),
            main: base,
        }
    }

    fn retry(&self, step_ms: u64) -> String {
        format!("{}.retry.{step_ms}", self.main)
    }
}

/// Every queue the buffer declares under `prefix` for `channels`, and the deployment's own
/// (`presence`, `health`): what to delete to remove a deployment (tests and the benchmark
/// clean up with it). The exchange `{prefix}rpc` is not a queue.
pub fn queue_names(prefix: &str, channels: &[ChannelName]) -> Vec<String> {
    let mut all = vec![format!("{prefix}presence"), format!("{prefix}health")];
    for channel in channels {
        let n = Names::new(prefix, channel);
        all.extend(RETRY_STEPS_MS.iter().map(|s| n.retry(*s)));
        all.extend([n.main, n.expired, n.dead, n.seq, n.done, n.state]);
    }
    all
}

/// Deletes what [`queue_names`] lists and the `{prefix}rpc` exchange (a bounded best effort:
/// errors are ignored).
pub async fn delete_deployment(url: &str, prefix: &str, channels: &[ChannelName]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let work = async {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        for q in queue_names(prefix, channels) {
            let _ = ch
                .queue_delete(ShortString::from(q), QueueDeleteOptions::default())
                .await;
        }
        let _ = ch
            .exchange_delete(
                ShortString::from(format!("{prefix}rpc")),
                ExchangeDeleteOptions::default(),
            )
            .await;
        conn.close(200, "deleted".into()).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), work).await;
}

/// One channel as this instance knows it.
pub(super) struct Chan {
    settings: Mutex<ChannelSettings>,
    names: Names,
    leases: Mutex<HashMap<ConnectionId, Arc<LeaseConn>>>,
    /// Serialises making a connection's consumer.
    opening: tokio::sync::Mutex<()>,
    /// Serialises this instance's holders of the channel lock (the exclusive queue is per
    /// connection, so it does not exclude this instance's other tasks).
    local: tokio::sync::Mutex<()>,
    index: Mutex<Index>,
    pending: Mutex<Pending>,
    /// Serialises flushes.
    flushing: tokio::sync::Mutex<()>,
    /// Backoff steps whose delay queue this instance declared.
    retry_declared: Mutex<HashSet<u64>>,
}

impl Chan {
    fn name(&self) -> ChannelName {
        self.settings.lock().expect("settings lock").name.clone()
    }
    fn settings(&self) -> ChannelSettings {
        self.settings.lock().expect("settings lock").clone()
    }
    /// This instance's lease connections of the channel, as they are now.
    fn lease_conns(&self) -> Vec<Arc<LeaseConn>> {
        self.leases
            .lock()
            .expect("lease lock")
            .values()
            .cloned()
            .collect()
    }
}

/// Counter changes and index events not yet written.
#[derive(Default)]
struct Pending {
    delivered: u64,
    expired: u64,
    dead: u64,
    done: Vec<MessageId>,
    requeued: Vec<MessageMeta>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.delivered == 0
            && self.expired == 0
            && self.dead == 0
            && self.done.is_empty()
            && self.requeued.is_empty()
    }
    fn merge(&mut self, other: Pending) {
        self.delivered += other.delivered;
        self.expired += other.expired;
        self.dead += other.dead;
        self.done.extend(other.done);
        self.requeued.extend(other.requeued);
    }
}

/// The leases of one wcon connection: its AMQP channel, consumer and what it was handed.
struct LeaseConn {
    amqp: Channel,
    queue: String,
    /// The consumer; cancelled while the connection does not ask (see [`IDLE_GIVE_BACK`]).
    consumer: tokio::sync::Mutex<Option<Consumer>>,
    /// Deliveries taken from the consumer but not handed out yet.
    waiting: Mutex<VecDeque<lapin::message::Delivery>>,
    held: Mutex<HashMap<MessageId, Held>>,
    /// When a `next` last returned.
    used: Mutex<Instant>,
}

impl LeaseConn {
    /// Moves what the consumer already received into `waiting`, without blocking.
    fn drain(&self) {
        let Ok(mut guard) = self.consumer.try_lock() else {
            return;
        };
        if let Some(consumer) = guard.as_mut() {
            while let Some(Some(Ok(d))) = consumer.next().now_or_never() {
                self.waiting.lock().expect("waiting lock").push_back(d);
            }
        }
    }

    fn drain_locked(&self, guard: &mut Option<Consumer>) {
        if let Some(consumer) = guard.as_mut() {
            while let Some(Some(Ok(d))) = consumer.next().now_or_never() {
                self.waiting.lock().expect("waiting lock").push_back(d);
            }
        }
    }

    /// The consumer, started again if it was cancelled.
    async fn consumer(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Consumer>>, BufferError> {
        let mut guard = self.consumer.lock().await;
        if guard.is_none() {
            *guard = Some(
                timed(self.amqp.basic_consume(
                    ShortString::from(self.queue.as_str()),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ))
                .await?,
            );
        }
        Ok(guard)
    }

    /// Cancels the consumer in `guard` and gives back what it received and nobody was
    /// handed: republished at the end of the queue with its attempts unchanged (confirmed,
    /// then acked), or returned to the queue's head when the queue refuses it. A return
    /// would count as a delivery on quorum queues; these were never delivered.
    async fn give_back(&self, link: &Link, guard: &mut Option<Consumer>) {
        if let Some(mut consumer) = guard.take() {
            let _ = timed(
                self.amqp
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default()),
            )
            .await;
            while let Some(Some(Ok(d))) = consumer.next().now_or_never() {
                self.waiting.lock().expect("waiting lock").push_back(d);
            }
        }
        let unhanded: Vec<_> = self
            .waiting
            .lock()
            .expect("waiting lock")
            .drain(..)
            .collect();
        for d in unhanded {
            let properties = match unwrap(&d.data, &d.properties, d.redelivered) {
                Ok(m) => queue_properties(&m),
                Err(_) => BasicProperties::default(),
            };
            match link.publish(&self.queue, &d.data, properties).await {
                Ok(Published::Stored) => {
                    let _ = d.acker.ack(BasicAckOptions::default()).await;
                }
                _ => {
                    let _ = d
                        .acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await;
                }
            }
        }
    }

    /// Gives back what was never handed out and closes the AMQP channel, which returns every
    /// unacked delivery (the leases) to the queue at once.
    async fn close(&self, link: &Link) {
        match self.consumer.try_lock() {
            Ok(mut guard) => self.give_back(link, &mut guard).await,
            // A `next` waits on the consumer, so it holds nothing unhanded.
            Err(_) => self.give_back(link, &mut None).await,
        }
        let _ = timed(self.amqp.close(200, "released".into())).await;
    }
}

/// A message handed to a connection.
struct Held {
    acker: Acker,
    message: Message,
    deadline: Instant,
}

/// The counters and rotated token, stored as one message of `p.c.state`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    version: u64,
    delivered: u64,
    expired: u64,
    dead_total: u64,
    token: Option<TokenRotation>,
}

/// What a dead letter carries besides the message.
#[derive(Debug, Serialize, Deserialize)]
struct DeadInfo {
    reason: DeadReason,
    #[serde(default)]
    error: Option<String>,
    dead_lettered_at: DateTime<Utc>,
}

/// A queued message's body: attempts so far (4 bytes) then the stored message.
fn wrap(attempts: u32, m: &Message) -> Vec<u8> {
    let mut out = attempts.to_be_bytes().to_vec();
    out.extend(m.encode());
    out
}

/// The message of a queued body, with its delivery count for this delivery.
fn unwrap(
    data: &[u8],
    properties: &BasicProperties,
    redelivered: bool,
) -> Result<Message, BufferError> {
    if data.len() < 4 {
        return Err(storage("a message body is too short"));
    }
    let attempts = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let mut m = Message::decode(&data[4..]).map_err(storage)?;
    let returned = match header_int(properties, "x-delivery-count") {
        Some(n) => u32::try_from(n).unwrap_or(0),
        None => u32::from(redelivered),
    };
    m.delivery_count = attempts + returned + 1;
    Ok(m)
}

fn wrap_dead(info: &DeadInfo, m: &Message) -> Vec<u8> {
    let info = serde_json::to_vec(info).expect("dead info serialises");
    let mut out = (info.len() as u32).to_be_bytes().to_vec();
    out.extend(info);
    out.extend(m.encode());
    out
}

fn unwrap_dead(data: &[u8]) -> Result<DeadLetter, BufferError> {
    let bad = || storage("an unreadable dead letter");
    let len = u32::from_be_bytes(
        data.get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let info: DeadInfo =
        serde_json::from_slice(data.get(4..4 + len).ok_or_else(bad)?).map_err(storage)?;
    let message = Message::decode(data.get(4 + len..).ok_or_else(bad)?).map_err(storage)?;
    Ok(DeadLetter {
        message,
        reason: info.reason,
        error: info.error,
        dead_lettered_at: info.dead_lettered_at,
    })
}

/// Properties of a message published to the queue: persistent, expiring with its TTL.
fn queue_properties(m: &Message) -> BasicProperties {
    let left = (m.expires_at - Utc::now()).num_milliseconds().max(1);
    BasicProperties::default()
        .with_message_id(ShortString::from(m.id.as_str()))
        .with_expiration(ShortString::from(left.to_string()))
}

/// Moves a message to the dead letters (confirmed), then acks its delivery.
async fn bury(
    link: &Link,
    chan: &Chan,
    message: Message,
    reason: DeadReason,
    error: Option<String>,
    acker: Option<Acker>,
) -> Result<(), BufferError> {
    let info = DeadInfo {
        reason,
        error,
        dead_lettered_at: Utc::now(),
    };
    let body = wrap_dead(&info, &message);
    match link
        .publish(&chan.names.dead, &body, BasicProperties::default())
        .await?
    {
        Published::Stored => {}
        Published::Refused => return Err(storage("the dead-letter queue refused a message")),
    }
    if let Some(acker) = acker {
        let _ = acker.ack(BasicAckOptions::default()).await;
    }
    tracing::info!(channel = %message.channel, message_id = %message.id, webhook = %message.webhook_id, reason = reason.as_str(), attempts = message.delivery_count, "dead lettered");
    let mut p = chan.pending.lock().expect("pending lock");
    p.dead += 1;
    if reason == DeadReason::Expired {
        p.expired += 1;
    }
    p.done.push(message.id);
    Ok(())
}

/// The `x-max-length` that holds `max_queue_size` ready messages: a quorum queue accepts
/// the publish that takes it past its limit (and refuses the next ones), a classic one
/// refuses it.
fn max_length(max_queue_size: u64, quorum: bool) -> i64 {
    let max = max_queue_size.min(i64::MAX as u64) as i64;
    if quorum { (max - 1).max(0) } else { max }
}

/// Backoff before the `attempt`th retry.
fn retry_step(attempt: u32) -> u64 {
    RETRY_STEPS_MS[(attempt.max(1) as usize - 1).min(RETRY_STEPS_MS.len() - 1)]
}

/// Writes pending counters and index events of `chan`.
async fn flush(link: &Link, chan: &Chan) -> Result<(), BufferError> {
    let _one = chan.flushing.lock().await;
    let p = std::mem::take(&mut *chan.pending.lock().expect("pending lock"));
    if p.is_empty() {
        return Ok(());
    }
    let result = flush_these(link, chan, &p).await;
    if result.is_err() {
        chan.pending.lock().expect("pending lock").merge(p);
    }
    result
}

async fn flush_these(link: &Link, chan: &Chan, p: &Pending) -> Result<(), BufferError> {
    if p.delivered + p.expired + p.dead > 0 {
        let locked = lock(link, chan).await?;
        let result = async {
            let (mut state, ackers) = read_state(&locked.1.channel, &chan.names).await?;
            state.delivered += p.delivered;
            state.expired += p.expired;
            state.dead_total += p.dead;
            write_state(&locked.1.channel, &chan.names, &mut state, ackers).await
        }
        .await;
        unlock(locked).await;
        result?;
    }
    if !p.done.is_empty() || !p.requeued.is_empty() {
        let event = DoneEvent {
            nonce: MessageId::generate().as_str().to_string(),
            done: p.done.clone(),
            requeued: p.requeued.clone(),
        };
        let echo = chan.index.lock().expect("index lock").expect(&event.nonce);
        let body = serde_json::to_vec(&event).map_err(storage)?;
        let published = link
            .publish(&chan.names.done, &body, BasicProperties::default())
            .await;
        if !matches!(published, Ok(Published::Stored)) {
            chan.index.lock().expect("index lock").forget(&event.nonce);
            published?;
            return Err(storage("the done stream refused an event"));
        }
        // The index shows the event once this instance's reader folded it.
        let _ = tokio::time::timeout(ECHO_TIMEOUT, echo).await;
    }
    Ok(())
}

type Lock<'a> = (tokio::sync::MutexGuard<'a, ()>, Locked);

/// Takes the channel lock (this instance's tasks first, then the deployment's).
async fn lock<'a>(link: &Link, chan: &'a Chan) -> Result<Lock<'a>, BufferError> {
    let local = chan.local.lock().await;
    let locked = Locked::acquire(link, &chan.names.lock).await?;
    Ok((local, locked))
}

async fn unlock(lock: Lock<'_>) {
    lock.1.unlock().await;
}

/// Takes every message of `queue` on `channel` without acking it.
async fn take_all(
    channel: &Channel,
    queue: &str,
) -> Result<Vec<lapin::message::Delivery>, BufferError> {
    let mut out = Vec::new();
    while let Some(got) =
        timed(channel.basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false }))
            .await?
    {
        out.push(got.delivery);
    }
    Ok(out)
}

/// The newest state message (there may be two after a crash) and the deliveries to ack once
/// a newer one is written.
async fn read_state(channel: &Channel, names: &Names) -> Result<(State, Vec<Acker>), BufferError> {
    let mut newest = State::default();
    let mut ackers = Vec::new();
    for d in take_all(channel, &names.state).await? {
        if let Ok(s) = serde_json::from_slice::<State>(&d.data)
            && s.version >= newest.version
        {
            newest = s;
        }
        ackers.push(d.acker);
    }
    Ok((newest, ackers))
}

async fn write_state(
    channel: &Channel,
    names: &Names,
    state: &mut State,
    ackers: Vec<Acker>,
) -> Result<(), BufferError> {
    state.version += 1;
    let body = serde_json::to_vec(state).map_err(storage)?;
    match publish_on(channel, &names.state, &body, BasicProperties::default()).await? {
        Published::Stored => {}
        Published::Refused => return Err(storage("the state queue refused a write")),
    }
    for a in ackers {
        let _ = a.ack(BasicAckOptions::default()).await;
    }
    Ok(())
}

impl RabbitBuffer {
    /// A buffer on the RabbitMQ at `options.url`; connects on first use.
    pub fn open(options: &RabbitOptions) -> Result<Self, BufferError> {
        let url = options.url.expose();
        if url.parse::<lapin::uri::AMQPUri>().is_err() {
            return Err(BufferError::Storage(
                "invalid RabbitMQ URL; expected amqp://user:password@host:port/vhost".into(),
            ));
        }
        if options.prefix.contains(char::is_whitespace) {
            return Err(BufferError::Storage(
                "the RabbitMQ prefix must not contain spaces".into(),
            ));
        }
        let link = Arc::new(Link::new(
            options.url.clone(),
            "wcon serve buffer".to_string(),
        ));
        let stop = CancellationToken::new();
        let buffer = Self {
            inner: Arc::new(Inner {
                rpc: rpc::Rpc::new(&options.prefix),
                link,
                prefix: options.prefix.clone(),
                queue_type: options.queue_type,
                channels: Mutex::new(HashMap::new()),
                stop,
            }),
        };
        buffer.spawn_sweeper();
        Ok(buffer)
    }

    fn chan(&self, name: &ChannelName) -> Result<Arc<Chan>, BufferError> {
        self.inner
            .channels
            .lock()
            .expect("channel map lock")
            .get(name)
            .cloned()
            .ok_or_else(|| BufferError::UnknownChannel(name.clone()))
    }

    pub(super) fn chans(&self) -> Vec<Arc<Chan>> {
        self.inner
            .channels
            .lock()
            .expect("channel map lock")
            .values()
            .cloned()
            .collect()
    }

    fn queue_args(&self, extra: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = table(&[("x-queue-type", text(self.inner.queue_type.as_str()))]);
        for (k, v) in extra {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    /// Declares the queues of a channel.
    async fn declare_channel(&self, s: &ChannelSettings, names: &Names) -> Result<(), BufferError> {
        let quorum = self.inner.queue_type == QueueType::Quorum;
        let ch = self.inner.link.channel().await?;
        let mut main = vec![
            ("x-max-length", number(max_length(s.max_queue_size, quorum))),
            ("x-overflow", text("reject-publish")),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&names.expired)),
        ];
        if quorum {
            main.push(("x-dead-letter-strategy", text("at-least-once")));
        }
        match timed(async { Ok(declare_raw(&ch, &names.main, self.queue_args(&main)).await) })
            .await?
        {
            Ok(_) => {}
            // PRECONDITION_FAILED: the queue exists with other arguments (max_queue_size
            // changed); it keeps those until it is deleted.
            Err(e) if link::is_code(&e, 406) => {
                tracing::warn!(queue = %names.main, "the queue exists with another max_queue_size; it keeps its own until it is deleted");
            }
            Err(e) => return Err(storage(e)),
        }
        let ch = if ch.status().connected() {
            ch
        } else {
            self.inner.link.channel().await?
        };
        for q in [&names.expired, &names.dead, &names.state] {
            declare(&ch, q, self.queue_args(&[])).await?;
        }
        log::declare_streams(&ch, names).await?;
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    /// The leases of `connection`, made with a consumer of prefetch `max_in_flight`.
    async fn lease_conn(
        &self,
        chan: &Arc<Chan>,
        connection: &ConnectionId,
        max_in_flight: u32,
    ) -> Result<Arc<LeaseConn>, BufferError> {
        if let Some(l) = chan.leases.lock().expect("lease lock").get(connection) {
            return Ok(l.clone());
        }
        let _opening = chan.opening.lock().await;
        if let Some(l) = chan.leases.lock().expect("lease lock").get(connection) {
            return Ok(l.clone());
        }
        let amqp = self.inner.link.channel().await?;
        let prefetch = max_in_flight.clamp(1, u32::from(u16::MAX)) as u16;
        timed(amqp.basic_qos(prefetch, BasicQosOptions::default())).await?;
        let lc = Arc::new(LeaseConn {
            amqp,
            queue: chan.names.main.clone(),
            consumer: tokio::sync::Mutex::new(None),
            waiting: Mutex::new(VecDeque::new()),
            held: Mutex::new(HashMap::new()),
            used: Mutex::new(Instant::now()),
        });
        // Start consuming now, so deliveries are on their way by the first `next`.
        drop(lc.consumer().await?);
        chan.leases
            .lock()
            .expect("lease lock")
            .insert(connection.clone(), lc.clone());
        Ok(lc)
    }

    /// Forgets a connection whose AMQP channel broke (the broker returned its deliveries).
    fn drop_lease_conn(&self, chan: &Chan, connection: &ConnectionId, lc: &Arc<LeaseConn>) {
        let mut leases = chan.leases.lock().expect("lease lock");
        if leases.get(connection).is_some_and(|l| Arc::ptr_eq(l, lc)) {
            leases.remove(connection);
        }
    }

    /// Leases a delivery to `lc`, or dead-letters it when it outlived its TTL (`None`).
    fn take(
        &self,
        chan: &Arc<Chan>,
        lc: &LeaseConn,
        d: lapin::message::Delivery,
    ) -> Option<Message> {
        let m = match unwrap(&d.data, &d.properties, d.redelivered) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(channel = %chan.name(), error = %e, "dropping an unreadable message");
                let acker = d.acker;
                tokio::spawn(async move { acker.ack(BasicAckOptions::default()).await });
                return None;
            }
        };
        if m.expires_at <= Utc::now() {
            let (link, chan) = (self.inner.link.clone(), chan.clone());
            let acker = d.acker;
            tokio::spawn(async move {
                let mut m = m;
                m.delivery_count = m.delivery_count.saturating_sub(1);
                if let Err(e) = bury(&link, &chan, m, DeadReason::Expired, None, Some(acker)).await
                {
                    tracing::warn!(error = %e, "cannot dead-letter an expired message; it is delivered again later");
                }
            });
            return None;
        }
        let ack_timeout = chan.settings().ack_timeout;
        lc.held.lock().expect("held lock").insert(
            m.id.clone(),
            Held {
                acker: d.acker,
                message: m.clone(),
                deadline: Instant::now() + ack_timeout,
            },
        );
        Some(m)
    }

    /// The delay queue of one backoff step, declared on first use.
    async fn retry_queue(&self, chan: &Chan, step: u64) -> Result<String, BufferError> {
        let name = chan.names.retry(step);
        if chan
            .retry_declared
            .lock()
            .expect("retry lock")
            .contains(&step)
        {
            return Ok(name);
        }
        let mut args = vec![
            ("x-message-ttl", number(step as i64)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&chan.names.main)),
        ];
        if self.inner.queue_type == QueueType::Quorum {
            args.push(("x-overflow", text("reject-publish")));
            args.push(("x-dead-letter-strategy", text("at-least-once")));
        }
        let ch = self.inner.link.channel().await?;
        let declared = declare(&ch, &name, self.queue_args(&args)).await;
        let _ = ch.close(200, "declared".into()).await;
        declared?;
        chan.retry_declared.lock().expect("retry lock").insert(step);
        Ok(name)
    }

    /// Republishes a leased message for another attempt (after `delay_ms`, or at once), then
    /// acks its delivery. A full queue takes it back at its head instead.
    async fn requeue(
        &self,
        chan: &Chan,
        held: Held,
        delay_ms: Option<u64>,
    ) -> Result<(), BufferError> {
        let m = &held.message;
        let queue = match delay_ms {
            Some(ms) => self.retry_queue(chan, ms).await?,
            None => chan.names.main.clone(),
        };
        let published = self
            .inner
            .link
            .publish(&queue, &wrap(m.delivery_count, m), queue_properties(m))
            .await?;
        match published {
            Published::Stored => {
                let _ = held.acker.ack(BasicAckOptions::default()).await;
            }
            Published::Refused => {
                let _ = held
                    .acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await;
            }
        }
        Ok(())
    }

    /// Settles a lease held by this instance: `None` when `connection` does not hold `id` here.
    pub(super) async fn settle_local(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
        op: Settle,
    ) -> Result<Option<NackOutcome>, BufferError> {
        let chan = self.chan(name)?;
        let lc = chan
            .leases
            .lock()
            .expect("lease lock")
            .get(connection)
            .cloned();
        let Some(lc) = lc else { return Ok(None) };
        let Some(held) = lc.held.lock().expect("held lock").remove(id) else {
            return Ok(None);
        };
        match op {
            Settle::Ack => {
                if held.acker.ack(BasicAckOptions::default()).await.is_err() {
                    // The AMQP channel broke: the broker gave the message back already.
                    return Ok(None);
                }
                let mut p = chan.pending.lock().expect("pending lock");
                p.delivered += 1;
                p.done.push(id.clone());
                // `Requeued` stands for "acked" in this internal answer.
                Ok(Some(NackOutcome::Requeued))
            }
            Settle::Nack { retry, reason } => {
                let settings = chan.settings();
                let count = held.message.delivery_count;
                if !retry || count >= settings.max_delivery_attempts {
                    let why = if retry {
                        DeadReason::MaxAttempts
                    } else {
                        DeadReason::Rejected
                    };
                    bury(
                        &self.inner.link,
                        &chan,
                        held.message,
                        why,
                        reason,
                        Some(held.acker),
                    )
                    .await?;
                    return Ok(Some(NackOutcome::DeadLettered));
                }
                self.requeue(&chan, held, Some(retry_step(count))).await?;
                Ok(Some(NackOutcome::Requeued))
            }
        }
    }

    /// Leases of this instance's connections past their ack timeout: retried at once, or
    /// dead-lettered after `max_delivery_attempts`.
    fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            let mut flushed = Instant::now();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let buffer = RabbitBuffer { inner };
                buffer.sweep().await;
                if flushed.elapsed() >= FLUSH_INTERVAL {
                    flushed = Instant::now();
                    for chan in buffer.chans() {
                        if let Err(e) = flush(&buffer.inner.link, &chan).await {
                            tracing::debug!(error = %e, "rabbitmq buffer flush failed; retried");
                        }
                    }
                }
            }
        });
    }

    async fn sweep(&self) {
        let now = Instant::now();
        for chan in self.chans() {
            let settings = chan.settings();
            for lc in chan.lease_conns() {
                let idle = lc.used.lock().expect("used lock").elapsed() >= IDLE_GIVE_BACK;
                if idle && let Ok(mut guard) = lc.consumer.try_lock() {
                    lc.drain_locked(&mut guard);
                    if !lc.waiting.lock().expect("waiting lock").is_empty() {
                        lc.give_back(&self.inner.link, &mut guard).await;
                    }
                }
                let due: Vec<Held> = {
                    let mut held = lc.held.lock().expect("held lock");
                    let ids: Vec<MessageId> = held
                        .iter()
                        .filter(|(_, h)| h.deadline <= now)
                        .map(|(id, _)| id.clone())
                        .collect();
                    ids.iter().filter_map(|id| held.remove(id)).collect()
                };
                for h in due {
                    let count = h.message.delivery_count;
                    let result = if count >= settings.max_delivery_attempts {
                        let why = format!(
                            "not acked within {}s, {count} times",
                            settings.ack_timeout.as_secs_f64()
                        );
                        bury(
                            &self.inner.link,
                            &chan,
                            h.message,
                            DeadReason::MaxAttempts,
                            Some(why),
                            Some(h.acker),
                        )
                        .await
                    } else {
                        self.requeue(&chan, h, None).await
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "cannot move a timed-out lease; the broker returns it when the connection ends");
                    }
                }
            }
        }
    }

    /// Counts this instance's leases and prefetched deliveries of a channel.
    pub(super) fn local_counts(&self, name: &ChannelName) -> (u64, u64) {
        let Ok(chan) = self.chan(name) else {
            return (0, 0);
        };
        let (mut held, mut waiting) = (0, 0);
        for lc in chan.lease_conns() {
            lc.drain();
            held += lc.held.lock().expect("held lock").len() as u64;
            waiting += lc.waiting.lock().expect("waiting lock").len() as u64;
        }
        (held, waiting)
    }

    /// This instance's leases of a channel, oldest first.
    pub(super) fn local_leases(&self, name: &ChannelName) -> Vec<InFlight> {
        let Ok(chan) = self.chan(name) else {
            return Vec::new();
        };
        let leases: Vec<(ConnectionId, Arc<LeaseConn>)> = chan
            .leases
            .lock()
            .expect("lease lock")
            .iter()
            .map(|(c, l)| (c.clone(), l.clone()))
            .collect();
        let mut out = Vec::new();
        for (conn, lc) in leases {
            for h in lc.held.lock().expect("held lock").values() {
                out.push(InFlight {
                    meta: h.message.meta(),
                    connection: conn.clone(),
                });
            }
        }
        out.sort_by_key(|l| l.meta.sequence);
        out
    }

    /// Takes the channel lock and every dead letter of the channel, oldest first. Deliveries
    /// not acked go back to the dead-letter queue when the lock is released.
    async fn open_dead<'a>(
        &self,
        chan: &'a Chan,
    ) -> Result<(Lock<'a>, Vec<(DeadLetter, Acker)>), BufferError> {
        let locked = lock(&self.inner.link, chan).await?;
        match take_all(&locked.1.channel, &chan.names.dead).await {
            Ok(deliveries) => {
                let mut dead = Vec::new();
                for d in deliveries {
                    match unwrap_dead(&d.data) {
                        Ok(letter) => dead.push((letter, d.acker)),
                        Err(e) => tracing::warn!(error = %e, "skipping an unreadable dead letter"),
                    }
                }
                dead.sort_by_key(|(d, _)| d.message.sequence);
                Ok((locked, dead))
            }
            Err(e) => {
                unlock(locked).await;
                Err(e)
            }
        }
    }

    /// Reads (and, with `change`, replaces) the counters and token under the channel lock.
    async fn with_state(
        &self,
        chan: &Chan,
        change: Option<&(dyn Fn(&mut State) + Sync)>,
    ) -> Result<State, BufferError> {
        let locked = lock(&self.inner.link, chan).await?;
        let result = async {
            let (mut state, ackers) = read_state(&locked.1.channel, &chan.names).await?;
            if let Some(change) = change {
                change(&mut state);
                write_state(&locked.1.channel, &chan.names, &mut state, ackers).await?;
            }
            Ok(state)
        }
        .await;
        unlock(locked).await;
        result
    }

    /// Pending writes of every channel (before answering what the counters say).
    async fn flush_all(&self, chan: &Chan) -> Result<(), BufferError> {
        flush(&self.inner.link, chan).await
    }
}

/// How a lease is settled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Settle {
    Ack,
    Nack { retry: bool, reason: Option<String> },
}

#[async_trait]
impl Buffer for RabbitBuffer {
    async fn configure(&self, channels: &[ChannelSettings]) -> Result<(), BufferError> {
        self.inner.rpc.start(self).await?;
        for s in channels {
            let names = Names::new(&self.inner.prefix, &s.name);
            self.declare_channel(s, &names).await?;
            let existing = self.chan(&s.name).ok();
            match existing {
                Some(c) => *c.settings.lock().expect("settings lock") = s.clone(),
                None => {
                    let chan = Arc::new(Chan {
                        settings: Mutex::new(s.clone()),
                        names,
                        leases: Mutex::new(HashMap::new()),
                        opening: tokio::sync::Mutex::new(()),
                        local: tokio::sync::Mutex::new(()),
                        index: Mutex::new(Index::default()),
                        pending: Mutex::new(Pending::default()),
                        flushing: tokio::sync::Mutex::new(()),
                        retry_declared: Mutex::new(HashSet::new()),
                    });
                    self.inner
                        .channels
                        .lock()
                        .expect("channel map lock")
                        .insert(s.name.clone(), chan.clone());
                    tokio::spawn(log::read(
                        self.inner.link.clone(),
                        chan,
                        self.inner.stop.clone(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn enqueue(&self, new: NewMessage) -> Result<Stored, BufferError> {
        let chan = self.chan(&new.channel)?;
        let settings = chan.settings();
        let mut message = new.into_message(settings.ttl, 0);
        // The tick's offset in the shared stream is the sequence.
        let echo = chan
            .index
            .lock()
            .expect("index lock")
            .expect(message.id.as_str());
        let mut meta = message.meta();
        meta.body_len = message.body.len() as u64;
        let tick = serde_json::to_vec(&meta).map_err(storage)?;
        let ticked = self
            .inner
            .link
            .publish(&chan.names.seq, &tick, BasicProperties::default())
            .await;
        if !matches!(ticked, Ok(Published::Stored)) {
            chan.index
                .lock()
                .expect("index lock")
                .forget(message.id.as_str());
            ticked?;
            return Err(storage("the sequence stream refused a tick"));
        }
        let sequence = match tokio::time::timeout(ECHO_TIMEOUT, echo).await {
            Ok(Ok(s)) => s,
            _ => {
                chan.pending
                    .lock()
                    .expect("pending lock")
                    .done
                    .push(message.id.clone());
                return Err(storage("the sequence stream did not answer"));
            }
        };
        message.sequence = sequence;
        let published = self
            .inner
            .link
            .publish(
                &chan.names.main,
                &wrap(0, &message),
                queue_properties(&message),
            )
            .await;
        match published {
            Ok(Published::Stored) => Ok(Stored {
                id: message.id,
                sequence,
            }),
            other => {
                chan.pending
                    .lock()
                    .expect("pending lock")
                    .done
                    .push(message.id);
                match other {
                    Ok(_) => Err(BufferError::Full(message.channel)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn next(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
    ) -> Result<Message, BufferError> {
        let chan = self.chan(name)?;
        loop {
            if self.inner.stop.is_cancelled() {
                return Err(BufferError::Closed);
            }
            let lc = self.lease_conn(&chan, connection, max_in_flight).await?;
            let waiting = lc.waiting.lock().expect("waiting lock").pop_front();
            let delivery = match waiting {
                Some(d) => d,
                None => {
                    let mut consumer = lc.consumer().await?;
                    if let Some(d) = lc.waiting.lock().expect("waiting lock").pop_front() {
                        d
                    } else {
                        let Some(c) = consumer.as_mut() else { continue };
                        let got = tokio::select! {
                            d = c.next() => d,
                            _ = self.inner.stop.cancelled() => return Err(BufferError::Closed),
                        };
                        *lc.used.lock().expect("used lock") = Instant::now();
                        match got {
                            Some(Ok(d)) => d,
                            Some(Err(e)) => {
                                drop(consumer);
                                self.drop_lease_conn(&chan, connection, &lc);
                                return Err(storage(e));
                            }
                            None => {
                                drop(consumer);
                                self.drop_lease_conn(&chan, connection, &lc);
                                return Err(storage("the consumer was cancelled"));
                            }
                        }
                    }
                }
            };
            if let Some(m) = self.take(&chan, &lc, delivery) {
                return Ok(m);
            }
        }
    }

    async fn next_ready(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
        max: usize,
    ) -> Result<Vec<Message>, BufferError> {
        let chan = self.chan(name)?;
        let lc = self.lease_conn(&chan, connection, max_in_flight).await?;
        let mut ready = Vec::new();
        // Deliveries the broker pushed together may still be on their way: a short grace
        // for the first one.
        let mut grace = Duration::from_millis(5);
        while ready.len() < max && (lc.held.lock().expect("held lock").len() as u32) < max_in_flight
        {
            let waiting = lc.waiting.lock().expect("waiting lock").pop_front();
            let d = match waiting {
                Some(d) => d,
                None => {
                    let mut consumer = lc.consumer().await?;
                    let Some(c) = consumer.as_mut() else { break };
                    match tokio::time::timeout(grace, c.next()).await {
                        Ok(Some(Ok(d))) => d,
                        _ => break,
                    }
                }
            };
            grace = Duration::from_millis(1);
            if let Some(m) = self.take(&chan, &lc, d) {
                ready.push(m);
            }
        }
        Ok(ready)
    }

    async fn ack(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
    ) -> Result<bool, BufferError> {
        self.chan(name)?;
        if self
            .settle_local(name, connection, id, Settle::Ack)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self
            .inner
            .rpc
            .settle(self, name, connection, id, Settle::Ack)
            .await?
            .is_some())
    }

    async fn nack(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
        retry: bool,
        reason: Option<String>,
    ) -> Result<Option<NackOutcome>, BufferError> {
        self.chan(name)?;
        let op = Settle::Nack { retry, reason };
        if let Some(out) = self.settle_local(name, connection, id, op.clone()).await? {
            return Ok(Some(out));
        }
        self.inner.rpc.settle(self, name, connection, id, op).await
    }

    async fn release(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
    ) -> Result<usize, BufferError> {
        let chan = self.chan(name)?;
        let lc = chan.leases.lock().expect("lease lock").remove(connection);
        let Some(lc) = lc else { return Ok(0) };
        let released = lc.held.lock().expect("held lock").len();
        lc.close(&self.inner.link).await;
        Ok(released)
    }

    async fn stats(&self, name: &ChannelName) -> Result<BufferStats, BufferError> {
        let chan = self.chan(name)?;
        self.flush_all(&chan).await?;
        let (held, waiting) = self.inner.rpc.counts(self, name).await?;
        let locked = lock(&self.inner.link, &chan).await?;
        let result = async {
            let ch = &locked.1.channel;
            let (state, _) = read_state(ch, &chan.names).await?;
            let passive = |q: String| async move {
                let q = timed(ch.queue_declare(
                    ShortString::from(q),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                ))
                .await?;
                Ok::<u64, BufferError>(u64::from(q.message_count()))
            };
            let mut queued = passive(chan.names.main.clone()).await?;
            // Delay queues are made on first use, by any instance.
            for step in RETRY_STEPS_MS {
                queued += link::counts(&self.inner.link, &chan.names.retry(step))
                    .await?
                    .0;
            }
            let dead = passive(chan.names.dead.clone()).await?;
            Ok(BufferStats {
                messages_queued: queued + waiting,
                messages_in_flight: held,
                messages_delivered: state.delivered,
                messages_expired: state.expired,
                messages_dead_lettered: dead,
                messages_dead_lettered_total: state.dead_total,
            })
        }
        .await;
        unlock(locked).await;
        result
    }

    async fn dead_letters(
        &self,
        name: &ChannelName,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        let chan = self.chan(name)?;
        let (locked, dead) = self.open_dead(&chan).await?;
        unlock(locked).await;
        Ok(dead
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(d, _)| d)
            .collect())
    }

    async fn queued(
        &self,
        name: &ChannelName,
        limit: usize,
    ) -> Result<Vec<MessageMeta>, BufferError> {
        let chan = self.chan(name)?;
        self.flush_all(&chan).await?;
        let leased: HashSet<MessageId> = self
            .inner
            .rpc
            .leases(self, name)
            .await?
            .into_iter()
            .map(|l| l.meta.id)
            .collect();
        Ok(chan
            .index
            .lock()
            .expect("index lock")
            .waiting(&leased, limit))
    }

    async fn in_flight(
        &self,
        name: &ChannelName,
        limit: usize,
    ) -> Result<Vec<InFlight>, BufferError> {
        self.chan(name)?;
        let mut all = self.inner.rpc.leases(self, name).await?;
        all.truncate(limit);
        Ok(all)
    }

    async fn dead_letter(
        &self,
        name: &ChannelName,
        id: &MessageId,
    ) -> Result<Option<DeadLetter>, BufferError> {
        let chan = self.chan(name)?;
        let (locked, dead) = self.open_dead(&chan).await?;
        unlock(locked).await;
        Ok(dead
            .into_iter()
            .map(|(d, _)| d)
            .find(|d| &d.message.id == id))
    }

    async fn replay_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError> {
        let chan = self.chan(name)?;
        let ttl = chan.settings().ttl;
        let (locked, dead) = self.open_dead(&chan).await?;
        let replayed = async {
            let fresh = Utc::now()
                .checked_add_signed(
                    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
                )
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let mut out = Vec::new();
            for (d, acker) in dead {
                if !selection.matches(&d) {
                    continue;
                }
                let mut m = d.message;
                m.delivery_count = 0;
                m.expires_at = m.expires_at.max(fresh);
                let body = wrap(0, &m);
                match publish_on(
                    &locked.1.channel,
                    &chan.names.main,
                    &body,
                    queue_properties(&m),
                )
                .await?
                {
                    Published::Stored => {
                        let _ = acker.ack(BasicAckOptions::default()).await;
                        out.push(m.meta());
                    }
                    // A full queue refuses it: it stays a dead letter.
                    Published::Refused => break,
                }
            }
            Ok::<_, BufferError>(out)
        }
        .await;
        unlock(locked).await;
        let replayed = replayed?;
        let ids = replayed.iter().map(|m| m.id.clone()).collect();
        chan.pending
            .lock()
            .expect("pending lock")
            .requeued
            .extend(replayed);
        self.flush_all(&chan).await?;
        Ok(ids)
    }

    async fn purge_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError> {
        let chan = self.chan(name)?;
        let (locked, dead) = self.open_dead(&chan).await?;
        let purged = async {
            let mut out = Vec::new();
            for (d, acker) in dead {
                if selection.matches(&d) {
                    acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(storage)?;
                    out.push(d.message.id);
                }
            }
            Ok(out)
        }
        .await;
        unlock(locked).await;
        purged
    }

    async fn token_rotation(
        &self,
        name: &ChannelName,
    ) -> Result<Option<TokenRotation>, BufferError> {
        let chan = self.chan(name)?;
        Ok(self.with_state(&chan, None).await?.token)
    }

    async fn save_token_rotation(
        &self,
        name: &ChannelName,
        rotation: &TokenRotation,
    ) -> Result<(), BufferError> {
        let chan = self.chan(name)?;
        let set = |s: &mut State| s.token = Some(rotation.clone());
        self.with_state(&chan, Some(&set)).await.map(|_| ())
    }

    async fn healthy(&self) -> bool {
        if self.inner.stop.is_cancelled() {
            return false;
        }
        let queue = format!("{}health", self.inner.prefix);
        let check = async {
            let ch = self.inner.link.channel().await?;
            let declared = declare(
                &ch,
                &queue,
                table(&[
                    ("x-queue-type", text("classic")),
                    ("x-max-length", number(1)),
                ]),
            )
            .await;
            let _ = ch.close(200, "checked".into()).await;
            declared?;
            self.inner
                .link
                .publish(&queue, b"ok", BasicProperties::default())
                .await
        };
        matches!(check.await, Ok(Published::Stored))
    }

    fn backend(&self) -> String {
        "rabbitmq".to_string()
    }

    async fn close(&self) {
        for chan in self.chans() {
            let leases: Vec<Arc<LeaseConn>> = chan
                .leases
                .lock()
                .expect("lease lock")
                .drain()
                .map(|(_, l)| l)
                .collect();
            for lc in leases {
                lc.close(&self.inner.link).await;
            }
            let _ = flush(&self.inner.link, &chan).await;
        }
        self.inner.stop.cancel();
        self.inner.link.close().await;
    }
}
