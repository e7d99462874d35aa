//! The long-poll transport of the connector.
//!
//! Owns one long-poll session: polling `GET /connect/stream/{channel}/poll` for no more
//! messages than there is delivery room for, spawning a delivery per message, sending acks and
//! nacks through `POST /connect/ack` with the connection id of the poll that leased them, treating
//! a poll that outlives its timeout as a dead server, and a graceful end that settles deliveries
//! in progress and sends their acks.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::http_ack::{self, Reply};
use super::sse::settle;
use super::ws::{server_of, spawn_delivery};
use crate::connector::outbound::describe;
use crate::connector::{Context, Event, SessionEnd};
use crate::protocol::{ConnectionId, ServerFrame};

/// Seconds the server may hold one poll.
const POLL_TIMEOUT: u64 = 25;
/// Most messages asked for in one poll (the server's limit).
const MAX_PER_POLL: usize = 100;

#[derive(Debug, Deserialize)]
struct PollAnswer {
    #[serde(default)]
    messages: Vec<ServerFrame>,
    connection_id: ConnectionId,
}

/// Runs one long-poll session against the server at `base` until a poll fails or shutdown.
///
/// With `upgrade_after` (an `auto` fallback), the session settles and ends with
/// [`SessionEnd::Upgrade`] once that time has passed.
pub async fn session(
    ctx: &Arc<Context>,
    base: &Url,
    upgrade_after: Option<Duration>,
) -> SessionEnd {
    let config = &ctx.config;
    let (Some(url), Some(ack_url)) = (
        http_ack::endpoint(base, &format!("connect/stream/{}/poll", config.channel)),
        http_ack::endpoint(base, "connect/ack"),
    ) else {
        return SessionEnd::Failed(format!("invalid server URL {base}"));
    };
    let outbound = ctx.outbound();
    let client = match outbound.http_client(config) {
        Ok(c) => c,
        Err(e) => return SessionEnd::Failed(describe(&e)),
    };
    let (out_tx, out_rx) = mpsc::channel::<Reply>(1024);
    let acker = tokio::spawn(http_ack::send_acks(
        ctx.config.clone(),
        client.clone(),
        ack_url,
        out_rx,
    ));
    let deliveries = TaskTracker::new();
    let session_over = CancellationToken::new();
    let concurrency = config.max_concurrent_requests.max(1) as usize;
    let mut connected = false;

    let upgrade = async {
        match upgrade_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(upgrade);
    let end = loop {
        // Ask only for what can be delivered now, so no lease waits behind a busy target.
        let room = concurrency
            .saturating_sub(deliveries.len())
            .min(MAX_PER_POLL);
        if room == 0 {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
            }
        }
        // The first poll is short, so the session is known to work at once.
        let poll_timeout = if connected { POLL_TIMEOUT } else { 1 };
        // A poll held longer than its timeout plus the heartbeat timeout means a dead server.
        let request_timeout = Duration::from_secs(poll_timeout) + config.heartbeat_timeout();
        let request = http_ack::authorized(config, client.get(url.clone()))
            .query(&[
                ("timeout", poll_timeout.to_string()),
                ("max_messages", room.to_string()),
            ])
            .timeout(request_timeout);
        let answer = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break SessionEnd::Shutdown,
            _ = &mut upgrade => break SessionEnd::Upgrade,
            r = request.send() => r,
        };
        let response = match answer {
            Err(e) if e.is_timeout() => {
                let why = format!("no answer to a poll within {}s", request_timeout.as_secs());
                break if connected {
                    SessionEnd::Lost(why)
                } else {
                    SessionEnd::Failed(why)
                };
            }
            Err(e) => {
                let why = format!(
                    "cannot poll {}: {}",
                    server_of(&url),
                    outbound.explain(&e, &url).await
                );
                break if connected {
                    SessionEnd::Lost(why)
                } else {
                    SessionEnd::Failed(why)
                };
            }
            Ok(r) => r,
        };
        let status = response.status();
        match status.as_u16() {
            200 | 204 => {}
            401 | 403 => {
                let body = response.text().await.unwrap_or_default();
                break SessionEnd::Unauthorized(http_ack::refusal(status, &body, &config.channel));
            }
            _ => {
                let why = format!("the server answered {status} to a poll");
                break if connected {
                    SessionEnd::Lost(why)
                } else {
                    SessionEnd::Failed(why)
                };
            }
        }
        if !connected {
            connected = true;
            ctx.emit(Event::Connected {
                server: server_of(&url),
                channel: config.channel.clone(),
                protocol: "long_poll",
            });
        }
        if status.as_u16() == 204 {
            continue;
        }
        let answer: PollAnswer = match response.json().await {
            Ok(a) => a,
            Err(e) => break SessionEnd::Lost(format!("a poll answer does not parse: {e}")),
        };
        for frame in answer.messages {
            match frame {
                ServerFrame::Webhook(frame) => {
                    let id = answer.connection_id.clone();
                    spawn_delivery(ctx, &deliveries, &session_over, &out_tx, frame, move |f| {
                        (id, f)
                    });
                }
                other => tracing::debug!(?other, "ignoring a non-webhook item of a poll"),
            }
        }
    };
    settle(end, session_over, deliveries, out_tx, acker).await
}
