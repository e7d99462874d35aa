//! SSE and long-poll end to end, acks over HTTP, and `auto` falling back behind a proxy that
//! refuses WebSocket upgrades (to SSE) and one that breaks SSE too (to long-poll).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Sends `n` signed webhooks to `stripe` and returns their bodies.
async fn send_signed(serve_url: &str, n: i64) -> HashSet<Vec<u8>> {
    let client = reqwest::Client::new();
    let mut sent = HashSet::new();
    for i in 0..n {
        let body =
            format!("{{ \"id\" : \"evt_{i}\",\n \"amount\": 1.50e2, \"note\": \"caf\u{e9}\" }}\n")
                .into_bytes();
        let headers = [
            (
                "stripe-signature",
                stripe_signature("whsec_t", 1_700_000_000 + i, &body),
            ),
            ("x-hub-signature-256", github_signature("whsec_t", &body)),
        ];
        let (status, text) = post(&client, serve_url, body.clone(), &headers).await;
        assert_eq!(status, 200, "{text}");
        sent.insert(body);
    }
    sent
}

/// Checks that `sink` holds exactly `sent`, once each, with signatures that verify.
fn assert_delivered(sink: &Sink, sent: &HashSet<Vec<u8>>) {
    let received = sink.all();
    let bodies: HashSet<Vec<u8>> = received.iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(&bodies, sent, "every body arrives byte for byte");
    let ids: HashSet<&str> = received
        .iter()
        .map(|r| r.header("x-webhook-message-id"))
        .collect();
    assert_eq!(
        ids.len(),
        sent.len(),
        "each message once: {}",
        received.len()
    );
    for r in &received {
        assert_eq!(
            r.header("x-hub-signature-256"),
            github_signature("whsec_t", &r.body)
        );
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
            stripe_signature("whsec_t", t, &r.body)
        );
    }
}

