//! The buffer contract: one test suite that every backend passes (`contract_tests!` runs it
//! against each). A backend factory opens a buffer over the same storage each time it is asked,
//! so "reopen" means a restart, and, for backends shared by several instances, a second
//! buffer from the same factory is a second instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;

use super::*;

/// Opens buffers over one storage.
#[async_trait]
pub(super) trait Backend: Send + Sync {
    /// A buffer over this backend's storage, with `channels` configured.
    async fn open(&self, channels: &[ChannelSettings]) -> Arc<dyn Buffer>;
    /// Whether two buffers may be open on the storage at once (several instances).
    fn shared(&self) -> bool;
    /// Whether messages delivered and not acked count against `max_queue_size` (RabbitMQ
    /// counts only ready messages).
    fn counts_unacked_against_max(&self) -> bool {
        true
    }
}

pub(super) struct EmbeddedBackend(tempfile::TempDir);

impl EmbeddedBackend {
    pub(super) fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn open(&self, channels: &[ChannelSettings]) -> Arc<dyn Buffer> {
        let b = Embedded::open(self.0.path()).unwrap();
        b.configure(channels).await.unwrap();
        Arc::new(b)
    }
    fn shared(&self) -> bool {
        false
    }
}

/// A Redis backend under a key prefix of its own (deleted when dropped).
#[cfg(feature = "redis")]
pub(super) struct RedisBackend {
    url: String,
    prefix: String,
}

#[cfg(feature = "redis")]
impl RedisBackend {
    pub(super) fn new() -> Self {
        let url = std::env::var("WCON_TEST_REDIS_URL").unwrap_or_else(|_| {
            panic!("WCON_TEST_REDIS_URL is not set: run `scripts/services.sh` and `. /var/tmp/wcon-services/env.sh` (scripts/test.sh does both)")
        });
        Self {
            url,
            prefix: format!("wcon-test-{:016x}:", rand::random::<u64>()),
        }
    }
}

#[cfg(feature = "redis")]
#[async_trait]
impl Backend for RedisBackend {
    async fn open(&self, channels: &[ChannelSettings]) -> Arc<dyn Buffer> {
        let b = RedisBuffer::open(&RedisOptions {
            url: crate::secret::Secret::new(self.url.clone()),
            prefix: self.prefix.clone(),
        })
        .unwrap();
        b.configure(channels).await.unwrap();
        Arc::new(b)
    }
    fn shared(&self) -> bool {
        true
    }
}

#[cfg(feature = "redis")]
impl Drop for RedisBackend {
    fn drop(&mut self) {
        let Ok(client) = ::redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = ::redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A RabbitMQ backend under a queue prefix of its own (its queues are deleted when dropped).
#[cfg(feature = "rabbitmq")]
pub(super) struct RabbitBackend {
    url: String,
    prefix: String,
    queue_type: QueueType,
}

#[cfg(feature = "rabbitmq")]
impl RabbitBackend {
    pub(super) fn new(queue_type: QueueType) -> Self {
        let url = std::env::var("WCON_TEST_RABBITMQ_URL").unwrap_or_else(|_| {
            panic!("WCON_TEST_RABBITMQ_URL is not set: run `scripts/services.sh` and `. /var/tmp/wcon-services/env.sh` (scripts/test.sh does both)")
        });
        Self {
            url,
            prefix: format!("wcon-test-{:016x}.", rand::random::<u64>()),
            queue_type,
        }
    }
}

#[cfg(feature = "rabbitmq")]
#[async_trait]
impl Backend for RabbitBackend {
    async fn open(&self, channels: &[ChannelSettings]) -> Arc<dyn Buffer> {
        let b = RabbitBuffer::open(&RabbitOptions {
            url: crate::secret::Secret::new(self.url.clone()),
            prefix: self.prefix.clone(),
            queue_type: self.queue_type,
        })
        .unwrap();
        b.configure(channels).await.unwrap();
        Arc::new(b)
    }
    fn shared(&self) -> bool {
        true
    }
    fn counts_unacked_against_max(&self) -> bool {
        false
    }
}

#[cfg(feature = "rabbitmq")]
impl Drop for RabbitBackend {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // The test's runtime is gone or busy: delete the queues from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(super::rabbitmq::delete_deployment(
                &url,
                &prefix,
                &["c".into(), "t".into()],
            ));
        })
        .join();
    }
}

