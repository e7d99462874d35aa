//! The `activemq` module: sends each webhook's payload (JSON) to an ActiveMQ queue or topic
//! over STOMP 1.2, and counts it delivered only once the broker's RECEIPT for it arrived.
//!
//! module-config: `destination` (required), `destination_type` "queue" | "topic" (default
//! "queue"), sent to `/queue/<destination>` or `/topic/<destination>`.
//!
//! Connection type `activemq`: `host` "localhost", `port` 61613 (STOMP), `user`, `password`.
//! One STOMP connection per connection name, shared by every webhook that names it; when the
//! broker closes it (or stops sending heart-beats) the next delivery opens a new one.
//!
//! Each message is a `SEND` with `persistent:true`, a `receipt`, `x-wcon-message-id` and
//! `x-wcon-webhook-id`, and the request headers as STOMP headers (escaped as STOMP 1.2 says).
//! Request headers that STOMP or ActiveMQ give a meaning to (`content-length`, `destination`,
//! `receipt`, `expires`, `priority`, `JMS…`, `AMQ…`, …) are left out, so a webhook sender cannot
//! turn a text message into a binary one, delay it or reroute it.
//!
//! The STOMP frames are written and read here, by hand: this module needs only CONNECT, SEND
//! with a receipt, RECEIPT and ERROR, and the crates that exist would bring a second TLS
//! provider (and a copyleft licence) into every build.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::registry::{BuildContext, ModuleSpec};
use super::settings;
use super::{Connections, Delivery, Module, ModuleError};
use crate::secret::Secret;

/// How long opening the connection (TCP and CONNECT/CONNECTED) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to confirm one message.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the broker is asked to send heart-beats, so a dead connection is noticed while
/// idle (and idle connections stay open through NAT).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// The largest frame accepted from the broker (it only sends CONNECTED, RECEIPT and ERROR).
const MAX_FRAME: usize = 1 << 20;
/// Frames waiting for the writer.
const OUTBOX: usize = 256;

/// Request headers never copied onto the STOMP frame: STOMP's own, and those ActiveMQ reads
/// as message settings.
const RESERVED_HEADERS: &[&str] = &[
    "accept-version",
    "ack",
    "content-length",
    "content-type",
    "correlation-id",
    "destination",
    "expires",
    "heart-beat",
    "host",
    "id",
    "login",
    "message",
    "message-id",
    "passcode",
    "persistent",
    "priority",
    "receipt",
    "receipt-id",
    "reply-to",
    "server",
    "session",
    "subscription",
    "transaction",
    "transformation",
    "type",
    "version",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivemqConfig {
    destination: String,
    #[serde(default)]
    destination_type: DestinationType,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DestinationType {
    #[default]
    Queue,
    Topic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivemqConnectionConfig {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port", deserialize_with = "settings::number")]
    port: u16,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<Secret<String>>,
}

fn default_host() -> String {
    "localhost".into()
}

fn default_port() -> u16 {
    61613
}

/// See the module docs.
pub struct ActivemqModule {
    connection: String,
    connections: Arc<Connections>,
    settings: Arc<ActivemqConnectionConfig>,
    /// `/queue/<name>` or `/topic/<name>`.
    destination: String,
}

impl std::fmt::Debug for ActivemqModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivemqModule")
            .field("connection", &self.connection)
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl ActivemqModule {
    /// Checks the config and the connection entry; connects only on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["activemq"])?;
        let settings: ActivemqConnectionConfig = connection.settings()?;
        let config: ActivemqConfig = spec.config()?;
        let name = config.destination.trim();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "module-config.destination `{}` must be a non-empty name without spaces or control characters",
                config.destination
            ));
        }
        // CONNECT headers are not escaped (STOMP 1.2), so a line break would end the header.
        let credentials = [
            settings.user.as_deref().unwrap_or_default(),
            settings
                .password
                .as_ref()
                .map(|p| p.expose().as_str())
                .unwrap_or_default(),
        ];
        if credentials.iter().any(|v| v.contains(['\n', '\r', '\0'])) {
            return Err(format!(
                "connection `{}`: `user` and `password` cannot contain line breaks",
                connection.name
            ));
        }
        let kind = match config.destination_type {
            DestinationType::Queue => "queue",
            DestinationType::Topic => "topic",
        };
        Ok(Self {
            connection: connection.name.clone(),
            connections: ctx.connections.clone(),
            settings: Arc::new(settings),
            destination: format!("/{kind}/{}", name.trim_start_matches('/')),
        })
    }

    async fn client(&self) -> Result<Arc<StompClient>, ModuleError> {
        let settings = self.settings.clone();
        let connect = || async move { StompClient::connect(&settings).await };
        let client = self.connections.client(&self.connection, connect).await?;
        if client.is_open() {
            return Ok(client);
        }
        // The broker closed the shared connection since: open a new one.
        self.connections.forget::<StompClient>(&self.connection);
        let settings = self.settings.clone();
        let connect = || async move { StompClient::connect(&settings).await };
        self.connections.client(&self.connection, connect).await
    }

    /// The STOMP headers of one delivery, after `destination` and `receipt`.
    fn headers(&self, delivery: &Delivery) -> Vec<(String, String)> {
        let mut headers = vec![
            ("persistent".to_owned(), "true".to_owned()),
            (
                "x-wcon-message-id".to_owned(),
                delivery.message_id.to_string(),
            ),
            (
                "x-wcon-webhook-id".to_owned(),
                delivery.webhook_id.to_string(),
            ),
        ];
        headers.extend(
            delivery
                .headers
                .iter()
                .filter(|(name, _)| forwardable(name))
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        headers
    }
}

