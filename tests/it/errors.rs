//! Bad input gets a clear answer and loses nothing: ingest errors, tokens, full channels, config.

use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_404_413_415_422_with_stable_codes() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let mut webhooks = relay("w", "c", serde_json::json!({}));
    webhooks["small"] = serde_json::json!({"module": "webhook_connect", "max_body_bytes": 64,
        "module-config": {"channel": "c", "channel_token": TOKEN}});
    drop(serve);
    let serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let client = reqwest::Client::new();
    let code = |v: &str| {
        serde_json::from_str::<serde_json::Value>(v).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let (s, body) = post(&client, &serve.url("/webhook/nope"), b"{}".to_vec(), &[]).await;
    assert_eq!((s, code(&body).as_str()), (404, "not_found"));
    let (s, body) = post(&client, &serve.url("/webhook/small"), vec![b' '; 65], &[]).await;
    assert_eq!((s, code(&body).as_str()), (413, "payload_too_large"));
    let (s, body) = post(&client, &serve.url("/webhook/w"), b"{\"a\":".to_vec(), &[]).await;
    assert_eq!((s, code(&body).as_str()), (422, "invalid_json"));
    let deep = format!("{}{}", "[".repeat(60), "]".repeat(60)).into_bytes();
    assert_eq!(
        post(&client, &serve.url("/webhook/w"), deep, &[]).await.0,
        422
    );
    let r = client
        .post(serve.url("/webhook/w"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Nothing refused was stored.
    let stats: serde_json::Value = admin_get(&serve, "/channels/c/stats").await;
    assert_eq!(stats["messages_queued"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_answers_503_with_retry_after_and_drops_nothing() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("w", "c", serde_json::json!({"max_queue_size": 3})),
        dir.path(),
        &[],
    );
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
    let r = client
        .post(serve.url("/webhook/w"))
        .header("content-type", "application/json")
        .body("[3]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "channel_full");
    // Once drained, the channel accepts again; the three accepted ones are all delivered.
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    sink.wait_until(Duration::from_secs(30), "3 deliveries", |s| s.count() >= 3)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if post(&client, &serve.url("/webhook/w"), b"[4]".to_vec(), &[])
            .await
            .0
            == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel never accepted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_channel_token_or_unknown_channel_is_401_before_the_upgrade() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    for (channel, token) in [("c", "wrong-token"), ("unknown", TOKEN)] {
        let url = format!("ws://{}/connect/stream/{channel}", serve.addr.unwrap());
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401)
            }
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
    }
    // The tunnel says what is wrong and keeps retrying.
    let server = format!("http://{}", serve.addr.unwrap());
    let mut tunnel = Wcon::run_background(&[
        "tunnel",
        "c",
        "--to",
        "localhost:9",
        "--server",
        &server,
        "--token",
        "wrong-token",
    ]);
    let line = tunnel.wait_for("refused the channel token", Duration::from_secs(20));
    assert!(line.contains("--token"), "{line}");
    assert!(
        tunnel.child.try_wait().unwrap().is_none(),
        "the tunnel keeps running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_its_token() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let client = reqwest::Client::new();
    let url = serve.url("/admin/webhook-connect/channels");
    assert_eq!(
        client.get(&url).send().await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let list: serde_json::Value = client
        .get(&url)
        .bearer_auth("admin-secret-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list[0]["name"], "c",
        "channels exist from start-up, before any webhook: {list}"
    );
    let health: serde_json::Value = client
        .get(serve.url("/admin/webhook-connect/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
}

#[test]
fn config_errors_name_the_file_the_key_and_the_nearest_key() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("webhooks.json"),
        r#"{"stripe": {"module": "webhook_connect", "module-config": {"channel": "c", "chanel_token": "abcdefgh"}}}"#,
    )
    .unwrap();
    let out = Wcon::run(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhooks.json")
            && err.contains("stripe.module-config.chanel_token")
            && err.contains("did you mean `channel_token`"),
        "{err}"
    );

    std::fs::write(dir.path().join("webhooks.json"), r#"{"s": {"module": "webhook_connect", "module-config": {"channel": "c", "channel_token": "{$WCON_SURELY_UNSET_TOKEN}"}}}"#).unwrap();
    let out = Wcon::run(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`WCON_SURELY_UNSET_TOKEN` is not set"));
}

#[test]
fn config_values_come_from_the_environment_and_are_never_printed() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("webhooks.json"),
        r#"{"s": {"module": "webhook_connect", "module-config": {"channel": "c", "channel_token": "{$WCON_IT_TOKEN}", "ttl_second": 5}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .current_dir(dir.path())
        .env("WCON_IT_TOKEN", "super-secret-value-123")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("did you mean `ttl_seconds`"), "{all}");
    assert!(!all.contains("super-secret-value-123"), "{all}");
}

#[test]
fn quickstart_starts_without_any_config() {
    let dir = temp_dir();
    let mut w = Wcon::run_background_in(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"],
        dir.path(),
    );
    let listening = w.wait_for("listening on http://", Duration::from_secs(20));
    let tunnel = w.wait_for(
        "wcon tunnel default --to localhost:3000",
        Duration::from_secs(5),
    );
    assert!(
        w.output()
            .iter()
            .any(|l| l.contains("curl -X POST") && l.contains("/webhook/default"))
    );
    let token = std::fs::read_to_string(dir.path().join("data/quickstart-token")).unwrap();
    assert!(
        tunnel.contains(&format!("--token {token}"))
            && tunnel.contains(listening.trim_start_matches("listening on "))
    );
}
