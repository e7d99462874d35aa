//! The log module, run through the registry as webhooks.json runs it.

use serde_json::json;

use crate::support::{delivery, module, try_module};
use wcon::modules::NetworkPolicy;

#[tokio::test]
async fn log_delivers_and_refuses_unknown_keys() {
    let log = module("log", json!({"pretty_print": false}), None);
    log.deliver(&delivery(&json!({"id": 1}))).await.unwrap();
    let err = try_module("log", json!({"pretty": true}), None, NetworkPolicy::Tunnel).unwrap_err();
    assert!(err.contains("pretty"), "{err}");
}