/// Whether a request header may become a STOMP header.
fn forwardable(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(name.is_empty()
        || RESERVED_HEADERS.contains(&lower.as_str())
        || lower.starts_with("jms")
        || lower.starts_with("amq")
        || lower.starts_with("x-wcon-"))
}

#[async_trait]
impl Module for ActivemqModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let context = || {
            format!(
                "activemq: sending to `{}` via `{}:{}` (connection `{}`)",
                self.destination, self.settings.host, self.settings.port, self.connection
            )
        };
        let client = self.client().await.map_err(|e| e.context(context()))?;
        client
            .send(
                &self.destination,
                &self.headers(delivery),
                delivery.payload_json().as_bytes(),
            )
            .await
            .map_err(|e| e.context(context()))
    }
}

// ---------------------------------------------------------------- the STOMP connection

/// What the reader and the senders share.
#[derive(Default)]
struct State {
    /// False once the connection is gone; nothing waits on it any more.
    closed: bool,
    /// Receipt id → the delivery waiting for it.
    pending: HashMap<String, oneshot::Sender<Result<(), ModuleError>>>,
}

impl State {
    /// Marks the connection gone and fails every waiting delivery.
    fn close(&mut self, why: &str) {
        self.closed = true;
        for (_, waiter) in self.pending.drain() {
            let _ = waiter.send(Err(ModuleError::retryable(why)));
        }
    }
}

