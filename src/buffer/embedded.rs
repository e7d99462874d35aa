//! The embedded buffer (default): a fjall database under the data dir, no server needed.
//!
//! Owns durable storage with group commit (one writer thread gathers every write that is
//! waiting and makes them durable with one fsync; a new message can be leased while its fsync
//! runs, its sender is answered after it), the in-memory queue index (metadata without
//! headers; headers and bodies stay on disk until a message is leased), leases, ack timeouts,
//! TTL and dead letters.
//! Leases are not persisted: after a crash every unacked message is queued again (at-least-once).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    Buffer, BufferError, BufferStats, ChannelSettings, DeadLetter, DeadReason, DeadSelection,
    InFlight, NackOutcome, NewMessage, Stored, TokenRotation,
};
use crate::message::{Message, MessageMeta, decode_meta, encode_record_head};
use crate::protocol::{ChannelName, ConnectionId, MessageId};

/// How often leases, retries and TTLs are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Most writes one group commit gathers.
const MAX_GROUP: usize = 4096;
/// Longest wait before a nacked message is offered again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The embedded buffer. Cheap to clone; the last clone dropped stops its tasks.
#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    channels: Mutex<HashMap<ChannelName, Arc<Channel>>>,
    writer: mpsc::UnboundedSender<WriteJob>,
    stop: CancellationToken,
    /// Serialises dead-letter replays and purges so that one dead letter is moved only once.
    dead_admin: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Store {
    db: Database,
    messages: Keyspace,
    dead: Keyspace,
    meta: Keyspace,
}

struct Channel {
    settings: Mutex<ChannelSettings>,
    queue: Mutex<Queue>,
    notify: Notify,
}

#[derive(Default)]
struct Queue {
    ready: BTreeMap<u64, MessageMeta>,
    /// Nacked messages waiting for their retry time.
    delayed: BTreeMap<(Instant, u64), MessageMeta>,
    in_flight: HashMap<MessageId, Lease>,
    leases_per_connection: HashMap<ConnectionId, u32>,
    /// Enqueues reserved but not yet durable.
    pending: u64,
    next_sequence: u64,
    counters: Counters,
    dead_count: u64,
}

