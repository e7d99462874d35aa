//! The clickhouse module against the real ClickHouse (18.16) at `WCON_TEST_CLICKHOUSE_URL`,
//! every row read back with a plain HTTP `SELECT`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{delivery, module, service, try_module};
use wcon::modules::{ModuleError, NetworkPolicy};

fn url() -> String {
    service("WCON_TEST_CLICKHOUSE_URL")
}

fn connection() -> Value {
    json!({"type": "clickhouse", "url": url()})
}

/// A table name no other run or test uses.
fn table(prefix: &str) -> String {
    format!("wcon_{prefix}_{:08x}", rand::random::<u32>())
}

/// Runs `sql` over HTTP as the test's own client; the answer's text.
async fn query(sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(url())
        .body(sql.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {status} {text}");
    text
}

/// The rows of `table` with message id `id`, as JSON objects.
async fn rows(table: &str, id: &str) -> Vec<Value> {
    query(&format!(
        "SELECT id, webhook_id, toString(timestamp) AS timestamp, payload, headers FROM default.{table} WHERE id = '{id}' FORMAT JSONEachRow"
    ))
    .await
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect()
}

#[tokio::test]
async fn stores_one_row_with_payload_headers_and_time() {
    let table = table("ch");
    let m = module("clickhouse", json!({"table": table}), Some(connection()));
    let d =
        delivery(&json!({"event": "order.paid", "amount": 12.5, "note": "ünïcode \"quoted\"\n"}));
    m.deliver(&d).await.unwrap();

    let rows = rows(&table, d.message_id.as_str()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["webhook_id"], "orders");
    assert_eq!(
        row["timestamp"],
        d.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        "the receive time, in UTC"
    );
    let payload: Value = serde_json::from_str(row["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, d.payload);
    let headers: Value = serde_json::from_str(row["headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["x-github-event"], "push");
    let engine = query(&format!(
        "SELECT engine FROM system.tables WHERE database = 'default' AND name = '{table}'"
    ))
    .await;
    assert_eq!(engine.trim(), "MergeTree");
    query(&format!("DROP TABLE default.{table}")).await;
}

#[tokio::test]
async fn headers_and_timestamp_can_be_left_out() {
    let table = table("ch_bare");
    let m = module(
        "clickhouse",
        json!({"table": table, "include_headers": false, "include_timestamp": "false"}),
        Some(
            json!({"type": "clickhouse", "host": "127.0.0.1", "port": url().rsplit(':').next().unwrap()}),
        ),
    );
    let d = delivery(&json!({"a": 1}));
    m.deliver(&d).await.unwrap();
    let rows = rows(&table, d.message_id.as_str()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["headers"], "");
    assert_eq!(rows[0]["timestamp"], "0000-00-00 00:00:00");
    query(&format!("DROP TABLE default.{table}")).await;
}

#[tokio::test]
async fn a_dropped_table_is_created_again() {
    let table = table("ch_drop");
    let m = module("clickhouse", json!({"table": table}), Some(connection()));
    m.deliver(&delivery(&json!({"n": 1}))).await.unwrap();
    query(&format!("DROP TABLE default.{table}")).await;
    let d = delivery(&json!({"n": 2}));
    let err = m.deliver(&d).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    m.deliver(&d).await.unwrap();
    assert_eq!(rows(&table, d.message_id.as_str()).await.len(), 1);
    query(&format!("DROP TABLE default.{table}")).await;
}

#[tokio::test]
async fn a_wrong_password_is_rejected() {
    let m = module(
        "clickhouse",
        json!({"table": table("ch_auth")}),
        Some(json!({"type": "clickhouse", "url": url(), "password": "not-the-password"})),
    );
    let err = m.deliver(&delivery(&json!({"a": 1}))).await.unwrap_err();
    assert!(
        matches!(&err, ModuleError::Rejected(m) if m.contains("401")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let m = module(
        "clickhouse",
        json!({}),
        Some(json!({"type": "clickhouse", "host": "127.0.0.1", "port": port})),
    );
    let err = m.deliver(&delivery(&json!({"a": 1}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[tokio::test]
async fn bad_names_and_keys_are_refused_when_built() {
    let build = |config: Value, connection: Value| {
        try_module(
            "clickhouse",
            config,
            Some(connection),
            NetworkPolicy::Tunnel,
        )
        .unwrap_err()
    };
    let err = build(json!({"table": "logs; DROP TABLE x"}), connection());
    assert!(err.contains("not a valid SQL identifier"), "{err}");
    let err = build(json!({"tabel": "x"}), connection());
    assert!(err.contains("tabel"), "{err}");
    let err = build(json!({}), json!({"type": "clickhouse", "database": "a`b"}));
    assert!(err.contains("database"), "{err}");
    let err = build(
        json!({}),
        json!({"type": "clickhouse", "url": "tcp://ch:9000"}),
    );
    assert!(err.contains("http"), "{err}");
}
