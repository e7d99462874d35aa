//! Rotated channel tokens: making a new one, storing it in the buffer (which every instance
//! shares), loading the stored rotations at start-up, following rotations made by other
//! instances, and closing connections whose old token's grace period has ended.
//!
//! The plain new token is returned once to the caller and never stored or logged; the buffer
//! and the channels keep SHA-256 digests only. A stored rotation overrides the token of
//! webhooks.json.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::channels::{Channel, token_digest};
use crate::buffer::{BufferError, TokenRotation};

/// How often rotations made elsewhere are picked up and expired tokens' connections closed.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A rotation just made.
#[derive(Debug)]
pub struct Rotated {
    /// The new token, `ch_tok_` and 48 hex digits: shown once.
    pub new_token: crate::secret::Secret<String>,
    /// Until when the replaced token is still accepted (now, for a grace of zero).
    pub old_token_expires_at: DateTime<Utc>,
}

/// A strong new channel token: `ch_tok_` and 24 random bytes in hex.
pub fn new_token() -> String {
    format!("ch_tok_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// Replaces the channel's token by a new one; the one in force until now stays valid for
/// `grace`. Durable in the buffer before it takes effect here.
pub async fn rotate(
    state: &AppState,
    channel: &Channel,
    grace: Duration,
) -> Result<Rotated, BufferError> {
    let _one_at_a_time = channel.rotating.lock().await;
    // Follow a rotation another instance made, so the token it issued becomes the previous one.
    if let Some(stored) = state.buffer.token_rotation(channel.name()).await? {
        channel.apply_rotation(&stored);
    }
    let token = new_token();
    let now = Utc::now();
    let until = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|g| now.checked_add_signed(g))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let rotation = TokenRotation {
        current_sha256: hex::encode(token_digest(&token)),
        previous_sha256: Some(channel.current_token_sha256()),
        previous_valid_until: Some(until),
        rotated_at: now,
    };
    state
        .buffer
        .save_token_rotation(channel.name(), &rotation)
        .await?;
    channel.apply_rotation(&rotation);
    tracing::info!(channel = %channel.name(), grace_seconds = grace.as_secs(), "channel token rotated");
    if grace.is_zero() {
        close_expired(channel, now);
    }
    Ok(Rotated {
        new_token: crate::secret::Secret::new(token),
        old_token_expires_at: until,
    })
}

/// Applies every stored rotation to its channel (at start-up, before serving).
pub async fn load(state: &AppState) -> Result<(), BufferError> {
    for channel in state.channels.iter() {
        if let Some(rotation) = state.buffer.token_rotation(channel.name()).await? {
            channel.apply_rotation(&rotation);
            tracing::info!(channel = %channel.name(), rotated_at = %rotation.rotated_at, "using the rotated channel token from the buffer");
        }
    }
    Ok(())
}

/// Until `stop`: picks up rotations made by other instances and closes connections whose
/// token is no longer accepted (at most [`WATCH_INTERVAL`] after its grace period ends).
pub async fn watch(state: Arc<AppState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for channel in state.channels.iter() {
            // Read under the lock, so a rotation made here is never undone by an older read.
            let guard = channel.rotating.lock().await;
            match state.buffer.token_rotation(channel.name()).await {
                Ok(Some(rotation)) => {
                    if channel.apply_rotation(&rotation) {
                        tracing::info!(channel = %channel.name(), "channel token rotated by another instance");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(channel = %channel.name(), error = %e, "cannot read the channel's token rotation")
                }
            }
            drop(guard);
            close_expired(&channel, Utc::now());
        }
    }
}

fn close_expired(channel: &Channel, now: DateTime<Utc>) {
    for connection in channel.connections_with_expired_tokens(now) {
        if !connection.close.is_cancelled() {
            tracing::info!(channel = %channel.name(), connection = %connection.id, "connection closed: its channel token was rotated and its grace period ended");
            connection.close_because(super::channels::CloseCause::TokenExpired);
        }
    }
}