struct Lease {
    meta: MessageMeta,
    connection: ConnectionId,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counters {
    delivered: u64,
    expired: u64,
    #[serde(default)]
    dead_lettered: u64,
}

/// What a dead record stores besides the message.
#[derive(Debug, Serialize, Deserialize)]
struct DeadInfo {
    reason: DeadReason,
    error: Option<String>,
    dead_lettered_at: DateTime<Utc>,
    delivery_count: u32,
}

enum Op {
    Put(Space, Vec<u8>, Slice),
    Delete(Space, Vec<u8>),
    /// Moves a message record into the dead letters, with why.
    Bury {
        key: Vec<u8>,
        info: Vec<u8>,
    },
    /// Raises the stored sequence high-water mark of a channel.
    Sequence {
        channel: ChannelName,
        sequence: u64,
    },
}

#[derive(Clone, Copy)]
enum Space {
    Messages,
    Dead,
    Meta,
}

struct WriteJob {
    ops: Vec<Op>,
    /// Called on the writer thread once the ops are applied (`true`: readable, not yet
    /// durable) or could not be (`false`), before the group's fsync.
    applied: Option<Box<dyn FnOnce(bool) + Send>>,
    /// `Some`: the caller waits until the ops are durable.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

impl WriteJob {
    /// Ops nobody waits for (acks, nacks, sweeps); a later durable write makes them durable too.
    fn unawaited(ops: Vec<Op>) -> Self {
        Self {
            ops,
            applied: None,
            done: None,
        }
    }
}

fn message_key(channel: &ChannelName, sequence: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.as_str().len() + 9);
    k.extend_from_slice(channel.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn channel_prefix(channel: &ChannelName) -> Vec<u8> {
    let mut k = channel.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

fn meta_key(kind: &str, channel: &ChannelName) -> Vec<u8> {
    format!("{kind}\0{}", channel.as_str()).into_bytes()
}

fn attempts_key(channel: &ChannelName, sequence: u64) -> Vec<u8> {
    let mut k = meta_key("attempts", channel);
    k.push(0);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn retry_delay(delivery_count: u32) -> Duration {
    let exp = delivery_count.saturating_sub(1).min(6);
    Duration::from_millis(500u64 << exp).min(MAX_RETRY_DELAY)
}

fn storage(e: impl std::fmt::Display) -> BufferError {
    BufferError::Storage(e.to_string())
}

impl Embedded {
    /// Opens (or creates) the buffer in `dir` and starts its writer and sweeper.
    /// Fails if another process holds the directory.
    pub fn open(dir: &Path) -> Result<Self, BufferError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| storage(format!("cannot create `{}`: {e}", dir.display())))?;
        let db = Database::builder(dir).open().map_err(|e| {
            storage(format!(
                "cannot open the buffer in `{}`: {e}",
                dir.display()
            ))
        })?;
        let messages = db
            .keyspace("messages", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let dead = db
            .keyspace("dead", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let store = Store {
            db,
            messages,
            dead,
            meta,
        };
        // Unbounded so that no async task ever blocks on it: enqueues wait for their own
        // durability anyway, and the rest (acks, moves) are small and drained at disk speed.
        let (writer, jobs) = mpsc::unbounded_channel();
        let writer_store = store.clone();
        std::thread::Builder::new()
            .name("wcon-buffer-writer".into())
            .spawn(move || run_writer(writer_store, jobs))
            .map_err(storage)?;
        let inner = Arc::new(Inner {
            store,
            channels: Mutex::new(HashMap::new()),
            writer,
            stop: CancellationToken::new(),
            dead_admin: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner), inner.stop.clone()));
        Ok(Self { inner })
    }

    fn channel(&self, name: &ChannelName) -> Result<Arc<Channel>, BufferError> {
        self.inner
            .channels
            .lock()
            .expect("channel map lock")
            .get(name)
            .cloned()
            .ok_or_else(|| BufferError::UnknownChannel(name.clone()))
    }

    fn load_channel(&self, settings: &ChannelSettings) -> Result<Channel, BufferError> {
        let store = &self.inner.store;
        let mut queue = Queue::default();
        let mut max_seq =
            read_u64(&store.meta, &meta_key("sequence", &settings.name))?.unwrap_or(0);
        for item in store.messages.prefix(channel_prefix(&settings.name)) {
            let (_, value) = item.into_inner().map_err(storage)?;
            let mut meta = decode_meta(&value).map_err(storage)?;
            meta.headers = BTreeMap::new();
            if let Some(n) = read_u64(&store.meta, &attempts_key(&settings.name, meta.sequence))? {
                meta.delivery_count = n as u32;
            }
            max_seq = max_seq.max(meta.sequence);
            queue.ready.insert(meta.sequence, meta);
        }
        for item in store.dead.prefix(channel_prefix(&settings.name)) {
            let key = item.key().map_err(storage)?;
            let seq_bytes: [u8; 8] = key[key.len() - 8..]
                .try_into()
                .expect("keys end with 8 bytes");
            max_seq = max_seq.max(u64::from_be_bytes(seq_bytes));
            queue.dead_count += 1;
        }
        if let Some(raw) = store
            .meta
            .get(meta_key("counters", &settings.name))
            .map_err(storage)?
        {
            queue.counters = serde_json::from_slice(&raw).unwrap_or_default();
        }
        // Stores written before the total was counted: at least the dead letters held.
        queue.counters.dead_lettered = queue.counters.dead_lettered.max(queue.dead_count);
        queue.next_sequence = max_seq + 1;
        Ok(Channel {
            settings: Mutex::new(settings.clone()),
            queue: Mutex::new(queue),
            notify: Notify::new(),
        })
    }

    async fn write(&self, ops: Vec<Op>) -> Result<(), BufferError> {
        self.write_then(ops, None).await
    }

    /// [`Self::write`], calling `applied` as soon as the ops are readable (see [`WriteJob`]).
    async fn write_then(
        &self,
        ops: Vec<Op>,
        applied: Option<Box<dyn FnOnce(bool) + Send>>,
    ) -> Result<(), BufferError> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteJob {
            ops,
            applied,
            done: Some(tx),
        })?;
        rx.await
            .map_err(|_| BufferError::Closed)?
            .map_err(BufferError::Storage)
    }

    fn send(&self, job: WriteJob) -> Result<(), BufferError> {
        self.inner
            .writer
            .send(job)
            .map_err(|mpsc::error::SendError(job)| {
                if let Some(applied) = job.applied {
                    applied(false);
                }
                BufferError::Closed
            })
    }

    /// Queues a dead-lettering of `meta` (body moved on disk by the writer).
    fn bury(
        queue: &mut Queue,
        channel: &ChannelName,
        meta: &MessageMeta,
        reason: DeadReason,
        error: Option<String>,
    ) -> Vec<Op> {
        queue.dead_count += 1;
        queue.counters.dead_lettered += 1;
        if reason == DeadReason::Expired {
            queue.counters.expired += 1;
        }
        tracing::info!(%channel, message_id = %meta.id, webhook = %meta.webhook_id, reason = reason.as_str(), attempts = meta.delivery_count, "dead lettered");
        let info = DeadInfo {
            reason,
            error,
            dead_lettered_at: Utc::now(),
            delivery_count: meta.delivery_count,
        };
        vec![
            Op::Bury {
                key: message_key(channel, meta.sequence),
                info: serde_json::to_vec(&info).expect("dead info serialises"),
            },
            Op::Delete(Space::Meta, attempts_key(channel, meta.sequence)),
            Op::Put(
                Space::Meta,
                meta_key("counters", channel),
                serde_json::to_vec(&queue.counters)
                    .expect("counters serialise")
                    .into(),
            ),
        ]
    }

    /// The dead letters of a channel that `selection` picks, with their storage keys, in
    /// sequence order. Call after a flush so that queued burials are visible.
    fn select_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<(Vec<u8>, DeadLetter)>, BufferError> {
        let mut out = Vec::new();
        for item in self.inner.store.dead.prefix(channel_prefix(name)) {
            let (key, value) = item.into_inner().map_err(storage)?;
            if let Some(dead) = decode_dead(&value)
                && selection.matches(&dead)
            {
                out.push((key.to_vec(), dead));
            }
        }
        Ok(out)
    }

    /// A stored message as it is on disk (its headers and body are what the index lacks).
    fn read_stored(
        &self,
        channel: &ChannelName,
        sequence: u64,
    ) -> Result<Option<Message>, BufferError> {
        let value = self
            .inner
            .store
            .messages
            .get(message_key(channel, sequence))
            .map_err(storage)?;
        value
            .map(|v| Message::decode(&v))
            .transpose()
            .map_err(storage)
    }
}

fn read_u64(ks: &Keyspace, key: &[u8]) -> Result<Option<u64>, BufferError> {
    Ok(ks
        .get(key)
        .map_err(storage)?
        .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
        .map(u64::from_be_bytes))
}

fn run_writer(store: Store, mut jobs: mpsc::UnboundedReceiver<WriteJob>) {
    let mut high_water: HashMap<ChannelName, u64> = HashMap::new();
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let needs_sync = group.iter().any(|j| j.done.is_some());
        let ops = group.iter_mut().flat_map(|j| std::mem::take(&mut j.ops));
        let mut result = apply_group(&store, ops, &mut high_water);
        for applied in group.iter_mut().filter_map(|j| j.applied.take()) {
            applied(result.is_ok());
        }
        if needs_sync && result.is_ok() {
            result = store
                .db
                .persist(PersistMode::SyncData)
                .map_err(|e| e.to_string());
        }
        for job in group {
            if let Some(done) = job.done {
                let _ = done.send(result.clone());
            }
        }
    }
    let _ = store.db.persist(PersistMode::SyncAll);
}

/// Applies the ops of one group in one batch (moved in, so values are not copied again); the
/// caller makes them durable.
fn apply_group(
    store: &Store,
    ops: impl Iterator<Item = Op>,
    high_water: &mut HashMap<ChannelName, u64>,
) -> Result<(), String> {
    let mut batch = store.db.batch();
    let space = |s: Space| match s {
        Space::Messages => &store.messages,
        Space::Dead => &store.dead,
        Space::Meta => &store.meta,
    };
    for op in ops {
        match op {
            Op::Put(s, k, v) => batch.insert(space(s), k, v),
            Op::Delete(s, k) => batch.remove(space(s), k),
            Op::Bury { key, info } => {
                let record = store.messages.get(&key).map_err(|e| e.to_string())?;
                let Some(record) = record else { continue };
                let mut dead = Vec::with_capacity(4 + info.len() + record.len());
                dead.extend_from_slice(&(info.len() as u32).to_be_bytes());
                dead.extend_from_slice(&info);
                dead.extend_from_slice(&record);
                batch.insert(&store.dead, key.clone(), dead);
                batch.remove(&store.messages, key);
            }
            Op::Sequence { channel, sequence } => {
                if high_water.get(&channel).is_none_or(|hw| sequence > *hw) {
                    batch.insert(
                        &store.meta,
                        meta_key("sequence", &channel),
                        sequence.to_be_bytes().to_vec(),
                    );
                    high_water.insert(channel, sequence);
                }
            }
        }
    }
    batch.commit().map_err(|e| e.to_string())
}

fn decode_dead(record: &[u8]) -> Option<DeadLetter> {
    let len = u32::from_be_bytes(record.get(..4)?.try_into().ok()?) as usize;
    let info: DeadInfo = serde_json::from_slice(record.get(4..4 + len)?).ok()?;
    let mut message = Message::decode(record.get(4 + len..)?).ok()?;
    message.delivery_count = info.delivery_count;
    Some(DeadLetter {
        message,
        reason: info.reason,
        error: info.error,
        dead_lettered_at: info.dead_lettered_at,
    })
}

async fn sweep(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let buffer = Embedded { inner };
        let channels: Vec<(ChannelName, Arc<Channel>)> = buffer
            .inner
            .channels
            .lock()
            .expect("channel map lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, channel) in channels {
            let settings = channel.settings.lock().expect("settings lock").clone();
            let (ops, moved) = sweep_channel(&name, &channel, &settings);
            if !ops.is_empty() {
                let _ = buffer.send(WriteJob::unawaited(ops));
            }
            if moved {
                channel.notify.notify_waiters();
            }
        }
    }
}

