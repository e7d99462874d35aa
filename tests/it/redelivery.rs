//! A message the server hands out again while the tunnel still holds it (its lease passed the
//! channel's `ack_timeout` while it waited for a delivery slot) is delivered once, and that one
//! delivery's ack settles the newest lease.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Sink, Wcon, admin_get, post, relay, temp_dir};

/// Five webhooks, a one-second lease on the server, one delivery at a time and a target that
/// takes 0.6 s: the last three wait past their lease and the server sends them again.
async fn slow_target_and_short_leases_deliver_each_message_once(protocol: &str) {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("w", "c", serde_json::json!({"ack_timeout_seconds": 1})),
        dir.path(),
        &[],
    );
    let sink = Sink::start().await;
    sink.delay_ms
        .store(600, std::sync::atomic::Ordering::SeqCst);
    let tunnel = Wcon::tunnel(
        "c",
        serve.addr.unwrap(),
        &sink.target(),
        &["--concurrency", "1", "--protocol", protocol],
    );
    let client = reqwest::Client::new();
    for i in 0..5 {
        let body = format!("[{i}]").into_bytes();
        assert_eq!(
            post(&client, &serve.url("/webhook/w"), body, &[]).await.0,
            200
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = admin_get(&serve, "/channels/c/stats").await;
        if stats["messages_delivered"] == 5 {
            assert_eq!(
                (
                    stats["messages_queued"].as_u64(),
                    stats["messages_in_flight"].as_u64(),
                    stats["messages_dead_lettered"].as_u64()
                ),
                (Some(0), Some(0), Some(0)),
                "{stats}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all acked: {stats}; tunnel: {:#?}",
            tunnel.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Longer than a lease: a copy still queued in the tunnel would be delivered by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for r in sink.all() {
        *by_id
            .entry(r.header("x-webhook-message-id").to_string())
            .or_default() += 1;
    }
    assert_eq!(by_id.len(), 5, "{by_id:?}");
    assert!(
        by_id.values().all(|n| *n == 1),
        "delivered more than once: {by_id:?}; tunnel: {:#?}",
        tunnel.output()
    );
    // The scenario really happened: the server did send copies.
    assert!(
        tunnel
            .output()
            .iter()
            .any(|l| l.contains("sent again by the server")),
        "no message was sent twice; the test proves nothing: {:#?}",
        tunnel.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_sent_again_while_waiting_for_a_slot_is_not_delivered_twice_websocket() {
    slow_target_and_short_leases_deliver_each_message_once("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_sent_again_while_waiting_for_a_slot_is_not_delivered_twice_sse() {
    slow_target_and_short_leases_deliver_each_message_once("sse").await;
}
