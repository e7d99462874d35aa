//! s3 against moto (`WCON_TEST_S3_ENDPOINT`, static test credentials): the object is read back
//! with plain HTTP (moto does not check signatures on reads), body and metadata both.

use serde_json::{Value, json};

use crate::http_webhook::closed_port;
use crate::support::{delivery, module, service, try_module};
use wcon::modules::NetworkPolicy;

/// An Authorization header moto accepts without checking it: the test's reads stay
/// independent of the module's signing code, and are not anonymous (which moto's ACLs refuse).
const TEST_AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// A GET on the test server.
async fn get(url: String) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("authorization", TEST_AUTH)
        .send()
        .await
        .unwrap()
}

fn connection(endpoint: &str) -> Value {
    json!({
        "type": "s3",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing-secret",
        "region": "us-east-1",
        "endpoint_url": endpoint,
    })
}

/// A new bucket on the test server.
async fn bucket(endpoint: &str) -> String {
    let name = format!("wcon-test-{:08x}", rand::random::<u32>());
    let status = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .header("authorization", TEST_AUTH)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "creating bucket {name}: {status}");
    name
}

/// The keys under `prefix` (ListObjectsV2, read with plain string matching).
async fn keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let text = get(format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"))
        .await
        .text()
        .await
        .unwrap();
    text.split("<Key>")
        .skip(1)
        .map(|s| s.split("</Key>").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn stores_indented_json_with_header_metadata() {
    let endpoint = service("WCON_TEST_S3_ENDPOINT");
    let bucket = bucket(&endpoint).await;
    let s3 = module(
        "s3",
        json!({
            "bucket": bucket,
            "prefix": "hooks/in",
            "filename_pattern": "{message_id}-{uuid}.json",
            "include_headers": true,
        }),
        Some(connection(&endpoint)),
    );
    let mut d = delivery(&json!({"order": 7, "note": "héllo"}));
    d.headers
        .insert("authorization".into(), "Bearer secret".into());
    d.headers.insert("x-odd_name".into(), "v1".into());
    s3.deliver(&d).await.unwrap();

    let hour = d.received_at.format("%Y/%m/%d/%H");
    let found = keys(&endpoint, &bucket, "hooks/in/").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let key = &found[0];
    assert!(
        key.starts_with(&format!("hooks/in/{hour}/{}-", d.message_id)),
        "{key}"
    );
    assert!(key.ends_with(".json"), "{key}");

    let response = get(format!("{endpoint}/{bucket}/{key}")).await;
    assert!(response.status().is_success());
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert!(body.contains("\n  \""), "indented JSON: {body}");
    let stored: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored, json!({"order": 7, "note": "héllo"}));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-amz-meta-x-github-event"], "push");
    assert_eq!(headers["x-amz-meta-x-odd-name"], "v1");
    assert!(headers.get("x-amz-meta-authorization").is_none());
}

#[tokio::test]
async fn default_pattern_missing_bucket_unreachable_and_config_errors() {
    let endpoint = service("WCON_TEST_S3_ENDPOINT");
    let bucket = bucket(&endpoint).await;
    let s3 = module("s3", json!({"bucket": bucket}), Some(connection(&endpoint)));
    let d = delivery(&json!({"n": 1}));
    s3.deliver(&d).await.unwrap();
    let found = keys(&endpoint, &bucket, "webhooks/").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let file = found[0].rsplit('/').next().unwrap();
    assert!(
        file.starts_with("webhook_") && file.len() == "webhook_.json".len() + 36,
        "{file}"
    );
    // Headers are not stored unless asked for.
    let response = get(format!("{endpoint}/{bucket}/{}", found[0])).await;
    assert!(
        response
            .headers()
            .get("x-amz-meta-x-github-event")
            .is_none()
    );

    let missing = module(
        "s3",
        json!({"bucket": format!("{bucket}-missing")}),
        Some(connection(&endpoint)),
    );
    let err = missing.deliver(&d).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("NoSuchBucket"),
        "{err}"
    );

    let port = closed_port().await;
    let down = module(
        "s3",
        json!({"bucket": bucket}),
        Some(connection(&format!("http://127.0.0.1:{port}"))),
    );
    let err = down.deliver(&d).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let err = try_module(
        "s3",
        json!({"bucket": bucket, "prefx": "x"}),
        Some(connection(&endpoint)),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("prefx"), "{err}");
    let err = try_module(
        "s3",
        json!({"bucket": bucket}),
        Some(json!({"type": "s3", "aws_access_key_id": "k", "aws_secret_key": "s"})),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("aws_secret_key"), "{err}");
}
