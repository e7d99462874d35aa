//! The `websocket` module: sends each webhook as one message over a WebSocket it keeps open.
//!
//! Keys: `url` (ws:// or wss://, required), `format` ("json": `{"payload":…}` with
//! `"headers"` when `include_headers`; "raw": the raw body, as text when it is UTF-8),
//! `include_headers` (false), `timeout` (10 seconds, for connecting, sending and waiting),
//! `max_retries` (3 reconnects within one delivery), `headers` (sent on the handshake),
//! `wait_for_response` (false; when true a delivery counts only once the peer answered it)
//! and `allowed_hosts` (internal hosts the public receiver may still reach).
//!
//! One connection per module, shared by its deliveries one at a time (so an answer belongs to
//! the message before it), rebuilt when it broke. A task reads the connection all the time, so
//! pings are answered and a close is noticed before the next message is sent. Without
//! `wait_for_response` a message counts as delivered once written to the socket: WebSocket
//! itself has no acknowledgement.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use super::http_webhook::{check_destination, seconds};
use super::registry::{BuildContext, ModuleSpec};
use super::{Delivery, Module, ModuleError, NetworkPolicy};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Raw,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSocketConfig {
    url: Url,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    include_headers: bool,
    #[serde(default = "default_timeout")]
    timeout: f64,
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    wait_for_response: bool,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

fn default_timeout() -> f64 {
    10.0
}

fn default_max_retries() -> u32 {
    3
}

/// See the module docs.
pub struct WebSocket {
    url: Url,
    host: String,
    format: Format,
    include_headers: bool,
    timeout: Duration,
    max_retries: u32,
    headers: Vec<(HeaderName, HeaderValue)>,
    wait_for_response: bool,
    allowed_hosts: Vec<String>,
    network: NetworkPolicy,
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's path and the handshake headers may hold secrets.
        f.debug_struct("WebSocket")
            .field("host", &self.host)
            .field("format", &self.format)
            .field("wait_for_response", &self.wait_for_response)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed, and whether the connection is still good.
struct AttemptError {
    error: ModuleError,
    /// Whether a new connection may help (the old one is dropped either way).
    reconnect: bool,
}

impl WebSocket {
    /// Builds it from its spec (validates only; connects on the first delivery).
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        spec.no_connection()?;
        let config: WebSocketConfig = spec.config()?;
        if !matches!(config.url.scheme(), "ws" | "wss") {
            return Err(format!(
                "module-config.url: scheme `{}` is not a WebSocket one; use ws:// or wss://",
                config.url.scheme()
            ));
        }
        let host = config
            .url
            .host_str()
            .ok_or("module-config.url: the URL has no host")?
            .to_owned();
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("module-config.headers: `{name}` is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("module-config.headers.{name}: not a valid header value"))?;
            headers.push((name, value));
        }
        Ok(Self {
            url: config.url,
            host,
            format: config.format,
            include_headers: config.include_headers,
            timeout: seconds("timeout", config.timeout)?,
            max_retries: config.max_retries,
            headers,
            wait_for_response: config.wait_for_response,
            allowed_hosts: config.allowed_hosts,
            network: ctx.network,
            connection: Mutex::new(None),
        })
    }

    fn message(&self, delivery: &Delivery) -> Message {
        match self.format {
            Format::Json => Message::text(delivery.envelope(self.include_headers).to_string()),
            Format::Raw => match std::str::from_utf8(&delivery.body) {
                Ok(text) => Message::text(text),
                Err(_) => Message::binary(delivery.body.clone()),
            },
        }
    }

    async fn connect(&self) -> Result<Socket, AttemptError> {
        check_destination(&self.network, "websocket", &self.host, &self.allowed_hosts)
            .await
            .map_err(|error| AttemptError {
                reconnect: error.is_retryable(),
                error,
            })?;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| self.fail(e, false))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status();
                let retry = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
                let message = format!(
                    "websocket: `{}` refused the handshake with {status}",
                    self.host
                );
                Err(AttemptError {
                    error: if retry {
                        ModuleError::retryable(message)
                    } else {
                        ModuleError::rejected(message)
                    },
                    reconnect: retry,
                })
            }
            Ok(Err(e)) => Err(self.fail(format!("cannot connect: {e}"), true)),
            Err(_) => Err(self.fail("timed out connecting", true)),
        }
    }

    fn fail(&self, what: impl std::fmt::Display, reconnect: bool) -> AttemptError {
        let message = format!("websocket: `{}`: {what}", self.host);
        AttemptError {
            error: if reconnect {
                ModuleError::retryable(message)
            } else {
                ModuleError::rejected(message)
            },
            reconnect,
        }
    }

    /// One attempt on `connection`: send, and wait for the answer when asked to.
    async fn send_on(
        &self,
        connection: &mut Connection,
        message: Message,
    ) -> Result<(), AttemptError> {
        if !connection.alive.load(Ordering::Acquire) {
            return Err(self.fail("the peer closed the connection", true));
        }
        // Answers left over from a message that timed out belong to no one now.
        while connection.answers.try_recv().is_ok() {}
        match tokio::time::timeout(self.timeout, connection.sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.fail(format!("cannot send: {e}"), true)),
            Err(_) => return Err(self.fail("timed out sending", true)),
        }
        if !self.wait_for_response {
            return Ok(());
        }
        match tokio::time::timeout(self.timeout, connection.answers.recv()).await {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(self.fail("the peer closed the connection before answering", true)),
            Err(_) => Err(self.fail("no answer within the timeout", true)),
        }
    }
}

