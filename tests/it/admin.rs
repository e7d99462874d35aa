//! The admin API through the real server: dead letters (list, detail, replay, purge), queued
//! and in-flight listings, disconnecting a connection, overview.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

const ADMIN: &str = "/admin/webhook-connect";

async fn admin(
    serve: &Wcon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, serve.url(&format!("{ADMIN}{path}")))
        .bearer_auth("admin-secret-token");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("the admin API answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls an admin GET until `pred` holds.
async fn admin_until(serve: &Wcon, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = admin_get(serve, path).await;
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(serve: &Wcon, body: &str) -> String {
    let (status, text) = post(
        &reqwest::Client::new(),
        &serve.url("/webhook/hook"),
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_message_is_listed_shown_replayed_and_purged() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(400);
    let _tunnel = Wcon::tunnel("ops", serve.addr.unwrap(), &sink.target(), &[]);

    let id = send(&serve, r#"{"order":1}"#).await;
    let list = admin_until(&serve, "/channels/ops/dead-letters", "a dead letter", |v| {
        v["count"] == 1
    })
    .await;
    let listed = &list["messages"][0];
    assert_eq!(listed["message_id"], id.as_str());
    assert_eq!(listed["reason"], "rejected");
    assert!(
        listed["error"].as_str().unwrap().contains("400"),
        "the error names the target's answer: {listed}"
    );

    let (status, detail) = admin(
        &serve,
        reqwest::Method::GET,
        &format!("/channels/ops/dead-letters/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["reason"], "rejected");
    assert_eq!(detail["payload"], json!({"order": 1}));
    assert_eq!(
        detail["body_b64"], "eyJvcmRlciI6MX0=",
        "the raw body, base64"
    );
    assert!(detail["error"].as_str().unwrap().contains("400"));
    let (status, missing) = admin(
        &serve,
        reqwest::Method::GET,
        "/channels/ops/dead-letters/msg_0000000000000000",
        None,
    )
    .await;
    assert_eq!((status, &missing["code"]), (404, &json!("not_found")));

    // The target is fixed: a replay delivers the message once, with attempts counted afresh.
    sink.set_status(200);
    let (status, bad) = admin(
        &serve,
        reqwest::Method::POST,
        "/channels/ops/dead-letters/replay",
        Some(json!({"all": true, "ids": [id]})),
    )
    .await;
    assert_eq!((status, &bad["code"]), (422, &json!("invalid_selection")));
    let (status, replayed) = admin(
        &serve,
        reqwest::Method::POST,
        "/channels/ops/dead-letters/replay",
        Some(json!({"ids": [id]})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], 1);
    sink.wait_until(Duration::from_secs(20), "the replayed delivery", |s| {
        s.all().iter().any(|r| r.status == 200)
    })
    .await;
    let delivered: Vec<Received> = sink.all().into_iter().filter(|r| r.status == 200).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(&delivered[0].body[..], br#"{"order":1}"#);
    assert_eq!(delivered[0].header("x-webhook-message-id"), id);
    assert_eq!(delivered[0].header("x-webhook-attempt"), "1");
    let stats = admin_until(&serve, "/channels/ops/stats", "the ack", |v| {
        v["messages_delivered"] == 1
    })
    .await;
    assert_eq!(stats["messages_dead_lettered"], 0);

    // Purge: two more dead letters, one purged by id, then the rest.
    sink.set_status(400);
    let a = send(&serve, r#"{"order":2}"#).await;
    let b = send(&serve, r#"{"order":3}"#).await;
    admin_until(
        &serve,
        "/channels/ops/dead-letters",
        "two dead letters",
        |v| v["count"] == 2,
    )
    .await;
    let (status, purged) = admin(
        &serve,
        reqwest::Method::DELETE,
        "/channels/ops/dead-letters",
        Some(json!({"ids": [a]})),
    )
    .await;
    assert_eq!((status, &purged["purged"]), (200, &json!(1)), "{purged}");
    let list = admin_get(&serve, "/channels/ops/dead-letters").await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["messages"][0]["message_id"], b.as_str());
    let (status, purged) = admin(
        &serve,
        reqwest::Method::DELETE,
        "/channels/ops/dead-letters",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!((status, &purged["purged"]), (200, &json!(1)));
    assert_eq!(
        admin_get(&serve, "/channels/ops/dead-letters").await["count"],
        0
    );
    assert_eq!(
        admin_get(&serve, "/channels/ops/stats").await["messages_dead_lettered"],
        0
    );
    let (status, _) = admin(
        &serve,
        reqwest::Method::GET,
        &format!("/channels/ops/dead-letters/{a}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "a purged message is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_by_state_disconnect_and_overview() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let queued_id = send(&serve, r#"{"n":1}"#).await;
    let queued = admin_get(&serve, "/channels/ops/messages?state=queued").await;
    assert_eq!(queued["count"], 1);
    let m = &queued["messages"][0];
    assert_eq!(
        (&m["message_id"], &m["webhook_id"], &m["delivery_count"]),
        (&json!(queued_id), &json!("hook"), &json!(0))
    );
    assert!(
        m.get("body").is_none() && m.get("payload").is_none(),
        "no bodies by default"
    );
    let (status, bad) = admin(
        &serve,
        reqwest::Method::GET,
        "/channels/ops/messages?state=lost",
        None,
    )
    .await;
    assert_eq!((status, &bad["code"]), (422, &json!("invalid_state")));

    // A plain WebSocket client that never acks keeps the message in flight.
    let mut req = format!("ws://{}/connect/stream/ops", serve.addr.unwrap())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let in_flight = admin_until(
        &serve,
        "/channels/ops/messages?state=in_flight",
        "a lease",
        |v| v["count"] == 1,
    )
    .await;
    let leased = &in_flight["messages"][0];
    assert_eq!(
        (&leased["message_id"], &leased["delivery_count"]),
        (&json!(queued_id), &json!(1))
    );
    let connection = leased["connection_id"].as_str().unwrap().to_string();
    let detail = admin_get(&serve, "/channels/ops").await;
    assert_eq!(
        detail["connected_clients"][0]["connection_id"],
        connection.as_str()
    );

    let (status, answer) = admin(
        &serve,
        reqwest::Method::DELETE,
        &format!("/channels/ops/connections/{connection}"),
        None,
    )
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("disconnected")),
        "{answer}"
    );
    // Really closed: the socket gets an error frame and then ends.
    let mut saw_error = false;
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = &msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                saw_error |= v["type"] == "error";
            }
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok() && saw_error,
        "the server closed the socket with an error frame"
    );
    // Its lease went back to the queue at once, and the connection is gone.
    admin_until(
        &serve,
        "/channels/ops/messages?state=queued",
        "the released lease",
        |v| v["count"] == 1,
    )
    .await;
    assert_eq!(
        admin_get(&serve, "/channels/ops").await["connected_clients"],
        json!([])
    );
    let (status, _) = admin(
        &serve,
        reqwest::Method::DELETE,
        &format!("/channels/ops/connections/{connection}"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let overview = admin_get(&serve, "/overview").await;
    assert_eq!(overview["total_channels"], 1);
    assert_eq!(overview["health"]["buffer"], true);
    assert_eq!(overview["health"]["buffer_backend"], "embedded");
    assert_eq!(overview["channels"]["ops"]["webhook_id"], "hook");
}
