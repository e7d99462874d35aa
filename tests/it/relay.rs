//! End to end: sender → `wcon serve` → `wcon tunnel` → local app, bodies byte for byte.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_arrive_byte_for_byte_and_signatures_verify() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("stripe", "payments", serde_json::json!({})),
        dir.path(),
        &[],
    );
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("payments", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    let secret = "whsec_test_secret";
    let mut sent = HashSet::new();
    for i in 0..200 {
        // Odd whitespace, key order, number formats and unicode must all survive.
        let body = format!("{{ \"id\" : \"evt_{i}\",\n  \"amount\": 1.50e2, \"note\": \"caf\u{e9} \\u00e9\", \"z\":1 ,\"a\":2 }}\n").into_bytes();
        let headers = [
            (
                "stripe-signature",
                stripe_signature(secret, 1_700_000_000 + i, &body),
            ),
            ("x-hub-signature-256", github_signature(secret, &body)),
        ];
        let (status, text) = post(
            &client,
            &serve.url("/webhook/stripe"),
            body.clone(),
            &headers,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["message"], "200 OK");
        assert!(answer["message_id"].as_str().unwrap().starts_with("msg_"));
        sent.insert(body);
    }
    sink.wait_until(Duration::from_secs(60), "200 deliveries", |s| {
        s.count() >= 200
    })
    .await;
    let received = sink.all();
    let bodies: HashSet<Vec<u8>> = received.iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(bodies, sent, "every body arrives byte for byte");
    for r in &received {
        // The app verifies the signatures exactly as Stripe's and GitHub's libraries do.
        let t: i64 = r
            .header("stripe-signature")
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("t=")
            .parse()
            .unwrap();
        assert_eq!(
            r.header("stripe-signature"),
            stripe_signature(secret, t, &r.body)
        );
        assert_eq!(
            r.header("x-hub-signature-256"),
            github_signature(secret, &r.body)
        );
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-webhook-id"), "stripe");
        assert!(r.header("x-webhook-message-id").starts_with("msg_"));
        assert_eq!(r.header("x-webhook-attempt"), "1");
    }
    let ids: HashSet<&str> = received
        .iter()
        .map(|r| r.header("x-webhook-message-id"))
        .collect();
    assert_eq!(ids.len(), 200, "each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_wait_for_a_connector_and_the_tunnel_prints_each_delivery() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("gh", "builds", serde_json::json!({})),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::new();
    for i in 0..5 {
        let (status, _) = post(
            &client,
            &serve.url("/webhook/gh"),
            format!("{{\"n\":{i}}}").into_bytes(),
            &[],
        )
        .await;
        assert_eq!(status, 200);
    }
    let sink = Sink::start().await;
    let tunnel = Wcon::tunnel("builds", serve.addr.unwrap(), &sink.target(), &[]);
    sink.wait_until(Duration::from_secs(30), "5 queued deliveries", |s| {
        s.count() >= 5
    })
    .await;
    let mut tunnel = tunnel;
    let line = tunnel.wait_for(" 200 ", Duration::from_secs(10));
    assert!(
        line.contains("gh msg_") && line.contains("ms attempt 1"),
        "{line}"
    );
    assert!(
        tunnel.output().iter().any(
            |l| l.starts_with("connected to http://127.0.0.1:") && l.contains("channel builds")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_connectors_share_a_channel() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("w", "shared", serde_json::json!({"max_in_flight": 5})),
        dir.path(),
        &[],
    );
    let sink = Sink::start().await;
    let _a = Wcon::tunnel(
        "shared",
        serve.addr.unwrap(),
        &sink.target(),
        &["--connector-id", "a"],
    );
    let _b = Wcon::tunnel(
        "shared",
        serve.addr.unwrap(),
        &sink.target(),
        &["--connector-id", "b"],
    );
    let client = reqwest::Client::new();
    for i in 0..300 {
        let (status, _) = post(
            &client,
            &serve.url("/webhook/w"),
            format!("{{\"n\":{i}}}").into_bytes(),
            &[],
        )
        .await;
        assert_eq!(status, 200);
    }
    sink.wait_until(Duration::from_secs(60), "300 deliveries", |s| {
        s.count() >= 300
    })
    .await;
    assert_eq!(sink.delivered_bodies().len(), 300);
    let detail: serde_json::Value = client
        .get(serve.url("/admin/webhook-connect/channels/shared"))
        .bearer_auth("admin-secret-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clients = detail["connected_clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    for c in clients {
        assert!(
            c["messages_received"].as_u64().unwrap() > 0,
            "both connectors got messages: {detail}"
        );
    }
    assert_eq!(detail["stats"]["messages_delivered"], 300);
}