/// Expired leases back to the queue (or to the dead letters), due retries back to the queue,
/// expired messages at the head of the queue to the dead letters.
fn sweep_channel(
    name: &ChannelName,
    channel: &Channel,
    settings: &ChannelSettings,
) -> (Vec<Op>, bool) {
    let now = Instant::now();
    let wall = Utc::now();
    let mut ops = Vec::new();
    let mut moved = false;
    let mut q = channel.queue.lock().expect("queue lock");
    let timed_out: Vec<MessageId> = q
        .in_flight
        .iter()
        .filter(|(_, l)| l.deadline <= now)
        .map(|(id, _)| id.clone())
        .collect();
    for id in timed_out {
        let lease = q.in_flight.remove(&id).expect("listed above");
        decrement(&mut q.leases_per_connection, &lease.connection);
        moved = true;
        if lease.meta.delivery_count >= settings.max_delivery_attempts {
            let error = Some(format!(
                "not acked within {}s, {} times",
                settings.ack_timeout.as_secs(),
                lease.meta.delivery_count
            ));
            ops.extend(Embedded::bury(
                &mut q,
                name,
                &lease.meta,
                DeadReason::MaxAttempts,
                error,
            ));
        } else {
            ops.push(Op::Put(
                Space::Meta,
                attempts_key(name, lease.meta.sequence),
                u64::from(lease.meta.delivery_count).to_be_bytes().into(),
            ));
            q.ready.insert(lease.meta.sequence, lease.meta);
        }
    }
    while let Some(entry) = q.delayed.first_entry() {
        if entry.key().0 > now {
            break;
        }
        let meta = entry.remove();
        q.ready.insert(meta.sequence, meta);
        moved = true;
    }
    while let Some(entry) = q.ready.first_entry() {
        if entry.get().expires_at > wall {
            break;
        }
        let meta = entry.remove();
        ops.extend(Embedded::bury(
            &mut q,
            name,
            &meta,
            DeadReason::Expired,
            None,
        ));
    }
    (ops, moved)
}

