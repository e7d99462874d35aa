//! Module webhooks on the receiver: deliver from their internal channel to output modules.
//!
//! A webhook whose `module` is not `webhook_connect` is stored like a relayed one, in its own
//! internal channel (`~modules.<id>`), and answered 200 once durable. One dispatcher per such
//! webhook leases its messages from the buffer, runs the webhook's module or chain, and acks
//! on success; a retryable failure is nacked for redelivery with the buffer's backoff, a
//! rejection becomes a dead letter. So a destination that is down loses nothing, and a
//! restart resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::{Buffer, BufferError, ChannelSettings};
use crate::config::webhooks::{ModuleRoute, Webhook};
use crate::modules::Delivery;
use crate::protocol::ConnectionId;
use crate::receiver::metrics::{ChannelMetrics, Metrics};

/// Deliveries one module webhook runs at once.
pub const MAX_IN_FLIGHT: u32 = 32;
/// Longest wait for deliveries in progress at shutdown; the rest are redelivered after restart.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The buffer settings of a module webhook's internal channel.
pub fn channel_settings(route: &ModuleRoute) -> ChannelSettings {
    ChannelSettings {
        name: route.channel.clone(),
        max_queue_size: 10_000,
        ttl: Duration::from_secs(86_400),
        // Longer than any chain with its retries is allowed to take.
        ack_timeout: Duration::from_secs(600),
        max_delivery_attempts: 10,
    }
}

/// Runs the dispatcher of webhook `id` until `shutdown`, then settles what is in flight.
pub async fn run(
    webhook: Webhook,
    route: ModuleRoute,
    buffer: Arc<dyn Buffer>,
    meters: Arc<ChannelMetrics>,
    shutdown: CancellationToken,
) {
    let id = webhook.id.clone();
    let webhook = Arc::new(webhook);
    // One holder per run: after a reload, the old dispatcher releasing its leases must not
    // release the new one's.
    let lease_holder = ConnectionId(format!("dispatch-{id}-{:08x}", rand::random::<u32>()));
    let deliveries = TaskTracker::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = buffer.next(&route.channel, &lease_holder, MAX_IN_FLIGHT) => next,
        };
        let message = match next {
            Ok(message) => message,
            Err(BufferError::Closed) => break,
            Err(e) => {
                tracing::error!(webhook = %id, error = %e, "cannot read the module queue; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let buffer = buffer.clone();
        let route = route.clone();
        let webhook = webhook.clone();
        let lease_holder = lease_holder.clone();
        let meters = meters.clone();
        deliveries.spawn(async move {
            let mut delivery = Delivery::from_message(&message, webhook.data_type);
            delivery.clean(&webhook.cleanup);
            let outcome = route.pipeline.run(&delivery).await;
            let settled = match &outcome {
                Ok(()) => buffer
                    .ack(&route.channel, &lease_holder, &message.id)
                    .await
                    .map(|_| None),
                Err(e) => buffer
                    .nack(
                        &route.channel,
                        &lease_holder,
                        &message.id,
                        e.is_retryable(),
                        Some(e.to_string()),
                    )
                    .await,
            };
            match (&outcome, settled) {
                (_, Err(e)) => {
                    tracing::error!(webhook = %message.webhook_id, message_id = %message.id, error = %e, "cannot settle a module delivery; it will be redelivered");
                }
                (Ok(()), Ok(_)) => {
                    meters.observe_end_to_end(message.received_at);
                    tracing::info!(channel = %route.channel, webhook = %message.webhook_id, message_id = %message.id, outcome = "ack", "delivered to modules");
                }
                (Err(e), Ok(nacked)) => {
                    let outcome = nacked.map_or("nack", crate::receiver::stream::outcome_name);
                    tracing::warn!(channel = %route.channel, webhook = %message.webhook_id, message_id = %message.id, outcome, retry = e.is_retryable(), error = %e, "module delivery failed");
                }
            }
        });
    }
    deliveries.close();
    if tokio::time::timeout(SETTLE_TIMEOUT, deliveries.wait())
        .await
        .is_err()
    {
        tracing::warn!(webhook = %id, "module deliveries still running at shutdown; they will be redelivered");
    }
    if let Err(e) = buffer.release(&route.channel, &lease_holder).await {
        tracing::debug!(webhook = %id, error = %e, "cannot release module leases at shutdown");
    }
}

/// Starts one dispatcher per module webhook on `tracker`.
pub fn spawn_all(
    webhooks: &crate::config::WebhooksConfig,
    buffer: &Arc<dyn Buffer>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    for webhook in webhooks.webhooks.values() {
        if let crate::config::webhooks::Route::Modules(route) = &webhook.route {
            tracker.spawn(run(
                webhook.clone(),
                route.clone(),
                buffer.clone(),
                metrics.channel(&route.channel),
                shutdown.clone(),
            ));
        }
    }
}
