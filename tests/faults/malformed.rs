//! 10,000 malformed inputs (seeded, bounded): raw garbage, truncated JSON, huge headers, wrong
//! types, methods and paths over HTTP, and random, truncated, unknown and mistyped frames over
//! an authenticated WebSocket. The server answers 4xx or error frames only, never crashes,
//! its stream still delivers a good message afterwards, and its memory stays flat.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::rig::{Backend, rss_kib};
use crate::support::TOKEN;

const HTTP_INPUTS: usize = 5_000;
const FRAMES: usize = 5_000;
/// Growth of the serve process's resident memory allowed over the flood, after a warm-up.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn webhooks() -> serde_json::Value {
    serde_json::json!({
        "j": {"module": "webhook_connect", "module-config": {"channel": "c", "channel_token": TOKEN}},
        "f": {"module": "webhook_connect", "data_type": "form",
              "module-config": {"channel": "c", "channel_token": TOKEN}},
        "s": {"module": "webhook_connect", "json_schema": {"type": "object", "required": ["id"],
              "properties": {"id": {"type": "integer"}}},
              "module-config": {"channel": "c", "channel_token": TOKEN}},
    })
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.random_range(1..max);
    (0..len).map(|_| rng.random()).collect()
}

fn valid_json(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..20);
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "\"k{i}\":[{i},\"v{i}\",{{\"x\":null,\"y\":{}}}]",
                i % 2 == 0
            )
        })
        .collect();
    format!(
        "{{\"id\":{},{}}}",
        rng.random_range(0..1000),
        items.join(",")
    )
}

/// Sends raw bytes on a fresh connection; the status the server answered, if any.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// One malformed HTTP input; returns its kind and the status (None: closed without answer).
async fn http_input(
    rng: &mut StdRng,
    client: &reqwest::Client,
    addr: SocketAddr,
) -> (&'static str, Option<u16>) {
    let base = format!("http://{addr}");
    let kind = rng.random_range(0..9);
    let send = |req: reqwest::RequestBuilder| async move {
        match req.send().await {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => panic!("the server dropped a request: {e}"),
        }
    };
    match kind {
        0 => ("raw garbage", raw(addr, &random_bytes(rng, 2048)).await),
        1 => {
            let mut head = format!(
                "POST /webhook/j HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
                rng.random_range(0..100_000)
            )
            .into_bytes();
            head.extend(random_bytes(rng, 512));
            ("truncated request", raw(addr, &head).await)
        }
        2 => {
            let doc = valid_json(rng);
            let cut = rng.random_range(0..doc.len());
            let req = client
                .post(format!("{base}/webhook/j"))
                .header("content-type", "application/json")
                .body(doc[..cut].to_string());
            ("truncated JSON", send(req).await)
        }
        3 => {
            let mut req = client.post(format!("{base}/webhook/j")).body("{}");
            if rng.random_bool(0.5) {
                req = req.header("x-huge", "h".repeat(rng.random_range(9_000..60_000)));
            } else {
                for i in 0..rng.random_range(101..300) {
                    req = req.header(format!("x-many-{i}"), "v");
                }
            }
            ("huge headers", send(req).await)
        }
        4 => {
            let (path, ct, body) = match rng.random_range(0..4) {
                0 => (
                    "/webhook/j",
                    "application/x-www-form-urlencoded",
                    "a=1".to_string(),
                ),
                1 => ("/webhook/f", "application/json", "{}".to_string()),
                2 => (
                    "/webhook/s",
                    "application/json",
                    format!("{{\"id\":\"{}\"}}", rng.random::<u32>()),
                ),
                _ => ("/webhook/s", "application/json", "[1,2,3]".to_string()),
            };
            let req = client
                .post(format!("{base}{path}"))
                .header("content-type", ct)
                .body(body);
            ("wrong type", send(req).await)
        }
        5 => {
            let method = ["GET", "PUT", "DELETE", "PATCH"][rng.random_range(0..4)];
            let req = client.request(method.parse().unwrap(), format!("{base}/webhook/j"));
            ("wrong method", send(req).await)
        }
        6 => {
            let name: String = (0..rng.random_range(1..40))
                .map(|_| char::from(b"abcxyz_-.%0123"[rng.random_range(0..14)]))
                .collect();
            let path = [
                "/webhook/",
                "/connect/stream/",
                "/connect/status/",
                "/admin/webhook-connect/channels/",
            ][rng.random_range(0..4)];
            let req = client
                .post(format!("{base}{path}{name}"))
                .body(random_bytes(rng, 64));
            ("unknown path", send(req).await)
        }
        7 => {
            let bodies = [
                "{\"message_id\":5}".to_string(),
                "{\"message_id\":\"msg_1\",\"retry\":\"maybe\",\"status\":\"nack\"}".to_string(),
                "[]".to_string(),
                String::from_utf8_lossy(&random_bytes(rng, 256)).into_owned(),
            ];
            let body = bodies[rng.random_range(0..bodies.len())].clone();
            let mut req = client.post(format!("{base}/connect/ack")).body(body);
            if rng.random_bool(0.5) {
                req = req
                    .bearer_auth(TOKEN)
                    .header("x-connection-id", "wsc_000000000000");
            }
            ("bad ack", send(req).await)
        }
        _ => {
            let req = client
                .get(format!("{base}/connect/stream/c"))
                .bearer_auth(format!("ch_tok_{}", rng.random::<u64>()));
            ("bad channel token", send(req).await)
        }
    }
}