/// Runs every contract test against a backend made by `$factory`.
macro_rules! contract_tests {
    ($name:ident, $factory:expr, [$($test:ident),* $(,)?]) => {
        mod $name {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = $factory;
                    super::$test(&backend).await;
                }
            )*
        }
    };
}

macro_rules! all_contract_tests {
    ($name:ident, $factory:expr) => {
        contract_tests!(
            $name,
            $factory,
            [
                enqueue_lease_ack_and_full,
                messages_survive_a_reopen_and_sequences_continue,
                nack_without_retry_dead_letters_with_the_reason,
                retries_past_the_attempt_limit_dead_letter,
                max_in_flight_and_release,
                ack_timeout_redelivers_and_ttl_dead_letters,
                ack_timeout_past_the_attempt_limit_dead_letters,
                delivery_follows_the_sequence,
                next_ready_batches_what_is_waiting,
                ack_many_acks_each_leased_message_once,
                replay_requeues_with_attempts_reset_and_survives_a_reopen,
                replay_all_and_by_time_and_in_flight_listing,
                purge_deletes_for_good,
                token_rotations_are_durable,
                dropped_next_loses_no_message,
                instances_share_one_channel,
            ]
        );
    };
}

all_contract_tests!(embedded, super::EmbeddedBackend::new());
#[cfg(feature = "redis")]
all_contract_tests!(redis, super::RedisBackend::new());
#[cfg(feature = "rabbitmq")]
all_contract_tests!(
    rabbitmq,
    super::RabbitBackend::new(super::QueueType::Quorum)
);
#[cfg(feature = "rabbitmq")]
all_contract_tests!(
    rabbitmq_classic,
    super::RabbitBackend::new(super::QueueType::Classic)
);

fn settings(name: &str) -> ChannelSettings {
    ChannelSettings {
        name: name.into(),
        max_queue_size: 3,
        ttl: Duration::from_secs(3600),
        ack_timeout: Duration::from_secs(30),
        max_delivery_attempts: 2,
    }
}

fn new(channel: &str, body: &'static [u8]) -> NewMessage {
    NewMessage {
        channel: channel.into(),
        webhook_id: "w".into(),
        source_ip: None,
        headers: BTreeMap::new(),
        body: Bytes::from_static(body),
    }
}

async fn next_within(b: &Arc<dyn Buffer>, ch: &ChannelName, conn: &str) -> Message {
    tokio::time::timeout(Duration::from_secs(5), b.next(ch, &conn.into(), 10))
        .await
        .expect("a message within 5 s")
        .unwrap()
}

