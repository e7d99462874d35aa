//! The wire frames of the real server, read with a plain WebSocket client, match PROTOCOL.md.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, channel: &str) -> Ws {
    let mut req = format!("ws://{addr}/connect/stream/{channel}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut()
        .insert("x-connector-id", "frames-test".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The next JSON frame of `kind`, skipping others (heartbeats may interleave).
async fn next_of(ws: &mut Ws, kind: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame"))
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_webhook_heartbeat_and_error_frames() {
    let dir = temp_dir();
    let cfg = relay(
        "w",
        "c",
        serde_json::json!({"heartbeat_interval_seconds": 1, "max_in_flight": 7}),
    );
    let serve = Wcon::serve(&cfg, dir.path(), &[]);
    let mut ws = connect(serve.addr.unwrap(), "c").await;

    let connected = next_of(&mut ws, "connected").await;
    assert_eq!(
        keys(&connected),
        set(&[
            "type",
            "connection_id",
            "channel",
            "timestamp",
            "protocol_version",
            "max_in_flight",
            "heartbeat_interval_seconds"
        ])
    );
    assert_eq!(
        (
            connected["channel"].as_str(),
            connected["protocol_version"].as_u64(),
            connected["max_in_flight"].as_u64()
        ),
        (Some("c"), Some(1), Some(7))
    );

    let client = reqwest::Client::new();
    let body = b"{ \"amount\": 10 }".to_vec();
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/w"),
            body.clone(),
            &[("x-custom", "1".into())]
        )
        .await
        .0,
        200
    );
    let webhook = next_of(&mut ws, "webhook").await;
    assert_eq!(
        keys(&webhook),
        set(&[
            "type",
            "message_id",
            "sequence",
            "webhook_id",
            "timestamp",
            "headers",
            "payload",
            "body_b64",
            "delivery_count",
            "expires_at",
            "source_ip"
        ])
    );
    assert_eq!(webhook["webhook_id"], "w");
    assert_eq!(webhook["sequence"], 1);
    assert_eq!(webhook["delivery_count"], 1);
    assert_eq!(webhook["payload"], serde_json::json!({"amount": 10}));
    assert_eq!(webhook["headers"]["x-custom"], "1");
    assert_eq!(webhook["source_ip"], "127.0.0.1");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(webhook["body_b64"].as_str().unwrap())
            .unwrap(),
        body
    );

    let heartbeat = next_of(&mut ws, "heartbeat").await;
    assert_eq!(keys(&heartbeat), set(&["type", "timestamp", "server_time"]));

    // A frame that does not parse is answered, and the connection keeps reading acks.
    ws.send(Message::Text("not json at all".into()))
        .await
        .unwrap();
    let error = next_of(&mut ws, "error").await;
    assert_eq!(keys(&error), set(&["type", "code", "detail"]));
    assert_eq!(error["code"], "invalid_frame");
    ws.send(Message::Text(
        r#"{"type":"ack","message_id":"msg_0000000000000000"}"#.into(),
    ))
    .await
    .unwrap();
    let ack = serde_json::json!({"type": "ack", "message_id": webhook["message_id"]}).to_string();
    ws.send(Message::Text(ack.into())).await.unwrap();
    ws.send(Message::Text(
        r#"{"type":"heartbeat","timestamp":"now"}"#.into(),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin_get(&serve, "/channels/c/stats").await["messages_delivered"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack after a bad frame was not processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_is_redelivered_after_the_ack_timeout() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("w", "c", serde_json::json!({"ack_timeout_seconds": 1})),
        dir.path(),
        &[],
    );
    let mut ws = connect(serve.addr.unwrap(), "c").await;
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, &serve.url("/webhook/w"), b"{}".to_vec(), &[])
            .await
            .0,
        200
    );
    let first = next_of(&mut ws, "webhook").await;
    let started = tokio::time::Instant::now();
    let again = next_of(&mut ws, "webhook").await;
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(again["delivery_count"], 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the ack timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_without_retry_dead_letters_and_a_disconnect_releases_at_once() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let client = reqwest::Client::new();
    let mut ws = connect(serve.addr.unwrap(), "c").await;
    assert_eq!(
        post(&client, &serve.url("/webhook/w"), b"[1]".to_vec(), &[])
            .await
            .0,
        200
    );
    assert_eq!(
        post(&client, &serve.url("/webhook/w"), b"[2]".to_vec(), &[])
            .await
            .0,
        200
    );
    let first = next_of(&mut ws, "webhook").await;
    let second = next_of(&mut ws, "webhook").await;
    let nack = serde_json::json!({"type": "nack", "message_id": first["message_id"], "retry": false, "reason": "bad payload"});
    ws.send(Message::Text(nack.to_string().into()))
        .await
        .unwrap();
    // Drop the connection with `second` unacked: another connection gets it at once.
    drop(ws);
    let mut other = connect(serve.addr.unwrap(), "c").await;
    let redelivered = tokio::time::timeout(Duration::from_secs(5), next_of(&mut other, "webhook"))
        .await
        .unwrap();
    assert_eq!(redelivered["message_id"], second["message_id"]);
    let s = admin_get(&serve, "/channels/c/stats").await;
    assert_eq!(s["messages_dead_lettered"], 1, "{s}");
}
