//! At-least-once under failure: kill -9 of either side, failing targets.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::support::*;

/// Sends `n` webhooks from 8 concurrent senders; returns the bodies that got 200.
async fn send_many(url: String, n: usize, accepted: Arc<Mutex<HashSet<Bytes>>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (client, url, next, accepted) =
            (client.clone(), url.clone(), next.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let body =
                    format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 64)).into_bytes();
                let (status, _) = post(&client, &url, body.clone(), &[]).await;
                if status == 200 {
                    accepted.lock().unwrap().insert(Bytes::from(body));
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
}

fn missing(accepted: &HashSet<Bytes>, sink: &Sink) -> usize {
    let delivered = sink.delivered_bodies();
    accepted.iter().filter(|b| !delivered.contains(*b)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_the_tunnel_mid_stream_loses_nothing() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let addr = serve.addr.unwrap();
    let sink = Sink::start().await;
    let mut tunnel = Wcon::tunnel("c", addr, &sink.target(), &[]);
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let sending = tokio::spawn(send_many(serve.url("/webhook/w"), 2000, accepted.clone()));
    sink.wait_until(Duration::from_secs(60), "some deliveries", |s| {
        s.count() >= 300
    })
    .await;
    tunnel.kill9();
    let _tunnel = Wcon::tunnel("c", addr, &sink.target(), &[]);
    sending.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.len(),
        2000,
        "every webhook is accepted while only the tunnel dies"
    );
    sink.wait_until(Duration::from_secs(120), "every accepted webhook", |s| {
        missing(&accepted, s) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_serve_mid_stream_loses_nothing_that_got_200() {
    let dir = temp_dir();
    let mut serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let addr = serve.addr.unwrap();
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", addr, &sink.target(), &["--connector-id", "survivor"]);
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let sending = tokio::spawn(send_many(serve.url("/webhook/w"), 2000, accepted.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while accepted.lock().unwrap().len() < 600 {
        assert!(tokio::time::Instant::now() < deadline, "ingest stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    serve.kill9();
    let _serve = Wcon::serve_again(dir.path(), addr);
    sending.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 600, "{}", accepted.len());
    sink.wait_until(
        Duration::from_secs(120),
        "every webhook that got 200",
        |s| missing(&accepted, s) == 0,
    )
    .await;
}

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
