//! aws_sqs against moto (`WCON_TEST_SQS_ENDPOINT`, static test credentials): the message is
//! received back with a separate, plain JSON-protocol client.

use std::time::Duration;

use serde_json::{Value, json};

use crate::http_webhook::closed_port;
use crate::support::{delivery, module, service, try_module};
use wcon::modules::NetworkPolicy;

fn connection(endpoint: &str) -> Value {
    json!({
        "type": "aws_sqs",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing-secret",
        "region_name": "us-east-1",
        "endpoint_url": endpoint,
    })
}

/// One SQS JSON-protocol call with an Authorization header moto routes by but does not check,
/// so the reads stay independent of the module's signing code.
async fn sqs(endpoint: &str, action: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// Receives one message (long poll, bounded).
async fn receive(endpoint: &str, queue_url: &str) -> Value {
    for _ in 0..5 {
        let got = sqs(
            endpoint,
            "ReceiveMessage",
            json!({
                "QueueUrl": queue_url, "WaitTimeSeconds": 2,
                "MessageAttributeNames": ["All"], "MaxNumberOfMessages": 1,
            }),
        )
        .await;
        if let Some(message) = got["Messages"].get(0) {
            return message.clone();
        }
    }
    panic!("no message in {queue_url} after 5 long polls");
}

#[tokio::test]
async fn creates_the_queue_by_name_and_sends_the_payload() {
    let endpoint = service("WCON_TEST_SQS_ENDPOINT");
    let name = format!("wcon-test-{:08x}", rand::random::<u32>());
    let queue = module(
        "aws_sqs",
        json!({"queue_name": name}),
        Some(connection(&endpoint)),
    );
    let d = delivery(&json!({"order": 9, "items": [1, 2]}));
    queue.deliver(&d).await.unwrap();

    let url = sqs(&endpoint, "GetQueueUrl", json!({"QueueName": name})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = receive(&endpoint, &url).await;
    let body: Value = serde_json::from_str(message["Body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"order": 9, "items": [1, 2]}));
    let attributes = &message["MessageAttributes"];
    assert_eq!(attributes["webhook_id"]["StringValue"], "orders");
    assert_eq!(
        attributes["message_id"]["StringValue"],
        d.message_id.as_str()
    );
    assert_eq!(
        attributes["content_type"]["StringValue"],
        "application/json"
    );

    // By URL, on a queue that exists already.
    let by_url = module(
        "aws_sqs",
        json!({"queue_url": url}),
        Some(connection(&endpoint)),
    );
    by_url
        .deliver(&delivery(&json!({"second": true})))
        .await
        .unwrap();
    let message = receive(&endpoint, &url).await;
    assert_eq!(message["Body"], r#"{"second":true}"#);
}

#[tokio::test]
async fn fifo_queues_deduplicate_redeliveries() {
    let endpoint = service("WCON_TEST_SQS_ENDPOINT");
    let name = format!("wcon-test-{:08x}.fifo", rand::random::<u32>());
    let connection = json!({
        "type": "sqs",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing-secret",
        "endpoint_url": endpoint,
    });
    let queue = module("aws_sqs", json!({"queue_name": name}), Some(connection));
    let d = delivery(&json!({"once": 1}));
    queue.deliver(&d).await.unwrap();
    queue.deliver(&d).await.unwrap();
    let url = sqs(&endpoint, "GetQueueUrl", json!({"QueueName": name})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = sqs(
        &endpoint,
        "ReceiveMessage",
        json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
    )
    .await;
    assert_eq!(got["Messages"].as_array().map(Vec::len), Some(1), "{got}");
}

#[tokio::test]
async fn unreachable_and_config_errors() {
    let port = closed_port().await;
    let queue = module(
        "aws_sqs",
        json!({"queue_name": "anything"}),
        Some(connection(&format!("http://127.0.0.1:{port}"))),
    );
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        queue.deliver(&delivery(&json!({}))),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let endpoint = service("WCON_TEST_SQS_ENDPOINT");
    for (config, needle) in [
        (json!({"queue": "x"}), "queue"),
        (json!({}), "queue_url"),
        (
            json!({"queue_name": "a", "queue_url": "http://q/1/a"}),
            "not both",
        ),
        (json!({"queue_name": "bad name"}), "queue_name"),
    ] {
        let err = try_module(
            "aws_sqs",
            config,
            Some(connection(&endpoint)),
            NetworkPolicy::Tunnel,
        )
        .unwrap_err();
        assert!(err.contains(needle), "{err}");
    }
}
