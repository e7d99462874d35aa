#![allow(dead_code)] // each test file uses a part of it
//! Shared helpers: service addresses, deliveries and modules built the way webhooks.json
//! builds them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use wcon::config::ConnectionsConfig;
use wcon::config::webhooks::DataType;
use wcon::modules::registry::{self, BuildContext, ModuleSpec};
use wcon::modules::{Connections, Delivery, Module, NetworkPolicy, payload_of};
use wcon::protocol::{MessageId, WebhookId};

/// The address of a test service, from the variable `scripts/services.sh` exports.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/services.sh` and `. /var/tmp/wcon-services/env.sh` (scripts/test.sh does both)")
    })
}

/// A JSON delivery of `body` with some request headers.
pub fn delivery(body: &Value) -> Delivery {
    let raw = serde_json::to_vec(body).unwrap();
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    headers.insert("x-github-event".to_owned(), "push".to_owned());
    Delivery {
        message_id: MessageId::generate(),
        webhook_id: WebhookId::from("orders"),
        sequence: 7,
        received_at: chrono::Utc::now(),
        source_ip: Some("203.0.113.9".parse().unwrap()),
        payload: payload_of(&raw, &headers, DataType::Json),
        headers,
        body: Bytes::from(raw),
    }
}

/// Builds module `name` from its `module-config`, with an optional connection entry (as in
/// connections.json, `type` included), in a tunnel (every host allowed).
pub fn module(name: &str, config: Value, connection: Option<Value>) -> Arc<dyn Module> {
    try_module(name, config, connection, NetworkPolicy::Tunnel).unwrap()
}

/// Like [`module`], returning the configuration error and taking the network policy.
pub fn try_module(
    name: &str,
    config: Value,
    connection: Option<Value>,
    network: NetworkPolicy,
) -> Result<Arc<dyn Module>, String> {
    let entries = match &connection {
        Some(c) => json!({ "conn": c }),
        None => json!({}),
    };
    let config_file =
        ConnectionsConfig::from_json("connections.json", entries).map_err(|e| e.to_string())?;
    let connections = Arc::new(Connections::new(&config_file));
    let ctx = BuildContext {
        connections: connections.clone(),
        network,
    };
    let spec = ModuleSpec {
        webhook_id: "orders",
        name,
        config: &config,
        connection: connection.as_ref().and_then(|_| connections.get("conn")),
    };
    registry::build(&spec, &ctx)
}
