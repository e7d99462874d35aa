//! websocket against a real tokio-tungstenite server on 127.0.0.1:0: the envelope and raw
//! formats, handshake headers, one kept connection, reconnecting after the peer closed it,
//! waiting for an answer, and the receiver's host policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::http_webhook::closed_port;
use crate::support::{delivery, module, try_module};
use wcon::modules::NetworkPolicy;

#[derive(Clone, Copy)]
enum Peer {
    /// Reads and records every message.
    Listen,
    /// Answers every message with "ok".
    Answer,
    /// Closes the connection after the first message.
    CloseAfterOne,
}

struct Server {
    addr: SocketAddr,
    messages: mpsc::UnboundedReceiver<Message>,
    handshakes: mpsc::UnboundedReceiver<http::HeaderMap>,
    /// One item per connection the server closed after a completed closing handshake.
    closed: mpsc::UnboundedReceiver<()>,
    connections: Arc<AtomicUsize>,
}

async fn server(peer: Peer) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, messages) = mpsc::unbounded_channel();
    let (htx, handshakes) = mpsc::unbounded_channel();
    let (ctx, closed) = mpsc::unbounded_channel();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let (tx, htx, closed) = (tx.clone(), htx.clone(), ctx.clone());
            tokio::spawn(async move {
                // The error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = |request: &Request, response: Response| {
                    htx.send(request.headers().clone()).unwrap();
                    Ok(response)
                };
                let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
                    .await
                    .unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    if !(message.is_text() || message.is_binary()) {
                        continue;
                    }
                    tx.send(message).unwrap();
                    match peer {
                        Peer::Listen => {}
                        Peer::Answer => ws.send(Message::text("ok")).await.unwrap(),
                        Peer::CloseAfterOne => {
                            ws.close(None).await.unwrap();
                            // The closing handshake ends once the client answered the close.
                            while ws.next().await.is_some() {}
                            closed.send(()).unwrap();
                            return;
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        messages,
        handshakes,
        closed,
        connections,
    }
}

async fn next(messages: &mut mpsc::UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), messages.recv())
        .await
        .expect("the server received nothing within 10 s")
        .unwrap()
}

#[tokio::test]
async fn sends_envelopes_over_one_connection_with_handshake_headers() {
    let mut s = server(Peer::Listen).await;
    let ws = module(
        "websocket",
        json!({
            "url": format!("ws://{}/hooks", s.addr),
            "include_headers": true,
            "headers": {"Authorization": "Bearer t0k"},
        }),
        None,
    );
    for n in 0..3 {
        ws.deliver(&delivery(&json!({"n": n}))).await.unwrap();
        let Message::Text(text) = next(&mut s.messages).await else {
            panic!("a JSON envelope is a text message");
        };
        let got: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got["payload"], json!({"n": n}));
        assert_eq!(got["headers"]["x-github-event"], "push");
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    let handshake = s.handshakes.recv().await.unwrap();
    assert_eq!(handshake["authorization"], "Bearer t0k");
}

#[tokio::test]
async fn raw_format_sends_the_body_as_is() {
    let mut s = server(Peer::Listen).await;
    let ws = module(
        "websocket",
        json!({"url": format!("ws://{}/", s.addr), "format": "raw"}),
        None,
    );
    let mut d = delivery(&json!({}));
    d.body = bytes::Bytes::from_static(b"{ \"b\":1,  \"a\":2 }");
    ws.deliver(&d).await.unwrap();
    assert_eq!(next(&mut s.messages).await.into_data(), d.body);

    d.body = bytes::Bytes::from_static(&[0xff, 0x00, 0x01]);
    ws.deliver(&d).await.unwrap();
    let got = next(&mut s.messages).await;
    assert!(got.is_binary());
    assert_eq!(got.into_data(), d.body);
}

#[tokio::test]
async fn reconnects_after_the_peer_closed() {
    let mut s = server(Peer::CloseAfterOne).await;
    let ws = module(
        "websocket",
        json!({"url": format!("ws://{}/", s.addr)}),
        None,
    );
    ws.deliver(&delivery(&json!({"n": 1}))).await.unwrap();
    next(&mut s.messages).await;
    tokio::time::timeout(Duration::from_secs(10), s.closed.recv())
        .await
        .expect("the closing handshake did not finish within 10 s");
    ws.deliver(&delivery(&json!({"n": 2}))).await.unwrap();
    let got: Value = serde_json::from_slice(&next(&mut s.messages).await.into_data()).unwrap();
    assert_eq!(got["payload"]["n"], 2);
    assert_eq!(s.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn wait_for_response_needs_an_answer() {
    let mut answering = server(Peer::Answer).await;
    let ws = module(
        "websocket",
        json!({"url": format!("ws://{}/", answering.addr), "wait_for_response": true}),
        None,
    );
    ws.deliver(&delivery(&json!({"n": 1}))).await.unwrap();
    ws.deliver(&delivery(&json!({"n": 2}))).await.unwrap();
    next(&mut answering.messages).await;

    let mut silent = server(Peer::Listen).await;
    let ws = module(
        "websocket",
        json!({
            "url": format!("ws://{}/", silent.addr),
            "wait_for_response": true, "timeout": 0.5, "max_retries": 0,
        }),
        None,
    );
    let err = ws.deliver(&delivery(&json!({"n": 1}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    next(&mut silent.messages).await;
}

#[tokio::test]
async fn unreachable_refused_and_misconfigured() {
    let port = closed_port().await;
    let ws = module(
        "websocket",
        json!({"url": format!("ws://127.0.0.1:{port}/"), "max_retries": 1, "timeout": 2}),
        None,
    );
    let err = ws.deliver(&delivery(&json!({}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let s = server(Peer::Listen).await;
    let receiver = NetworkPolicy::Receiver {
        allow_private: false,
    };
    let url = format!("ws://{}/", s.addr);
    let refused = try_module("websocket", json!({"url": url}), None, receiver).unwrap();
    let err = refused.deliver(&delivery(&json!({}))).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("allowed_hosts"),
        "{err}"
    );
    assert_eq!(s.connections.load(Ordering::SeqCst), 0);
    let allowed = try_module(
        "websocket",
        json!({"url": url, "allowed_hosts": ["127.0.0.1"]}),
        None,
        receiver,
    )
    .unwrap();
    allowed.deliver(&delivery(&json!({}))).await.unwrap();

    let err = try_module(
        "websocket",
        json!({"url": url, "fromat": "raw"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("fromat"), "{err}");
    let err = try_module(
        "websocket",
        json!({"url": "http://a.example/"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("ws://"), "{err}");
}
