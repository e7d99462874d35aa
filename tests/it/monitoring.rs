//! Monitoring of the real server: /health, /ready, /metrics, /stats, and JSON log lines.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The value of the Prometheus sample `name{channel="c"}`, if present.
fn sample(text: &str, name: &str, channel: &str) -> Option<f64> {
    let prefix = format!("{name}{{channel=\"{channel}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

async fn scrape(client: &reqwest::Client, serve: &Wcon) -> String {
    let r = client.get(serve.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_ready_metrics_and_stats() {
    let dir = temp_dir();
    let mut webhooks = relay("w", "c", json!({}));
    webhooks["quiet"] = relay("quiet", "c", json!({}))["quiet"].clone();
    let serve = Wcon::serve(
        &webhooks,
        dir.path(),
        &[("STATS_AUTH_TOKEN", "stats-secret-token")],
    );
    let client = reqwest::Client::new();

    let health = client.get(serve.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(
        health,
        json!({"status": "healthy", "buffer": "connected", "channels": 1})
    );
    let ready = client.get(serve.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["config"], "loaded");

    for i in 0..5 {
        let (status, _) = post(
            &client,
            &serve.url("/webhook/w"),
            format!("{{\"n\":{i}}}").into_bytes(),
            &[],
        )
        .await;
        assert_eq!(status, 200);
    }
    // A refused request counts as a request, not as a received message.
    let (status, _) = post(&client, &serve.url("/webhook/w"), b"{".to_vec(), &[]).await;
    assert_eq!(status, 422);

    let text = scrape(&client, &serve).await;
    assert_eq!(
        sample(&text, "webhook_connect_messages_received_total", "c"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "webhook_connect_messages_queued", "c"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "webhook_connect_connections_active", "c"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "webhook_connect_ingest_latency_seconds_count", "c"),
        Some(5.0)
    );

    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    sink.wait_until(Duration::from_secs(30), "5 deliveries", |s| s.count() >= 5)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&client, &serve).await;
        let done = sample(&text, "webhook_connect_messages_delivered_total", "c") == Some(5.0)
            && sample(
                &text,
                "webhook_connect_end_to_end_latency_seconds_count",
                "c",
            ) == Some(5.0);
        if done {
            assert_eq!(
                sample(&text, "webhook_connect_messages_queued", "c"),
                Some(0.0)
            );
            assert_eq!(
                sample(&text, "webhook_connect_connections_active", "c"),
                Some(1.0)
            );
            assert_eq!(
                sample(&text, "webhook_connect_messages_dead_lettered_total", "c"),
                Some(0.0)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered and latency never reached 5:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // /stats: per webhook, with its own token or the admin token, never without one.
    let stats = |token: Option<&'static str>| {
        let mut req = client.get(serve.url("/stats"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(stats(None).await.unwrap().status(), 401);
    assert_eq!(stats(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(
        stats(Some("admin-secret-token")).await.unwrap().status(),
        200
    );
    let body: Value = stats(Some("stats-secret-token"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let w = &body["w"];
    assert_eq!(w["total_requests"], 6, "{body}");
    assert_eq!(w["requests_per_minute"], 6);
    assert_eq!(w["requests_per_hour"], 6);
    assert_eq!(w["requests_per_day"], 6);
    assert!(w["last_request"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["quiet"],
        json!({"total_requests": 0, "requests_per_minute": 0, "requests_per_hour": 0,
               "requests_per_day": 0, "last_request": null})
    );
}

/// The JSON log lines of a process (stderr lines that are JSON objects).
fn json_lines(w: &Wcon) -> Vec<Value> {
    w.output()
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logs_have_one_line_per_accepted_webhook_and_outcome_and_no_bodies() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("w", "c", json!({})),
        dir.path(),
        &[("WCON_LOG_FORMAT", "json")],
    );
    let client = reqwest::Client::new();
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    let mut ids = HashSet::new();
    for i in 0..3 {
        let body = format!("{{\"card\":\"4242-body-secret-{i}\"}}").into_bytes();
        let (status, text) = post(&client, &serve.url("/webhook/w"), body, &[]).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_str(&text).unwrap();
        ids.insert(answer["message_id"].as_str().unwrap().to_string());
    }
    sink.wait_until(Duration::from_secs(30), "3 deliveries", |s| s.count() >= 3)
        .await;
    sink.set_status(400);
    let (status, text) = post(
        &client,
        &serve.url("/webhook/w"),
        b"{\"card\":\"4242-body-secret-dead\"}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let dead_id = serde_json::from_str::<Value>(&text).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = json_lines(&serve);
        let acked: HashSet<String> = lines
            .iter()
            .filter(|l| l["outcome"] == "ack")
            .map(|l| l["message_id"].as_str().unwrap().to_string())
            .collect();
        // The buffer logs the burial before the stream logs the nack that caused it.
        let buried = lines
            .iter()
            .any(|l| l["message"] == "dead lettered" && l["message_id"] == dead_id.as_str());
        let nacked = lines
            .iter()
            .any(|l| l["message"] == "delivery nacked" && l["message_id"] == dead_id.as_str());
        if acked == ids && buried && nacked {
            break lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing outcome lines: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for l in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(l.get(key).is_some(), "no {key} in {l}");
        }
    }
    let accepted: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "webhook accepted")
        .collect();
    assert_eq!(accepted.len(), 4, "one line per accepted webhook");
    for l in &accepted {
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["webhook"], "w");
        assert_eq!(l["channel"], "c");
        assert!(l["message_id"].as_str().unwrap().starts_with("msg_"));
    }
    let acks = lines.iter().filter(|l| l["outcome"] == "ack").count();
    assert_eq!(acks, 3, "one line per ack");
    let nack = lines
        .iter()
        .find(|l| l["message"] == "delivery nacked")
        .expect("a nack line");
    assert_eq!(nack["outcome"], "dead_letter");
    assert_eq!(nack["message_id"], dead_id.as_str());
    let dead = lines
        .iter()
        .find(|l| l["message"] == "dead lettered")
        .unwrap();
    assert_eq!(dead["reason"], "rejected");
    for raw in serve.output() {
        assert!(!raw.contains("body-secret"), "a body in the log: {raw}");
        assert!(!raw.contains(TOKEN), "a channel token in the log: {raw}");
        assert!(
            !raw.contains("admin-secret-token"),
            "the admin token in the log: {raw}"
        );
    }
}
