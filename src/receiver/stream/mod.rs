//! The streaming API (`/connect/…`): how connectors authenticate and receive messages.
//!
//! Owns the checks every transport makes before a stream starts (channel token from
//! `Authorization: Bearer` or `?token=`, unknown channel = bad token, `max_connections`).
//! Each transport has its own file.

pub mod ack;
pub mod poll;
pub mod sse;
pub mod ws;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

use super::AppState;
use super::api_error::ApiError;
use super::channels::{AttachError, Channel, Connection};
use crate::protocol::ConnectorId;

/// `?token=` fallback for clients that cannot set headers.
#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    /// The channel token.
    #[serde(default)]
    pub token: Option<String>,
}

/// The token a connector presents: the `Authorization` header (with or without `Bearer `), else
/// the `token` query parameter.
pub fn presented_token<'a>(headers: &'a HeaderMap, query: &'a TokenQuery) -> Option<&'a str> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim()
        })
        .filter(|v| !v.is_empty());
    from_header.or(query.token.as_deref().filter(|t| !t.is_empty()))
}

/// Authenticates a connector for `channel` (401 for a missing or wrong token and for an unknown
/// channel alike).
pub fn authenticate(
    state: &AppState,
    channel: &str,
    headers: &HeaderMap,
    query: &TokenQuery,
    remote_ip: IpAddr,
) -> Result<Arc<Channel>, ApiError> {
    let token = presented_token(headers, query)
        .ok_or_else(|| ApiError::unauthorized("missing channel token"))?;
    state.channels.authenticate(channel, token).ok_or_else(|| {
        tracing::warn!(channel = %printable(channel), %remote_ip, "connector refused: invalid channel token");
        ApiError::unauthorized("invalid channel token")
    })
}

/// Admits a connection to an authenticated channel unless it is at `max_connections` (503).
pub fn attach(
    state: &AppState,
    channel: &Channel,
    headers: &HeaderMap,
    protocol: &'static str,
    remote_ip: IpAddr,
) -> Result<Arc<Connection>, ApiError> {
    let connector_id = headers
        .get("x-connector-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(|v| ConnectorId(v.to_string()));
    channel
        .attach(protocol, connector_id, remote_ip, &state.shutdown)
        .map_err(|AttachError::Full| {
            ApiError::unavailable(
                "max_connections",
                format!(
                    "channel `{}` has its maximum of {} connections",
                    channel.name(),
                    channel.config.max_connections
                ),
                5,
            )
        })
}

/// The `outcome` field of a nack's log line.
pub fn outcome_name(outcome: crate::buffer::NackOutcome) -> &'static str {
    match outcome {
        crate::buffer::NackOutcome::Requeued => "nack",
        crate::buffer::NackOutcome::DeadLettered => "dead_letter",
    }
}

fn printable(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}
