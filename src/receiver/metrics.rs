//! Prometheus metrics of the receiver, served at `GET /metrics` (text exposition, no auth, as
//! the docs show it scraped).
//!
//! Owns the process's one registry and the `webhook_connect_*` series, labelled by channel.
//! Counts the receiver sees happen (webhooks received, ingest latency, received → acked latency)
//! are kept in per-channel handles created once, so the hot paths do one map lookup and a few
//! atomic adds. Counts the buffer owns (queued, delivered, dead-lettered) and live connections
//! are read when Prometheus scrapes, so every instance reports what the shared buffer holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::buffer::BufferStats;
use crate::protocol::{ChannelName, MessageId};

/// The one label of every series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    /// The channel's name.
    pub channel: String,
}

/// Ingest latency buckets: 0.5 ms to ~16 s (an fsync is a few ms).
fn ingest_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// Received → acked buckets: 1 ms to ~9 h (a message may wait for its connector).
fn end_to_end_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.5, 20,
    ))
}

/// Handed-out records older than this are dropped when the table grows: their lease ended
/// long ago (timed out and redelivered, or dead-lettered by the buffer).
const STALE_HANDED_OUT: Duration = Duration::from_secs(900);
/// Size of the handed-out table past which stale records are dropped.
const PRUNE_ABOVE: usize = 16_384;

/// The handles of one channel, created once and shared by every request on it.
#[derive(Debug)]
pub struct ChannelMetrics {
    received: Counter,
    ingest_latency: Histogram,
    end_to_end: Histogram,
    /// Messages handed to a connector and not yet settled: id → (received at, handed out at).
    handed_out: Mutex<HashMap<u64, (DateTime<Utc>, Instant)>>,
}

/// The numeric part of `msg_<16 hex>`, a cheap key.
fn key(id: &MessageId) -> Option<u64> {
    u64::from_str_radix(id.as_str().strip_prefix("msg_")?, 16).ok()
}

impl ChannelMetrics {
    /// A webhook was stored; `started` is when its request arrived.
    pub fn received(&self, started: Instant) {
        self.received.inc();
        self.ingest_latency.observe(started.elapsed().as_secs_f64());
    }

    /// A message went to a connector; its ack will be timed from `received_at`.
    pub fn handed_out(&self, id: &MessageId, received_at: DateTime<Utc>) {
        let Some(k) = key(id) else { return };
        let mut table = self.handed_out.lock().expect("handed-out lock");
        if table.len() >= PRUNE_ABOVE {
            table.retain(|_, (_, at)| at.elapsed() < STALE_HANDED_OUT);
        }
        table.insert(k, (received_at, Instant::now()));
    }

    /// A message was acked: observes its received → acked time if it was handed out here.
    pub fn acked(&self, id: &MessageId) {
        let Some(k) = key(id) else { return };
        let entry = self.handed_out.lock().expect("handed-out lock").remove(&k);
        if let Some((received_at, _)) = entry {
            self.observe_end_to_end(received_at);
        }
    }

    /// A message left the connector's hands without an ack (nack, dead letter).
    pub fn settled(&self, id: &MessageId) {
        if let Some(k) = key(id) {
            self.handed_out.lock().expect("handed-out lock").remove(&k);
        }
    }

    /// Observes the received → acked time of a message acked now.
    pub fn observe_end_to_end(&self, received_at: DateTime<Utc>) {
        let seconds = (Utc::now() - received_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        self.end_to_end.observe(seconds);
    }
}

/// What the buffer and the live connections say about one channel, read at scrape time.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    /// The channel.
    pub channel: ChannelName,
    /// The buffer's counts.
    pub stats: BufferStats,
    /// Live streaming connections; `None` for internal module channels.
    pub connections: Option<u64>,
}

/// Encodes the latest snapshots as the buffer-owned series.
#[derive(Debug, Default)]
struct Snapshots(Arc<Mutex<Vec<ChannelSnapshot>>>);