/// One STOMP connection: a writer task that writes whole frames (a cancelled delivery never
/// leaves half a frame behind) and a reader task that hands each RECEIPT to its delivery.
struct StompClient {
    outbox: mpsc::Sender<Vec<u8>>,
    state: Arc<Mutex<State>>,
    next_receipt: AtomicU64,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for StompClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl StompClient {
    async fn connect(settings: &ActivemqConnectionConfig) -> Result<Self, ModuleError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::handshake(settings))
            .await
            .map_err(|_| ModuleError::retryable("connecting timed out"))?
    }

    async fn handshake(settings: &ActivemqConnectionConfig) -> Result<Self, ModuleError> {
        let stream = TcpStream::connect((settings.host.as_str(), settings.port))
            .await
            .map_err(|e| ModuleError::retryable(format_args!("cannot connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let heartbeat = format!("0,{}", HEARTBEAT.as_millis());
        let mut headers = vec![
            ("accept-version", "1.2"),
            ("host", settings.host.as_str()),
            ("heart-beat", heartbeat.as_str()),
        ];
        if let Some(user) = &settings.user {
            headers.push(("login", user.as_str()));
        }
        if let Some(password) = &settings.password {
            headers.push(("passcode", password.expose()));
        }
        write
            .write_all(&encode("CONNECT", &headers, b"", false))
            .await
            .map_err(|e| ModuleError::retryable(format_args!("cannot send CONNECT: {e}")))?;
        let reply = read_frame(&mut reader, None)
            .await
            .map_err(|e| ModuleError::retryable(format_args!("no CONNECTED: {e}")))?;
        let heartbeat = match reply.command.as_str() {
            "CONNECTED" if reply.header("version") == Some("1.2") => {
                server_heartbeat(reply.header("heart-beat"))
            }
            "CONNECTED" => {
                return Err(ModuleError::rejected(format_args!(
                    "the broker speaks STOMP {}, not 1.2",
                    reply.header("version").unwrap_or("1.0")
                )));
            }
            // Refused credentials, most likely: trying again will not help.
            "ERROR" => return Err(ModuleError::rejected(reply.error_text())),
            other => {
                return Err(ModuleError::retryable(format_args!(
                    "expected CONNECTED, got {other}"
                )));
            }
        };
        let state = Arc::new(Mutex::new(State::default()));
        let (outbox, mut frames) = mpsc::channel::<Vec<u8>>(OUTBOX);
        let writer_state = state.clone();
        let writer = tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if let Err(e) = write.write_all(&frame).await {
                    lock(&writer_state).close(&format!("connection lost while sending: {e}"));
                    return;
                }
            }
        });
        let reader_state = state.clone();
        let reader = tokio::spawn(read_loop(reader, reader_state, heartbeat));
        Ok(Self {
            outbox,
            state,
            next_receipt: AtomicU64::new(1),
            tasks: [writer, reader],
        })
    }

    fn is_open(&self) -> bool {
        !lock(&self.state).closed
    }

    /// Sends one message and waits for the broker's receipt.
    async fn send(
        &self,
        destination: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), ModuleError> {
        let receipt = format!("wcon-{}", self.next_receipt.fetch_add(1, Ordering::Relaxed));
        let mut all: Vec<(&str, &str)> = vec![("destination", destination), ("receipt", &receipt)];
        all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let frame = encode("SEND", &all, body, true);
        let (done, confirmed) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            if state.closed {
                return Err(ModuleError::retryable("the connection is closed"));
            }
            state.pending.insert(receipt.clone(), done);
        }
        if self.outbox.send(frame).await.is_err() {
            lock(&self.state).close("the connection is closed");
        }
        match tokio::time::timeout(RECEIPT_TIMEOUT, confirmed).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ModuleError::retryable(
                "the connection closed before the receipt",
            )),
            Err(_) => {
                // A broker that does not answer in time is not trusted with the next message
                // either: the next delivery opens a new connection.
                lock(&self.state).close("no receipt in time");
                Err(ModuleError::retryable(format_args!(
                    "no RECEIPT within {}s",
                    RECEIPT_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().expect("stomp state poisoned")
}

/// The interval at which the broker promised heart-beats (`sx` of its `sx,sy`, when we asked
/// for them), if any.
fn server_heartbeat(header: Option<&str>) -> Option<Duration> {
    let sx: u64 = header?.split(',').next()?.trim().parse().ok()?;
    (sx > 0).then(|| Duration::from_millis(sx).max(HEARTBEAT))
}

/// Reads frames until the connection ends, resolving receipts.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: BufReader<R>,
    state: Arc<Mutex<State>>,
    heartbeat: Option<Duration>,
) {
    // The spec asks receivers to allow for network delay; ActiveMQ's first beat comes only
    // after two intervals.
    let idle = heartbeat.map(|interval| interval * 3);
    let why = loop {
        let frame = match read_frame(&mut reader, idle).await {
            Ok(frame) => frame,
            Err(e) => break format!("connection lost: {e}"),
        };
        match frame.command.as_str() {
            "RECEIPT" => {
                let waiter = frame
                    .header("receipt-id")
                    .and_then(|id| lock(&state).pending.remove(id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Ok(()));
                }
            }
            "ERROR" => {
                let text = frame.error_text();
                let waiter = frame
                    .header("receipt-id")
                    .and_then(|id| lock(&state).pending.remove(id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Err(error_kind(&text)));
                }
                // The broker closes the connection after an ERROR.
                break format!("the broker sent an error and closed the connection: {text}");
            }
            _ => {}
        }
    };
    lock(&state).close(&why);
}

/// Whether an ERROR about one message is worth retrying: refused permissions and invalid
/// destinations are not; anything else (a full store, a broker shutting down) may pass.
fn error_kind(text: &str) -> ModuleError {
    let lower = text.to_ascii_lowercase();
    if ["securityexception", "not authorized", "invalid"]
        .iter()
        .any(|word| lower.contains(word))
    {
        ModuleError::rejected(format_args!("the broker refused the message: {text}"))
    } else {
        ModuleError::retryable(format_args!("the broker refused the message: {text}"))
    }
}

// ---------------------------------------------------------------- frames

/// A frame read from the broker.
#[derive(Debug)]
struct Frame {
    command: String,
    /// In order; the first of repeated names counts (STOMP 1.2).
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An ERROR's `message` header and the start of its body.
    fn error_text(&self) -> String {
        let message = self.header("message").unwrap_or("error");
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.trim().chars().take(300).collect();
        if body.is_empty() {
            message.to_owned()
        } else {
            format!("{message} ({body})")
        }
    }
}

/// Writes a frame. Header names and values are escaped unless `escape` is false (CONNECT and
/// CONNECTED are not escaped). The body must not contain NUL: there is no `content-length`,
/// which would make ActiveMQ deliver a binary message instead of a text one.
fn encode(command: &str, headers: &[(&str, &str)], body: &[u8], escape: bool) -> Vec<u8> {
    debug_assert!(
        !body.contains(&0),
        "a body without content-length cannot hold NUL"
    );
    let mut out = Vec::with_capacity(command.len() + body.len() + 64 * (headers.len() + 1));
    out.extend_from_slice(command.as_bytes());
    out.push(b'\n');
    for (name, value) in headers {
        push_header_part(&mut out, name, escape);
        out.push(b':');
        push_header_part(&mut out, value, escape);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
    out
}

fn push_header_part(out: &mut Vec<u8>, text: &str, escape: bool) {
    for &byte in text.as_bytes() {
        match byte {
            b'\\' if escape => out.extend_from_slice(b"\\\\"),
            b'\n' if escape => out.extend_from_slice(b"\\n"),
            b'\r' if escape => out.extend_from_slice(b"\\r"),
            b':' if escape => out.extend_from_slice(b"\\c"),
            byte => out.push(byte),
        }
    }
}

/// Reverses the STOMP 1.2 header escapes; an undefined escape is an error.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            other => {
                return Err(format!(
                    "undefined header escape `\\{}`",
                    other.unwrap_or(' ')
                ));
            }
        }
    }
    Ok(out)
}

