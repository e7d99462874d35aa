//! gcp_pubsub against the Pub/Sub emulator at `PUBSUB_EMULATOR_HOST`: a subscription made by
//! the test pulls back what the module published (data and attributes), and a missing topic
//! is created.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{delivery, module, service, try_module};
use wcon::modules::NetworkPolicy;

const PROJECT: &str = "wcon-test";

fn connection() -> Value {
    json!({"type": "gcp_pubsub", "project_id": PROJECT})
}

/// One REST call to the emulator, independent of the module.
async fn emulator(method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let host = service("PUBSUB_EMULATOR_HOST");
    let response = reqwest::Client::new()
        .request(method, format!("http://{host}/v1/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn unique(what: &str) -> String {
    format!("wcon-{what}-{:08x}", rand::random::<u32>())
}

/// Pulls one message from `subscription` (bounded).
async fn pull(subscription: &str) -> Value {
    let path = format!("projects/{PROJECT}/subscriptions/{subscription}:pull");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let (status, got) = emulator(
            reqwest::Method::POST,
            &path,
            json!({"maxMessages": 1, "returnImmediately": true}),
        )
        .await;
        assert_eq!(status, 200, "{got}");
        if let Some(message) = got.pointer("/receivedMessages/0/message") {
            return message.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing to pull from {subscription} within 20 s");
}

#[tokio::test]
async fn publishes_data_and_attributes() {
    let topic = unique("topic");
    let subscription = unique("sub");
    let topic_path = format!("projects/{PROJECT}/topics/{topic}");
    let (status, body) = emulator(reqwest::Method::PUT, &topic_path, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = emulator(
        reqwest::Method::PUT,
        &format!("projects/{PROJECT}/subscriptions/{subscription}"),
        json!({"topic": topic_path}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let pubsub = module("gcp_pubsub", json!({"topic": topic}), Some(connection()));
    let mut d = delivery(&json!({"order": 3}));
    d.headers
        .insert("authorization".into(), "Bearer secret".into());
    pubsub.deliver(&d).await.unwrap();

    let message = pull(&subscription).await;
    let data = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&data).unwrap(),
        json!({"order": 3})
    );
    let attributes = &message["attributes"];
    assert_eq!(attributes["x-github-event"], "push");
    assert_eq!(attributes["webhook_id"], "orders");
    assert_eq!(attributes["message_id"], d.message_id.as_str());
    assert!(attributes.get("authorization").is_none(), "{attributes}");
}

#[tokio::test]
async fn creates_a_missing_topic() {
    let topic = unique("new-topic");
    let topic_path = format!("projects/{PROJECT}/topics/{topic}");
    let (status, _) = emulator(reqwest::Method::GET, &topic_path, Value::Null).await;
    assert_eq!(status, 404);
    let pubsub = module("gcp_pubsub", json!({"topic": topic}), Some(connection()));
    pubsub.deliver(&delivery(&json!({"n": 1}))).await.unwrap();
    let (status, body) = emulator(reqwest::Method::GET, &topic_path, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    // Publishing again uses the topic that now exists.
    pubsub.deliver(&delivery(&json!({"n": 2}))).await.unwrap();
}

#[tokio::test]
async fn config_errors_name_the_key() {
    for (config, connection, needle) in [
        (json!({"topik": "abc"}), connection(), "topik"),
        (json!({"topic": "1bad"}), connection(), "topic"),
        (
            json!({"topic": "good-topic"}),
            json!({"type": "gcp_pubsub"}),
            "project_id",
        ),
        (
            json!({"topic": "good-topic"}),
            json!({"type": "gcp_pubsub", "project_id": "p", "credentials": "x"}),
            "credentials",
        ),
    ] {
        let err = try_module(
            "gcp_pubsub",
            config,
            Some(connection),
            NetworkPolicy::Tunnel,
        )
        .unwrap_err();
        assert!(err.contains(needle), "{err}");
    }
}
