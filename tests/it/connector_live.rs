//! The connector as it runs for a long time: several channels in one process, each with its own
//! health; `/health` and `/metrics`; live reload of connector.json without losing a message;
//! a silent server detected as a dead connection on every transport.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const TOKEN_C: &str = "ch_tok_channel_c_secret";

/// A receiver with webhooks `a`, `b`, `c` relaying to channels `ch-a`, `ch-b` (token TOKEN) and
/// `ch-c` (token TOKEN_C).
fn three_channels(dir: &Path) -> Wcon {
    let mut webhooks = relay("a", "ch-a", json!({}));
    webhooks["b"] = relay("b", "ch-b", json!({}))["b"].clone();
    webhooks["c"] = relay("c", "ch-c", json!({"channel_token": TOKEN_C}))["c"].clone();
    Wcon::serve(&webhooks, dir, &[])
}

async fn send(serve: &Wcon, webhook: &str, tag: &str, n: usize) -> HashSet<Vec<u8>> {
    let client = reqwest::Client::new();
    let mut sent = HashSet::new();
    for i in 0..n {
        let body = format!("{{\"tag\":\"{tag}\",\"n\":{i}}}").into_bytes();
        let (status, text) = post(
            &client,
            &serve.url(&format!("/webhook/{webhook}")),
            body.clone(),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{text}");
        sent.insert(body);
    }
    sent
}

fn bodies(sink: &Sink) -> HashSet<Vec<u8>> {
    sink.delivered_bodies()
        .into_iter()
        .map(|b| b.to_vec())
        .collect()
}

/// The address in a `health and metrics on http://…` line.
fn health_addr(tunnel: &mut Wcon) -> SocketAddr {
    tunnel
        .wait_for("health and metrics on http://", Duration::from_secs(20))
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn get(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until `lines` holds a line containing every needle, and returns it.
fn wait_line(tunnel: &Wcon, needles: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = tunnel
            .output()
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?}: {:#?}",
            tunnel.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_channels_in_one_process_and_a_refused_token_stops_only_its_own() {
    let dir = temp_dir();
    let serve = three_channels(dir.path());
    let (sink_a, sink_b, sink_c) = (
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
    );
    let config = dir.path().join("connector.json");
    let write = |token_c: &str| {
        let doc = json!({
            "cloud": {"url": format!("http://{}", serve.addr.unwrap()), "connector_id": "multi-1"},
            "concurrency": 4,
            "reconnect_delay": 0.2,
            "max_reconnect_delay": 0.5,
            "routes": {
                "ch-a": {"token": TOKEN, "target": sink_a.target()},
                "ch-b": {"token": TOKEN, "target": {"url": sink_b.target(), "timeout_seconds": 5}},
                "ch-c": {"token": token_c, "target": sink_c.target()}
            }
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    };
    write("a-revoked-token");
    let mut tunnel = Wcon::run_background_in_env(
        &[
            "tunnel",
            "--config",
            config.to_str().unwrap(),
            "--health-listen",
            "127.0.0.1:0",
            "--health-down-after",
            "0.5",
        ],
        dir.path(),
        &[],
    );
    let health = health_addr(&mut tunnel);
    wait_line(&tunnel, &["connected to", "ch-a"], Duration::from_secs(20));
    wait_line(&tunnel, &["connected to", "ch-b"], Duration::from_secs(20));
    let refused = wait_line(&tunnel, &["[ch-c]", "error:"], Duration::from_secs(20));
    assert!(refused.contains("refused the channel token"), "{refused}");

    let sent_a = send(&serve, "a", "a", 20).await;
    let sent_b = send(&serve, "b", "b", 20).await;
    let sent_c = send(&serve, "c", "c", 5).await;
    sink_a
        .wait_until(Duration::from_secs(30), "ch-a", |s| s.count() >= 20)
        .await;
    sink_b
        .wait_until(Duration::from_secs(30), "ch-b", |s| s.count() >= 20)
        .await;
    assert_eq!(bodies(&sink_a), sent_a);
    assert_eq!(bodies(&sink_b), sent_b);
    assert_eq!(sink_c.count(), 0, "the refused channel delivers nothing");

    // /health: 503 while ch-c is down longer than the threshold; each channel's state and transport.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, text) = get(format!("http://{health}/health")).await;
    assert_eq!(status, 503, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["channels"]["ch-a"], "connected");
    assert_eq!(body["channels"]["ch-b"], "connected");
    assert_eq!(body["channels"]["ch-c"], "unauthorized");
    assert_eq!(body["transports"]["ch-a"], "websocket");
    // Acks reach the server before the counters are read.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, text) = get(format!("http://{health}/metrics")).await;
        assert_eq!(status, 200);
        if text.contains("webhook_connector_messages_acked_total{channel=\"ch-b\"} 20") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        "webhook_connector_messages_received_total{channel=\"ch-a\"} 20",
        "webhook_connector_messages_acked_total{channel=\"ch-a\"} 20",
        "webhook_connector_connection_status{channel=\"ch-a\"} 1",
        "webhook_connector_connection_status{channel=\"ch-c\"} 0",
        "webhook_connector_processing_latency_seconds_count{channel=\"ch-b\"} 20",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(!metrics.contains(TOKEN_C) && !text.contains(TOKEN));

    // The right token, live: only ch-c reconnects, and its waiting webhooks arrive.
    write(TOKEN_C);
    let reloaded = tunnel.wait_for("reloaded:", Duration::from_secs(20));
    assert!(
        reloaded.contains("reconnecting ch-c") && !reloaded.contains("ch-a"),
        "{reloaded}"
    );
    sink_c
        .wait_until(Duration::from_secs(30), "ch-c after the reload", |s| {
            s.count() >= 5
        })
        .await;
    assert_eq!(bodies(&sink_c), sent_c);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = get(format!("http://{health}/health")).await;
        if status == 200 {
            assert!(text.contains("\"healthy\""), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !tunnel
            .output()
            .iter()
            .any(|l| l.contains(TOKEN_C) || l.contains(TOKEN)),
        "no token in the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_flags_stream_several_channels_with_shared_or_own_tokens() {
    let dir = temp_dir();
    let serve = three_channels(dir.path());
    let (sink_a, sink_c) = (Sink::start().await, Sink::start().await);
    let server = format!("http://{}", serve.addr.unwrap());
    let route_a = format!("ch-a={}", sink_a.target());
    let route_c = format!("ch-c:{TOKEN_C}={}", sink_c.target());
    let tunnel = Wcon::run_background_in_env(
        &[
            "tunnel",
            "--server",
            &server,
            "--route",
            &route_a,
            "--route",
            &route_c,
            "--concurrency",
            "2",
            "--protocol",
            "sse",
        ],
        dir.path(),
        &[("WCON_TOKEN", TOKEN)],
    );
    wait_line(
        &tunnel,
        &["connected to", "ch-a", "(sse)"],
        Duration::from_secs(20),
    );
    wait_line(
        &tunnel,
        &["connected to", "ch-c", "(sse)"],
        Duration::from_secs(20),
    );
    let sent_a = send(&serve, "a", "a", 10).await;
    let sent_c = send(&serve, "c", "c", 10).await;
    sink_a
        .wait_until(Duration::from_secs(30), "ch-a", |s| s.count() >= 10)
        .await;
    sink_c
        .wait_until(Duration::from_secs(30), "ch-c", |s| s.count() >= 10)
        .await;
    assert_eq!(bodies(&sink_a), sent_a);
    assert_eq!(bodies(&sink_c), sent_c);
    // A malformed route is a usage error that says what to write.
    let out = Wcon::run(
        &["tunnel", "--server", &server, "--route", "ch-a"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CHANNEL=TARGET"), "{err}");
    let out = Wcon::run(
        &[
            "tunnel",
            "--server",
            &server,
            "--route",
            "ch-a:sekret-token",
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ch-a:***") && !err.contains("sekret-token"),
        "{err}"
    );
    // `--help` names every CONNECTOR_* variable that is read (etcd ones are refused anyway).
    let help = Wcon::run(&["tunnel", "--help"], dir.path());
    let help = String::from_utf8_lossy(&help.stdout);
    for name in wcon::config::connector::env_names()
        .filter(|n| !n.starts_with("CONNECTOR_ETCD") && *n != "CONNECTOR_NAMESPACE")
    {
        assert!(help.contains(name), "{name} is not in --help");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_target_applies_live_without_losing_a_message_and_a_broken_file_is_refused() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("gh", "builds", json!({})), dir.path(), &[]);
    let (old, new) = (Sink::start().await, Sink::start().await);
    let config = dir.path().join("connector.json");
    let write = |target: &str| {
        let doc = json!({
            "cloud_url": format!("http://{}", serve.addr.unwrap()),
            "channel": "builds",
            "token": TOKEN,
            "max_concurrent_requests": 4,
            "default_target": {"url": target}
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    };
    write(&old.target());
    let mut tunnel = Wcon::run_background_in_env(
        &["tunnel", "--config", config.to_str().unwrap()],
        dir.path(),
        &[],
    );
    tunnel.wait_for("connected to", Duration::from_secs(20));

    // Webhooks flow all along; the reload happens in the middle.
    let sent_count = Arc::new(AtomicUsize::new(0));
    let sender = {
        let url = serve.url("/webhook/gh");
        let sent_count = sent_count.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..300 {
                let body = format!("{{\"n\":{i}}}").into_bytes();
                let (status, text) = post(&client, &url, body, &[]).await;
                assert_eq!(status, 200, "{text}");
                sent_count.store(i + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    old.wait_until(
        Duration::from_secs(30),
        "deliveries before the reload",
        |s| s.count() >= 30,
    )
    .await;
    write(&new.target());
    let reloaded = tunnel.wait_for("reloaded:", Duration::from_secs(20));
    assert!(reloaded.contains("new delivery for builds"), "{reloaded}");
    // Everything sent from now on goes to the new target.
    let sent_before_reload = sent_count.load(Ordering::SeqCst);
    sender.await.unwrap();
    let all: HashSet<Vec<u8>> = (0..300)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<Vec<u8>> = bodies(&old).union(&bodies(&new)).cloned().collect();
        if got == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost {} messages",
            all.len() - got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(new.count() > 0);
    for body in bodies(&old) {
        let n: usize = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["n"]
            .as_u64()
            .unwrap() as usize;
        assert!(
            n < sent_before_reload,
            "message {n} was sent after the reload but went to the old target"
        );
    }
    let stats = admin_get(&serve, "/channels/builds/stats").await;
    assert_eq!(stats["messages_dead_lettered"], 0, "{stats}");

    // A broken file is refused with a clear line; the running configuration keeps delivering.
    std::fs::write(&config, b"{ \"cloud_url\": ").unwrap();
    let refused = tunnel.wait_for("reload refused", Duration::from_secs(20));
    assert!(refused.contains("not valid JSON"), "{refused}");
    let before = new.count();
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        &serve.url("/webhook/gh"),
        b"{\"after\":1}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    new.wait_until(
        Duration::from_secs(20),
        "delivery after a refused reload",
        |s| s.count() > before,
    )
    .await;
}

/// A server that accepts every connection and then says nothing: WebSocket upgrades are
/// accepted, SSE requests get a 200 event stream, polls get nothing. Counts connections.
async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut head = [0u8; 1024];
                let n = socket.peek(&mut head).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
                if text.contains("upgrade: websocket") {
                    let ws = tokio_tungstenite::accept_async(socket).await;
                    // Hold the socket open without a word.
                    let _ws = ws;
                    tokio::time::sleep(Duration::from_secs(120)).await;
                } else {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    if text.contains("/sse") {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                    }
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    drop(socket);
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_server_is_a_dead_connection_on_every_transport() {
    for (protocol, says) in [
        ("websocket", "nothing heard from the server for 1s"),
        ("sse", "nothing heard from the server for 1s"),
        ("long_poll", "no answer to a poll within 2s"),
    ] {
        let (server, accepted) = silent_server().await;
        let server = format!("http://{server}");
        let tunnel = Wcon::run_background_in_env(
            &[
                "tunnel",
                "quiet",
                "--to",
                "127.0.0.1:9",
                "--server",
                &server,
                "--protocol",
                protocol,
            ],
            Path::new("."),
            &[
                ("WCON_TOKEN", TOKEN),
                ("CONNECTOR_HEARTBEAT_TIMEOUT", "1"),
                ("CONNECTOR_RECONNECT_DELAY", "0.1"),
                ("CONNECTOR_MAX_RECONNECT_DELAY", "0.2"),
            ],
        );
        let line = wait_line(&tunnel, &[says], Duration::from_secs(20));
        assert!(line.contains("reconnecting in"), "{protocol}: {line}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while accepted.load(Ordering::SeqCst) < 2 {
            assert!(
                Instant::now() < deadline,
                "{protocol}: no reconnect: {:#?}",
                tunnel.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_reloads_webhooks_json_a_revoked_token_stops_only_its_channel() {
    let dir = temp_dir();
    let mut serve = three_channels(dir.path());
    let (sink_a, sink_b, sink_c) = (
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
    );
    let server = format!("http://{}", serve.addr.unwrap());
    let routes = [
        format!("ch-a={}", sink_a.target()),
        format!("ch-b={}", sink_b.target()),
        format!("ch-c:{TOKEN_C}={}", sink_c.target()),
    ];
    let tunnel = Wcon::run_background_in_env(
        &[
            "tunnel", "--server", &server, "--route", &routes[0], "--route", &routes[1], "--route",
            &routes[2],
        ],
        dir.path(),
        &[
            ("WCON_TOKEN", TOKEN),
            ("CONNECTOR_MAX_RECONNECT_DELAY", "1"),
        ],
    );
    for channel in ["ch-a", "ch-b", "ch-c"] {
        wait_line(&tunnel, &["connected to", channel], Duration::from_secs(20));
    }
    // ch-b's token is rotated on the receiver and webhook `d` (to ch-a) is added, live.
    let mut webhooks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("webhooks.json")).unwrap()).unwrap();
    webhooks["b"]["module-config"]["channel_token"] = json!("ch_tok_rotated_b_secret");
    webhooks["d"] = relay("d", "ch-a", json!({}))["d"].clone();
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::to_vec_pretty(&webhooks).unwrap(),
    )
    .unwrap();
    serve.wait_for("reloaded", Duration::from_secs(20));
    wait_line(
        &tunnel,
        &["[ch-b]", "refused the channel token"],
        Duration::from_secs(20),
    );
    let sent_a = send(&serve, "a", "a", 10).await;
    let sent_d = send(&serve, "d", "d", 5).await;
    let sent_b = send(&serve, "b", "b", 10).await;
    let sent_c = send(&serve, "c", "c", 10).await;
    sink_a
        .wait_until(Duration::from_secs(30), "ch-a", |s| s.count() >= 15)
        .await;
    sink_c
        .wait_until(Duration::from_secs(30), "ch-c", |s| s.count() >= 10)
        .await;
    assert_eq!(bodies(&sink_a), sent_a.union(&sent_d).cloned().collect());
    assert_eq!(bodies(&sink_c), sent_c);
    assert!(
        bodies(&sink_b).is_disjoint(&sent_b),
        "the revoked connector gets nothing sent after the rotation"
    );
    let stats = admin_get(&serve, "/channels/ch-b/stats").await;
    assert_eq!(stats["messages_queued"], 10, "{stats}");

    // A broken file is refused; the running configuration keeps ingesting.
    std::fs::write(dir.path().join("webhooks.json"), b"{\"a\": {\"module\": ").unwrap();
    let refused = serve.wait_for("reload refused", Duration::from_secs(20));
    assert!(refused.contains("not valid JSON"), "{refused}");
    let more = send(&serve, "a", "after", 3).await;
    sink_a
        .wait_until(
            Duration::from_secs(30),
            "ch-a after a refused reload",
            |s| s.count() >= 18,
        )
        .await;
    assert!(bodies(&sink_a).is_superset(&more));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_reloads_a_module_webhook_while_ingesting_without_losing_a_message() {
    let dir = temp_dir();
    let (old, new) = (Sink::start().await, Sink::start().await);
    let webhooks =
        |url: String| json!({"orders": {"module": "http_webhook", "module-config": {"url": url}}});
    let mut serve = Wcon::serve(
        &webhooks(old.target()),
        dir.path(),
        &[("ALLOW_LOCALHOST_FOR_TESTS", "true")],
    );
    let url = serve.url("/webhook/orders");
    let sent_count = Arc::new(AtomicUsize::new(0));
    let sender = {
        let sent_count = sent_count.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..200 {
                let body = format!("{{\"n\":{i}}}").into_bytes();
                let (status, text) = post(&client, &url, body, &[]).await;
                assert_eq!(status, 200, "ingest keeps working during a reload: {text}");
                sent_count.store(i + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    old.wait_until(
        Duration::from_secs(30),
        "deliveries before the reload",
        |s| s.count() >= 20,
    )
    .await;
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::to_vec_pretty(&webhooks(new.target())).unwrap(),
    )
    .unwrap();
    serve.wait_for("reloaded", Duration::from_secs(20));
    let sent_before_reload = sent_count.load(Ordering::SeqCst);
    sender.await.unwrap();
    let all: HashSet<Vec<u8>> = (0..200)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<Vec<u8>> = bodies(&old).union(&bodies(&new)).cloned().collect();
        if got == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost {} messages",
            all.difference(&got).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(new.count() > 0);
    for body in bodies(&old) {
        let n = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["n"]
            .as_u64()
            .unwrap() as usize;
        // The sender is sequential: messages below `sent_before_reload` were answered before
        // the reload was reported, and the next one may have been in flight and taken in
        // under the old configuration. Anything later must go to the new URL.
        assert!(n <= sent_before_reload, "message {n} went to the old URL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_written_with_a_module_delivers_through_it() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("gh", "builds", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    let config = dir.path().join("connector.json");
    let doc = json!({
        "cloud": {"url": format!("ws://{}/connect/stream", serve.addr.unwrap())},
        "concurrency": 2,
        "routes": {
            "builds": {
                "token": TOKEN,
                "chain": [{"module": "http_webhook", "module-config": {"url": sink.target()}}],
                "chain-config": {"execution": "sequential"}
            }
        }
    });
    std::fs::write(&config, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let tunnel = Wcon::run_background_in_env(
        &["tunnel", "--config", config.to_str().unwrap()],
        dir.path(),
        &[],
    );
    wait_line(
        &tunnel,
        &["connected to", "builds"],
        Duration::from_secs(20),
    );
    let sent = send(&serve, "gh", "m", 5).await;
    sink.wait_until(Duration::from_secs(30), "module deliveries", |s| {
        s.count() >= 5
    })
    .await;
    assert_eq!(bodies(&sink), sent);
    // A mistake in the route's module is named by its place in connector.json.
    let bad = json!({
        "cloud": {"url": format!("http://{}", serve.addr.unwrap())},
        "routes": {"builds": {"token": TOKEN, "module": "http_webhook", "module-config": {}}}
    });
    std::fs::write(&config, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
    let out = Wcon::run(
        &["tunnel", "--config", config.to_str().unwrap()],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("routes.builds"), "{err}");
}
