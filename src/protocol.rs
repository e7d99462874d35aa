//! Everything that crosses the wire between `wcon serve` and `wcon tunnel`, in one place.
//!
//! Frames keep the field names of the original Python Webhook Connect so either side can talk
//! to the other project's side; wcon's additions are optional fields that old peers ignore.
//! This module owns the types and their JSON shape only; it does no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the frame protocol, sent in the `connected` frame. A breaking change bumps it.
pub const PROTOCOL_VERSION: u16 = 1;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id_newtype!(
    /// A stored message: `msg_` followed by 16 lowercase hex digits.
    MessageId
);
id_newtype!(
    /// A channel: the stream a relay webhook feeds and connectors subscribe to.
    ChannelName
);
id_newtype!(
    /// A webhook id, the `{id}` of `POST /webhook/{id}`.
    WebhookId
);
id_newtype!(
    /// One streaming connection of a connector, chosen by the server.
    ConnectionId
);
id_newtype!(
    /// A connector's own name, sent as `X-Connector-ID`.
    ConnectorId
);

impl MessageId {
    /// A fresh random message id.
    pub fn generate() -> Self {
        Self(format!("msg_{:016x}", rand::random::<u64>()))
    }
}

/// Frames the server sends to a connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The connection is accepted.
    Connected {
        /// The server's id of this connection (used by acks over HTTP).
        connection_id: ConnectionId,
        /// The channel this connection streams.
        channel: ChannelName,
        /// When the server accepted it.
        timestamp: String,
        /// [`PROTOCOL_VERSION`] of the server; absent from the original.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol_version: Option<u16>,
        /// How many unacked messages this connection may hold.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_in_flight: Option<u32>,
        /// How often the server sends heartbeats, and expects them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_interval_seconds: Option<u64>,
    },
    /// One message to deliver.
    Webhook(WebhookFrame),
    /// Liveness; the connector answers with its own heartbeat.
    Heartbeat {
        /// When it was sent.
        timestamp: String,
        /// The server's clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_time: Option<String>,
    },
    /// Something went wrong; sent before the server closes on purpose, or about a bad frame.
    Error {
        /// A stable, machine-readable code.
        code: String,
        /// What happened, for humans.
        detail: String,
    },
}

/// A message as it travels to a connector (WebSocket frame, SSE event, long-poll item).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookFrame {
    /// The stored message's id; the key of ack and nack.
    pub message_id: MessageId,
    /// Per-channel monotonic number, persisted across restarts.
    pub sequence: u64,
    /// The webhook the sender posted to.
    pub webhook_id: WebhookId,
    /// When the receiver accepted it (RFC 3339).
    pub timestamp: String,
    /// The request headers, names lowercased, repeated names joined with `, `.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, or the body as a string when it is not JSON.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// The raw body, base64: what HTTP-mode delivery replays byte for byte. Absent from the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_b64: Option<String>,
    /// How many times this message has been handed to a connector, this time included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
    /// When the message expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The sender's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

fn yes() -> bool {
    true
}

/// Frames a connector sends to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConnectorFrame {
    /// The destination accepted the message.
    Ack {
        /// Which message.
        message_id: MessageId,
    },
    /// The destination did not accept it.
    Nack {
        /// Which message.
        message_id: MessageId,
        /// `true`: deliver again later; `false`: dead-letter it now.
        #[serde(default = "yes")]
        retry: bool,
        /// Why, kept with a dead letter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Liveness.
    Heartbeat {
        /// When it was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<String>,
    },
}

/// Stable codes of `error` frames.
pub mod error_code {
    /// A frame that is not JSON, or not a known frame.
    pub const INVALID_FRAME: &str = "invalid_frame";
    /// The server is shutting down; reconnect.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// An administrator closed this connection.
    pub const DISCONNECTED: &str = "disconnected_by_admin";
    /// The channel token this connection used was rotated and its grace period ended.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// A reload of webhooks.json changed or removed the channel; reconnect.
    pub const CHANNEL_RECONFIGURED: &str = "channel_reconfigured";
    /// Nothing heard from the connector for three heartbeat intervals.
    pub const HEARTBEAT_TIMEOUT: &str = "heartbeat_timeout";
    /// The buffer failed while streaming.
    pub const BUFFER_UNAVAILABLE: &str = "buffer_unavailable";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip_server(frame: ServerFrame, expected: serde_json::Value) {
        assert_eq!(serde_json::to_value(&frame).unwrap(), expected);
        let back: ServerFrame = serde_json::from_value(expected).unwrap();
        assert_eq!(back, frame);
    }