async fn enqueue_lease_ack_and_full(backend: &dyn Backend) {
    let b = backend.open(&[settings("c")]).await;
    let ch: ChannelName = "c".into();
    let conn: ConnectionId = "k".into();
    let s1 = b.enqueue(new("c", b"one")).await.unwrap();
    b.enqueue(new("c", b"two")).await.unwrap();
    b.enqueue(new("c", b"three")).await.unwrap();
    assert!(matches!(
        b.enqueue(new("c", b"four")).await,
        Err(BufferError::Full(_))
    ));
    let m = b.next(&ch, &conn, 10).await.unwrap();
    assert_eq!(
        (m.id.clone(), &m.body[..], m.delivery_count, m.sequence),
        (s1.id.clone(), &b"one"[..], 1, s1.sequence)
    );
    if backend.counts_unacked_against_max() {
        assert!(
            matches!(
                b.enqueue(new("c", b"four")).await,
                Err(BufferError::Full(_))
            ),
            "a message in flight still counts against max_queue_size"
        );
    }
    assert!(
        !b.ack(&ch, &"someone-else".into(), &m.id).await.unwrap(),
        "only the lease holder acks"
    );
    assert!(b.ack(&ch, &conn, &m.id).await.unwrap());
    assert!(
        !b.ack(&ch, &conn, &m.id).await.unwrap(),
        "a second ack is ignored"
    );
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(
        (
            stats.messages_queued,
            stats.messages_in_flight,
            stats.messages_delivered
        ),
        (2, 0, 1)
    );
    b.enqueue(new("c", b"four")).await.unwrap();
    assert!(matches!(
        b.enqueue(new("x", b"nowhere")).await,
        Err(BufferError::UnknownChannel(_))
    ));
}

async fn messages_survive_a_reopen_and_sequences_continue(backend: &dyn Backend) {
    let ch: ChannelName = "c".into();
    // A short ack timeout: a shared backend keeps leases across restarts (another instance may
    // hold them) and hands them out again once they time out; the embedded one at once.
    let mut s = settings("c");
    s.ack_timeout = Duration::from_millis(300);
    {
        let b = backend.open(std::slice::from_ref(&s)).await;
        b.enqueue(new("c", b"kept")).await.unwrap();
        let m = b.next(&ch, &"k".into(), 10).await.unwrap();
        assert_eq!(m.sequence, 1);
        b.close().await;
    }
    let b = backend.open(&[s]).await;
    let m = next_within(&b, &ch, "k2").await;
    assert_eq!(
        &m.body[..],
        b"kept",
        "an unacked lease is queued again after a restart"
    );
    assert_eq!(b.enqueue(new("c", b"x")).await.unwrap().sequence, 2);
}

async fn nack_without_retry_dead_letters_with_the_reason(backend: &dyn Backend) {
    let b = backend.open(&[settings("c")]).await;
    let (ch, conn): (ChannelName, ConnectionId) = ("c".into(), "k".into());
    b.enqueue(new("c", b"bad")).await.unwrap();
    let m = b.next(&ch, &conn, 10).await.unwrap();
    assert_eq!(
        b.nack(&ch, &"other".into(), &m.id, false, None)
            .await
            .unwrap(),
        None,
        "only the lease holder nacks"
    );
    let out = b
        .nack(&ch, &conn, &m.id, false, Some("target answered 400".into()))
        .await
        .unwrap();
    assert_eq!(out, Some(NackOutcome::DeadLettered));
    let dead = b.dead_letters(&ch, 10, 0).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].reason, dead[0].error.as_deref()),
        (DeadReason::Rejected, Some("target answered 400"))
    );
    assert_eq!(&dead[0].message.body[..], b"bad");
    assert_eq!(dead[0].message.sequence, m.sequence);
    assert_eq!(dead[0].message.delivery_count, 1);
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(
        (
            stats.messages_dead_lettered,
            stats.messages_queued,
            stats.messages_in_flight
        ),
        (1, 0, 0)
    );
}

async fn retries_past_the_attempt_limit_dead_letter(backend: &dyn Backend) {
    let b = backend.open(&[settings("c")]).await;
    let (ch, conn): (ChannelName, ConnectionId) = ("c".into(), "k".into());
    b.enqueue(new("c", b"flaky")).await.unwrap();
    let m = b.next(&ch, &conn, 10).await.unwrap();
    assert_eq!(
        b.nack(&ch, &conn, &m.id, true, None).await.unwrap(),
        Some(NackOutcome::Requeued)
    );
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(
        (stats.messages_queued, stats.messages_in_flight),
        (1, 0),
        "a message waiting for its retry is queued"
    );
    let m = next_within(&b, &ch, "k").await;
    assert_eq!(m.delivery_count, 2);
    assert_eq!(
        b.nack(&ch, &conn, &m.id, true, Some("target answered 503".into()))
            .await
            .unwrap(),
        Some(NackOutcome::DeadLettered)
    );
    let dead = b.dead_letters(&ch, 10, 0).await.unwrap();
    assert_eq!(
        (dead[0].reason, dead[0].message.delivery_count),
        (DeadReason::MaxAttempts, 2)
    );
}