fn decrement(map: &mut HashMap<ConnectionId, u32>, connection: &ConnectionId) {
    if let Some(n) = map.get_mut(connection) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(connection);
        }
    }
}

#[async_trait]
impl Buffer for Embedded {
    async fn configure(&self, channels: &[ChannelSettings]) -> Result<(), BufferError> {
        for settings in channels {
            let existing = self
                .inner
                .channels
                .lock()
                .expect("channel map lock")
                .get(&settings.name)
                .cloned();
            match existing {
                Some(channel) => {
                    *channel.settings.lock().expect("settings lock") = settings.clone()
                }
                None => {
                    let channel = Arc::new(self.load_channel(settings)?);
                    self.inner
                        .channels
                        .lock()
                        .expect("channel map lock")
                        .insert(settings.name.clone(), channel);
                }
            }
        }
        Ok(())
    }

    async fn enqueue(&self, new: NewMessage) -> Result<Stored, BufferError> {
        let channel = self.channel(&new.channel)?;
        let (max_queue_size, ttl) = {
            let settings = channel.settings.lock().expect("settings lock");
            (settings.max_queue_size, settings.ttl)
        };
        let sequence = {
            let mut q = channel.queue.lock().expect("queue lock");
            let held = q.ready.len() as u64
                + q.delayed.len() as u64
                + q.in_flight.len() as u64
                + q.pending;
            if held >= max_queue_size {
                return Err(BufferError::Full(new.channel));
            }
            q.pending += 1;
            q.next_sequence += 1;
            q.next_sequence - 1
        };
        let received_at = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        // The metadata is built once: encoded for the disk, then kept as the queue's index entry.
        let mut meta = MessageMeta {
            id: MessageId::generate(),
            channel: new.channel.clone(),
            webhook_id: new.webhook_id,
            sequence,
            received_at,
            expires_at: received_at
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            source_ip: new.source_ip,
            headers: new.headers,
            delivery_count: 0,
            body_len: new.body.len() as u64,
        };
        let ops = vec![
            Op::Put(
                Space::Messages,
                message_key(&new.channel, sequence),
                // Head and body go straight into the value fjall keeps (no copy of a copy).
                Slice::from(byteview::ByteView::fused(
                    &encode_record_head(&meta, 0),
                    &new.body,
                )),
            ),
            Op::Sequence {
                channel: new.channel,
                sequence,
            },
        ];
        drop(new.body);
        // The index keeps no headers (they are read back from disk with the body).
        meta.headers = BTreeMap::new();
        let id = meta.id.clone();
        // The message can be leased as soon as it is readable, while its fsync runs: the
        // sender still gets 200 only once it is durable. A crash before the fsync loses a
        // message the sender got no 200 for, so it sends it again: at-least-once holds.
        let queued = channel.clone();
        let index = move |readable: bool| {
            let mut q = queued.queue.lock().expect("queue lock");
            q.pending -= 1;
            if readable {
                q.ready.insert(sequence, meta);
                drop(q);
                queued.notify.notify_waiters();
            }
        };
        self.write_then(ops, Some(Box::new(index))).await?;
        Ok(Stored { id, sequence })
    }