    fn roundtrip_connector(frame: ConnectorFrame, expected: serde_json::Value) {
        assert_eq!(serde_json::to_value(&frame).unwrap(), expected);
        let back: ConnectorFrame = serde_json::from_value(expected).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn connected_frame_matches_protocol_md() {
        roundtrip_server(
            ServerFrame::Connected {
                connection_id: "wsc_1".into(),
                channel: "stripe-payments".into(),
                timestamp: "2026-01-01T00:00:00.000000Z".into(),
                protocol_version: Some(PROTOCOL_VERSION),
                max_in_flight: Some(100),
                heartbeat_interval_seconds: Some(30),
            },
            json!({"type":"connected","connection_id":"wsc_1","channel":"stripe-payments",
                   "timestamp":"2026-01-01T00:00:00.000000Z","protocol_version":1,
                   "max_in_flight":100,"heartbeat_interval_seconds":30}),
        );
    }

    #[test]
    fn original_connected_frame_without_additions_parses() {
        let f: ServerFrame = serde_json::from_value(json!({"type":"connected",
            "connection_id":"wsc_1_1700000000","channel":"c","timestamp":"t"}))
        .unwrap();
        assert!(matches!(
            f,
            ServerFrame::Connected {
                protocol_version: None,
                ..
            }
        ));
    }

    #[test]
    fn webhook_frame_matches_protocol_md() {
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_string(), "application/json".to_string());
        roundtrip_server(
            ServerFrame::Webhook(WebhookFrame {
                message_id: "msg_0123456789abcdef".into(),
                sequence: 7,
                webhook_id: "stripe_relay".into(),
                timestamp: "2026-01-01T00:00:00.000000Z".into(),
                headers,
                payload: json!({"a":1}),
                body_b64: Some("eyJhIjoxfQ==".into()),
                delivery_count: Some(1),
                expires_at: Some("2026-01-02T00:00:00.000000Z".into()),
                source_ip: Some("203.0.113.9".into()),
            }),
            json!({"type":"webhook","message_id":"msg_0123456789abcdef","sequence":7,
                   "webhook_id":"stripe_relay","timestamp":"2026-01-01T00:00:00.000000Z",
                   "headers":{"content-type":"application/json"},"payload":{"a":1},
                   "body_b64":"eyJhIjoxfQ==","delivery_count":1,
                   "expires_at":"2026-01-02T00:00:00.000000Z","source_ip":"203.0.113.9"}),
        );
    }

    #[test]
    fn original_webhook_frame_without_additions_parses() {
        let f: ServerFrame = serde_json::from_value(json!({"type":"webhook","message_id":"msg_1",
            "sequence":1,"webhook_id":"w","timestamp":"t","headers":{},"payload":{"x":1}}))
        .unwrap();
        let ServerFrame::Webhook(w) = f else {
            panic!("not a webhook frame")
        };
        assert_eq!(w.body_b64, None);
        assert_eq!(w.payload, json!({"x":1}));
    }

    #[test]
    fn heartbeat_and_error_frames_match_protocol_md() {
        roundtrip_server(
            ServerFrame::Heartbeat {
                timestamp: "t".into(),
                server_time: Some("s".into()),
            },
            json!({"type":"heartbeat","timestamp":"t","server_time":"s"}),
        );
        roundtrip_server(
            ServerFrame::Error {
                code: "invalid_frame".into(),
                detail: "d".into(),
            },
            json!({"type":"error","code":"invalid_frame","detail":"d"}),
        );
    }

    #[test]
    fn connector_frames_match_protocol_md() {
        roundtrip_connector(
            ConnectorFrame::Ack {
                message_id: "msg_1".into(),
            },
            json!({"type":"ack","message_id":"msg_1"}),
        );
        roundtrip_connector(
            ConnectorFrame::Nack {
                message_id: "msg_1".into(),
                retry: true,
                reason: Some("target answered 503".into()),
            },
            json!({"type":"nack","message_id":"msg_1","retry":true,"reason":"target answered 503"}),
        );
        roundtrip_connector(
            ConnectorFrame::Heartbeat {
                timestamp: Some("t".into()),
            },
            json!({"type":"heartbeat","timestamp":"t"}),
        );
    }

    #[test]
    fn nack_retry_defaults_to_true() {
        let f: ConnectorFrame =
            serde_json::from_value(json!({"type":"nack","message_id":"msg_1"})).unwrap();
        assert_eq!(
            f,
            ConnectorFrame::Nack {
                message_id: "msg_1".into(),
                retry: true,
                reason: None
            }
        );
    }

    #[test]
    fn message_ids_have_the_documented_shape() {
        let id = MessageId::generate();
        assert_eq!(id.as_str().len(), 20);
        assert!(id.as_str().starts_with("msg_"));
        assert!(
            id.as_str()[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
