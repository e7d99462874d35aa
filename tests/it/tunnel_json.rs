//! `wcon tunnel --log-format json`: the tunnel's own lines (connection, attempts, verdicts) are
//! JSON objects, one per line, like its log lines.

use std::time::Duration;

use crate::support::{Sink, Wcon, post, relay, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_format_json_every_tunnel_line_is_a_json_object() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(400);
    let mut tunnel = Wcon::tunnel(
        "c",
        serve.addr.unwrap(),
        &sink.target(),
        &["--log-format", "json"],
    );
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, &serve.url("/webhook/w"), b"[1]".to_vec(), &[])
            .await
            .0,
        200
    );
    tunnel.wait_for("\"not_delivered\"", Duration::from_secs(20));
    let lines: Vec<serde_json::Value> = tunnel
        .output()
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert!(
                v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(),
                "{l}"
            );
            v
        })
        .collect();
    let event = |name: &str| {
        lines
            .iter()
            .find(|v| v["event"] == name)
            .unwrap_or_else(|| panic!("no `{name}` line: {lines:#?}"))
            .clone()
    };
    let connected = event("connected");
    assert_eq!(connected["channel"], "c");
    assert_eq!(connected["protocol"], "websocket");
    assert_eq!(
        connected["server"],
        format!("http://{}", serve.addr.unwrap())
    );
    assert!(
        connected["message"]
            .as_str()
            .unwrap()
            .starts_with("connected to ")
    );
    let message_id = sink.all()[0].header("x-webhook-message-id").to_string();
    let attempt = event("attempt");
    assert_eq!(attempt["channel"], "c");
    assert_eq!(attempt["webhook_id"], "w");
    assert_eq!(attempt["message_id"], message_id.as_str());
    assert_eq!(attempt["status"], 400);
    assert_eq!(attempt["attempt"], 1);
    assert!(attempt["error"].is_null());
    assert!(attempt["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(attempt["level"], "INFO");
    let verdict = event("not_delivered");
    assert_eq!(verdict["message_id"], message_id.as_str());
    assert_eq!(verdict["retry"], false);
    assert_eq!(verdict["reason"], "target answered 400 Bad Request");
    assert_eq!(verdict["level"], "WARN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_log_format_json_in_the_environment_does_the_same() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let server = format!("http://{}", serve.addr.unwrap());
    let args = [
        "tunnel",
        "c",
        "--to",
        "http://127.0.0.1:9",
        "--server",
        &server,
    ];
    let envs = [
        ("WCON_TOKEN", crate::support::TOKEN),
        ("CONNECTOR_LOG_FORMAT", "json"),
    ];
    let mut tunnel = Wcon::spawn(&args, &envs, dir.path());
    tunnel.wait_for("\"event\":\"connected\"", Duration::from_secs(20));
    for line in tunnel.output() {
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    // A value that is neither `text` nor `json` is refused before anything starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
        .args(args)
        .env("CONNECTOR_LOG_FORMAT", "yaml")
        .env("WCON_TOKEN", crate::support::TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("CONNECTOR_LOG_FORMAT must be `text` or `json`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_json_log_format_and_level_are_applied() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("w", "c", serde_json::json!({})), dir.path(), &[]);
    let server = format!("http://{}", serve.addr.unwrap());
    let file = dir.path().join("connector.json");
    let write = |format: &str| {
        std::fs::write(
            &file,
            serde_json::json!({
                "cloud_url": server,
                "channel": "c",
                "token": crate::support::TOKEN,
                "default_target": {"url": "http://127.0.0.1:9"},
                "log_level": "debug",
                "log_format": format,
            })
            .to_string(),
        )
        .unwrap();
    };
    write("json");
    let args = ["tunnel", "--config", file.to_str().unwrap()];
    let mut tunnel = Wcon::spawn(&args, &[], dir.path());
    tunnel.wait_for("\"event\":\"connected\"", Duration::from_secs(20));
    let lines = tunnel.output();
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    // `debug` from the file: the tunnel's own debug lines show (its default level is `warn`).
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "no debug line although connector.json asks for `debug`:\n{}",
        lines.join("\n")
    );
    drop(tunnel);
    // A value that is neither `text` nor `json` is refused, naming where it came from.
    write("yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("connector.json must be `text` or `json`, not `yaml`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
