//! What the target answers decides a message's fate: a failing target (5xx) is retried until it
//! recovers, a target that rejects a webhook (4xx) dead-letters it at once with the reason.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_target_is_retried_until_it_recovers() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(500);
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    let mut sent = HashSet::new();
    for i in 0..5 {
        let body = format!("{{\"n\":{i}}}").into_bytes();
        assert_eq!(
            post(&client, &serve.url("/webhook/w"), body.clone(), &[])
                .await
                .0,
            200
        );
        sent.insert(Bytes::from(body));
    }
    // Every message is tried more than once while the target fails.
    sink.wait_until(Duration::from_secs(30), "retries", |s| {
        s.all()
            .iter()
            .filter(|x| x.header("x-webhook-attempt") == "2")
            .count()
            >= 5
    })
    .await;
    sink.set_status(200);
    sink.wait_until(Duration::from_secs(60), "recovery", |s| {
        s.delivered_bodies().len() == 5
    })
    .await;
    assert_eq!(sink.delivered_bodies(), sent);
    let stats: serde_json::Value = admin_get(&serve, "/channels/c/stats").await;
    assert_eq!(stats["messages_dead_lettered"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_answering_400_dead_letters_with_reason_and_status() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(400);
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/w"),
            b"{\"bad\":true}".to_vec(),
            &[]
        )
        .await
        .0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead: serde_json::Value = admin_get(&serve, "/channels/c/dead-letters").await;
        if dead["count"] == 1 {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let m = &dead["messages"][0];
    assert_eq!(m["reason"], "rejected");
    assert!(m["error"].as_str().unwrap().contains("400"), "{m}");
    assert_eq!(m["payload"], serde_json::json!({"bad": true}));
    assert_eq!(sink.count(), 1, "a 4xx is not retried");
}
