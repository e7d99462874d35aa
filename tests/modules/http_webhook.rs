//! http_webhook against a local axum server on 127.0.0.1:0: the raw body arrives byte for
//! byte, only the chosen headers are forwarded, statuses map to retry or refusal, and the
//! public receiver's policy refuses loopback unless it is in `allowed_hosts`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::{delivery, module, try_module};
use wcon::modules::NetworkPolicy;

type Seen = (Method, HeaderMap, Bytes);

/// A server answering `/status/{code}` with that code, recording every request.
async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/status/{code}",
            any(
                |State(tx): State<mpsc::UnboundedSender<Seen>>,
                 Path(code): Path<u16>,
                 method: Method,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    tx.send((method, headers, body)).unwrap();
                    StatusCode::from_u16(code).unwrap()
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

#[tokio::test]
async fn sends_the_raw_body_and_the_chosen_headers() {
    let (addr, mut seen) = server().await;
    let hook = module(
        "http_webhook",
        json!({
            "url": format!("http://{addr}/status/200"),
            "method": "PUT",
            "headers": {"X-Static": "yes"},
            "forward_headers": true,
            "allowed_headers": ["X-GitHub-Event", "Host", "Stripe-Signature"],
        }),
        None,
    );
    let mut d = delivery(&json!({}));
    // Odd spacing and key order that a re-serialisation would change.
    d.body = bytes::Bytes::from_static(b"{ \"b\":1,  \"a\" : [2,1] }\n");
    d.headers
        .insert("stripe-signature".into(), "t=1,v1=abc".into());
    d.headers.insert("x-private".into(), "secret".into());
    d.headers.insert("host".into(), "public.example".into());
    d.headers.insert("connection".into(), "close".into());
    hook.deliver(&d).await.unwrap();

    let (method, headers, body) = seen.recv().await.unwrap();
    assert_eq!(method, Method::PUT);
    assert_eq!(&body[..], &d.body[..]);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-github-event"], "push");
    assert_eq!(headers["stripe-signature"], "t=1,v1=abc");
    assert_eq!(headers["x-static"], "yes");
    assert_eq!(headers["x-webhook-message-id"], d.message_id.as_str());
    assert_eq!(headers["x-webhook-id"], "orders");
    assert!(headers.get("x-private").is_none());
    assert_eq!(headers["host"], addr.to_string());

    // Without forward_headers only the content type travels.
    let plain = module(
        "http_webhook",
        json!({"url": format!("http://{addr}/status/204")}),
        None,
    );
    plain.deliver(&d).await.unwrap();
    let (method, headers, body) = seen.recv().await.unwrap();
    assert_eq!(method, Method::POST);
    assert_eq!(&body[..], &d.body[..]);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("x-github-event").is_none());
    assert!(headers.get("stripe-signature").is_none());
}

#[tokio::test]
async fn statuses_and_unreachable_servers_map_to_retry_or_refusal() {
    let (addr, _seen) = server().await;
    let status = |code: u16| {
        module(
            "http_webhook",
            json!({"url": format!("http://{addr}/status/{code}")}),
            None,
        )
    };
    let d = delivery(&json!({"n": 1}));
    assert!(status(500).deliver(&d).await.unwrap_err().is_retryable());
    assert!(status(503).deliver(&d).await.unwrap_err().is_retryable());
    assert!(status(429).deliver(&d).await.unwrap_err().is_retryable());
    let refused = status(400).deliver(&d).await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert!(!status(404).deliver(&d).await.unwrap_err().is_retryable());

    let closed = closed_port().await;
    let down = module(
        "http_webhook",
        json!({"url": format!("http://127.0.0.1:{closed}/"), "timeout": 2}),
        None,
    );
    let err = down.deliver(&d).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let err = try_module(
        "http_webhook",
        json!({"url": "http://a.example/", "methd": "PUT"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("methd"), "{err}");
    let err = try_module(
        "http_webhook",
        json!({"url": "http://a.example/", "method": "DELETE"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("method"), "{err}");
}

#[tokio::test]
async fn the_public_receiver_refuses_loopback_unless_allowed() {
    let (addr, mut seen) = server().await;
    let receiver = NetworkPolicy::Receiver {
        allow_private: false,
    };
    let url = format!("http://{addr}/status/200");
    let d = delivery(&json!({"n": 1}));
    let refused = try_module("http_webhook", json!({"url": url}), None, receiver).unwrap();
    let err = refused.deliver(&d).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("allowed_hosts"),
        "{err}"
    );
    assert!(seen.try_recv().is_err(), "nothing may reach the server");

    let allowed = try_module(
        "http_webhook",
        json!({"url": url, "allowed_hosts": ["127.0.0.1"]}),
        None,
        receiver,
    )
    .unwrap();
    allowed.deliver(&d).await.unwrap();
    assert!(seen.recv().await.is_some());
}

/// A port on 127.0.0.1 that nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
