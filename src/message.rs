//! The stored message: what a buffer keeps and what delivery works from.
//!
//! It owns the message's fields, its versioned storage encoding and its wire form
//! ([`Message::to_frame`] / [`Message::from_frame`]). It does no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::protocol::{ChannelName, MessageId, WebhookFrame, WebhookId};
use crate::time::rfc3339;

/// A webhook as the buffer stores it and a connector receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// The channel it travels on.
    pub channel: ChannelName,
    /// The webhook it was posted to.
    pub webhook_id: WebhookId,
    /// Per-channel monotonic number.
    pub sequence: u64,
    /// When the receiver accepted it.
    pub received_at: DateTime<Utc>,
    /// When it expires and becomes a dead letter with reason `expired`.
    pub expires_at: DateTime<Utc>,
    /// The sender's address.
    pub source_ip: Option<IpAddr>,
    /// Request headers, names lowercased, repeated names joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The raw request body, exactly as received.
    pub body: Bytes,
    /// How many times it was handed to a connector.
    pub delivery_count: u32,
}

/// Everything of a [`Message`] but its body: what a buffer keeps per queued message (the
/// embedded buffer's in-memory index leaves `headers` empty and reads them back with the body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// See [`Message::id`].
    pub id: MessageId,
    /// See [`Message::channel`].
    pub channel: ChannelName,
    /// See [`Message::webhook_id`].
    pub webhook_id: WebhookId,
    /// See [`Message::sequence`].
    pub sequence: u64,
    /// See [`Message::received_at`].
    pub received_at: DateTime<Utc>,
    /// See [`Message::expires_at`].
    pub expires_at: DateTime<Utc>,
    /// See [`Message::source_ip`].
    #[serde(default)]
    pub source_ip: Option<IpAddr>,
    /// See [`Message::headers`].
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// See [`Message::delivery_count`].
    #[serde(default)]
    pub delivery_count: u32,
    /// Size of the body in bytes.
    #[serde(default)]
    pub body_len: u64,
}

/// Why a storage record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than its header says.
    #[error("stored message is truncated")]
    Truncated,
    /// The first byte names a format this build does not know.
    #[error("stored message has unknown format version {0}")]
    UnknownVersion(u8),
    /// The metadata is not valid.
    #[error("stored message metadata is invalid")]
    Meta(#[source] serde_json::Error),
}

/// First byte of a stored record: the layout that follows. `StoredMessage::V1` is
/// `[1][u32 BE metadata length][metadata JSON][raw body]`, so the body is never re-encoded.
const STORED_V1: u8 = 1;

impl Message {
    /// The metadata part of this message.
    pub fn meta(&self) -> MessageMeta {
        MessageMeta {
            id: self.id.clone(),
            channel: self.channel.clone(),
            webhook_id: self.webhook_id.clone(),
            sequence: self.sequence,
            received_at: self.received_at,
            expires_at: self.expires_at,
            source_ip: self.source_ip,
            headers: self.headers.clone(),
            delivery_count: self.delivery_count,
            body_len: self.body.len() as u64,
        }
    }

    /// Joins metadata and body.
    pub fn from_parts(meta: MessageMeta, body: Bytes) -> Self {
        Self {
            id: meta.id,
            channel: meta.channel,
            webhook_id: meta.webhook_id,
            sequence: meta.sequence,
            received_at: meta.received_at,
            expires_at: meta.expires_at,
            source_ip: meta.source_ip,
            headers: meta.headers,
            body,
            delivery_count: meta.delivery_count,
        }
    }

    /// The versioned storage encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_record(&self.meta(), &self.body)
    }

    /// Reads back what [`Message::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (meta, body_at) = decode_meta_and_offset(bytes)?;
        Ok(Self::from_parts(
            meta,
            Bytes::copy_from_slice(&bytes[body_at..]),
        ))
    }

    /// The payload as the original's `payload` field: parsed JSON, or the body as a string.
    pub fn payload(&self) -> serde_json::Value {
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(v) => v,
            Err(_) => serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()),
        }
    }

    /// The wire form sent to a connector.
    pub fn to_frame(&self) -> WebhookFrame {
        WebhookFrame {
            message_id: self.id.clone(),
            sequence: self.sequence,
            webhook_id: self.webhook_id.clone(),
            timestamp: rfc3339(self.received_at),
            headers: self.headers.clone(),
            payload: self.payload(),
            body_b64: Some(BASE64.encode(&self.body)),
            delivery_count: Some(self.delivery_count),
            expires_at: Some(rfc3339(self.expires_at)),
            source_ip: self.source_ip.map(|ip| ip.to_string()),
        }
    }
}

