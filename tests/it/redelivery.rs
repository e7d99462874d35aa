//! A message the server hands out again while the tunnel still holds it (its lease passed the
//! channel's `ack_timeout` while it waited for a delivery slot) is delivered once, and that one
//! delivery's ack settles the newest lease; a delivery whose lease is about to expire is not
//! started.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Sink, TOKEN, Wcon, admin_get, post, relay, temp_dir};

/// Counts the sink's requests by message id.
fn deliveries_by_id(sink: &Sink) -> HashMap<String, usize> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for r in sink.all() {
        *by_id
            .entry(r.header("x-webhook-message-id").to_string())
            .or_default() += 1;
    }
    by_id
}

/// Waits until the server counts `n` messages delivered, then checks nothing is left.
async fn wait_all_acked(serve: &Wcon, tunnel: &Wcon, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = admin_get(serve, "/channels/c/stats").await;
        if stats["messages_delivered"] == n {
            assert_eq!(
                (
                    stats["messages_queued"].as_u64(),
                    stats["messages_in_flight"].as_u64(),
                    stats["messages_dead_lettered"].as_u64()
                ),
                (Some(0), Some(0), Some(0)),
                "{stats}"
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all acked: {stats}; tunnel: {:#?}",
            tunnel.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    wait_all_acked(&serve, &tunnel, 5).await;
    // Longer than a lease: a copy still queued in the tunnel would be delivered by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let by_id = deliveries_by_id(&sink);
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

/// The connector takes a lease to last its `ack_timeout` (2 s here): the second of two webhooks
/// waits 1.6 s for the one slot, too close to the end of its lease to start, so it is nacked
/// undelivered, comes back, and is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_lease_is_about_to_expire_is_nacked_not_started() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.delay_ms
        .store(1600, std::sync::atomic::Ordering::SeqCst);
    let server = format!("http://{}", serve.addr.unwrap());
    let target = sink.target();
    let mut tunnel = Wcon::run_background_in_env(
        &[
            "tunnel",
            "c",
            "--to",
            &target,
            "--server",
            &server,
            "--concurrency",
            "1",
        ],
        std::path::Path::new("."),
        &[("WCON_TOKEN", TOKEN), ("CONNECTOR_ACK_TIMEOUT", "2")],
    );
    tunnel.wait_for("connected to", Duration::from_secs(20));
    let client = reqwest::Client::new();
    for i in 0..2 {
        let body = format!("[{i}]").into_bytes();
        assert_eq!(
            post(&client, &serve.url("/webhook/w"), body, &[]).await.0,
            200
        );
    }
    tunnel.wait_for("its lease was about to expire", Duration::from_secs(20));
    wait_all_acked(&serve, &tunnel, 2).await;
    let by_id = deliveries_by_id(&sink);
    assert_eq!(by_id.len(), 2, "{by_id:?}");
    assert!(
        by_id.values().all(|n| *n == 1),
        "delivered more than once: {by_id:?}; tunnel: {:#?}",
        tunnel.output()
    );
}
