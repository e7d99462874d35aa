//! Runs every channel of a connector in one process and applies a new configuration live.
//!
//! Each channel has its own task, stream, backoff and health; one that fails (a refused token, a
//! server that does not answer) never stops the others. A new configuration is applied channel
//! by channel: where only the delivery changed (targets, modules) new deliveries take the new
//! route at once and those in progress finish on the old one; where the stream changed (server,
//! token, transport, timings) the old session settles its deliveries and sends their acks before
//! the new one connects; removed channels settle and stop. Nothing in flight is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::observe::Observer;
use super::{Context, Report, Route, run_channel};
use crate::protocol::ChannelName;

struct Running {
    ctx: Arc<Context>,
    task: JoinHandle<()>,
    /// `Debug` of the route's config (the token shows as `***`), to tell what changed.
    fingerprint: String,
}

/// What [`Supervisor::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Channels started.
    pub added: Vec<ChannelName>,
    /// Channels stopped (after settling).
    pub removed: Vec<ChannelName>,
    /// Channels reconnected because their stream settings changed.
    pub restarted: Vec<ChannelName>,
    /// Channels whose delivery changed without reconnecting.
    pub rerouted: Vec<ChannelName>,
}

/// The channels of one connector process.
pub struct Supervisor {
    events: mpsc::UnboundedSender<Report>,
    observer: Arc<Observer>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    concurrency: u32,
    permits: Arc<Semaphore>,
    running: BTreeMap<ChannelName, Running>,
}

impl Supervisor {
    /// A supervisor with no channel yet; cancelling `shutdown` stops every channel.
    pub fn new(
        events: mpsc::UnboundedSender<Report>,
        observer: Arc<Observer>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            events,
            observer,
            shutdown,
            tasks: TaskTracker::new(),
            concurrency: 0,
            permits: Arc::new(Semaphore::new(0)),
            running: BTreeMap::new(),
        }
    }

    /// Runs exactly the channels of `routes`, `concurrency` deliveries at once over all of them.
    pub fn apply(&mut self, routes: Vec<Route>, concurrency: u32) -> Applied {
        let mut applied = Applied::default();
        // A new limit needs a new semaphore, so every channel restarts (after settling).
        let restart_all = concurrency != self.concurrency;
        if restart_all {
            self.concurrency = concurrency;
            self.permits = Arc::new(Semaphore::new(concurrency.max(1) as usize));
        }
        let mut next = BTreeMap::new();
        for route in routes {
            let name = route.config.channel.clone();
            let fingerprint = format!("{:?}", route.config);
            let module_mode = route.config.webhooks_config.is_some();
            match self.running.remove(&name) {
                Some(old) if !restart_all && old.ctx.config.same_stream(&route.config) => {
                    // Module files may have changed even when connector.json did not.
                    if old.fingerprint != fingerprint || module_mode {
                        applied.rerouted.push(name.clone());
                    }
                    old.ctx.set_route(route);
                    next.insert(name, Running { fingerprint, ..old });
                }
                Some(old) => {
                    old.ctx.shutdown.cancel();
                    applied.restarted.push(name.clone());
                    if let Some(running) = self.start(route, fingerprint, Some(old.task)) {
                        next.insert(name, running);
                    }
                }
                None => {
                    applied.added.push(name.clone());
                    if let Some(running) = self.start(route, fingerprint, None) {
                        next.insert(name, running);
                    }
                }
            }
        }
        for (name, old) in std::mem::take(&mut self.running) {
            old.ctx.shutdown.cancel();
            self.observer.forget(&name);
            applied.removed.push(name);
        }
        self.running = next;
        applied
    }

    fn start(
        &self,
        route: Route,
        fingerprint: String,
        previous: Option<JoinHandle<()>>,
    ) -> Option<Running> {
        let channel = route.config.channel.clone();
        let ctx = match Context::new(
            route,
            self.permits.clone(),
            self.events.clone(),
            self.observer.clone(),
            self.shutdown.child_token(),
        ) {
            Ok(ctx) => Arc::new(ctx),
            Err(e) => {
                tracing::error!(%channel, error = %e, "the channel cannot run");
                return None;
            }
        };
        self.observer.track(&ctx.config.channel);
        let run = ctx.clone();
        let task = self.tasks.spawn(async move {
            // The session this one replaces settles and sends its acks first.
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Err(e) = run_channel(run.clone()).await {
                tracing::error!(channel = %run.config.channel, error = %e, "the channel cannot run");
            }
        });
        Some(Running {
            ctx,
            task,
            fingerprint,
        })
    }

    /// Waits until every channel has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
