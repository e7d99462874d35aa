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
    // Acks travel after the app answered: wait until the server counted all of them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let detail: serde_json::Value = admin_get(&serve, "/channels/shared").await;
        if detail["stats"]["messages_delivered"] == 300 {
            break detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acks missing: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let clients = detail["connected_clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    for c in clients {
        assert!(
            c["messages_received"].as_u64().unwrap() > 0,
            "both connectors got messages: {detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_tunnel_finish_and_ack_deliveries_in_progress() {
    let dir = temp_dir();
    let mut serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.delay_ms
        .store(1500, std::sync::atomic::Ordering::SeqCst);
    let mut tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    for i in 0..3 {
        assert_eq!(
            post(
                &client,
                &serve.url("/webhook/w"),
                format!("[{i}]").into_bytes(),
                &[]
            )
            .await
            .0,
            200
        );
    }
    sink.wait_until(Duration::from_secs(20), "3 deliveries in progress", |s| {
        s.count() >= 3
    })
    .await;
    let status = tunnel.terminate();
    assert!(status.success(), "{status:?}: {:#?}", tunnel.output());
    let stats: serde_json::Value = admin_get(&serve, "/channels/c/stats").await;
    assert_eq!(
        (
            stats["messages_delivered"].as_u64(),
            stats["messages_queued"].as_u64()
        ),
        (Some(3), Some(0)),
        "{stats}"
    );
    assert!(
        serve.terminate().success(),
        "serve stops cleanly on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connector_json_with_variables_and_targets_per_webhook() {
    let dir = temp_dir();
    let mut webhooks = relay("stripe", "c", serde_json::json!({}));
    webhooks["github"] = webhooks["stripe"].clone();
    let serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let (stripe_sink, default_sink) = (Sink::start().await, Sink::start().await);
    let config = serde_json::json!({
        "cloud_url": "http://{$WCON_IT_HOST}:{$WCON_IT_PORT}",
        "channel": "c",
        "token": "{$WCON_IT_TOKEN}",
        "protocol": "websocket",
        "max_concurrent_requests": 4,
        "reconnect_delay": 0.5,
        "max_reconnect_delay": 5,
        "heartbeat_timeout": 90,
        "verify_ssl": true,
        "connector_id": "laptop-1",
        "default_target": {"url": format!("http://{}/default", default_sink.addr), "timeout_seconds": 5},
        "targets": {"stripe": {"url": format!("http://{}/stripe", stripe_sink.addr), "headers": {"X-Env": "test"}}}
    });
    let file = dir.path().join("connector.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let port = serve.addr.unwrap().port().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"));
    cmd.args(["tunnel", "--config", file.to_str().unwrap()])
        .env("WCON_IT_HOST", "127.0.0.1")
        .env("WCON_IT_PORT", &port)
        .env("WCON_IT_TOKEN", TOKEN)
        .env_remove("WCON_TOKEN")
        .env_remove("WCON_SERVER")
        .stderr(std::process::Stdio::null());
    let mut tunnel = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/stripe"),
            b"{\"s\":1}".to_vec(),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/github"),
            b"{\"g\":1}".to_vec(),
            &[]
        )
        .await
        .0,
        200
    );
    stripe_sink
        .wait_until(Duration::from_secs(20), "the stripe delivery", |s| {
            s.count() == 1
        })
        .await;
    default_sink
        .wait_until(Duration::from_secs(20), "the github delivery", |s| {
            s.count() == 1
        })
        .await;
    assert_eq!(stripe_sink.all()[0].header("x-env"), "test");
    assert_eq!(&stripe_sink.all()[0].body[..], b"{\"s\":1}");
    assert_eq!(&default_sink.all()[0].body[..], b"{\"g\":1}");
    let detail: serde_json::Value = admin_get(&serve, "/channels/c").await;
    assert_eq!(detail["connected_clients"][0]["connector_id"], "laptop-1");
    let _ = tunnel.kill();
    let _ = tunnel.wait();
}
