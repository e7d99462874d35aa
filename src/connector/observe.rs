//! What the connector knows about itself: each channel's link state (for `/health`) and the
//! `webhook_connector_*` Prometheus metrics (for `/metrics`), fed by the channels' events.
//!
//! One [`Observer`] per process, with its own registry. It never serves HTTP (see
//! [`super::health`]) and never prints.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

use super::Event;
use super::deliver::Verdict;
use crate::protocol::ChannelName;

/// The `channel` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

/// Where a channel's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet since start.
    Connecting,
    /// Streaming.
    Connected,
    /// The stream ended; reconnecting.
    Disconnected,
    /// The server refused the token; retrying slowly.
    Unauthorized,
}

impl LinkState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Unauthorized => "unauthorized",
        }
    }
}

#[derive(Debug, Clone)]
struct Link {
    state: LinkState,
    transport: Option<&'static str>,
    /// When the channel last stopped being connected (or started).
    down_since: Instant,
}

/// Link states and metrics of every channel of the process.
pub struct Observer {
    links: Mutex<BTreeMap<ChannelName, Link>>,
    down_after: Duration,
    registry: Registry,
    received: Family<ChannelLabel, Counter>,
    acked: Family<ChannelLabel, Counter>,
    nacked: Family<ChannelLabel, Counter>,
    latency: Family<ChannelLabel, Histogram, fn() -> Histogram>,
    status: Family<ChannelLabel, Gauge>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("down_after", &self.down_after)
            .finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Observer {
    /// An observer for which a channel down longer than `down_after` is unhealthy.
    pub fn new(down_after: Duration) -> Self {
        let mut registry = Registry::default();
        let received = Family::<ChannelLabel, Counter>::default();
        let acked = Family::<ChannelLabel, Counter>::default();
        let nacked = Family::<ChannelLabel, Counter>::default();
        let latency = Family::<ChannelLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let status = Family::<ChannelLabel, Gauge>::default();
        registry.register(
            "webhook_connector_messages_received",
            "Webhooks received from the server",
            received.clone(),
        );
        registry.register(
            "webhook_connector_messages_acked",
            "Deliveries acked (the target or every module accepted)",
            acked.clone(),
        );
        registry.register(
            "webhook_connector_messages_nacked",
            "Deliveries nacked (redelivered or dead-lettered by the server)",
            nacked.clone(),
        );
        registry.register(
            "webhook_connector_processing_latency_seconds",
            "Time from a webhook's arrival to its ack or nack",
            latency.clone(),
        );
        registry.register(
            "webhook_connector_connection_status",
            "1 while the channel is streaming, 0 otherwise",
            status.clone(),
        );
        Self {
            links: Mutex::new(BTreeMap::new()),
            down_after,
            registry,
            received,
            acked,
            nacked,
            latency,
            status,
        }
    }

    fn label(channel: &ChannelName) -> ChannelLabel {
        ChannelLabel {
            channel: channel.to_string(),
        }
    }

    /// Starts tracking `channel` (connecting, down since now), if it is not tracked yet.
    pub fn track(&self, channel: &ChannelName) {
        self.links
            .lock()
            .expect("links lock")
            .entry(channel.clone())
            .or_insert(Link {
                state: LinkState::Connecting,
                transport: None,
                down_since: Instant::now(),
            });
        self.status.get_or_create(&Self::label(channel)).set(0);
    }

    /// Stops tracking a channel that was removed from the configuration.
    pub fn forget(&self, channel: &ChannelName) {
        self.links.lock().expect("links lock").remove(channel);
        self.status.remove(&Self::label(channel));
    }

    /// Records one event of `channel`.
    pub fn record(&self, channel: &ChannelName, event: &Event) {
        let label = Self::label(channel);
        let state = match event {
            Event::Connected { protocol, .. } => {
                self.set_link(channel, LinkState::Connected, Some(protocol));
                self.status.get_or_create(&label).set(1);
                return;
            }
            Event::Disconnected { .. } => LinkState::Disconnected,
            Event::Unauthorized { .. } => LinkState::Unauthorized,
            Event::Received { .. } => {
                self.received.get_or_create(&label).inc();
                return;
            }
            Event::Settled {
                verdict, latency, ..
            } => {
                match verdict {
                    Verdict::Ack => self.acked.get_or_create(&label).inc(),
                    Verdict::Nack { .. } => self.nacked.get_or_create(&label).inc(),
                };
                self.latency
                    .get_or_create(&label)
                    .observe(latency.as_secs_f64());
                return;
            }
            Event::Ready { .. }
            | Event::Attempt { .. }
            | Event::ServerError { .. }
            | Event::Duplicate { .. } => return,
        };
        self.set_link(channel, state, None);
        self.status.get_or_create(&label).set(0);
    }

    fn set_link(&self, channel: &ChannelName, state: LinkState, transport: Option<&'static str>) {
        let mut links = self.links.lock().expect("links lock");
        let link = links.entry(channel.clone()).or_insert(Link {
            state,
            transport: None,
            down_since: Instant::now(),
        });
        if link.state == LinkState::Connected && state != LinkState::Connected {
            link.down_since = Instant::now();
        }
        link.state = state;
        if transport.is_some() {
            link.transport = transport;
        }
    }

    /// `/health`: healthy unless a channel has been down longer than the threshold; each
    /// channel's state (`connected`, `connecting`, `disconnected`, `unauthorized`) and the
    /// transport it last connected with.
    pub fn health(&self) -> (bool, Value) {
        let links = self.links.lock().expect("links lock");
        let mut channels = Map::new();
        let mut transports = Map::new();
        let mut healthy = true;
        for (name, link) in links.iter() {
            channels.insert(name.to_string(), json!(link.state.as_str()));
            transports.insert(name.to_string(), json!(link.transport));
            if link.state != LinkState::Connected && link.down_since.elapsed() > self.down_after {
                healthy = false;
            }
        }
        let body = json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "channels": channels,
            "transports": transports,
        });
        (healthy, body)
    }

    /// `/metrics` in the Prometheus text format.
    pub fn metrics(&self) -> String {
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
    fn health_follows_events_and_metrics_count_them() {
        let o = Observer::new(Duration::ZERO);
        let a: ChannelName = "stripe-payments".into();
        o.track(&a);
        let (healthy, body) = o.health();
        assert!(!healthy, "connecting past the threshold: {body}");
        o.record(
            &a,
            &Event::Connected {
                server: "http://x".into(),
                channel: a.clone(),
                protocol: "sse",
            },
        );
        let (healthy, body) = o.health();
        assert!(healthy);
        assert_eq!(body["channels"]["stripe-payments"], "connected");
        assert_eq!(body["transports"]["stripe-payments"], "sse");
        o.record(
            &a,
            &Event::Received {
                message_id: "msg_1".into(),
            },
        );
        o.record(
            &a,
            &Event::Settled {
                message_id: "msg_1".into(),
                verdict: Verdict::Ack,
                latency: Duration::from_millis(3),
            },
        );
        let text = o.metrics();
        for line in [
            "webhook_connector_messages_received_total{channel=\"stripe-payments\"} 1",
            "webhook_connector_messages_acked_total{channel=\"stripe-payments\"} 1",
            "webhook_connector_connection_status{channel=\"stripe-payments\"} 1",
            "webhook_connector_processing_latency_seconds_count{channel=\"stripe-payments\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        o.record(
            &a,
            &Event::Unauthorized {
                detail: "no".into(),
                retry_in: Duration::ZERO,
            },
        );
        let (healthy, body) = o.health();
        assert!(!healthy);
        assert_eq!(body["channels"]["stripe-payments"], "unauthorized");
    }
}