/// Waits for `read`, for at most `idle` when given.
async fn within<T>(
    idle: Option<Duration>,
    read: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match idle {
        Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| {
            format!(
                "nothing from the broker for {} ms, not even a heart-beat",
                limit.as_millis()
            )
        })?,
        None => read.await,
    }
}

/// Reads one frame, skipping the heart-beat line breaks before it. With `idle`, the broker
/// must send something (a heart-beat will do) at least that often.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    idle: Option<Duration>,
) -> Result<Frame, String> {
    let mut line = Vec::new();
    let command = loop {
        line.clear();
        within(idle, read_line(reader, &mut line)).await?;
        if !line.is_empty() {
            break String::from_utf8(line.clone()).map_err(|_| "a command is not UTF-8")?;
        }
    };
    let escaped = command != "CONNECTED";
    let mut headers = Vec::new();
    let mut size = command.len();
    loop {
        line.clear();
        within(idle, read_line(reader, &mut line)).await?;
        if line.is_empty() {
            break;
        }
        size += line.len();
        if size > MAX_FRAME {
            return Err("frame too large".into());
        }
        let text = std::str::from_utf8(&line).map_err(|_| "a header is not UTF-8")?;
        let (name, value) = text.split_once(':').ok_or("a header without `:`")?;
        let (name, value) = if escaped {
            (unescape(name)?, unescape(value)?)
        } else {
            (name.to_owned(), value.to_owned())
        };
        headers.push((name, value));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| "a bad content-length")
        })
        .transpose()?;
    let body = match length {
        Some(length) if length > MAX_FRAME => return Err("frame too large".into()),
        Some(length) => {
            let mut body = vec![0; length + 1];
            within(idle, async {
                reader
                    .read_exact(&mut body)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
            if body.pop() != Some(0) {
                return Err("a frame does not end with NUL".into());
            }
            body
        }
        None => {
            let mut body = Vec::new();
            let limit = (MAX_FRAME + 1) as u64;
            within(idle, async {
                (&mut *reader)
                    .take(limit)
                    .read_until(0, &mut body)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
            if body.pop() != Some(0) {
                return Err(
                    "the connection ended inside a frame, or the frame is too large".into(),
                );
            }
            body
        }
    };
    Ok(Frame {
        command,
        headers,
        body,
    })
}

/// Reads a line without its `\n` or `\r\n`; the end of the stream is an error.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> Result<(), String> {
    let limit = (MAX_FRAME + 1) as u64;
    let read = (&mut *reader)
        .take(limit)
        .read_until(b'\n', line)
        .await
        .map_err(|e| e.to_string())?;
    if read == 0 {
        return Err("the broker closed the connection".into());
    }
    if line.pop() != Some(b'\n') {
        return Err("the connection ended inside a frame, or a line is too long".into());
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;
    use tokio::net::TcpListener;

    #[test]
    fn headers_are_escaped_and_unescaped() {
        let frame = encode("SEND", &[("a:b", "x\\y\nz\r:")], b"{}", true);
        assert_eq!(frame, b"SEND\na\\cb:x\\\\y\\nz\\r\\c\n\n{}\0");
        assert_eq!(unescape("x\\\\y\\nz\\r\\c").unwrap(), "x\\y\nz\r:");
        assert!(unescape("bad\\t").is_err());
        let connect = encode("CONNECT", &[("passcode", "a:b")], b"", false);
        assert_eq!(connect, b"CONNECT\npasscode:a:b\n\n\0");
    }

    #[tokio::test]
    async fn frames_are_read_after_heartbeats_with_or_without_length() {
        let wire: &[u8] = b"\n\r\nRECEIPT\nreceipt-id:wcon-1\n\n\0\nERROR\nmessage:bad\\cthing\ncontent-length:4\n\nab\0c\0";
        let mut reader = BufReader::new(wire);
        let receipt = read_frame(&mut reader, None).await.unwrap();
        assert_eq!(receipt.command, "RECEIPT");
        assert_eq!(receipt.header("receipt-id"), Some("wcon-1"));
        let error = read_frame(&mut reader, None).await.unwrap();
        assert_eq!(error.header("message"), Some("bad:thing"));
        assert_eq!(error.body, b"ab\0c");
        assert!(
            read_frame(&mut reader, None).await.is_err(),
            "the stream ended"
        );
    }

    #[test]
    fn request_headers_that_steer_the_broker_are_not_forwarded() {
        for name in [
            "content-length",
            "destination",
            "expires",
            "JMSXGroupID",
            "amq_scheduled_delay",
            "receipt",
            "x-wcon-message-id",
        ] {
            assert!(!forwardable(name), "{name}");
        }
        assert!(forwardable("x-github-event"));
    }

    #[tokio::test]
    async fn heart_beats_keep_an_idle_connection_and_silence_ends_it() {
        let (ours, mut broker) = tokio::io::duplex(64);
        let state = Arc::new(Mutex::new(State::default()));
        let interval = Duration::from_millis(50);
        let reader = tokio::spawn(read_loop(
            BufReader::new(ours),
            state.clone(),
            Some(interval),
        ));
        // Ten intervals of heart-beats and no frame: still open.
        for _ in 0..10 {
            broker.write_all(b"\n").await.unwrap();
            tokio::time::sleep(interval).await;
        }
        assert!(!lock(&state).closed);
        // Then silence: closed after three intervals.
        tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .unwrap()
            .unwrap();
        assert!(lock(&state).closed);
    }

    /// A broker that confirms one SEND per connection, then hangs up.
    async fn one_shot_broker() -> (u16, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut reader = BufReader::new(read);
                    let connect = read_frame(&mut reader, None).await.unwrap();
                    assert_eq!(connect.command, "CONNECT");
                    write
                        .write_all(b"CONNECTED\nversion:1.2\n\n\0")
                        .await
                        .unwrap();
                    let send = read_frame(&mut reader, None).await.unwrap();
                    assert_eq!(send.header("persistent"), Some("true"));
                    let receipt = send.header("receipt").unwrap();
                    let reply = format!("RECEIPT\nreceipt-id:{receipt}\n\n\0");
                    write.write_all(reply.as_bytes()).await.unwrap();
                });
            }
        });
        (port, connections)
    }

    #[tokio::test]
    async fn a_closed_connection_is_replaced_on_the_next_delivery() {
        let (port, connections) = one_shot_broker().await;
        let module = ActivemqModule {
            connection: "mq".into(),
            connections: Arc::new(Connections::default()),
            settings: Arc::new(ActivemqConnectionConfig {
                host: "127.0.0.1".into(),
                port,
                user: None,
                password: None,
            }),
            destination: "/queue/q".into(),
        };
        let d = delivery(br#"{"a":1}"#);
        module.deliver(&d).await.unwrap();
        // The broker hung up after the first receipt; wait until the reader noticed.
        let client = module
            .connections
            .client::<StompClient, _, _>("mq", || async {
                panic!("the first connection is cached")
            })
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while client.is_open() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!client.is_open());
        module.deliver(&d).await.unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }
}
