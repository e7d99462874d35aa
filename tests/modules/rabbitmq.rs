//! The rabbitmq module against the real RabbitMQ of `scripts/services.sh`, read back with lapin.

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use wcon::modules::{ModuleError, NetworkPolicy};

use crate::support::{closed_port, delivery, module, service, try_module, unique};

/// The connections.json entry for the test broker.
fn connection_entry(url: &str) -> Value {
    let url = url::Url::parse(url).unwrap();
    json!({
        "type": "rabbitmq",
        "host": url.host_str().unwrap(),
        "port": url.port().unwrap_or(5672),
        "user": url.username(),
        "pass": url.password().unwrap_or("guest"),
    })
}

#[tokio::test]
async fn rabbitmq_publishes_persistent_confirmed_messages_with_headers() {
    let url = service("WCON_TEST_RABBITMQ_URL");
    let queue = unique("wcon-rabbitmq");
    let rabbit = module(
        "rabbitmq",
        json!({"queue_name": queue}),
        Some(connection_entry(&url)),
    );
    let d = delivery(&json!({"order": 42, "items": ["a", "b"]}));
    rabbit.deliver(&d).await.unwrap();
    // The second delivery reuses the shared channel and the declared queue.
    rabbit
        .deliver(&delivery(&json!({"order": 43})))
        .await
        .unwrap();

    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let message = loop {
        if let Some(m) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message in {queue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body, json!({"order": 42, "items": ["a", "b"]}));
    let props = &message.delivery.properties;
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str().to_owned()),
        Some(d.message_id.to_string())
    );
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str().to_owned()),
        Some("application/json".to_owned())
    );
    let headers = props.headers().as_ref().unwrap();
    match headers.inner().get("x-github-event") {
        Some(AMQPValue::LongString(v)) => assert_eq!(v.to_string(), "push"),
        other => panic!("x-github-event header: {other:?}"),
    }
    assert_eq!(
        message.message_count, 1,
        "the second message waits behind it"
    );

    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn rabbitmq_config_errors_name_the_key() {
    let entry = json!({"type": "rabbitmq", "host": "127.0.0.1"});
    let err = try_module(
        "rabbitmq",
        json!({"queue_name": "q", "queue": "typo"}),
        Some(entry.clone()),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("queue"), "{err}");
    let err = try_module("rabbitmq", json!({}), Some(entry), NetworkPolicy::Tunnel).unwrap_err();
    assert!(err.contains("queue_name"), "{err}");
    let err = try_module(
        "rabbitmq",
        json!({"queue_name": "q"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("connection"), "{err}");
}

#[tokio::test]
async fn rabbitmq_unreachable_is_retryable_and_hides_the_password() {
    let entry = json!({
        "type": "rabbitmq", "host": "127.0.0.1", "port": closed_port(),
        "user": "guest", "pass": "s3cr3t-pass"
    });
    let rabbit = module("rabbitmq", json!({"queue_name": "q"}), Some(entry));
    let err = rabbit
        .deliver(&delivery(&json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Retryable(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn rabbitmq_wrong_password_is_rejected() {
    let url = url::Url::parse(&service("WCON_TEST_RABBITMQ_URL")).unwrap();
    let entry = json!({
        "type": "rabbitmq", "host": url.host_str().unwrap(), "port": url.port().unwrap_or(5672),
        "user": "guest", "pass": "not-the-password"
    });
    let rabbit = module(
        "rabbitmq",
        json!({"queue_name": unique("wcon-rabbitmq")}),
        Some(entry),
    );
    let err = rabbit
        .deliver(&delivery(&json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

#[tokio::test]
async fn rabbitmq_reopens_the_channel_after_the_broker_closed_it() {
    let url = service("WCON_TEST_RABBITMQ_URL");
    let queue = unique("wcon-rabbitmq");
    // The queue exists as non-durable: the module's durable declare fails and the broker
    // closes its channel (PRECONDITION_FAILED).
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let rabbit = module(
        "rabbitmq",
        json!({"queue_name": queue}),
        Some(connection_entry(&url)),
    );
    let err = rabbit
        .deliver(&delivery(&json!({"n": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("PRECONDITION"), "{err}");

    // Once the queue is gone, the next delivery works on a new channel.
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    rabbit.deliver(&delivery(&json!({"n": 2}))).await.unwrap();
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the confirmed message is in the queue");
    let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body, json!({"n": 2}));
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}
