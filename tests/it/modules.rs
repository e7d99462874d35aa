//! Output modules end to end with the real binaries: module webhooks on `wcon serve`, module
//! mode in `wcon tunnel`, and credential cleanup on both paths.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn log_line(w: &mut Wcon, needle: &str) -> Value {
    let line = w.wait_for(needle, Duration::from_secs(20));
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON log line: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_module_webhook_with_credentials_masked() {
    let dir = temp_dir();
    let webhooks =
        json!({"orders": {"chain": ["log"], "chain-config": {"execution": "sequential"}}});
    let mut serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let client = reqwest::Client::new();
    let body = br#"{"order":"o-1","api_key":"sk_live_123","nested":{"password":"p"}}"#.to_vec();
    let (status, answer) = post(
        &client,
        &serve.url("/webhook/orders"),
        body,
        &[("authorization", "Bearer hunter2".to_string())],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let line = log_line(&mut serve, &format!("\"message_id\":\"{id}\""));
    assert_eq!(line["payload"]["order"], "o-1");
    assert_eq!(line["payload"]["api_key"], "***REDACTED***");
    assert_eq!(line["payload"]["nested"]["password"], "***REDACTED***");
    assert_eq!(line["headers"]["authorization"], "***");
    assert!(
        !serve
            .output()
            .iter()
            .any(|l| l.contains("sk_live_123") || l.contains("hunter2"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_webhook_survives_a_restart_of_serve() {
    let dir = temp_dir();
    let webhooks = json!({"orders": {"module": "log"}});
    let mut serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        &serve.url("/webhook/orders"),
        br#"{"n":1}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    log_line(&mut serve, "\"n\":1");
    let addr = serve.addr.unwrap();
    serve.terminate();
    let mut again = Wcon::serve_again(dir.path(), addr);
    let (status, _) = post(
        &client,
        &again.url("/webhook/orders"),
        br#"{"n":2}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    log_line(&mut again, "\"n\":2");
    assert!(
        !again.output().iter().any(|l| l.contains("\"n\":1")),
        "an acked message is not delivered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_module_mode_delivers_and_dead_letters_unknown_webhooks() {
    let dir = temp_dir();
    let mut webhooks = relay("orders", "c", json!({}));
    webhooks["other"] = relay("other", "c", json!({}))["other"].clone();
    let serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let local = dir.path().join("local-webhooks.json");
    std::fs::write(
        &local,
        json!({"orders": {"module": "log", "credential_cleanup": {"enabled": false}}}).to_string(),
    )
    .unwrap();
    let mut tunnel = Wcon::tunnel_modules("c", serve.addr.unwrap(), &local, dir.path());
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        &serve.url("/webhook/orders"),
        br#"{"order":"o-7","token":"t-1"}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let line = log_line(&mut tunnel, "\"order\":\"o-7\"");
    assert_eq!(
        line["payload"]["token"], "t-1",
        "cleanup disabled in the tunnel's file"
    );
    tunnel.wait_for("ok (log)", Duration::from_secs(10));

    let (status, _) = post(
        &client,
        &serve.url("/webhook/other"),
        br#"{"x":1}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dead = admin_get(&serve, "/channels/c/dead-letters").await;
        if let Some(first) = dead["messages"].as_array().and_then(|d| d.first()) {
            assert_eq!(first["reason"], "rejected", "{dead}");
            assert!(
                first["error"]
                    .as_str()
                    .unwrap()
                    .contains("no entry for webhook `other`"),
                "{dead}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_bodies_are_untouched_unless_apply_to_relay() {
    let dir = temp_dir();
    let mut webhooks = relay("raw", "c", json!({}));
    let mut cleaned = relay("cleaned", "c", json!({}))["cleaned"].clone();
    cleaned["credential_cleanup"] = json!({"apply_to_relay": true});
    webhooks["cleaned"] = cleaned;
    let serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    let body = br#"{"api_key":"k-1","amount":5}"#.to_vec();
    assert_eq!(
        post(&client, &serve.url("/webhook/raw"), body.clone(), &[])
            .await
            .0,
        200
    );
    assert_eq!(
        post(&client, &serve.url("/webhook/cleaned"), body.clone(), &[])
            .await
            .0,
        200
    );
    sink.wait_until(Duration::from_secs(20), "both delivered", |s| {
        s.count() == 2
    })
    .await;
    let all = sink.all();
    let by_id = |id: &str| {
        all.iter()
            .find(|r| r.header("x-webhook-id") == id)
            .unwrap()
            .body
            .clone()
    };
    assert_eq!(by_id("raw"), bytes::Bytes::from(body), "byte for byte");
    let cleaned: Value = serde_json::from_slice(&by_id("cleaned")).unwrap();
    assert_eq!(cleaned, json!({"api_key": "***REDACTED***", "amount": 5}));
}