    async fn next(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
    ) -> Result<Message, BufferError> {
        let channel = self.channel(name)?;
        loop {
            let notified = channel.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.stop.is_cancelled() {
                return Err(BufferError::Closed);
            }
            let leased = {
                let settings = channel.settings.lock().expect("settings lock").clone();
                let mut q = channel.queue.lock().expect("queue lock");
                let held = q
                    .leases_per_connection
                    .get(connection)
                    .copied()
                    .unwrap_or(0);
                let mut ops = Vec::new();
                let mut leased = None;
                if held < max_in_flight {
                    while let Some((_, mut meta)) = q.ready.pop_first() {
                        if meta.expires_at <= Utc::now() {
                            ops.extend(Embedded::bury(
                                &mut q,
                                name,
                                &meta,
                                DeadReason::Expired,
                                None,
                            ));
                            continue;
                        }
                        meta.delivery_count += 1;
                        *q.leases_per_connection
                            .entry(connection.clone())
                            .or_insert(0) += 1;
                        q.in_flight.insert(
                            meta.id.clone(),
                            Lease {
                                meta: meta.clone(),
                                connection: connection.clone(),
                                deadline: Instant::now() + settings.ack_timeout,
                            },
                        );
                        leased = Some(meta);
                        break;
                    }
                }
                if !ops.is_empty() {
                    self.send(WriteJob::unawaited(ops))?;
                }
                leased
            };
            if let Some(meta) = leased {
                match self.read_stored(name, meta.sequence)? {
                    Some(stored) => {
                        let mut message = Message::from_parts(meta, stored.body);
                        message.headers = stored.headers;
                        return Ok(message);
                    }
                    None => {
                        // Only reachable if the record vanished under us; forget the lease.
                        let mut q = channel.queue.lock().expect("queue lock");
                        q.in_flight.remove(&meta.id);
                        decrement(&mut q.leases_per_connection, connection);
                        continue;
                    }
                }
            }
            notified.await;
        }
    }