fn frame(rng: &mut StdRng) -> (&'static str, Message) {
    match rng.random_range(0..10) {
        0 => (
            "random text",
            Message::Text(String::from_utf8_lossy(&random_bytes(rng, 1024)).into_owned().into()),
        ),
        1 => ("binary", Message::Binary(random_bytes(rng, 1024).into())),
        2 => {
            let doc = "{\"type\":\"ack\",\"message_id\":\"msg_0123456789abcdef\"}";
            let cut = rng.random_range(0..doc.len());
            ("truncated JSON", Message::Text(doc[..cut].to_string().into()))
        }
        3 => (
            "unknown type",
            Message::Text(format!("{{\"type\":\"t{}\",\"x\":1}}", rng.random::<u16>()).into()),
        ),
        4 => (
            "ack of an unknown id",
            Message::Text(format!("{{\"type\":\"ack\",\"message_id\":\"msg_{:016x}\"}}", rng.random::<u64>()).into()),
        ),
        5 => (
            "nack of an unknown id",
            Message::Text(format!("{{\"type\":\"nack\",\"message_id\":\"msg_{:016x}\",\"retry\":false,\"reason\":\"x\"}}", rng.random::<u64>()).into()),
        ),
        6 => (
            "wrong field types",
            Message::Text(["{\"type\":\"ack\",\"message_id\":123}", "{\"type\":\"nack\",\"message_id\":\"m\",\"retry\":\"maybe\"}", "{\"type\":7}", "[\"ack\"]", "null", "{\"type\":\"heartbeat\",\"timestamp\":{}}"][rng.random_range(0..6)].into()),
        ),
        7 => {
            let depth = rng.random_range(10..5000);
            ("deep nesting", Message::Text(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into()))
        }
        8 => (
            "large frame",
            Message::Text(format!("{{\"type\":\"ack\",\"message_id\":\"{}\"}}", "m".repeat(rng.random_range(1000..60_000))).into()),
        ),
        _ => ("ping", Message::Ping(random_bytes(rng, 100).into())),
    }
}

async fn connect(addr: SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/connect/stream/c")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

pub async fn flood(backend: Backend) {
    let _alone = crate::rig::ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::to_vec(&webhooks()).unwrap(),
    )
    .unwrap();
    let storage = backend.storage();
    let (mut serve, addr) = tokio::task::block_in_place(|| {
        crate::rig::start_serve(&storage, dir.path(), "127.0.0.1:0")
    });
    let pid = serve.child.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0xbad_1297);
    let mut kinds: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut rss_warm = 0;
    for i in 0..HTTP_INPUTS {
        if i == 1_000 {
            rss_warm = rss_kib(pid);
        }
        let (kind, status) = http_input(&mut rng, &client, addr).await;
        let label = status.map_or("closed".to_string(), |s| s.to_string());
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "input {i} ({kind}) got {label}"
        );
        *kinds.entry(kind).or_default().entry(label).or_default() += 1;
        assert!(
            serve.child.try_wait().unwrap().is_none(),
            "serve died at input {i} ({kind})"
        );
    }

    // Frames on an authenticated stream; a reader keeps what the server sends.
    let ws = connect(addr).await;
    let (mut tx, mut rx) = ws.split();
    let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let (webhook_tx, mut webhook_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(t) = msg else { continue };
                let v: serde_json::Value =
                    serde_json::from_str(t.as_str()).expect("server frames are JSON");
                let kind = v["type"].as_str().unwrap_or("?").to_string();
                *seen.lock().unwrap().entry(kind.clone()).or_default() += 1;
                if kind == "webhook" {
                    let _ = webhook_tx.send(v);
                }
            }
        })
    };
    for i in 0..FRAMES {
        let (kind, msg) = frame(&mut rng);
        tx.send(msg)
            .await
            .unwrap_or_else(|e| panic!("frame {i} ({kind}): the stream broke: {e}"));
        *kinds
            .entry("ws frame")
            .or_default()
            .entry(kind.to_string())
            .or_default() += 1;
    }
    // The stream still works: a good webhook arrives on it and its ack is taken.
    let (status, _) = crate::support::post(
        &client,
        &format!("http://{addr}/webhook/j"),
        b"{\"id\":1}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let webhook = tokio::time::timeout(Duration::from_secs(20), webhook_rx.recv())
        .await
        .expect("a good message still flows after the flood")
        .unwrap();
    let ack = format!(
        "{{\"type\":\"ack\",\"message_id\":{}}}",
        webhook["message_id"]
    );
    tx.send(Message::Text(ack.into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = crate::support::admin_get(&serve, "/channels/c/stats").await;
        if stats["messages_delivered"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack after the flood was not taken: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    for kind in seen.keys() {
        assert!(
            ["connected", "heartbeat", "error", "webhook"].contains(&kind.as_str()),
            "unexpected frame type {kind}: {seen:?}"
        );
    }
    assert!(
        seen.get("error").copied().unwrap_or(0) > 0,
        "bad frames get error frames: {seen:?}"
    );
    drop(tx);
    reader.abort();

    let rss_end = rss_kib(pid);
    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(serve.child.try_wait().unwrap().is_none(), "serve died");
    println!(
        "FAULTS malformed ({backend:?}): {HTTP_INPUTS} HTTP inputs + {FRAMES} frames; RSS {rss_warm} KiB after warm-up, {rss_end} KiB at the end; server frames {seen:?}"
    );
    for (kind, outcomes) in &kinds {
        println!("FAULTS malformed   {kind}: {outcomes:?}");
    }
    assert!(
        rss_end <= rss_warm + RSS_GROWTH_KIB,
        "memory grew from {rss_warm} KiB to {rss_end} KiB"
    );
    serve.kill9();
}
