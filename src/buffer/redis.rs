//! The Redis buffer: one Stream per channel, for several `wcon serve` instances on one Redis.
//!
//! Owns the key layout, the Lua scripts that keep every state change atomic, leases as the
//! consumer group's pending entries (one consumer per connection), ack timeouts (`XAUTOCLAIM`),
//! retries with backoff, TTL and dead letters, counters, sequences and rotated tokens: all of a
//! channel's state is in Redis, so every instance sees the same channel.
//!
//! Keys of channel `c` under prefix `p` (the `{c}` hash tag keeps a channel on one Cluster slot):
//! - `p{c}:s` the stream; an entry is `m` message id, `q` sequence, `e` expiry (Unix ms), `d` the
//!   stored message. Its length is every unacked message (queued, delayed, in flight), so
//!   `max_queue_size` is checked against `XLEN` before `XADD … MAXLEN` (which therefore never
//!   trims an unacked message).
//! - consumer group `wcon`: an entry pending for a connection's consumer is leased to it;
//!   pending for the consumer `~parked` it waits for redelivery, in the ready set `p{c}:r`
//!   (score: sequence) or the retry set `p{c}:d` (score: due time). Delivery counts are the
//!   group's own (`XCLAIM` counts one per delivery).
//! - `p{c}:i` message id → entry id; `p{c}:x` / `p{c}:xd` / `p{c}:xi` dead letters (why, the
//!   stored message, the index by sequence); `p{c}:n` counters; `p{c}:q` the sequence;
//!   `p{c}:t` the rotated token.
//!
//! Enqueues and acks are grouped: the enqueues waiting while a script stores the previous group
//! go in the next script call (each returns once its own group is applied), and the acks a
//! connection sent together are applied by one call ([`Buffer::ack_many`]). Nothing waits to
//! form a group: an idle channel stores each webhook at once.
//!
//! A waiting `next` is woken at once by changes made through this instance, and within
//! 50 ms (`POLL_INTERVAL`) by changes made through another (one look per channel and instance).
//! Leases are taken in a task of their own and handed over through a per-connection stash, so
//! dropping a `next` loses nothing; what nobody picks up goes back to the queue.
//!
//! Durability is Redis's: 200 means Redis applied the write; run it with `appendonly yes`
//! (`appendfsync always` for power-loss safety). `redis+sentinel://` URLs find the master
//! through Sentinel and find it again after a failover. Redis Cluster is not supported by this
//! client (keys are hash-tagged per channel so that the scripts would run there unchanged).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{IntoConnectionInfo, RedisConnectionInfo, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    Buffer, BufferError, BufferStats, ChannelSettings, DeadLetter, DeadReason, DeadSelection,
    InFlight, NackOutcome, NewMessage, Stored, TokenRotation,
};
use crate::message::{Message, MessageMeta};
use crate::protocol::{ChannelName, ConnectionId, MessageId};
use crate::secret::Secret;

/// How often ack timeouts, due retries and TTLs are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// How often an instance looks, once per channel with waiting `next`s, for work another
/// instance made available (local changes wake them at once).
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a waiting `next` sleeps before it tries again by itself.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Sweeps between two clean-ups of idle consumers.
const FORGET_EVERY: u64 = 120;
/// Leased messages not picked up from the stash within this time go back to the queue.
const STASH_TTL: Duration = Duration::from_secs(1);
/// Longest wait before a nacked message is offered again (as the embedded buffer).
const MAX_RETRY_DELAY_MS: u64 = 60_000;
/// Most acks applied by one script call (a longer list takes several).
const ACK_CHUNK: usize = 256;
/// Most messages, and stored bytes beyond the first message, stored by one script call.
const WRITE_GROUP: usize = 256;
const WRITE_GROUP_BYTES: usize = 1 << 20;

