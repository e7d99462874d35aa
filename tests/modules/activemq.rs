//! The activemq module against the real ActiveMQ (5.17) whose STOMP port is
//! `WCON_TEST_ACTIVEMQ_STOMP`; messages are read back by a subscriber speaking raw STOMP 1.2
//! on its own connection.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::support::{delivery, module, service, try_module};
use wcon::modules::NetworkPolicy;

fn address() -> String {
    service("WCON_TEST_ACTIVEMQ_STOMP")
}

fn connection() -> Value {
    let address = address();
    let (host, port) = address.rsplit_once(':').unwrap();
    json!({"type": "activemq", "host": host, "port": port, "user": "wcon", "password": "secret"})
}

/// A destination name no other run or test uses.
fn name(prefix: &str) -> String {
    format!("wcon.{prefix}.{:08x}", rand::random::<u32>())
}

/// One frame: command, headers (unescaped, first wins) and body.
struct Frame {
    command: String,
    headers: HashMap<String, String>,
    body: String,
}

/// STOMP 1.2 header unescaping, one escape at a time.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('c') => ':',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('\\') => '\\',
            other => panic!("undefined escape {other:?} in {s:?}"),
        });
    }
    out
}

/// The test's own STOMP subscriber.
struct Subscriber {
    reader: BufReader<OwnedReadHalf>,
    _writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Subscriber {
    /// Connects and subscribes to `destination`, returning once the broker confirmed it.
    async fn new(destination: &str) -> Self {
        let stream = TcpStream::connect(address()).await.unwrap();
        let (read, mut writer) = stream.into_split();
        writer
            .write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            .await
            .unwrap();
        let frame = format!(
            "SUBSCRIBE\nid:0\ndestination:{destination}\nack:auto\nreceipt:subscribed\n\n\0"
        );
        writer.write_all(frame.as_bytes()).await.unwrap();
        let mut subscriber = Self {
            reader: BufReader::new(read),
            _writer: writer,
        };
        assert_eq!(subscriber.next().await.command, "CONNECTED");
        let receipt = subscriber.next().await;
        assert_eq!(receipt.command, "RECEIPT", "{:?}", receipt.headers);
        subscriber
    }

    /// The next frame, within 10 seconds.
    async fn next(&mut self) -> Frame {
        tokio::time::timeout(Duration::from_secs(10), self.read())
            .await
            .expect("a frame within 10 s")
    }

    async fn read(&mut self) -> Frame {
        let mut raw = Vec::new();
        self.reader.read_until(0, &mut raw).await.unwrap();
        assert_eq!(raw.pop(), Some(0), "the connection ended");
        let text = String::from_utf8(raw).unwrap();
        let text = text.trim_start_matches(['\r', '\n']);
        let (head, body) = text.split_once("\n\n").unwrap();
        let mut lines = head.lines();
        let command = lines.next().unwrap().to_owned();
        let mut headers = HashMap::new();
        for line in lines {
            let (k, v) = line.split_once(':').unwrap();
            headers.entry(unescape(k)).or_insert_with(|| unescape(v));
        }
        Frame {
            command,
            headers,
            body: body.to_owned(),
        }
    }
}

#[tokio::test]
async fn a_queue_receives_the_payload_and_the_request_headers() {
    let queue = name("queue");
    let mut subscriber = Subscriber::new(&format!("/queue/{queue}")).await;
    let m = module(
        "activemq",
        json!({"destination": queue, "destination_type": "queue"}),
        Some(connection()),
    );
    let mut d = delivery(&json!({"event": "order.paid", "note": "a:b\\c"}));
    d.headers.insert("x-odd".into(), "a:b\\c".into());
    // Forwarded, it would turn the message into a binary one of the wrong length.
    d.headers.insert("content-length".into(), "999".into());
    d.headers.insert("expires".into(), "1".into());
    m.deliver(&d).await.unwrap();

    let message = subscriber.next().await;
    assert_eq!(message.command, "MESSAGE");
    let body: Value = serde_json::from_str(&message.body).unwrap();
    assert_eq!(body, d.payload);
    assert_eq!(message.headers["x-github-event"], "push");
    assert_eq!(message.headers["x-odd"], "a:b\\c", "escaped and unescaped");
    assert_eq!(
        message.headers["x-wcon-message-id"],
        d.message_id.to_string()
    );
    assert_eq!(message.headers["persistent"], "true");
    assert_ne!(
        message.headers.get("expires").map(String::as_str),
        Some("1")
    );
    assert_eq!(message.headers["destination"], format!("/queue/{queue}"));

    // The connection is shared: a second message goes over it as well.
    let second = delivery(&json!({"n": 2}));
    m.deliver(&second).await.unwrap();
    let message = subscriber.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&message.body).unwrap(),
        second.payload
    );
}

#[tokio::test]
async fn a_topic_reaches_its_subscriber() {
    let topic = name("topic");
    let mut subscriber = Subscriber::new(&format!("/topic/{topic}")).await;
    let m = module(
        "activemq",
        json!({"destination": topic, "destination_type": "topic"}),
        Some(connection()),
    );
    let d = delivery(&json!({"kind": "topic"}));
    m.deliver(&d).await.unwrap();
    let message = subscriber.next().await;
    assert_eq!(message.command, "MESSAGE");
    assert_eq!(message.headers["destination"], format!("/topic/{topic}"));
    assert_eq!(
        serde_json::from_str::<Value>(&message.body).unwrap(),
        d.payload
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let m = module(
        "activemq",
        json!({"destination": "q"}),
        Some(
            json!({"type": "activemq", "host": "127.0.0.1", "port": port, "password": "hunter22"}),
        ),
    );
    let err = m.deliver(&delivery(&json!({"a": 1}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(!err.to_string().contains("hunter22"), "{err}");
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let build = |config: Value| {
        try_module(
            "activemq",
            config,
            Some(connection()),
            NetworkPolicy::Tunnel,
        )
        .unwrap_err()
    };
    assert!(
        build(json!({"destination": "q", "destination_typ": "topic"})).contains("destination_typ")
    );
    assert!(
        build(json!({"destination": "q", "destination_type": "exchange"})).contains("exchange")
    );
    assert!(build(json!({})).contains("destination"));
    assert!(build(json!({"destination": "a b"})).contains("destination"));
}
