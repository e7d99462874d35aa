//! Ingest hardening through the real server: JSON Schema, rate limits, forms, the global body
//! limit, security headers, CORS, and random input that must never get a 5xx.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::support::*;

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn relay_with(id: &str, extra: Value) -> Value {
    let mut entry = relay(id, "c", json!({}))[id].clone();
    for (k, v) in extra.as_object().unwrap() {
        entry[k] = v.clone();
    }
    json!({ id: entry })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_failures_list_every_path() {
    let dir = temp_dir();
    let schema = json!({"type": "object", "required": ["id"],
        "properties": {"id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}});
    let serve = Wcon::serve(
        &relay_with("w", json!({"json_schema": schema})),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::new();
    let (s, _) = post(
        &client,
        &serve.url("/webhook/w"),
        br#"{"id":"a","amount":1}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = post(
        &client,
        &serve.url("/webhook/w"),
        br#"{"id":5,"amount":-1}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(
        (s, code(&body).as_str()),
        (422, "schema_mismatch"),
        "{body}"
    );
    let errors: Value = serde_json::from_str(&body).unwrap();
    let paths: Vec<&str> = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/id") && paths.contains(&"/amount"),
        "{body}"
    );
    let stats = admin_get(&serve, "/channels/c").await;
    assert_eq!(
        stats["stats"]["messages_queued"], 1,
        "only the valid body was stored: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let dir = temp_dir();
    let mut webhooks = relay_with(
        "limited",
        json!({"rate_limit": {"max_requests": 3, "window_seconds": 60}}),
    );
    webhooks["free"] = relay("free", "c", json!({}))["free"].clone();
    let serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(
            post(&client, &serve.url("/webhook/limited"), b"{}".to_vec(), &[])
                .await
                .0,
            200
        );
    }
    let r = client
        .post(serve.url("/webhook/limited"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(code(&r.text().await.unwrap()), "rate_limited");
    // Another webhook has its own budget.
    assert_eq!(
        post(&client, &serve.url("/webhook/free"), b"{}".to_vec(), &[])
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_are_checked_and_relayed_untouched() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay_with("form", json!({"data_type": "form"})),
        dir.path(),
        &[],
    );
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    let send = |ct: &'static str, body: &'static [u8]| {
        let client = client.clone();
        let url = serve.url("/webhook/form");
        async move {
            let r = client
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    assert_eq!(
        send(
            "application/x-www-form-urlencoded",
            b"a=1&b=caf%C3%A9+au+lait"
        )
        .await
        .0,
        200
    );
    let multipart: &[u8] = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\r\n\x00\x01\xff\r\n--B--\r\n";
    assert_eq!(
        send("multipart/form-data; boundary=B", multipart).await.0,
        200
    );
    let (s, body) = send("application/x-www-form-urlencoded", b"a=%ZZ").await;
    assert_eq!((s, code(&body).as_str()), (422, "invalid_form"));
    let (s, body) = send(
        "multipart/form-data; boundary=B",
        b"--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nno end",
    )
    .await;
    assert_eq!((s, code(&body).as_str()), (422, "invalid_form"));
    sink.wait_until(Duration::from_secs(20), "both forms delivered", |s| {
        s.count() == 2
    })
    .await;
    let bodies = sink.delivered_bodies();
    assert!(bodies.contains(&bytes::Bytes::from_static(b"a=1&b=caf%C3%A9+au+lait")));
    assert!(
        bodies.contains(&bytes::Bytes::from_static(multipart)),
        "multipart relayed byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_body_limit_and_security_headers() {
    let dir = temp_dir();
    let mut webhooks = relay("w", "c", json!({}));
    webhooks["big"] = relay_with("big", json!({"max_body_bytes": 1000}))["big"].clone();
    let serve = Wcon::serve(&webhooks, dir.path(), &[("WCON_MAX_BODY_BYTES", "100")]);
    let client = reqwest::Client::new();
    let body = |n: usize| format!("\"{}\"", "x".repeat(n - 2)).into_bytes();
    assert_eq!(
        post(&client, &serve.url("/webhook/w"), body(100), &[])
            .await
            .0,
        200
    );
    let (s, text) = post(&client, &serve.url("/webhook/w"), body(101), &[]).await;
    assert_eq!((s, code(&text).as_str()), (413, "payload_too_large"));
    assert_eq!(
        post(&client, &serve.url("/webhook/big"), body(500), &[])
            .await
            .0,
        200,
        "a webhook's own limit wins"
    );

    for path in ["/webhook/w", "/webhook/missing", "/health"] {
        let r = if path == "/health" {
            client.get(serve.url(path)).send().await.unwrap()
        } else {
            client
                .post(serve.url(path))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap()
        };
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "CORS is off by default"
        );
    }
    let preflight = client
        .request(reqwest::Method::OPTIONS, serve.url("/webhook/w"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_configured_origins_and_never_a_wildcard() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay("w", "c", json!({})),
        dir.path(),
        &[("WCON_CORS_ORIGINS", "https://app.example.com")],
    );
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, serve.url("/webhook/w"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let refused = Wcon::run(
        &["serve", "--listen", "127.0.0.1:0", "--cors-origin", "*"],
        dir.path(),
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wildcard"));
}

/// Random methods, paths, headers and bodies: the receiver answers every one with 2xx or 4xx,
/// never a 5xx or a dropped connection, and stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_get_a_server_error() {
    let dir = temp_dir();
    let mut webhooks = relay("w", "c", json!({}));
    webhooks["form"] = relay_with("form", json!({"data_type": "form"}))["form"].clone();
    webhooks["blob"] = relay_with("blob", json!({"data_type": "blob"}))["blob"].clone();
    webhooks["signed"] = relay_with("signed", json!({"hmac": {"secret": "s3cret", "header": "X-Hub-Signature-256"},
        "json_schema": {"type": "object"}, "rate_limit": {"max_requests": 50, "window_seconds": 60}}))["signed"].clone();
    let serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let paths = [
        "/webhook/w",
        "/webhook/form",
        "/webhook/blob",
        "/webhook/signed",
        "/webhook/nope",
        "/webhook/ns/w",
        "/webhook/%2e%2e",
        "/webhook/_x",
        "/connect/ack",
        "/admin/webhook-connect/stats",
        "/",
    ];
    let types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zz",
        "multipart/form-data",
        "text/plain",
        "application/octet-stream",
        "",
        "application/json; charset=\u{7f}",
    ];
    for i in 0..300 {
        let path = paths[rng.random_range(0..paths.len())];
        let mut req = client.post(serve.url(path));
        let ct = types[rng.random_range(0..types.len())];
        if !ct.is_empty() {
            req = req.header("content-type", ct.replace('\u{7f}', "x"));
        }
        for _ in 0..rng.random_range(0..12) {
            let name: String = (0..rng.random_range(1..20))
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz-0123456789"[rng.random_range(0..37)])
                })
                .collect();
            let value: String = (0..rng.random_range(0..200))
                .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
                .collect();
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                req = req.header(n, v);
            }
        }
        let body: Vec<u8> = match rng.random_range(0..4) {
            0 => (0..rng.random_range(0..4096))
                .map(|_| rng.random())
                .collect(),
            1 => {
                let depth = rng.random_range(0..80);
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
            }
            2 => br#"{"a":1,"b":[true,null,"x"],"c":{"d":1.5e300}}"#.to_vec(),
            _ => (0..rng.random_range(0..300))
                .map(|_| rng.random_range(0x20u8..0x7f))
                .collect(),
        };
        let r = req
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} to {path} failed: {e}"));
        let status = r.status().as_u16();
        assert!(
            (200..500).contains(&status),
            "request {i} to {path} ({ct}) got {status}"
        );
    }
    let health = client.get(serve.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