/// The storage encoding of [`Message::encode`] from a message's parts, without copying them
/// into a [`Message`] first.
pub fn encode_record(meta: &MessageMeta, body: &[u8]) -> Vec<u8> {
    let mut out = encode_record_head(meta, body.len());
    out.extend_from_slice(body);
    out
}

/// What a stored record holds before its body: the version, the metadata's length and the
/// metadata. `body_len` is room reserved for a body the caller appends.
pub fn encode_record_head(meta: &MessageMeta, body_len: usize) -> Vec<u8> {
    // Metadata JSON with a few headers is 300–600 bytes; one allocation for the whole record.
    let mut out = Vec::with_capacity(5 + 1024 + body_len);
    out.push(STORED_V1);
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut out, meta).expect("message metadata always serialises");
    let meta_len = (out.len() - 5) as u32;
    out[1..5].copy_from_slice(&meta_len.to_be_bytes());
    out
}

/// Reads only the metadata of a stored record (the body is not copied).
pub fn decode_meta(bytes: &[u8]) -> Result<MessageMeta, DecodeError> {
    decode_meta_and_offset(bytes).map(|(m, _)| m)
}

fn decode_meta_and_offset(bytes: &[u8]) -> Result<(MessageMeta, usize), DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    if version != STORED_V1 {
        return Err(DecodeError::UnknownVersion(version));
    }
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .ok_or(DecodeError::Truncated)?
        .try_into()
        .expect("4 bytes");
    let meta_len = u32::from_be_bytes(len_bytes) as usize;
    let meta_bytes = rest.get(4..4 + meta_len).ok_or(DecodeError::Truncated)?;
    let meta = serde_json::from_slice(meta_bytes).map_err(DecodeError::Meta)?;
    Ok((meta, 1 + 4 + meta_len))
}

/// The body a connector should deliver for a frame: the raw bytes when the server sent them
/// (`body_b64`), otherwise the payload re-encoded (an original server sends no raw body).
pub fn frame_body(frame: &WebhookFrame) -> Bytes {
    if let Some(b64) = &frame.body_b64
        && let Ok(raw) = BASE64.decode(b64)
    {
        return Bytes::from(raw);
    }
    match &frame.payload {
        serde_json::Value::String(s) => Bytes::from(s.clone().into_bytes()),
        other => Bytes::from(serde_json::to_vec(other).expect("a JSON value always serialises")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut headers = BTreeMap::new();
        headers.insert("stripe-signature".into(), "t=1,v1=abc".into());
        Message {
            id: MessageId::generate(),
            channel: "c".into(),
            webhook_id: "w".into(),
            sequence: 42,
            received_at: Utc::now(),
            expires_at: Utc::now(),
            source_ip: Some("127.0.0.1".parse().unwrap()),
            headers,
            body: Bytes::from_static(b"{ \"a\" : 1.50 }\n"),
            delivery_count: 3,
        }
    }

    #[test]
    fn storage_encoding_roundtrips_byte_for_byte() {
        let m = sample();
        let back = Message::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            decode_meta(&m.encode()).unwrap().body_len,
            m.body.len() as u64
        );
    }

    #[test]
    fn frame_keeps_the_raw_body() {
        let m = sample();
        let frame = m.to_frame();
        assert_eq!(frame_body(&frame), m.body);
        assert_eq!(frame.payload, serde_json::json!({"a": 1.5}));
    }

    #[test]
    fn truncated_and_unknown_records_are_errors() {
        assert!(matches!(Message::decode(&[]), Err(DecodeError::Truncated)));
        assert!(matches!(
            Message::decode(&[9, 0, 0, 0, 0]),
            Err(DecodeError::UnknownVersion(9))
        ));
        assert!(matches!(
            Message::decode(&[1, 0, 0, 0, 9, b'{']),
            Err(DecodeError::Truncated)
        ));
    }
}