async fn max_in_flight_and_release(backend: &dyn Backend) {
    let b = backend.open(&[settings("c")]).await;
    let (ch, conn): (ChannelName, ConnectionId) = ("c".into(), "k".into());
    b.enqueue(new("c", b"1")).await.unwrap();
    b.enqueue(new("c", b"2")).await.unwrap();
    let first = b.next(&ch, &conn, 1).await.unwrap();
    let blocked = tokio::time::timeout(Duration::from_millis(200), b.next(&ch, &conn, 1)).await;
    assert!(
        blocked.is_err(),
        "a connection at max_in_flight gets nothing more"
    );
    let other = b.next(&ch, &"other".into(), 1).await.unwrap();
    assert_ne!(first.id, other.id, "another connection is not blocked");
    assert_eq!(b.in_flight(&ch, 10).await.unwrap().len(), 2);
    assert_eq!(b.release(&ch, &conn).await.unwrap(), 1);
    assert_eq!(b.stats(&ch).await.unwrap().messages_in_flight, 1);
    let again = b.next(&ch, &"third".into(), 1).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.delivery_count, 2);
}

async fn ack_timeout_redelivers_and_ttl_dead_letters(backend: &dyn Backend) {
    let mut s = settings("c");
    s.ack_timeout = Duration::from_millis(300);
    let b = backend.open(&[s]).await;
    let ch: ChannelName = "c".into();
    b.enqueue(new("c", b"slow")).await.unwrap();
    let m = b.next(&ch, &"k".into(), 10).await.unwrap();
    let again = next_within(&b, &ch, "k2").await;
    assert_eq!((again.id.clone(), again.delivery_count), (m.id.clone(), 2));
    assert!(
        !b.ack(&ch, &"k".into(), &m.id).await.unwrap(),
        "the timed-out holder lost its lease"
    );
    assert!(b.ack(&ch, &"k2".into(), &m.id).await.unwrap());

    let mut s = settings("t");
    s.ttl = Duration::from_millis(100);
    b.configure(&[s]).await.unwrap();
    let t: ChannelName = "t".into();
    b.enqueue(new("t", b"old")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.stats(&t).await.unwrap().messages_expired == 0 {
        assert!(Instant::now() < deadline, "the message never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = b.dead_letters(&t, 10, 0).await.unwrap();
    assert_eq!(dead[0].reason, DeadReason::Expired);
    let stats = b.stats(&t).await.unwrap();
    assert_eq!(
        (stats.messages_queued, stats.messages_dead_lettered),
        (0, 1)
    );
}

async fn ack_timeout_past_the_attempt_limit_dead_letters(backend: &dyn Backend) {
    let mut s = settings("c");
    s.ack_timeout = Duration::from_millis(200);
    s.max_delivery_attempts = 1;
    let b = backend.open(&[s]).await;
    let ch: ChannelName = "c".into();
    b.enqueue(new("c", b"never acked")).await.unwrap();
    b.next(&ch, &"k".into(), 10).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.stats(&ch).await.unwrap().messages_dead_lettered == 0 {
        assert!(Instant::now() < deadline, "the lease never timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = b.dead_letters(&ch, 10, 0).await.unwrap();
    assert_eq!(dead[0].reason, DeadReason::MaxAttempts);
    assert!(dead[0].error.as_deref().unwrap().contains("not acked"));
}

async fn delivery_follows_the_sequence(backend: &dyn Backend) {
    let mut s = settings("c");
    s.max_queue_size = 100;
    let b = backend.open(&[s]).await;
    let ch: ChannelName = "c".into();
    let mut sequences = Vec::new();
    for body in [&b"1"[..], b"2", b"3"] {
        sequences.push(b.enqueue(new("c", body)).await.unwrap().sequence);
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "sequences grow");
    let queued: Vec<u64> = b
        .queued(&ch, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(queued, sequences);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(b.next(&ch, &"k".into(), 10).await.unwrap().sequence);
    }
    assert_eq!(got, sequences, "delivered in sequence order");
    b.enqueue(new("c", b"4")).await.unwrap();
    assert_eq!(b.release(&ch, &"k".into()).await.unwrap(), 3);
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(next_within(&b, &ch, "k2").await.sequence);
    }
    assert_eq!(
        &again[..3],
        &sequences[..],
        "released messages come back first, in order"
    );
    assert!(again[3] > sequences[2]);
}

async fn next_ready_batches_what_is_waiting(backend: &dyn Backend) {
    let mut s = settings("c");
    s.max_queue_size = 100;
    let b = backend.open(&[s]).await;
    let (ch, conn): (ChannelName, ConnectionId) = ("c".into(), "k".into());
    for body in [&b"1"[..], b"2", b"3", b"4"] {
        b.enqueue(new("c", body)).await.unwrap();
    }
    let first = b.next(&ch, &conn, 3).await.unwrap();
    let more = b.next_ready(&ch, &conn, 3, 10).await.unwrap();
    let sequences: Vec<u64> = more.iter().map(|m| m.sequence).collect();
    assert_eq!(
        sequences,
        vec![first.sequence + 1, first.sequence + 2],
        "what is waiting, in order, up to max_in_flight"
    );
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!((stats.messages_in_flight, stats.messages_queued), (3, 1));
    assert!(b.next_ready(&ch, &conn, 3, 10).await.unwrap().is_empty());
    for m in std::iter::once(&first).chain(&more) {
        assert!(b.ack(&ch, &conn, &m.id).await.unwrap());
    }
    let last = b.next_ready(&ch, &conn, 3, 10).await.unwrap();
    assert_eq!(last.len(), 1);
    assert!(b.next_ready(&ch, &conn, 3, 10).await.unwrap().is_empty());
}

async fn ack_many_acks_each_leased_message_once(backend: &dyn Backend) {
    let mut s = settings("c");
    s.max_queue_size = 1000;
    let b = backend.open(&[s]).await;
    let (ch, conn): (ChannelName, ConnectionId) = ("c".into(), "k".into());
    for i in 0..300 {
        b.enqueue(new("c", if i % 2 == 0 { b"even" } else { b"odd" }))
            .await
            .unwrap();
    }
    let mut leased = vec![b.next(&ch, &conn, 1000).await.unwrap()];
    while leased.len() < 300 {
        let more = b.next_ready(&ch, &conn, 1000, 300).await.unwrap();
        assert!(!more.is_empty(), "all 300 are ready");
        leased.extend(more);
    }
    // 298 leased here with one of them twice and an unknown id after them (more than one
    // script call's worth on a networked backend); the last two stay in flight.
    let mut ids: Vec<MessageId> = leased[..298].iter().map(|m| m.id.clone()).collect();
    ids.insert(5, leased[3].id.clone());
    ids.push(MessageId("msg_not_a_message".into()));
    let acked = b.ack_many(&ch, &conn, &ids).await.unwrap();
    assert_eq!(acked.len(), ids.len(), "one answer per id");
    assert!(acked[..5].iter().all(|a| *a));
    assert!(!acked[5], "the repeated id is acked once");
    assert!(acked[6..299].iter().all(|a| *a));
    assert!(!acked[299], "an id not in flight is not acked");
    assert!(
        !b.ack_many(&ch, &"someone-else".into(), &[leased[298].id.clone()])
            .await
            .unwrap()[0],
        "only the lease holder acks"
    );
    assert!(b.ack_many(&ch, &conn, &[]).await.unwrap().is_empty());
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(
        (
            stats.messages_delivered,
            stats.messages_in_flight,
            stats.messages_queued
        ),
        (298, 2, 0)
    );
    assert!(b.ack(&ch, &conn, &leased[299].id).await.unwrap());
}

/// Dead-letters one message per body (nack without retry) and returns their ids.
async fn bury_all(b: &Arc<dyn Buffer>, bodies: &[&'static [u8]]) -> Vec<MessageId> {
    let (ch, conn): (ChannelName, ConnectionId) = ("c".into(), "k".into());
    let mut ids = Vec::new();
    for body in bodies {
        b.enqueue(new("c", body)).await.unwrap();
        let m = b.next(&ch, &conn, 10).await.unwrap();
        b.nack(&ch, &conn, &m.id, false, Some("target answered 400".into()))
            .await
            .unwrap();
        ids.push(m.id);
    }
    ids
}

async fn replay_requeues_with_attempts_reset_and_survives_a_reopen(backend: &dyn Backend) {
    let ch: ChannelName = "c".into();
    let ids = {
        let b = backend.open(&[settings("c")]).await;
        let ids = bury_all(&b, &[b"a", b"b"]).await;
        let detail = b.dead_letter(&ch, &ids[1]).await.unwrap().unwrap();
        assert_eq!(
            (&detail.message.body[..], detail.error.as_deref()),
            (&b"b"[..], Some("target answered 400"))
        );
        assert!(b.dead_letter(&ch, &"msg_0".into()).await.unwrap().is_none());
        let replayed = b
            .replay_dead(
                &ch,
                &DeadSelection::Ids(vec![ids[1].clone(), "msg_0".into()]),
            )
            .await
            .unwrap();
        assert_eq!(replayed, vec![ids[1].clone()], "unknown ids are skipped");
        let stats = b.stats(&ch).await.unwrap();
        assert_eq!(
            (stats.messages_queued, stats.messages_dead_lettered),
            (1, 1)
        );
        b.close().await;
        ids
    };
    let b = backend.open(&[settings("c")]).await;
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(
        (stats.messages_queued, stats.messages_dead_lettered),
        (1, 1),
        "the replay is durable"
    );
    let m = b.next(&ch, &"k".into(), 10).await.unwrap();
    assert_eq!((m.id.clone(), &m.body[..]), (ids[1].clone(), &b"b"[..]));
    assert_eq!(m.delivery_count, 1, "attempts start again from zero");
    assert_eq!(m.sequence, 2, "a replayed message keeps its sequence");
    let dead = b.dead_letters(&ch, 10, 0).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.id, ids[0]);
}

async fn replay_all_and_by_time_and_in_flight_listing(backend: &dyn Backend) {
    let b = backend.open(&[settings("c")]).await;
    let ch: ChannelName = "c".into();
    let before = Utc::now() - chrono::Duration::seconds(1);
    let ids = bury_all(&b, &[b"a", b"b"]).await;
    let page = b.dead_letters(&ch, 1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].message.id, ids[1], "pages follow the sequence");
    let future = DeadSelection::Between {
        since: Some(Utc::now() + chrono::Duration::hours(1)),
        until: None,
    };
    assert!(b.replay_dead(&ch, &future).await.unwrap().is_empty());
    let window = DeadSelection::Between {
        since: Some(before),
        until: Some(Utc::now() + chrono::Duration::seconds(1)),
    };
    assert_eq!(b.replay_dead(&ch, &window).await.unwrap(), ids);
    assert!(
        b.replay_dead(&ch, &DeadSelection::All)
            .await
            .unwrap()
            .is_empty()
    );
    let m = b.next(&ch, &"k".into(), 10).await.unwrap();
    assert_eq!(m.id, ids[0], "replayed in sequence order");
    let leased = b.in_flight(&ch, 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(
        (&leased[0].meta.id, leased[0].connection.as_str()),
        (&m.id, "k")
    );
    assert_eq!(b.queued(&ch, 10).await.unwrap().len(), 1);
}

async fn purge_deletes_for_good(backend: &dyn Backend) {
    let ch: ChannelName = "c".into();
    {
        let b = backend.open(&[settings("c")]).await;
        let ids = bury_all(&b, &[b"a", b"b", b"c"]).await;
        let purged = b
            .purge_dead(&ch, &DeadSelection::Ids(vec![ids[0].clone()]))
            .await
            .unwrap();
        assert_eq!(purged, vec![ids[0].clone()]);
        assert_eq!(b.stats(&ch).await.unwrap().messages_dead_lettered, 2);
        assert_eq!(
            b.purge_dead(&ch, &DeadSelection::All).await.unwrap().len(),
            2
        );
        b.close().await;
    }
    let b = backend.open(&[settings("c")]).await;
    assert!(b.dead_letters(&ch, 10, 0).await.unwrap().is_empty());
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(
        (stats.messages_dead_lettered, stats.messages_queued),
        (0, 0)
    );
}

async fn token_rotations_are_durable(backend: &dyn Backend) {
    let ch: ChannelName = "c".into();
    let rotation = TokenRotation {
        current_sha256: "ab".repeat(32),
        previous_sha256: Some("cd".repeat(32)),
        previous_valid_until: Some(Utc::now() + chrono::Duration::hours(1)),
        rotated_at: Utc::now(),
    };
    {
        let b = backend.open(&[settings("c")]).await;
        assert_eq!(b.token_rotation(&ch).await.unwrap(), None);
        b.save_token_rotation(&ch, &rotation).await.unwrap();
        b.close().await;
    }
    let b = backend.open(&[settings("c")]).await;
    assert_eq!(b.token_rotation(&ch).await.unwrap(), Some(rotation));
}

/// `next` is cancel-safe: a call dropped before it returned leases nothing that is lost.
async fn dropped_next_loses_no_message(backend: &dyn Backend) {
    use futures_util::FutureExt as _;
    let b = backend.open(&[settings("c")]).await;
    let ch: ChannelName = "c".into();
    let stored = b.enqueue(new("c", b"once")).await.unwrap();
    for _ in 0..20 {
        if let Some(m) = b.next(&ch, &"k".into(), 10).now_or_never() {
            assert_eq!(m.unwrap().id, stored.id);
            return;
        }
        tokio::task::yield_now().await;
    }
    let m = next_within(&b, &ch, "k").await;
    assert_eq!((m.id, m.delivery_count), (stored.id, 1));
}

/// Two instances on one shared backend see one channel: a message stored through one is
/// leased through the other, and both report the same counts.
async fn instances_share_one_channel(backend: &dyn Backend) {
    if !backend.shared() {
        return;
    }
    let a = backend.open(&[settings("c")]).await;
    let b = backend.open(&[settings("c")]).await;
    let ch: ChannelName = "c".into();
    let stored = a.enqueue(new("c", b"across")).await.unwrap();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { next_within(&b, &"c".into(), "on-b").await }
    });
    let m = waiting.await.unwrap();
    assert_eq!(m.id, stored.id);
    assert_eq!(a.stats(&ch).await.unwrap(), b.stats(&ch).await.unwrap());
    assert!(
        a.ack(&ch, &"on-b".into(), &m.id).await.unwrap(),
        "an ack may arrive through any instance"
    );
    let stats = b.stats(&ch).await.unwrap();
    assert_eq!(stats.messages_delivered, 1);
    assert_eq!(a.stats(&ch).await.unwrap(), stats);
    let s2 = b.enqueue(new("c", b"second")).await.unwrap();
    assert_eq!(s2.sequence, stored.sequence + 1, "one sequence per channel");
}