/// An open connection: the sending half, and a task reading what the peer sends.
struct Connection {
    sink: SplitSink<Socket, Message>,
    /// One item per text or binary message the peer sent (only with `wait_for_response`);
    /// closed when the connection is gone.
    answers: mpsc::Receiver<()>,
    /// Cleared by the reader once the peer closed the connection or it broke.
    alive: Arc<AtomicBool>,
    reader: JoinHandle<()>,
}

impl Connection {
    fn new(socket: Socket, forward_answers: bool) -> Self {
        let (sink, mut stream) = socket.split();
        let (answer_tx, answers) = mpsc::channel(16);
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        // Reading all the time answers pings and notices a close before the next send.
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(_) | Message::Binary(_) if forward_answers => {
                        let _ = answer_tx.try_send(());
                    }
                    // Reading on lets tungstenite send its half of the closing handshake.
                    Message::Close(_) => flag.store(false, Ordering::Release),
                    _ => {}
                }
            }
            flag.store(false, Ordering::Release);
        });
        Self {
            sink,
            answers,
            alive,
            reader,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[async_trait]
impl Module for WebSocket {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let message = self.message(delivery);
        let mut slot = self.connection.lock().await;
        let mut last = None;
        for attempt in 0..=self.max_retries {
            let mut connection = match slot.take() {
                Some(connection) => connection,
                None => match self.connect().await {
                    Ok(socket) => Connection::new(socket, self.wait_for_response),
                    Err(e) if e.reconnect => {
                        last = Some(e.error);
                        if attempt < self.max_retries {
                            // A short pause so a restarting peer has a moment to come back.
                            tokio::time::sleep(Duration::from_millis(200) * (attempt + 1)).await;
                        }
                        continue;
                    }
                    Err(e) => return Err(e.error),
                },
            };
            match self.send_on(&mut connection, message.clone()).await {
                Ok(()) => {
                    *slot = Some(connection);
                    return Ok(());
                }
                // The connection is dropped: the next attempt connects anew.
                Err(e) if e.reconnect => last = Some(e.error),
                Err(e) => return Err(e.error),
            }
        }
        Err(last.unwrap_or_else(|| ModuleError::retryable("websocket: not sent")))
    }
}
