//! zeromq against real ZeroMQ peers bound in the test (PULL, SUB, REP, ROUTER from the same
//! pure-Rust crate) on 127.0.0.1.

use std::time::Duration;

use ::zeromq::{
    PullSocket, RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage,
};
use serde_json::{Value, json};

use crate::http_webhook::closed_port;
use crate::support::{delivery, module, try_module};
use wcon::modules::NetworkPolicy;

fn json_of(frame: &[u8]) -> Value {
    serde_json::from_slice(frame).unwrap()
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} within 10 s"))
}

#[tokio::test]
async fn push_delivers_the_payload_to_a_pull_socket() {
    let mut pull = PullSocket::new();
    let endpoint = pull.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let push = module(
        "zeromq",
        json!({"endpoint": endpoint, "socket_type": "PUSH"}),
        None,
    );
    for n in 0..3 {
        push.deliver(&delivery(&json!({"n": n}))).await.unwrap();
        let got = within("a message", pull.recv()).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(json_of(got.get(0).unwrap()), json!({"n": n}));
    }
}

#[tokio::test]
async fn pub_reaches_a_subscriber() {
    let mut sub = SubSocket::new();
    sub.subscribe("").await.unwrap();
    let endpoint = sub.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let publisher = module("zeromq", json!({"endpoint": endpoint}), None);
    // PUB drops what is published before the subscription reached it (ZeroMQ's slow joiner):
    // publish until the subscriber has one, within a bounded number of tries.
    let mut received = None;
    for _ in 0..50 {
        publisher
            .deliver(&delivery(&json!({"hello": "sub"})))
            .await
            .unwrap();
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
            received = Some(got.unwrap());
            break;
        }
    }
    let got = received.expect("the subscriber received nothing in 50 tries");
    assert_eq!(json_of(got.get(0).unwrap()), json!({"hello": "sub"}));
}

#[tokio::test]
async fn req_waits_for_the_reply_and_dealer_reaches_a_router() {
    let mut rep = RepSocket::new();
    let endpoint = rep.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let server = tokio::spawn(async move {
        let got = rep.recv().await.unwrap();
        rep.send(ZmqMessage::from("ok")).await.unwrap();
        json_of(got.get(0).unwrap())
    });
    let req = module(
        "zeromq",
        json!({"endpoint": endpoint, "socket_type": "REQ"}),
        None,
    );
    req.deliver(&delivery(&json!({"ask": 1}))).await.unwrap();
    assert_eq!(
        within("the REP peer", server).await.unwrap(),
        json!({"ask": 1})
    );

    let mut router = RouterSocket::new();
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let dealer = module(
        "zeromq",
        json!({"endpoint": endpoint, "socket_type": "dealer"}),
        None,
    );
    dealer
        .deliver(&delivery(&json!({"deal": 2})))
        .await
        .unwrap();
    let got = within("a message", router.recv()).await.unwrap();
    // ROUTER prefixes the sender's identity.
    assert_eq!(json_of(got.get(got.len() - 1).unwrap()), json!({"deal": 2}));
}

#[tokio::test]
async fn unreachable_refused_and_misconfigured() {
    let port = closed_port().await;
    let push = module(
        "zeromq",
        json!({"endpoint": format!("tcp://127.0.0.1:{port}"), "socket_type": "PUSH"}),
        None,
    );
    let err = push.deliver(&delivery(&json!({}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let receiver = NetworkPolicy::Receiver {
        allow_private: false,
    };
    let refused = try_module(
        "zeromq",
        json!({"endpoint": format!("tcp://127.0.0.1:{port}")}),
        None,
        receiver,
    )
    .unwrap();
    let err = refused.deliver(&delivery(&json!({}))).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("allowed_hosts"),
        "{err}"
    );

    for (config, key) in [
        (
            json!({"endpoint": "tcp://127.0.0.1:1", "socket": "PUB"}),
            "socket",
        ),
        (
            json!({"endpoint": "tcp://127.0.0.1:1", "socket_type": "ROUTER"}),
            "socket_type",
        ),
        (json!({"endpoint": "ipc:///tmp/x"}), "endpoint"),
    ] {
        let err = try_module("zeromq", config, None, NetworkPolicy::Tunnel).unwrap_err();
        assert!(err.contains(key), "{err}");
    }
}
