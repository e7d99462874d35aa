//! Fuzz harnesses shared by the `cargo fuzz` targets (fuzz/fuzz_targets/) and the bounded runs
//! of the normal test suite (tests/fuzz/): each takes arbitrary bytes and must neither panic nor
//! accept what it should refuse. Each returns whether the input got past the first parse (so
//! the bounded runs can tell that they reach the code under test).
//!
//! - `frames`: the wire frames both sides parse (connector → server and server → connector) and
//!   the buffer's stored message records; whatever parses survives a round trip.
//! - `config`: webhooks.json text through the same loader `wcon serve` uses.
//! - `signatures`: the signature and credential headers of the sender authentication methods
//!   (HMAC plain / GitHub / Stripe / Shopify, Digest, OAuth 1.0, Basic); random ones are refused.

#![allow(dead_code)]

use std::sync::OnceLock;

use wcon::config::WebhooksConfig;
use wcon::message::Message;
use wcon::protocol::{ConnectorFrame, ServerFrame};

/// Frames and stored records.
pub fn frames(data: &[u8]) -> bool {
    let mut parsed = false;
    if let Ok(text) = std::str::from_utf8(data) {
        parsed |= serde_json::from_str::<ConnectorFrame>(text).is_ok();
        if let Ok(frame) = serde_json::from_str::<ServerFrame>(text) {
            parsed = true;
            let again = serde_json::to_string(&frame).expect("a parsed frame serialises");
            let back: ServerFrame =
                serde_json::from_str(&again).expect("a serialised frame parses");
            assert_eq!(back, frame, "round trip of {text:?}");
        }
    }
    if let Ok(message) = Message::decode(data) {
        parsed = true;
        let back = Message::decode(&message.encode()).expect("an encoded message decodes");
        assert_eq!(back, message);
    }
    parsed
}

/// A webhooks.json text.
pub fn config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(value) = wcon::config::parse_json_text("fuzz.json", text) else {
        return false;
    };
    match WebhooksConfig::from_json("fuzz.json", value) {
        Ok(config) => {
            for id in config.webhooks.keys() {
                assert!(wcon::config::webhooks::check_webhook_id(id.as_str()).is_ok());
            }
        }
        Err(errors) => assert!(!errors.to_string().is_empty()),
    }
    true
}

/// The webhooks whose checks `signatures` feeds, one per method and format.
fn signed_webhooks() -> &'static WebhooksConfig {
    static CONFIG: OnceLock<WebhooksConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let relay = |auth: &str, cfg: serde_json::Value| {
            let mut w = serde_json::json!({"module": "webhook_connect",
                "module-config": {"channel": "fuzz", "channel_token": "ch_tok_fuzz_0123456789"}});
            w[auth] = cfg;
            w
        };
        let doc = serde_json::json!({
            "plain": relay("hmac", serde_json::json!({"secret": "s3cret", "header": "X-Signature"})),
            "github": relay("hmac", serde_json::json!({"secret": "s3cret", "format": "github"})),
            "stripe": relay("hmac", serde_json::json!({"secret": "whsec_s3cret", "format": "stripe"})),
            "shopify": relay("hmac", serde_json::json!({"secret": "shpss_s3cret", "format": "shopify"})),
            "digest": relay("digest_auth", serde_json::json!({"username": "u", "password": "p"})),
            "oauth1": relay("oauth1", serde_json::json!({"consumer_key": "ck", "consumer_secret": "cs"})),
            "basic": relay("basic_auth", serde_json::json!({"username": "u", "password": "p"})),
        });
        WebhooksConfig::from_json("fuzz.json", doc).expect("the fuzz webhooks are valid")
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Signature headers: the first byte picks the method, bytes up to the first newline are the
/// header value, the rest is the body. Random input never passes.
pub fn signatures(data: &[u8]) -> bool {
    let Some((&pick, rest)) = data.split_first() else {
        return false;
    };
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let (value, body) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let Ok(value) = http::HeaderValue::from_bytes(value) else {
        return false;
    };
    let (id, header, prefix) = match pick % 9 {
        0 => ("plain", "x-signature", ""),
        1 => ("github", "x-hub-signature-256", ""),
        2 => ("github", "x-hub-signature-256", "sha256="),
        3 => ("stripe", "stripe-signature", ""),
        4 => ("stripe", "stripe-signature", "t=1700000000,v1="),
        5 => ("shopify", "x-shopify-hmac-sha256", ""),
        6 => ("digest", "authorization", "Digest "),
        7 => ("oauth1", "authorization", "OAuth "),
        _ => ("basic", "authorization", "Basic "),
    };
    let mut full = prefix.as_bytes().to_vec();
    full.extend_from_slice(value.as_bytes());
    let Ok(value) = http::HeaderValue::from_bytes(&full) else {
        return false;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::HeaderName::from_static(header), value);
    let uri: http::Uri = format!("/webhook/{id}").parse().expect("a valid uri");
    let webhook = signed_webhooks().resolve(id).expect("configured");
    let request = wcon::auth::AuthRequest {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
        body,
        peer: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let verdict = runtime().block_on(webhook.auth.verify(&request));
    // A fuzzer may well guess Basic's short test credentials; signatures it cannot guess.
    if id != "basic" {
        assert!(verdict.is_err(), "{id} accepted a random {header} header");
    }
    true
}
