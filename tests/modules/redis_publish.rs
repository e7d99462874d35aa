//! The redis_publish module against the real Redis of `scripts/services.sh`, read by a real
//! subscriber.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use wcon::modules::{Module, ModuleError, NetworkPolicy};

use crate::redis_rq::redis_entry;
use crate::support::{closed_port, delivery, module, service, try_module, unique};

const STRICT: NetworkPolicy = NetworkPolicy::Receiver {
    allow_private: false,
};

fn host_port() -> (String, u16) {
    let url = url::Url::parse(&service("WCON_TEST_REDIS_URL")).unwrap();
    (
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(6379),
    )
}

/// Subscribes to `channel`, delivers through `module`, and returns what the subscriber got.
async fn publish_and_receive(module: &dyn Module, channel: &str, body: &Value) -> Value {
    let client = redis::Client::open(service("WCON_TEST_REDIS_URL")).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    module.deliver(&delivery(body)).await.unwrap();
    let mut messages = pubsub.on_message();
    let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a message within 10 s")
        .expect("the subscription stays open");
    assert_eq!(message.get_channel_name(), channel);
    serde_json::from_slice(message.get_payload_bytes()).unwrap()
}

#[tokio::test]
async fn redis_publish_top_level_redis_object_reaches_a_subscriber() {
    let (host, port) = host_port();
    let channel = unique("wcon-events");
    // The public receiver accepts the internal host because it is listed.
    let module = try_module(
        "redis_publish",
        json!({"redis": {"host": host, "port": port, "channel": channel, "allowed_hosts": [host]}}),
        None,
        STRICT,
    )
    .unwrap();
    let got =
        publish_and_receive(module.as_ref(), &channel, &json!({"event": "push", "n": 1})).await;
    assert_eq!(got["payload"], json!({"event": "push", "n": 1}));
    assert_eq!(got["headers"]["x-github-event"], "push");
}

#[tokio::test]
async fn redis_publish_documented_connection_form() {
    let channel = unique("wcon-events");
    let module = module(
        "redis_publish",
        json!({"channel": channel}),
        Some(redis_entry("redis")),
    );
    let got = publish_and_receive(module.as_ref(), &channel, &json!([1, 2, 3])).await;
    assert_eq!(got["payload"], json!([1, 2, 3]));
    assert_eq!(got["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn redis_publish_refuses_internal_hosts_on_the_receiver() {
    let (_, port) = host_port();
    // An address literal is refused when the module is built...
    let err = try_module(
        "redis_publish",
        json!({"redis": {"host": "127.0.0.1", "port": port, "allowed_hosts": ["10.0.0.1"]}}),
        None,
        STRICT,
    )
    .unwrap_err();
    assert!(err.contains("allowed_hosts"), "{err}");
    // ...a name when it is first used, before connecting.
    let module = try_module(
        "redis_publish",
        json!({"redis": {"host": "localhost", "port": port}}),
        None,
        STRICT,
    )
    .unwrap();
    let err = module
        .deliver(&delivery(&json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("allowed_hosts"), "{err}");
    // In a tunnel the same config is fine.
    assert!(
        try_module(
            "redis_publish",
            json!({"redis": {"host": "127.0.0.1", "port": port}}),
            None,
            NetworkPolicy::Tunnel
        )
        .is_ok()
    );
}

#[tokio::test]
async fn redis_publish_config_errors_and_unreachable_server() {
    let err = try_module(
        "redis_publish",
        json!({"redis": {"hots": "x"}}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("hots"), "{err}");
    let err = try_module(
        "redis_publish",
        json!({"redis": {}}),
        Some(redis_entry("redis")),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("not both"), "{err}");

    let module = module(
        "redis_publish",
        json!({"redis": {"host": "127.0.0.1", "port": closed_port(), "password": "s3cr3t-pw"}}),
        None,
    );
    let err = module
        .deliver(&delivery(&json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Retryable(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}