/// Where the Redis buffer connects and which keys it uses.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` or
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]`.
    pub url: Secret<String>,
    /// Prefix of every key (lets several deployments, or tests, share one Redis).
    pub prefix: String,
}

/// The Redis buffer. Cheap to clone; the last clone dropped stops its sweeper.
#[derive(Clone)]
pub struct RedisBuffer {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    prefix: String,
    channels: Mutex<HashMap<ChannelName, Arc<Channel>>>,
    /// Messages leased by a `next` whose caller went away before it returned; handed to the
    /// next call of the same connection (this keeps `next` cancel-safe).
    stash: Mutex<HashMap<(ChannelName, ConnectionId), Stash>>,
    stop: CancellationToken,
}

/// Leased messages waiting for their connection's next call, with when they were leased.
type Stash = VecDeque<(Instant, Message)>;

struct Channel {
    settings: Mutex<ChannelSettings>,
    keys: Keys,
    notify: Notify,
    /// `next` calls waiting for work.
    waiting: std::sync::atomic::AtomicUsize,
    /// Messages waiting to be stored by the channel's writer task.
    writes: Mutex<Writes>,
}

/// Enqueues stored together: while one script call stores a group, the next group gathers
/// (group commit), so a busy channel costs one round trip per group, not per webhook.
#[derive(Default)]
struct Writes {
    waiting: Vec<Write>,
    /// Whether a writer task is running (it stops when nothing waits).
    writing: bool,
}

/// One message to store: its id, expiry (Unix ms), stored form, and who waits for the answer
/// (`None`: the channel is full).
struct Write {
    id: MessageId,
    expires: String,
    data: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<Option<u64>, String>>,
}

/// Counts a waiting `next` while it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The keys of one channel, in the order every script takes them.
#[derive(Clone)]
struct Keys([String; 10]);

impl Keys {
    fn new(prefix: &str, channel: &ChannelName) -> Self {
        let k = |kind: &str| format!("{prefix}{{{}}}:{kind}", channel.as_str());
        Self([
            k("s"),
            k("r"),
            k("d"),
            k("i"),
            k("x"),
            k("xd"),
            k("xi"),
            k("n"),
            k("q"),
            k("t"),
        ])
    }
    fn stream(&self) -> &str {
        &self.0[0]
    }
    fn dead_info(&self) -> &str {
        &self.0[4]
    }
    fn dead_data(&self) -> &str {
        &self.0[5]
    }
    fn dead_index(&self) -> &str {
        &self.0[6]
    }
    fn token(&self) -> &str {
        &self.0[9]
    }
}

/// The consumer group of every stream.
const GROUP: &str = "wcon";

/// Helpers every script starts with.
const PRELUDE: &str = r#"
local s, r, d, i, x, xd, xi, n = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local G, PARKED = 'wcon', '~parked'
local function field(f, name)
  for k = 1, #f, 2 do if f[k] == name then return f[k + 1] end end
  return nil
end
local function entry(id)
  local e = redis.call('XRANGE', s, id, id)
  if #e == 0 then return nil end
  return e[1][2]
end
local function count(id)
  local p = redis.call('XPENDING', s, G, id, id, 1)
  if #p == 0 then return 0 end
  return tonumber(p[1][4])
end
local function last_delivered()
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local name, last
    for k = 1, #g, 2 do
      if g[k] == 'name' then name = g[k + 1] elseif g[k] == 'last-delivered-id' then last = g[k + 1] end
    end
    if name == G then return last end
  end
  return '0-0'
end
local function bury(id, reason, err, at, cnt)
  local f = entry(id)
  redis.call('XACK', s, G, id)
  redis.call('ZREM', r, id)
  redis.call('ZREM', d, id)
  if not f then return 0 end
  redis.call('XDEL', s, id)
  local m = field(f, 'm')
  redis.call('HDEL', i, m)
  local info = {reason = reason, dead_lettered_at = at, delivery_count = cnt}
  if err ~= '' then info['error'] = err end
  redis.call('HSET', x, m, cjson.encode(info))
  redis.call('HSET', xd, m, field(f, 'd'))
  redis.call('ZADD', xi, field(f, 'q'), m)
  if reason == 'expired' then redis.call('HINCRBY', n, 'expired', 1) end
  redis.call('HINCRBY', n, 'dead_lettered', 1)
  return 1
end
"#;

/// ARGV: max_queue_size, then for each message: message id, expiry ms, stored message.
/// Returns, in order, each message's sequence, or nil when the channel was full for it.
const ENQUEUE: &str = r#"
local max, out = tonumber(ARGV[1]), {}
local len = redis.call('XLEN', s)
for k = 2, #ARGV, 3 do
  local q = false
  if len < max then
    q = redis.call('INCR', KEYS[9])
    local id = redis.call('XADD', s, 'MAXLEN', ARGV[1], '*', 'm', ARGV[k], 'q', q, 'e', ARGV[k + 1], 'd', ARGV[k + 2])
    redis.call('HSET', i, ARGV[k], id)
    len = len + 1
  end
  out[(k + 1) / 3] = q
end
return out
"#;

/// ARGV: consumer, max_in_flight, batch. Returns {0} at max_in_flight, {2} when nothing is
/// queued, or {1, then entry id, fields, delivery count for each new lease}: redeliveries
/// first (by sequence), then the oldest messages never delivered.
const LEASE: &str = r#"
local c, max, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- The summary form counts per consumer without listing the entries.
local held = 0
local pending = redis.call('XPENDING', s, G)
if pending[4] then
  for _, pc in ipairs(pending[4]) do
    if pc[1] == c then held = tonumber(pc[2]) end
  end
end
local room = max - held
if room <= 0 then return {0} end
if batch > room then batch = room end
local out, leased = {1}, 0
while leased < batch do
  local top = redis.call('ZRANGE', r, 0, 0)
  if #top == 0 then break end
  local id = top[1]
  redis.call('ZREM', r, id)
  local got = redis.call('XCLAIM', s, G, c, 0, id)
  if got[1] then
    table.insert(out, id)
    table.insert(out, got[1][2])
    table.insert(out, count(id))
    leased = leased + 1
  end
end
if leased < batch then
  local got = redis.call('XREADGROUP', 'GROUP', G, c, 'COUNT', batch - leased, 'STREAMS', s, '>')
  if got and got[1] then
    for _, e in ipairs(got[1][2]) do
      table.insert(out, e[1])
      table.insert(out, e[2])
      table.insert(out, 1)
      leased = leased + 1
    end
  end
end
if leased == 0 then return {2} end
return out
"#;

/// ARGV: consumer, message ids. Leases nobody picked up (their `next` was dropped and the
/// connection asked no more) back to the ready set, their delivery counts as before.
const UNLEASE: &str = r#"
local c, moved = ARGV[1], 0
for k = 2, #ARGV do
  local id = redis.call('HGET', i, ARGV[k])
  if id then
    local p = redis.call('XPENDING', s, G, id, id, 1, c)
    local f = entry(id)
    if #p > 0 and f then
      redis.call('XCLAIM', s, G, PARKED, 0, id, 'RETRYCOUNT', math.max(tonumber(p[1][4]) - 1, 0), 'JUSTID')
      redis.call('ZADD', r, field(f, 'q'), id)
      moved = moved + 1
    end
  end
end
return moved
"#;

/// ARGV: consumer, message ids (at most [`ACK_CHUNK`]). Acks those leased to the consumer, all
/// in one script: one round trip for every ack a connection sent together. Returns one number
/// per id: 1 acked, 0 not leased to the consumer (or acked earlier in the list).
const ACK: &str = r#"
local c, out, seen, entries, ms = ARGV[1], {}, {}, {}, {}
for k = 2, #ARGV do
  local m, ok = ARGV[k], 0
  local id = redis.call('HGET', i, m)
  if id and not seen[m] and #redis.call('XPENDING', s, G, id, id, 1, c) > 0 then
    seen[m] = true
    table.insert(entries, id)
    table.insert(ms, m)
    ok = 1
  end
  out[k - 1] = ok
end
if #entries > 0 then
  redis.call('XACK', s, G, unpack(entries))
  redis.call('XDEL', s, unpack(entries))
  redis.call('HDEL', i, unpack(ms))
  redis.call('HINCRBY', n, 'delivered', #entries)
end
return out
"#;

/// ARGV: op (expire | reject | retry), consumer, message id, now (RFC 3339), error, now ms,
/// max attempts, longest retry delay ms. Returns 0 when the message is not leased to the
/// consumer, 2 dead-lettered, 3 requeued.
const SETTLE: &str = r#"
local op, c, m = ARGV[1], ARGV[2], ARGV[3]
local id = redis.call('HGET', i, m)
if not id then return 0 end
local p = redis.call('XPENDING', s, G, id, id, 1, c)
if #p == 0 then return 0 end
local cnt = tonumber(p[1][4])
if op == 'expire' then bury(id, 'expired', '', ARGV[4], cnt) return 2 end
if op == 'reject' then bury(id, 'rejected', ARGV[5], ARGV[4], cnt) return 2 end
if cnt >= tonumber(ARGV[7]) then bury(id, 'max_attempts', ARGV[5], ARGV[4], cnt) return 2 end
local delay = math.min(500 * 2 ^ math.min(math.max(cnt - 1, 0), 6), tonumber(ARGV[8]))
redis.call('XCLAIM', s, G, PARKED, 0, id, 'JUSTID')
redis.call('ZADD', d, tonumber(ARGV[6]) + delay, id)
return 3
"#;

/// ARGV: consumer. Every lease of the consumer back to the ready set; returns how many.
const RELEASE: &str = r#"
local c = ARGV[1]
local p = redis.call('XPENDING', s, G, '-', '+', 100000, c)
for _, e in ipairs(p) do
  local f = entry(e[1])
  if f then
    redis.call('XCLAIM', s, G, PARKED, 0, e[1], 'JUSTID')
    redis.call('ZADD', r, field(f, 'q'), e[1])
  else
    redis.call('XACK', s, G, e[1])
  end
end
redis.call('XGROUP', 'DELCONSUMER', s, G, c)
return #p
"#;

/// ARGV: now ms, ack timeout ms, max attempts, now (RFC 3339), ack timeout s, whether to
/// forget consumers. Due retries to the ready set, leases past their ack timeout (also those of
/// instances that died) to the ready set or the dead letters, expired messages at the heads of
/// the queue to the dead letters, and (every [`FORGET_EVERY`] sweeps) consumers idle for a
/// minute with nothing pending deleted: every connection and long poll makes one. Returns how
/// many messages became deliverable.
const SWEEP: &str = r#"
local now = tonumber(ARGV[1])
local moved = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', d, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', d, id)
  local f = entry(id)
  if f then
    redis.call('ZADD', r, field(f, 'q'), id)
    moved = moved + 1
  else
    redis.call('XACK', s, G, id)
  end
end
local cursor = '0-0'
for _ = 1, 10 do
  local res = redis.call('XAUTOCLAIM', s, G, PARKED, ARGV[2], cursor, 'COUNT', 100, 'JUSTID')
  cursor = res[1]
  for _, id in ipairs(res[2]) do
    if not redis.call('ZSCORE', r, id) and not redis.call('ZSCORE', d, id) then
      local cnt = count(id)
      if cnt >= tonumber(ARGV[3]) then
        bury(id, 'max_attempts', 'not acked within ' .. ARGV[5] .. 's, ' .. cnt .. ' times', ARGV[4], cnt)
      else
        local f = entry(id)
        if f then
          redis.call('ZADD', r, field(f, 'q'), id)
          moved = moved + 1
        else
          redis.call('XACK', s, G, id)
        end
      end
    end
  end
  if cursor == '0-0' then break end
end
for _ = 1, 1000 do
  local top = redis.call('ZRANGE', r, 0, 0)
  if #top == 0 then break end
  local f = entry(top[1])
  if f and tonumber(field(f, 'e')) > now then break end
  if f then bury(top[1], 'expired', '', ARGV[4], count(top[1])) else redis.call('ZREM', r, top[1]) end
end
local last = last_delivered()
for _ = 1, 1000 do
  local e = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)
  if #e == 0 or tonumber(field(e[1][2], 'e')) > now then break end
  bury(e[1][1], 'expired', '', ARGV[4], 0)
end
if ARGV[6] == '1' then
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', s, G)) do
    local name, pending, idle
    for k = 1, #c, 2 do
      if c[k] == 'name' then name = c[k + 1] elseif c[k] == 'pending' then pending = c[k + 1] elseif c[k] == 'idle' then idle = c[k + 1] end
    end
    if name ~= PARKED and pending == 0 and idle > 60000 then
      redis.call('XGROUP', 'DELCONSUMER', s, G, name)
    end
  end
end
return moved
"#;

/// Returns 1 when a message waits for a lease: in the ready set, or never delivered (the
/// stream holds more entries than the group has pending).
const HAS_WORK: &str = r#"
if redis.call('ZCARD', r) > 0 then return 1 end
if redis.call('XLEN', s) > tonumber(redis.call('XPENDING', s, G)[1]) then return 1 end
return 0
"#;

/// Returns {queued, in flight, delivered, expired, dead}.
const STATS: &str = r#"
local len = redis.call('XLEN', s)
local pending = tonumber(redis.call('XPENDING', s, G)[1])
local inflight = math.max(pending - redis.call('ZCARD', r) - redis.call('ZCARD', d), 0)
local c = redis.call('HMGET', n, 'delivered', 'expired', 'dead_lettered')
return {math.max(len - inflight, 0), inflight, tonumber(c[1]) or 0, tonumber(c[2]) or 0, redis.call('ZCARD', xi), tonumber(c[3]) or 0}
"#;

/// ARGV: limit. Queued messages as {stored message, sequence, delivery count, consumer}:
/// the ready set, the retry set, then those never delivered.
const QUEUED: &str = r#"
local lim, out = tonumber(ARGV[1]), {}
for _, set in ipairs({r, d}) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, lim - 1)) do
    local f = entry(id)
    if f then table.insert(out, {field(f, 'd'), field(f, 'q'), count(id), ''}) end
  end
end
for _, e in ipairs(redis.call('XRANGE', s, '(' .. last_delivered(), '+', 'COUNT', lim)) do
  table.insert(out, {field(e[2], 'd'), field(e[2], 'q'), 0, ''})
end
return out
"#;

/// ARGV: limit. Leased messages as {stored message, sequence, delivery count, consumer}.
const IN_FLIGHT: &str = r#"
local lim, out = tonumber(ARGV[1]), {}
for _, p in ipairs(redis.call('XPENDING', s, G, '-', '+', 100000)) do
  if #out >= lim then break end
  if p[2] ~= PARKED then
    local f = entry(p[1])
    if f then table.insert(out, {field(f, 'd'), field(f, 'q'), tonumber(p[4]), p[2]}) end
  end
end
return out
"#;

/// ARGV: triples of message id, expiry ms, stored message. Dead letters back to the stream
/// (as new entries, so their delivery counts start again); returns the ids moved.
const REPLAY: &str = r#"
local out = {}
for k = 1, #ARGV, 3 do
  local m = ARGV[k]
  local q = redis.call('ZSCORE', xi, m)
  if q and redis.call('HEXISTS', x, m) == 1 then
    local id = redis.call('XADD', s, '*', 'm', m, 'q', q, 'e', ARGV[k + 1], 'd', ARGV[k + 2])
    redis.call('HSET', i, m, id)
    redis.call('HDEL', x, m)
    redis.call('HDEL', xd, m)
    redis.call('ZREM', xi, m)
    table.insert(out, m)
  end
end
return out
"#;

/// ARGV: message ids. Deletes those dead letters; returns the ids deleted.
const PURGE: &str = r#"
local out = {}
for _, m in ipairs(ARGV) do
  if redis.call('HDEL', x, m) == 1 then
    redis.call('HDEL', xd, m)
    redis.call('ZREM', xi, m)
    table.insert(out, m)
  end
end
return out
"#;

struct Scripts {
    enqueue: Script,
    lease: Script,
    unlease: Script,
    ack: Script,
    settle: Script,
    release: Script,
    sweep: Script,
    stats: Script,
    has_work: Script,
    queued: Script,
    in_flight: Script,
    replay: Script,
    purge: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let s = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            enqueue: s(ENQUEUE),
            lease: s(LEASE),
            unlease: s(UNLEASE),
            ack: s(ACK),
            settle: s(SETTLE),
            release: s(RELEASE),
            sweep: s(SWEEP),
            stats: s(STATS),
            has_work: s(HAS_WORK),
            queued: s(QUEUED),
            in_flight: s(IN_FLIGHT),
            replay: s(REPLAY),
            purge: s(PURGE),
        }
    })
}

/// What a dead letter's record keeps besides the message (written by the scripts).
#[derive(Debug, Serialize, Deserialize)]
struct DeadInfo {
    reason: DeadReason,
    #[serde(default)]
    error: Option<String>,
    dead_lettered_at: DateTime<Utc>,
    #[serde(default)]
    delivery_count: u32,
}

fn storage(e: impl std::fmt::Display) -> BufferError {
    BufferError::Storage(format!("redis: {e}"))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The connection: a self-reconnecting manager, found through Sentinel when the URL says so.
struct Conn {
    target: Target,
    current: Mutex<Option<ConnectionManager>>,
    /// Serialises Sentinel look-ups.
    resolving: tokio::sync::Mutex<()>,
}

enum Target {
    Direct(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

impl Conn {
    fn open(url: &str) -> Result<Self, BufferError> {
        let target = match url.strip_prefix("redis+sentinel://") {
            Some(rest) => Target::Sentinel(tokio::sync::Mutex::new(sentinel_client(rest)?)),
            None => Target::Direct(redis::Client::open(url).map_err(|e| {
                BufferError::Storage(format!("invalid Redis URL ({e}); expected redis://host:port[/db] or redis+sentinel://host:port[,host:port]/master"))
            })?),
        };
        Ok(Self {
            target,
            current: Mutex::new(None),
            resolving: tokio::sync::Mutex::new(()),
        })
    }

    async fn get(&self) -> Result<ConnectionManager, BufferError> {
        if let Some(c) = self.current.lock().expect("conn lock").clone() {
            return Ok(c);
        }
        let _one = self.resolving.lock().await;
        if let Some(c) = self.current.lock().expect("conn lock").clone() {
            return Ok(c);
        }
        let client = match &self.target {
            Target::Direct(client) => client.clone(),
            Target::Sentinel(sentinel) => sentinel
                .lock()
                .await
                .async_get_client()
                .await
                .map_err(|e| storage(format!("no master from Sentinel: {e}")))?,
        };
        let manager =
            ConnectionManager::new_lazy_with_config(client, manager_config()).map_err(storage)?;
        *self.current.lock().expect("conn lock") = Some(manager.clone());
        Ok(manager)
    }

    /// After a failure: behind Sentinel, a dropped connection or a read-only answer may mean
    /// a failover, so the master is looked up again on the next call.
    fn failed(&self, e: &redis::RedisError) {
        if matches!(self.target, Target::Sentinel(_))
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.to_string().contains("READONLY"))
        {
            *self.current.lock().expect("conn lock") = None;
        }
    }
}

/// `[user:password@]host:port[,host:port…]/master[/db]`.
fn sentinel_client(rest: &str) -> Result<SentinelClient, BufferError> {
    let bad = |why: &str| {
        BufferError::Storage(format!(
            "invalid Sentinel URL ({why}); expected redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]"
        ))
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
    let mut path = path.split('/');
    let master = path
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("no master name"))?;
    let db: i64 = match path.next().filter(|d| !d.is_empty()) {
        Some(d) => d.parse().map_err(|_| bad("the database is not a number"))?,
        None => 0,
    };
    let sentinels: Vec<redis::ConnectionInfo> = hosts
        .split(',')
        .map(|h| format!("redis://{h}").into_connection_info())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("a Sentinel address is not host:port"))?;
    if sentinels.is_empty() {
        return Err(bad("no Sentinel address"));
    }
    let mut login = RedisConnectionInfo::default().set_db(db);
    if let Some(auth) = auth {
        let (user, password) = auth.split_once(':').unwrap_or(("", auth));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        if !user.is_empty() {
            login = login.set_username(decode(user));
        }
        if !password.is_empty() {
            login = login.set_password(decode(password));
        }
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(login);
    SentinelClient::build(
        sentinels,
        master.to_string(),
        Some(node),
        SentinelServerType::Master,
    )
    .map_err(|e| bad(&e.to_string()))
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

fn text(v: &Value) -> Option<String> {
    Some(String::from_utf8_lossy(bytes(v)?).into_owned())
}

/// The stored message of a stream entry's fields (`{m, .., q, .., e, .., d, ..}`).
fn field<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .chunks(2)
        .find(|kv| bytes(&kv[0]) == Some(name.as_bytes()))
        .and_then(|kv| kv.get(1))
}

/// A message from its stored form and what Redis knows of it.
fn message(data: &[u8], sequence: u64, delivery_count: u32) -> Result<Message, BufferError> {
    let mut m = Message::decode(data).map_err(storage)?;
    m.sequence = sequence;
    m.delivery_count = delivery_count;
    Ok(m)
}

/// Rows of {stored message, sequence, delivery count, consumer}.
fn rows(value: Value) -> Result<Vec<(Message, String)>, BufferError> {
    let Value::Array(items) = value else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(row) = item else { continue };
        let (Some(data), Some(seq), Some(count), Some(consumer)) = (
            row.first().and_then(bytes),
            row.get(1).and_then(int),
            row.get(2).and_then(int),
            row.get(3).and_then(text),
        ) else {
            continue;
        };
        out.push((message(data, seq, count as u32)?, consumer));
    }
    Ok(out)
}

impl RedisBuffer {
    /// Prepares the buffer; the connection is made on first use and remade after failures.
    pub fn open(options: &RedisOptions) -> Result<Self, BufferError> {
        let conn = Conn::open(options.url.expose())?;
        let inner = Arc::new(Inner {
            conn,
            prefix: options.prefix.clone(),
            channels: Mutex::new(HashMap::new()),
            stash: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner), inner.stop.clone()));
        tokio::spawn(watch(Arc::downgrade(&inner), inner.stop.clone()));
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

    async fn ensure_group(&self, keys: &Keys) -> Result<(), BufferError> {
        let mut conn = self.inner.conn.get().await?;
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if !e.to_string().contains("BUSYGROUP") => {
                self.inner.conn.failed(&e);
                Err(storage(e))
            }
            _ => Ok(()),
        }
    }

    /// Runs a script over a channel's keys; recreates the consumer group once if Redis lost
    /// it (e.g. it restarted without persistence).
    async fn run(
        &self,
        script: &Script,
        keys: &Keys,
        args: &[&[u8]],
    ) -> Result<Value, BufferError> {
        for attempt in 0..2 {
            let mut conn = self.inner.conn.get().await?;
            let mut call = script.prepare_invoke();
            for k in &keys.0 {
                call.key(k);
            }
            for a in args {
                call.arg(*a);
            }
            match call.invoke_async::<Value>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt == 0 && e.to_string().contains("NOGROUP") => {
                    self.ensure_group(keys).await?;
                }
                Err(e) => {
                    self.inner.conn.failed(&e);
                    return Err(storage(e));
                }
            }
        }
        Err(storage("the consumer group keeps disappearing"))
    }

    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BufferError> {
        let mut conn = self.inner.conn.get().await?;
        cmd.query_async(&mut conn).await.map_err(|e| {
            self.inner.conn.failed(&e);
            storage(e)
        })
    }

    /// One lease attempt of up to `batch` messages: `true` when some were leased (and put into
    /// the stash of the connection).
    async fn lease(
        &self,
        channel: &Channel,
        name: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
        batch: usize,
    ) -> Result<bool, BufferError> {
        loop {
            let max = max_in_flight.to_string();
            let batch = batch.to_string();
            let got = self
                .run(
                    &scripts().lease,
                    &channel.keys,
                    &[
                        connection.as_str().as_bytes(),
                        max.as_bytes(),
                        batch.as_bytes(),
                    ],
                )
                .await?;
            let Value::Array(parts) = got else {
                return Err(storage("unexpected answer to a lease"));
            };
            if parts.first().and_then(int) != Some(1) {
                return Ok(false);
            }
            let mut leased = Vec::new();
            for lease in parts[1..].chunks(3) {
                let (Some(entry_id), Some(Value::Array(fields)), Some(count)) = (
                    lease.first().and_then(text),
                    lease.get(1),
                    lease.get(2).and_then(int),
                ) else {
                    return Err(storage("unexpected answer to a lease"));
                };
                let (Some(data), Some(seq), Some(expires), Some(id)) = (
                    field(fields, "d").and_then(bytes),
                    field(fields, "q").and_then(int),
                    field(fields, "e").and_then(int),
                    field(fields, "m").and_then(text),
                ) else {
                    return Err(storage(format!("stream entry {entry_id} is malformed")));
                };
                if expires as i64 <= now_ms() {
                    let at = crate::time::rfc3339(Utc::now());
                    self.run(
                        &scripts().settle,
                        &channel.keys,
                        &[
                            &b"expire"[..],
                            connection.as_str().as_bytes(),
                            id.as_bytes(),
                            at.as_bytes(),
                        ],
                    )
                    .await?;
                    continue;
                }
                leased.push((Instant::now(), message(data, seq, count as u32)?));
            }
            if leased.is_empty() {
                continue;
            }
            self.inner
                .stash
                .lock()
                .expect("stash lock")
                .entry((name.clone(), connection.clone()))
                .or_default()
                .extend(leased);
            return Ok(true);
        }
    }

    /// [`Self::lease`] in a task of its own: if the caller is dropped, what was leased still
    /// lands in the stash for the connection's next call (this keeps `next` cancel-safe).
    async fn lease_in_task(
        &self,
        channel: &Arc<Channel>,
        name: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
        batch: usize,
    ) -> Result<bool, BufferError> {
        let (me, ch, n, c) = (
            self.clone(),
            channel.clone(),
            name.clone(),
            connection.clone(),
        );
        tokio::spawn(async move { me.lease(&ch, &n, &c, max_in_flight, batch).await })
            .await
            .map_err(|e| storage(format!("lease task failed: {e}")))?
    }

    fn pop_stash(&self, name: &ChannelName, connection: &ConnectionId) -> Option<Message> {
        let mut stash = self.inner.stash.lock().expect("stash lock");
        let key = (name.clone(), connection.clone());
        let queue = stash.get_mut(&key)?;
        let m = queue.pop_front().map(|(_, m)| m);
        if queue.is_empty() {
            stash.remove(&key);
        }
        m
    }

    /// Returns leases that waited in the stash longer than [`STASH_TTL`] to the queue: the
    /// connection stopped asking (a long poll answered, a stream closed).
    async fn unstash(&self) {
        let stale: Vec<((ChannelName, ConnectionId), Vec<MessageId>)> = {
            let mut stash = self.inner.stash.lock().expect("stash lock");
            let mut stale = Vec::new();
            stash.retain(|key, queue| {
                let old: Vec<MessageId> = queue
                    .iter()
                    .filter(|(at, _)| at.elapsed() > STASH_TTL)
                    .map(|(_, m)| m.id.clone())
                    .collect();
                if !old.is_empty() {
                    queue.retain(|(at, _)| at.elapsed() <= STASH_TTL);
                    stale.push((key.clone(), old));
                }
                !queue.is_empty()
            });
            stale
        };
        for ((name, connection), ids) in stale {
            let Ok(channel) = self.channel(&name) else {
                continue;
            };
            let mut args: Vec<&[u8]> = vec![connection.as_str().as_bytes()];
            args.extend(ids.iter().map(|id| id.as_str().as_bytes()));
            match self.run(&scripts().unlease, &channel.keys, &args).await {
                Ok(_) => channel.notify.notify_waiters(),
                Err(e) => {
                    tracing::debug!(channel = %name, error = %e, "cannot return unclaimed leases; they come back after the ack timeout");
                }
            }
        }
    }

    /// Every dead letter of a channel with its sequence, in sequence order.
    async fn all_dead(
        &self,
        channel: &Channel,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // ZRANGE's stop is inclusive; -1 is the end.
        let stop: i64 = offset
            .checked_add(limit - 1)
            .and_then(|s| i64::try_from(s).ok())
            .unwrap_or(-1);
        let index: Vec<(String, f64)> = self
            .command(
                redis::cmd("ZRANGE")
                    .arg(channel.keys.dead_index())
                    .arg(offset)
                    .arg(stop)
                    .arg("WITHSCORES"),
            )
            .await?;
        if index.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = index.iter().map(|(m, _)| m.as_str()).collect();
        let infos: Vec<Option<String>> = self
            .command(redis::cmd("HMGET").arg(channel.keys.dead_info()).arg(&ids))
            .await?;
        let datas: Vec<Option<Vec<u8>>> = self
            .command(redis::cmd("HMGET").arg(channel.keys.dead_data()).arg(&ids))
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (((_, seq), info), data) in index.iter().zip(infos).zip(datas) {
            let (Some(info), Some(data)) = (info, data) else {
                continue;
            };
            let info: DeadInfo = serde_json::from_str(&info).map_err(storage)?;
            out.push(DeadLetter {
                message: message(&data, *seq as u64, info.delivery_count)?,
                reason: info.reason,
                error: info.error,
                dead_lettered_at: info.dead_lettered_at,
            });
        }
        Ok(out)
    }

    async fn select_dead(
        &self,
        channel: &Channel,
        selection: &DeadSelection,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        Ok(self
            .all_dead(channel, 0, usize::MAX)
            .await?
            .into_iter()
            .filter(|d| selection.matches(d))
            .collect())
    }
}

/// Stores what waits in a channel's write queue, a group per script call, until it is empty.
async fn write_groups(buffer: RedisBuffer, channel: Arc<Channel>) {
    loop {
        let group: Vec<Write> = {
            let mut writes = channel.writes.lock().expect("writes lock");
            if writes.waiting.is_empty() {
                writes.writing = false;
                return;
            }
            let mut bytes = 0;
            let take = writes
                .waiting
                .iter()
                .take(WRITE_GROUP)
                .take_while(|w| {
                    let first = bytes == 0;
                    bytes += w.data.len().max(1);
                    first || bytes <= WRITE_GROUP_BYTES
                })
                .count();
            writes.waiting.drain(..take).collect()
        };
        let max = channel
            .settings
            .lock()
            .expect("settings lock")
            .max_queue_size
            .to_string();
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + group.len() * 3);
        args.push(max.as_bytes());
        for w in &group {
            args.extend([w.id.as_str().as_bytes(), w.expires.as_bytes(), &w.data[..]]);
        }
        let answer = match buffer.run(&scripts().enqueue, &channel.keys, &args).await {
            Ok(Value::Array(v)) if v.len() == group.len() => Ok(v),
            Ok(_) => Err("redis: unexpected answer to an enqueue".to_string()),
            Err(BufferError::Storage(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        };
        drop(args);
        match answer {
            Ok(sequences) => {
                for (w, q) in group.into_iter().zip(&sequences) {
                    let _ = w.done.send(Ok(int(q)));
                }
                channel.notify.notify_waiters();
            }
            Err(e) => {
                for w in group {
                    let _ = w.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Wakes the waiting `next`s of a channel when there is work they did not hear of (stored,
/// released or requeued by another instance): one cheap look per channel, not per connection.
async fn watch(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let buffer = RedisBuffer { inner };
        let channels: Vec<Arc<Channel>> = buffer
            .inner
            .channels
            .lock()
            .expect("channel map lock")
            .values()
            .filter(|c| c.waiting.load(std::sync::atomic::Ordering::Relaxed) > 0)
            .cloned()
            .collect();
        for channel in channels {
            if let Ok(work) = buffer.run(&scripts().has_work, &channel.keys, &[]).await
                && int(&work) == Some(1)
            {
                channel.notify.notify_waiters();
            }
        }
    }
}

async fn sweep(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let buffer = RedisBuffer { inner };
        sweeps += 1;
        let forget = if sweeps.is_multiple_of(FORGET_EVERY) {
            "1"
        } else {
            "0"
        };
        let channels: Vec<Arc<Channel>> = buffer
            .inner
            .channels
            .lock()
            .expect("channel map lock")
            .values()
            .cloned()
            .collect();
        buffer.unstash().await;
        for channel in channels {
            let settings = channel.settings.lock().expect("settings lock").clone();
            let args = [
                now_ms().to_string(),
                settings.ack_timeout.as_millis().to_string(),
                settings.max_delivery_attempts.to_string(),
                crate::time::rfc3339(Utc::now()),
                settings.ack_timeout.as_secs().to_string(),
                forget.to_string(),
            ];
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            match buffer.run(&scripts().sweep, &channel.keys, &args).await {
                Ok(moved) if int(&moved).unwrap_or(0) > 0 => channel.notify.notify_waiters(),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(channel = %settings.name, error = %e, "redis buffer sweep failed");
                }
            }
        }
    }
}

#[async_trait]
impl Buffer for RedisBuffer {
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
                    let keys = Keys::new(&self.inner.prefix, &settings.name);
                    self.ensure_group(&keys).await?;
                    self.inner
                        .channels
                        .lock()
                        .expect("channel map lock")
                        .insert(
                            settings.name.clone(),
                            Arc::new(Channel {
                                settings: Mutex::new(settings.clone()),
                                keys,
                                notify: Notify::new(),
                                waiting: std::sync::atomic::AtomicUsize::new(0),
                                writes: Mutex::new(Writes::default()),
                            }),
                        );
                }
            }
        }
        Ok(())
    }

    async fn enqueue(&self, new: NewMessage) -> Result<Stored, BufferError> {
        let channel = self.channel(&new.channel)?;
        let settings = channel.settings.lock().expect("settings lock").clone();
        // The script assigns the sequence; the stream entry keeps it.
        let message = new.into_message(settings.ttl, 0);
        let (done, answer) = tokio::sync::oneshot::channel();
        let write = Write {
            id: message.id.clone(),
            expires: message.expires_at.timestamp_millis().to_string(),
            data: message.encode(),
            done,
        };
        let start_writer = {
            let mut writes = channel.writes.lock().expect("writes lock");
            writes.waiting.push(write);
            !std::mem::replace(&mut writes.writing, true)
        };
        if start_writer {
            // A task of its own: a caller that goes away does not stop the others' writes.
            tokio::spawn(write_groups(self.clone(), channel.clone()));
        }
        let sequence = answer
            .await
            .map_err(|_| storage("the write task stopped"))?
            .map_err(BufferError::Storage)?;
        let Some(sequence) = sequence else {
            return Err(BufferError::Full(message.channel));
        };
        Ok(Stored {
            id: message.id,
            sequence,
        })
    }

    async fn next(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        max_in_flight: u32,
    ) -> Result<Message, BufferError> {
        let channel = self.channel(name)?;
        loop {
            if let Some(m) = self.pop_stash(name, connection) {
                return Ok(m);
            }
            let notified = channel.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.stop.is_cancelled() {
                return Err(BufferError::Closed);
            }
            if self
                .lease_in_task(&channel, name, connection, max_in_flight, 1)
                .await?
            {
                continue;
            }
            let _waiting = Waiting::new(&channel.waiting);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(RECHECK_INTERVAL) => {}
                _ = self.inner.stop.cancelled() => return Err(BufferError::Closed),
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
        let channel = self.channel(name)?;
        let mut ready = Vec::new();
        while ready.len() < max {
            match self.pop_stash(name, connection) {
                Some(m) => ready.push(m),
                None => break,
            }
        }
        if ready.len() < max && !self.inner.stop.is_cancelled() {
            let batch = max - ready.len();
            match self
                .lease_in_task(&channel, name, connection, max_in_flight, batch)
                .await
            {
                Ok(true) => {
                    while ready.len() < max {
                        match self.pop_stash(name, connection) {
                            Some(m) => ready.push(m),
                            None => break,
                        }
                    }
                }
                Ok(false) => {}
                // What is already leased is handed out; the error shows at the next call.
                Err(e) if ready.is_empty() => return Err(e),
                Err(_) => {}
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
        let acked = self
            .ack_many(name, connection, std::slice::from_ref(id))
            .await?;
        Ok(acked.first().copied().unwrap_or(false))
    }

    async fn ack_many(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
        ids: &[MessageId],
    ) -> Result<Vec<bool>, BufferError> {
        let channel = self.channel(name)?;
        let mut acked = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ACK_CHUNK) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 1);
            args.push(connection.as_str().as_bytes());
            args.extend(chunk.iter().map(|id| id.as_str().as_bytes()));
            let got = self.run(&scripts().ack, &channel.keys, &args).await?;
            let answers = match got {
                Value::Array(v) if v.len() == chunk.len() => v,
                _ => return Err(storage("unexpected answer to an ack")),
            };
            let before = acked.len();
            acked.extend(answers.iter().map(|a| int(a) == Some(1)));
            if acked[before..].contains(&true) {
                channel.notify.notify_waiters();
            }
        }
        Ok(acked)
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
        let max = channel
            .settings
            .lock()
            .expect("settings lock")
            .max_delivery_attempts
            .to_string();
        let at = crate::time::rfc3339(Utc::now());
        let now = now_ms().to_string();
        let max_delay = MAX_RETRY_DELAY_MS.to_string();
        let got = self
            .run(
                &scripts().settle,
                &channel.keys,
                &[
                    if retry { &b"retry"[..] } else { &b"reject"[..] },
                    connection.as_str().as_bytes(),
                    id.as_str().as_bytes(),
                    at.as_bytes(),
                    reason.as_deref().unwrap_or("").as_bytes(),
                    now.as_bytes(),
                    max.as_bytes(),
                    max_delay.as_bytes(),
                ],
            )
            .await?;
        let outcome = match int(&got) {
            Some(2) => Some(NackOutcome::DeadLettered),
            Some(3) => Some(NackOutcome::Requeued),
            _ => None,
        };
        if outcome.is_some() {
            channel.notify.notify_waiters();
        }
        Ok(outcome)
    }

    async fn release(
        &self,
        name: &ChannelName,
        connection: &ConnectionId,
    ) -> Result<usize, BufferError> {
        let channel = self.channel(name)?;
        self.inner
            .stash
            .lock()
            .expect("stash lock")
            .remove(&(name.clone(), connection.clone()));
        let got = self
            .run(
                &scripts().release,
                &channel.keys,
                &[connection.as_str().as_bytes()],
            )
            .await?;
        let released = int(&got).unwrap_or(0) as usize;
        if released > 0 {
            channel.notify.notify_waiters();
        }
        Ok(released)
    }

    async fn stats(&self, name: &ChannelName) -> Result<BufferStats, BufferError> {
        let channel = self.channel(name)?;
        let got = self.run(&scripts().stats, &channel.keys, &[]).await?;
        let Value::Array(v) = got else {
            return Err(storage("unexpected answer to stats"));
        };
        let n = |i: usize| v.get(i).and_then(int).unwrap_or(0);
        Ok(BufferStats {
            messages_queued: n(0),
            messages_in_flight: n(1),
            messages_delivered: n(2),
            messages_expired: n(3),
            messages_dead_lettered: n(4),
            messages_dead_lettered_total: n(5),
        })
    }

    async fn dead_letters(
        &self,
        name: &ChannelName,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        let channel = self.channel(name)?;
        self.all_dead(&channel, offset, limit).await
    }

    async fn queued(
        &self,
        name: &ChannelName,
        limit: usize,
    ) -> Result<Vec<MessageMeta>, BufferError> {
        let channel = self.channel(name)?;
        let lim = limit.to_string();
        let got = self
            .run(&scripts().queued, &channel.keys, &[lim.as_bytes()])
            .await?;
        let mut metas: Vec<MessageMeta> = rows(got)?.into_iter().map(|(m, _)| m.meta()).collect();
        metas.sort_by_key(|m| m.sequence);
        metas.truncate(limit);
        Ok(metas)
    }

    async fn in_flight(
        &self,
        name: &ChannelName,
        limit: usize,
    ) -> Result<Vec<InFlight>, BufferError> {
        let channel = self.channel(name)?;
        let lim = limit.to_string();
        let got = self
            .run(&scripts().in_flight, &channel.keys, &[lim.as_bytes()])
            .await?;
        let mut leases: Vec<InFlight> = rows(got)?
            .into_iter()
            .map(|(m, consumer)| InFlight {
                meta: m.meta(),
                connection: ConnectionId(consumer),
            })
            .collect();
        leases.sort_by_key(|l| l.meta.sequence);
        Ok(leases)
    }

    async fn dead_letter(
        &self,
        name: &ChannelName,
        id: &MessageId,
    ) -> Result<Option<DeadLetter>, BufferError> {
        let channel = self.channel(name)?;
        let (info, data, seq): (Option<String>, Option<Vec<u8>>, Option<f64>) = {
            let mut conn = self.inner.conn.get().await?;
            redis::pipe()
                .cmd("HGET")
                .arg(channel.keys.dead_info())
                .arg(id.as_str())
                .cmd("HGET")
                .arg(channel.keys.dead_data())
                .arg(id.as_str())
                .cmd("ZSCORE")
                .arg(channel.keys.dead_index())
                .arg(id.as_str())
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    self.inner.conn.failed(&e);
                    storage(e)
                })?
        };
        let (Some(info), Some(data), Some(seq)) = (info, data, seq) else {
            return Ok(None);
        };
        let info: DeadInfo = serde_json::from_str(&info).map_err(storage)?;
        Ok(Some(DeadLetter {
            message: message(&data, seq as u64, info.delivery_count)?,
            reason: info.reason,
            error: info.error,
            dead_lettered_at: info.dead_lettered_at,
        }))
    }

    async fn replay_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError> {
        let channel = self.channel(name)?;
        let ttl = channel.settings.lock().expect("settings lock").ttl;
        let selected = self.select_dead(&channel, selection).await?;
        if selected.is_empty() {
            return Ok(Vec::new());
        }
        // A replayed message gets a fresh time to live, or an expired one would be buried
        // again at the next sweep.
        let fresh = Utc::now()
            .checked_add_signed(chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(selected.len() * 3);
        for dead in selected {
            let mut m = dead.message;
            m.delivery_count = 0;
            m.expires_at = m.expires_at.max(fresh);
            let id = m.id.as_str().as_bytes().to_vec();
            m.sequence = 0;
            args.push(id);
            args.push(m.expires_at.timestamp_millis().to_string().into_bytes());
            args.push(m.encode());
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let got = self.run(&scripts().replay, &channel.keys, &args).await?;
        let ids = ids(got);
        if !ids.is_empty() {
            channel.notify.notify_waiters();
        }
        Ok(ids)
    }

    async fn purge_dead(
        &self,
        name: &ChannelName,
        selection: &DeadSelection,
    ) -> Result<Vec<MessageId>, BufferError> {
        let channel = self.channel(name)?;
        let selected = self.select_dead(&channel, selection).await?;
        if selected.is_empty() {
            return Ok(Vec::new());
        }
        let args: Vec<&[u8]> = selected
            .iter()
            .map(|d| d.message.id.as_str().as_bytes())
            .collect();
        let got = self.run(&scripts().purge, &channel.keys, &args).await?;
        Ok(ids(got))
    }

    async fn token_rotation(
        &self,
        name: &ChannelName,
    ) -> Result<Option<TokenRotation>, BufferError> {
        let keys = Keys::new(&self.inner.prefix, name);
        let raw: Option<String> = self.command(redis::cmd("GET").arg(keys.token())).await?;
        raw.map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(storage)
    }

    async fn save_token_rotation(
        &self,
        name: &ChannelName,
        rotation: &TokenRotation,
    ) -> Result<(), BufferError> {
        let keys = Keys::new(&self.inner.prefix, name);
        let value = serde_json::to_string(rotation).map_err(storage)?;
        self.command::<()>(redis::cmd("SET").arg(keys.token()).arg(value))
            .await
    }

    async fn healthy(&self) -> bool {
        if self.inner.stop.is_cancelled() {
            return false;
        }
        let key = format!("{}health", self.inner.prefix);
        self.command::<()>(
            redis::cmd("SET")
                .arg(key)
                .arg(now_ms())
                .arg("PX")
                .arg(60_000),
        )
        .await
        .is_ok()
    }

    async fn close(&self) {
        // Every write was applied when its call returned; wake waiting `next`s so streams end.
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
    }
}

fn ids(value: Value) -> Vec<MessageId> {
    match value {
        Value::Array(items) => items.iter().filter_map(text).map(MessageId::from).collect(),
        _ => Vec::new(),
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