impl Collector for Snapshots {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.0.lock().expect("snapshot lock").clone();
        let label = |r: &ChannelSnapshot| ChannelLabel {
            channel: r.channel.to_string(),
        };
        let gauge_of = |r: &ChannelSnapshot| r.stats.messages_queued as i64;
        {
            let mut family = encoder.encode_descriptor(
                "webhook_connect_messages_queued",
                "Messages waiting for a connector (including those waiting for a retry)",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for r in &rows {
                let l = label(r);
                ConstGauge::new(gauge_of(r)).encode(family.encode_family(&l)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "webhook_connect_messages_in_flight",
                "Messages handed to a connector and not yet acked",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for r in &rows {
                let l = label(r);
                ConstGauge::new(r.stats.messages_in_flight as i64)
                    .encode(family.encode_family(&l)?)?;
            }
        }
        for (name, help, value) in [
            (
                "webhook_connect_messages_delivered",
                "Messages acked since the channel was created",
                (|s: &BufferStats| s.messages_delivered) as fn(&BufferStats) -> u64,
            ),
            (
                "webhook_connect_messages_dead_lettered",
                "Messages moved to the dead letters since the channel was created",
                |s: &BufferStats| s.messages_dead_lettered_total,
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for r in &rows {
                let l = label(r);
                ConstCounter::new(value(&r.stats)).encode(family.encode_family(&l)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "webhook_connect_connections_active",
            "Live streaming connections (WebSocket, SSE, long-poll)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for r in &rows {
            if let Some(n) = r.connections {
                let l = label(r);
                ConstGauge::new(n as i64).encode(family.encode_family(&l)?)?;
            }
        }
        Ok(())
    }
}

/// The receiver's metrics: the registry and the per-channel handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Family<ChannelLabel, Counter>,
    ingest_latency: Family<ChannelLabel, Histogram, fn() -> Histogram>,
    end_to_end: Family<ChannelLabel, Histogram, fn() -> Histogram>,
    channels: RwLock<HashMap<String, Arc<ChannelMetrics>>>,
    snapshots: Arc<Mutex<Vec<ChannelSnapshot>>>,
}

impl Metrics {
    /// A registry with every series, and handles for `channels`.
    pub fn new<'a>(channels: impl IntoIterator<Item = &'a ChannelName>) -> Self {
        let mut registry = Registry::default();
        let received = Family::<ChannelLabel, Counter>::default();
        let ingest_latency =
            Family::<ChannelLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                ingest_histogram,
            );
        let end_to_end = Family::<ChannelLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            end_to_end_histogram,
        );
        registry.register(
            "webhook_connect_messages_received",
            "Webhooks accepted (answered 200) by this instance",
            received.clone(),
        );
        registry.register(
            "webhook_connect_ingest_latency_seconds",
            "Time from a webhook's request to its 200, once stored durably",
            ingest_latency.clone(),
        );
        registry.register(
            "webhook_connect_end_to_end_latency_seconds",
            "Time from a webhook's acceptance to its connector's ack",
            end_to_end.clone(),
        );
        let snapshots = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(Snapshots(snapshots.clone())));
        let metrics = Self {
            registry,
            received,
            ingest_latency,
            end_to_end,
            channels: RwLock::new(HashMap::new()),
            snapshots,
        };
        for channel in channels {
            metrics.channel(channel);
        }
        metrics
    }

    /// The handles of `channel`, created on first use (channels are known at start-up, so
    /// that is before the first request).
    pub fn channel(&self, channel: &ChannelName) -> Arc<ChannelMetrics> {
        if let Some(handles) = self
            .channels
            .read()
            .expect("metrics lock")
            .get(channel.as_str())
        {
            return handles.clone();
        }
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        let handles = Arc::new(ChannelMetrics {
            received: self.received.get_or_create_owned(&label),
            ingest_latency: self.ingest_latency.get_or_create_owned(&label),
            end_to_end: self.end_to_end.get_or_create_owned(&label),
            handed_out: Mutex::new(HashMap::new()),
        });
        self.channels
            .write()
            .expect("metrics lock")
            .entry(channel.to_string())
            .or_insert(handles)
            .clone()
    }

    /// The text exposition, with `snapshots` as the buffer-owned series.
    pub fn encode(&self, snapshots: Vec<ChannelSnapshot>) -> String {
        *self.snapshots.lock().expect("snapshot lock") = snapshots;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_labelled_by_channel_and_latency_is_timed_from_receipt() {
        let c = ChannelName::from("pay");
        let m = Metrics::new([&c]);
        let h = m.channel(&c);
        h.received(Instant::now());
        let id = MessageId::from("msg_00000000000000ff");
        h.handed_out(&id, Utc::now() - chrono::Duration::milliseconds(1500));
        h.acked(&id);
        h.acked(&id); // a second ack observes nothing
        let text = m.encode(vec![ChannelSnapshot {
            channel: c.clone(),
            stats: BufferStats {
                messages_queued: 7,
                messages_delivered: 3,
                messages_dead_lettered_total: 2,
                ..BufferStats::default()
            },
            connections: Some(1),
        }]);
        for line in [
            "webhook_connect_messages_received_total{channel=\"pay\"} 1",
            "webhook_connect_messages_queued{channel=\"pay\"} 7",
            "webhook_connect_messages_delivered_total{channel=\"pay\"} 3",
            "webhook_connect_messages_dead_lettered_total{channel=\"pay\"} 2",
            "webhook_connect_connections_active{channel=\"pay\"} 1",
            "webhook_connect_ingest_latency_seconds_count{channel=\"pay\"} 1",
            "webhook_connect_end_to_end_latency_seconds_count{channel=\"pay\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find(|l| l.starts_with("webhook_connect_end_to_end_latency_seconds_sum"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((1.4..10.0).contains(&sum), "{sum}");
    }
}