async fn relay_over(protocol: &str) {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("stripe", "payments", serde_json::json!({})),
        dir.path(),
        &[],
    );
    let sink = Sink::start().await;
    let tunnel = Wcon::tunnel(
        "payments",
        serve.addr.unwrap(),
        &sink.target(),
        &["--protocol", protocol],
    );
    let ready = tunnel
        .output()
        .into_iter()
        .find(|l| l.contains("connected to"))
        .unwrap();
    assert!(ready.contains(&format!("({protocol})")), "{ready}");
    let sent = send_signed(&serve.url("/webhook/stripe"), 150).await;
    sink.wait_until(Duration::from_secs(60), "150 deliveries", |s| {
        s.count() >= 150
    })
    .await;
    // Acks arrive over HTTP: the receiver ends with nothing in flight and all delivered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = admin_get(&serve, "/channels/payments/stats").await;
        if stats["messages_delivered"] == 150 && stats["messages_in_flight"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all acked: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_delivered(&sink, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_relay_byte_for_byte_over_sse() {
    relay_over("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_relay_byte_for_byte_over_long_poll() {
    relay_over("long_poll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_stream_names_events_and_ids_and_a_rejected_delivery_dead_letters() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("gh", "builds", serde_json::json!({})),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::new();
    let (status, text) = post(
        &client,
        &serve.url("/webhook/gh"),
        b"{\"n\":1}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let id: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = id["message_id"].as_str().unwrap().to_string();
    // Raw SSE: `connected` first, then the webhook with `id:` = message id.
    let mut response = client
        .get(serve.url("/connect/stream/builds/sse"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    while !text.contains("event: webhook") || !text.ends_with("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: connected\ndata: {"), "{text}");
    assert!(text.contains(&format!("id: {id}\n")), "{text}");
    let in_flight = admin_get(&serve, "/channels/builds/stats").await;
    assert_eq!(in_flight["messages_in_flight"], 1, "{in_flight}");
    // Closing the stream gives the lease back at once.
    drop(response);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = admin_get(&serve, "/channels/builds/stats").await;
        if stats["messages_in_flight"] == 0 && stats["messages_queued"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lease kept: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A connector over SSE whose target answers 400 nacks without retry: a dead letter.
    let sink = Sink::start().await;
    sink.set_status(400);
    let _tunnel = Wcon::tunnel(
        "builds",
        serve.addr.unwrap(),
        &sink.target(),
        &["--protocol", "sse"],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dead = admin_get(&serve, "/channels/builds/dead-letters").await;
        if dead["count"] == 1 {
            assert_eq!(dead["messages"][0]["message_id"], id.as_str());
            assert_eq!(dead["messages"][0]["reason"], "rejected");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_poll_leases_outlive_the_response_and_http_acks_and_nacks_work() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("gh", "builds", serde_json::json!({})),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::new();
    // Bad input: stable codes.
    for query in [
        "timeout=0",
        "timeout=61",
        "max_messages=0",
        "max_messages=101",
        "timeout=x",
    ] {
        let r = client
            .get(serve.url(&format!("/connect/stream/builds/poll?{query}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{query}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_parameter", "{query}");
    }
    let r = client
        .get(serve.url("/connect/stream/builds/poll?timeout=1"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Nothing queued: 204 after the timeout.
    let r = client
        .get(serve.url("/connect/stream/builds/poll?timeout=1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    for n in 0..2 {
        let (status, _) = post(
            &client,
            &serve.url("/webhook/gh"),
            format!("{{\"n\":{n}}}").into_bytes(),
            &[],
        )
        .await;
        assert_eq!(status, 200);
    }
    let r = client
        .get(serve.url("/connect/stream/builds/poll?timeout=5&max_messages=10"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    let connection = answer["connection_id"].as_str().unwrap().to_string();
    let messages = answer["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{answer}");
    assert_eq!(messages[0]["type"], "webhook");
    let first = messages[0]["message_id"].as_str().unwrap().to_string();
    let second = messages[1]["message_id"].as_str().unwrap().to_string();

    // The response is over; the leases are not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = admin_get(&serve, "/channels/builds/stats").await;
    assert_eq!(stats["messages_in_flight"], 2, "{stats}");
    let ack = |message: &str, status: &str, token: &str| {
        client
            .post(serve.url(&format!(
                "/connect/ack?message_id={message}&status={status}"
            )))
            .bearer_auth(token)
            .header("x-connection-id", &connection)
            .send()
    };
    let r = ack(&first, "ack", "wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    let r = ack(&first, "ack", TOKEN).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["message_id"], first.as_str());
    let r = ack(&first, "ack", TOKEN).await.unwrap();
    assert_eq!(r.status(), 404, "a second ack finds nothing in flight");
    // A nack in a JSON body, without retry: a dead letter with its reason.
    let r = client
        .post(serve.url("/connect/ack"))
        .bearer_auth(TOKEN)
        .header("x-connection-id", &connection)
        .json(&serde_json::json!({"message_id": second, "status": "nack", "retry": false, "reason": "bad payload"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dead = admin_get(&serve, "/channels/builds/dead-letters").await;
    assert_eq!(dead["count"], 1, "{dead}");
    assert_eq!(dead["messages"][0]["message_id"], second.as_str());
    assert_eq!(dead["messages"][0]["error"], "bad payload");
    let r = client
        .post(serve.url("/connect/ack"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Status for a token holder.
    let r = client
        .get(serve.url("/connect/status/builds"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["channel"], "builds");
    assert_eq!(status["connected"], true);
    assert_eq!(status["stats"]["messages_delivered"], 1, "{status}");
    assert_eq!(status["stats"]["messages_dead_lettered"], 1, "{status}");
    assert_eq!(status["stats"]["messages_in_flight"], 0, "{status}");
    let r = client
        .get(serve.url("/connect/status/builds"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// A TCP proxy to `upstream` that answers every WebSocket upgrade with 400, and with
/// `refuse_sse` every SSE request with 502 too (as a buffering proxy that breaks streams would).
async fn proxy_refusing_websockets(upstream: SocketAddr, refuse_sse: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let lower = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if lower.contains("upgrade: websocket") {
                    let _ = client
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                if refuse_sse && lower.contains("accept: text/event-stream") {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

async fn auto_behind(refuse_sse: bool, lands_on: &str) {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("stripe", "payments", serde_json::json!({})),
        dir.path(),
        &[],
    );
    let proxy = proxy_refusing_websockets(serve.addr.unwrap(), refuse_sse).await;
    let sink = Sink::start().await;
    let mut tunnel = Wcon::tunnel("payments", proxy, &sink.target(), &["--protocol", "auto"]);
    let ready = tunnel.wait_for("connected to", Duration::from_secs(5));
    assert!(
        ready.contains(&format!("({lands_on})")),
        "{ready}: {:?}",
        tunnel.output()
    );
    assert!(
        tunnel.output().iter().any(|l| l.contains("400")),
        "the refused upgrade is reported: {:?}",
        tunnel.output()
    );
    if refuse_sse {
        assert!(
            tunnel.output().iter().any(|l| l.contains("502")),
            "the broken SSE is reported: {:?}",
            tunnel.output()
        );
    }
    let sent = send_signed(&serve.url("/webhook/stripe"), 50).await;
    sink.wait_until(Duration::from_secs(30), "50 deliveries", |s| {
        s.count() >= 50
    })
    .await;
    assert_delivered(&sink, &sent);
    if !refuse_sse {
        let clients = admin_get(&serve, "/channels/payments").await;
        assert_eq!(
            clients["connected_clients"][0]["protocol"], "sse",
            "{clients}"
        );
    }
    // Every ack got through the proxy too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = admin_get(&serve, "/channels/payments/stats").await;
        if stats["messages_delivered"] == 50 && stats["messages_in_flight"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all acked: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_falls_back_to_sse_behind_a_proxy_that_refuses_websockets() {
    auto_behind(false, "sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_falls_back_to_long_poll_behind_a_proxy_that_also_breaks_sse() {
    auto_behind(true, "long_poll").await;
}