    async fn ack(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
    ) -> Result<bool, BufferError> {
        let channel = self.channel(name)?;
        let ops = {
            let mut q = channel.queue.lock().expect("queue lock");
            match q.in_flight.get(id) {
                Some(lease) if &lease.connection == connection => {}
                _ => return Ok(false),
            }
            let lease = q.in_flight.remove(id).expect("checked above");
            decrement(&mut q.leases_per_connection, connection);
            q.counters.delivered += 1;
            vec![
                Op::Delete(Space::Messages, message_key(name, lease.meta.sequence)),
                Op::Delete(Space::Meta, attempts_key(name, lease.meta.sequence)),
                Op::Put(
                    Space::Meta,
                    meta_key("counters", name),
                    serde_json::to_vec(&q.counters)
                        .expect("counters serialise")
                        .into(),
                ),
            ]
        };
        self.send(WriteJob::unawaited(ops))?;
        channel.notify.notify_waiters();
        Ok(true)
    }

    async fn nack(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
        retry: bool,
        reason: Option<String>,
    ) -> Result<Option<NackOutcome>, BufferError> {
        let channel = self.channel(name)?;
        let max_attempts = channel
            .settings
            .lock()
            .expect("settings lock")
            .max_delivery_attempts;
        let (ops, outcome) = {
            let mut q = channel.queue.lock().expect("queue lock");
            match q.in_flight.get(id) {
                Some(lease) if &lease.connection == connection => {}
                _ => return Ok(None),
            }
            let lease = q.in_flight.remove(id).expect("checked above");
            decrement(&mut q.leases_per_connection, connection);
            let meta = lease.meta;
            if !retry {
                (
                    Embedded::bury(&mut q, name, &meta, DeadReason::Rejected, reason),
                    NackOutcome::DeadLettered,
                )
            } else if meta.delivery_count >= max_attempts {
                (
                    Embedded::bury(&mut q, name, &meta, DeadReason::MaxAttempts, reason),
                    NackOutcome::DeadLettered,
                )
            } else {
                let ops = vec![Op::Put(
                    Space::Meta,
                    attempts_key(name, meta.sequence),
                    u64::from(meta.delivery_count).to_be_bytes().into(),
                )];
                let due = Instant::now() + retry_delay(meta.delivery_count);
                q.delayed.insert((due, meta.sequence), meta);
                (ops, NackOutcome::Requeued)
            }
        };
        self.send(WriteJob::unawaited(ops))?;
        channel.notify.notify_waiters();
        Ok(Some(outcome))
    }

