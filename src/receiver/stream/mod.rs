//! The streaming API (`/connect/…`): how connectors authenticate and receive messages.
//!
//! Owns the checks every transport makes before a stream starts (channel token from
//! `Authorization: Bearer` or `?token=`, unknown channel = bad token, then the connector's
//! address against `allowed_connector_ips` (403 `address_not_allowed`), then its TLS client
//! certificate against `require_client_cert` / `client_cert_subjects` (403
//! `client_certificate_required` / `client_certificate_not_allowed`), then
//! `max_connections_per_minute` (429) and `max_connections` (503)). Each transport has its own
//! file.

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
use super::channels::{AttachError, Channel, Connection, token_digest};
use super::tls::PeerCertificate;
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
/// channel alike), then checks its address and client certificate (403).
pub fn authenticate(
    state: &AppState,
    channel: &str,
    headers: &HeaderMap,
    query: &TokenQuery,
    remote_ip: IpAddr,
    certificate: &PeerCertificate,
) -> Result<Arc<Channel>, ApiError> {
    let token = presented_token(headers, query)
        .ok_or_else(|| ApiError::unauthorized("missing channel token"))?;
    let channel = state.channels.authenticate(channel, token).ok_or_else(|| {
        tracing::warn!(channel = %printable(channel), %remote_ip, "connector refused: invalid channel token");
        ApiError::unauthorized("invalid channel token")
    })?;
    check_address(&channel, remote_ip)?;
    check_certificate(&channel, certificate, remote_ip)?;
    Ok(channel)
}

/// With `require_client_cert`: 403 `client_certificate_required` unless the connection presented
/// a client certificate (the handshake already checked that it chains to `--tls-client-ca`), and
/// 403 `client_certificate_not_allowed` unless one of its names is in `client_cert_subjects`.
/// 403 rather than 401: the token was accepted, and no `WWW-Authenticate` scheme could ask for
/// a certificate; what is missing is set up in the connector, not sent again. Checked after the
/// token, so a caller without it learns nothing about the channel.
pub fn check_certificate(
    channel: &Channel,
    certificate: &PeerCertificate,
    remote_ip: IpAddr,
) -> Result<(), ApiError> {
    if !channel.config.require_client_cert {
        return Ok(());
    }
    let Some(cert) = &certificate.0 else {
        tracing::warn!(channel = %channel.name(), %remote_ip, "connector refused: no client certificate");
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "client_certificate_required",
            format!(
                "channel `{}` requires a TLS client certificate signed by the server's client CA; give the connector --client-cert and --client-key (client_cert_path, client_key_path)",
                channel.name()
            ),
        ));
    };
    match &channel.config.client_cert_subjects {
        Some(allowed) if !cert.matches_any(allowed) => {
            tracing::warn!(channel = %channel.name(), %remote_ip, certificate = %cert, "connector refused: client certificate not in client_cert_subjects");
            Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                "client_certificate_not_allowed",
                format!(
                    "the client certificate ({cert}) is not allowed on channel `{}` (client_cert_subjects); use a certificate issued for one of its names",
                    channel.name()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// 403 `address_not_allowed` unless `allowed_connector_ips` lists the connector's address.
/// Checked only after the token, so an address outside the list learns nothing about channels.
pub fn check_address(channel: &Channel, remote_ip: IpAddr) -> Result<(), ApiError> {
    if channel.allows(remote_ip) {
        return Ok(());
    }
    tracing::warn!(channel = %channel.name(), %remote_ip, "connector refused: address not in allowed_connector_ips");
    Err(ApiError::new(
        http::StatusCode::FORBIDDEN,
        "address_not_allowed",
        format!(
            "connections from {remote_ip} are not allowed on this channel (allowed_connector_ips)"
        ),
    ))
}

/// 429 `rate_limited` with `Retry-After` (whole seconds, at least 1).
pub fn rate_limited(detail: impl Into<String>, wait: std::time::Duration) -> ApiError {
    ApiError::new(http::StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
        .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// Admits a connection to an authenticated channel unless it is at `max_connections` (503).
/// The connection remembers which token it presented, so that it is closed when that token's
/// grace period after a rotation ends.
pub fn attach(
    state: &AppState,
    channel: &Channel,
    headers: &HeaderMap,
    query: &TokenQuery,
    protocol: &'static str,
    remote_ip: IpAddr,
) -> Result<Arc<Connection>, ApiError> {
    let connector_id = headers
        .get("x-connector-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(|v| ConnectorId(v.to_string()));
    let token = token_digest(presented_token(headers, query).unwrap_or_default());
    channel
        .attach(token, protocol, connector_id, remote_ip, &state.shutdown)
        .map_err(|e| match e {
            AttachError::Full => ApiError::unavailable(
                "max_connections",
                format!(
                    "channel `{}` has its maximum of {} connections",
                    channel.name(),
                    channel.config.max_connections
                ),
                5,
            ),
            AttachError::TooFast(wait) => {
                tracing::warn!(channel = %channel.name(), %remote_ip, "connector refused: connecting too often");
                rate_limited(
                    format!(
                        "{remote_ip} opened more than {} connections to channel `{}` in a minute (max_connections_per_minute)",
                        channel.config.max_connections_per_minute,
                        channel.name()
                    ),
                    wait,
                )
            }
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
