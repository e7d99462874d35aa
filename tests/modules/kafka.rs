//! The kafka module against librdkafka's mock cluster (a Kafka-protocol broker on 127.0.0.1),
//! read back by a real consumer.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use serde_json::{Value, json};
use wcon::modules::{ModuleError, NetworkPolicy};

use crate::support::{closed_port, delivery, module, try_module, unique};

#[tokio::test]
async fn kafka_produces_with_key_partition_and_headers() {
    let cluster = MockCluster::new(1).unwrap();
    let topic = unique("wcon-kafka");
    cluster.create_topic(&topic, 3, 1).unwrap();
    let entry = json!({"type": "kafka", "bootstrap_servers": cluster.bootstrap_servers()});

    let kafka = module(
        "kafka",
        json!({"topic": topic, "key": "orders", "partition": 2, "forward_headers": true}),
        Some(entry),
    );
    let body = json!({"order": 42, "items": ["a"]});
    kafka.deliver(&delivery(&body)).await.unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", unique("wcon-test-group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic.as_str()]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 s")
        .unwrap();
    let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(value, body);
    assert_eq!(message.key(), Some(&b"orders"[..]));
    assert_eq!(message.partition(), 2);
    let headers = message.headers().expect("headers were forwarded");
    let event = headers
        .iter()
        .find(|h| h.key == "x-github-event")
        .expect("the x-github-event header");
    assert_eq!(event.value, Some(&b"push"[..]));
}

#[tokio::test]
async fn kafka_config_errors_name_the_key() {
    let entry = json!({"type": "kafka", "bootstrap_servers": "127.0.0.1:9092"});
    let err = try_module(
        "kafka",
        json!({"topic": "t", "partitions": 1}),
        Some(entry.clone()),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("partitions"), "{err}");
    let err = try_module(
        "kafka",
        json!({"topic": "bad topic"}),
        Some(entry),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("topic"), "{err}");
    let err = try_module(
        "kafka",
        json!({"topic": "t"}),
        Some(json!({"type": "kafka", "bootstrap": "x"})),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("bootstrap"), "{err}");
}

#[tokio::test]
async fn kafka_unreachable_broker_is_retryable() {
    let entry = json!({
        "type": "kafka",
        "bootstrap_servers": format!("127.0.0.1:{}", closed_port()),
        "message_timeout_ms": 2000,
    });
    let kafka = module("kafka", json!({"topic": "wcon-nowhere"}), Some(entry));
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        kafka.deliver(&delivery(&json!({"x": 1}))),
    )
    .await
    .expect("the delivery gives up within 30 s")
    .unwrap_err();
    assert!(matches!(err, ModuleError::Retryable(_)), "{err:?}");
}