    async fn release(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
    ) -> Result<usize, BufferError> {
        let channel = self.channel(name)?;
        let released = {
            let mut q = channel.queue.lock().expect("queue lock");
            let ids: Vec<MessageId> = q
                .in_flight
                .iter()
                .filter(|(_, l)| &l.connection == connection)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                let lease = q.in_flight.remove(id).expect("listed above");
                q.ready.insert(lease.meta.sequence, lease.meta);
            }
            q.leases_per_connection.remove(connection);
            ids.len()
        };
        if released > 0 {
            channel.notify.notify_waiters();
        }
        Ok(released)
    }

    async fn stats(&self, name: &ChannelName) -> Result<BufferStats, BufferError> {
        let channel = self.channel(name)?;
        let q = channel.queue.lock().expect("queue lock");
        Ok(BufferStats {
            messages_queued: (q.ready.len() + q.delayed.len()) as u64,
            messages_in_flight: q.in_flight.len() as u64,
            messages_delivered: q.counters.delivered,
            messages_expired: q.counters.expired,
            messages_dead_lettered: q.dead_count,
            messages_dead_lettered_total: q.counters.dead_lettered,
        })
    }

    async fn dead_letters(
        &self,
        name: &ChannelName,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        self.channel(name)?;
        // Dead letters are written by the writer thread; make sure queued moves are visible.
        self.write(Vec::new()).await?;
        let mut out = Vec::new();
        for item in self
            .inner
            .store
            .dead
            .prefix(channel_prefix(name))
            .skip(offset)
            .take(limit)
        {
            let (_, value) = item.into_inner().map_err(storage)?;
            if let Some(dead) = decode_dead(&value) {
                out.push(dead);
            }
        }
        Ok(out)
    }

    async fn queued(
        &self,
        name: &ChannelName,
        limit: usize,
    ) -> Result<Vec<MessageMeta>, BufferError> {
        let channel = self.channel(name)?;
        let q = channel.queue.lock().expect("queue lock");
        Ok(q.ready
            .values()
            .chain(q.delayed.values())
            .take(limit)
            .cloned()
            .collect())
    }

    async fn in_flight(
        &self,
        name: &ChannelName,
        limit: usize,
    ) -> Result<Vec<InFlight>, BufferError> {
        let channel = self.channel(name)?;
        let q = channel.queue.lock().expect("queue lock");
        let mut leases: Vec<InFlight> = q
            .in_flight
            .values()
            .map(|l| InFlight {
                meta: l.meta.clone(),
                connection: l.connection.clone(),
            })
            .collect();
        leases.sort_by_key(|l| l.meta.sequence);
        leases.truncate(limit);
        Ok(leases)
    }

    async fn dead_letter(
        &self,
        name: &ChannelName,
        id: &MessageId,
    ) -> Result<Option<DeadLetter>, BufferError> {
        self.channel(name)?;
        self.write(Vec::new()).await?;
        let selection = DeadSelection::Ids(vec![id.clone()]);
        Ok(self
            .select_dead(name, &selection)?
            .into_iter()
            .next()
            .map(|(_, d)| d))
    }

    async fn replay_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError> {
        let channel = self.channel(name)?;
        let ttl = channel.settings.lock().expect("settings lock").ttl;
        let _one_at_a_time = self.inner.dead_admin.lock().await;
        self.write(Vec::new()).await?;
        let selected = self.select_dead(name, selection)?;
        if selected.is_empty() {
            return Ok(Vec::new());
        }
        // A replayed message gets a fresh time to live, or an expired one would be buried
        // again at the next sweep.
        let fresh = Utc::now()
            .checked_add_signed(chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut ops = Vec::with_capacity(selected.len() * 3);
        let mut metas = Vec::with_capacity(selected.len());
        for (key, dead) in selected {
            let mut message = dead.message;
            message.delivery_count = 0;
            message.expires_at = message.expires_at.max(fresh);
            ops.push(Op::Delete(Space::Dead, key.clone()));
            ops.push(Op::Put(Space::Messages, key, message.encode().into()));
            ops.push(Op::Delete(
                Space::Meta,
                attempts_key(name, message.sequence),
            ));
            // Like every index entry, a replayed one keeps no headers (they stay on disk).
            message.headers = BTreeMap::new();
            metas.push(message.meta());
        }
        self.write(ops).await?;
        let ids = metas.iter().map(|m| m.id.clone()).collect();
        {
            let mut q = channel.queue.lock().expect("queue lock");
            q.dead_count = q.dead_count.saturating_sub(metas.len() as u64);
            for meta in metas {
                q.ready.insert(meta.sequence, meta);
            }
        }
        channel.notify.notify_waiters();
        Ok(ids)
    }

    async fn purge_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError> {
        let channel = self.channel(name)?;
        let _one_at_a_time = self.inner.dead_admin.lock().await;
        self.write(Vec::new()).await?;
        let selected = self.select_dead(name, selection)?;
        if selected.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<MessageId> = selected.iter().map(|(_, d)| d.message.id.clone()).collect();
        let ops = selected
            .into_iter()
            .map(|(key, _)| Op::Delete(Space::Dead, key))
            .collect();
        self.write(ops).await?;
        let mut q = channel.queue.lock().expect("queue lock");
        q.dead_count = q.dead_count.saturating_sub(ids.len() as u64);
        Ok(ids)
    }

    async fn token_rotation(
        &self,
        name: &ChannelName,
    ) -> Result<Option<TokenRotation>, BufferError> {
        let Some(raw) = self
            .inner
            .store
            .meta
            .get(meta_key("token", name))
            .map_err(storage)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&raw).map(Some).map_err(|e| {
            storage(format!(
                "the stored token rotation of `{name}` is unreadable: {e}"
            ))
        })
    }

    async fn save_token_rotation(
        &self,
        name: &ChannelName,
        rotation: &TokenRotation,
    ) -> Result<(), BufferError> {
        let value = serde_json::to_vec(rotation).expect("a token rotation serialises");
        self.write(vec![Op::Put(
            Space::Meta,
            meta_key("token", name),
            value.into(),
        )])
        .await
    }

    async fn healthy(&self) -> bool {
        !self.inner.stop.is_cancelled() && self.write(Vec::new()).await.is_ok()
    }

    async fn close(&self) {
        // Wake every waiting `next` so streams end, then let the writer make all writes durable.
        self.inner.stop.cancel();
        let channels: Vec<Arc<Channel>> = self
            .inner
            .channels
            .lock()
            .expect("channel map lock")
            .values()
            .cloned()
            .collect();
        for c in channels {
            c.notify.notify_waiters();
        }
        let _ = self.write(Vec::new()).await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    //! The queue behaviour is in the contract suite (`super::super::contract`); here only what
    //! is the embedded buffer's own.
    use super::*;

    #[tokio::test]
    async fn another_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _b = Embedded::open(dir.path()).unwrap();
        assert!(Embedded::open(dir.path()).is_err());
    }
}
