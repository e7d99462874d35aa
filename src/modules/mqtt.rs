//! The `mqtt` module: publishes each webhook to an MQTT broker (MQTT 3.1.1).
//!
//! Keys: `topic` (required unless `tasmota_format`; the original also accepts it at the
//! webhook's top level), `topic_prefix` (prepended as `<prefix>/<topic>`), `qos` (1; 0, 1 or 2),
//! `retained` (false), `format` ("json": the payload as JSON, a text payload as its text;
//! "raw": the request body bytes unchanged), and the device shapes of the original:
//! - `shelly_gen2_format` with `device_id` ("webhook"): `{"id": device_id, "source":
//!   "webhook", "params": payload}` on `topic` (a payload that is not an object becomes
//!   `{"data": payload}`).
//! - `tasmota_format` with `tasmota_type` ("cmnd", "stat" or "tele"), `device_name`
//!   ("webhook") and `command` ("webhook"): the topic is `cmnd/<device_name>/<command>`,
//!   `stat/<device_name>/status` or `tele/<device_name>/telemetry`; the payload is the JSON
//!   object (others become `{"data": payload}`).
//!
//! Connection type `mqtt`: `host` ("localhost"), `port` (1883), `username`, `password`,
//! `client_id` ("webhook-module"), `keepalive` (60 s), `mqtt_version` ("3.1.1"; MQTT 5 is not
//! supported), `tls` (false), `tls_insecure` (false: skip certificate checks), `tls_ca_cert_file`
//! (default: the webpki roots), `tls_cert_file` + `tls_key_file` (client certificate). A broker
//! disconnects an older session when a new one uses the same client id, so wcon appends a random
//! suffix to `client_id` for every connection it opens (`webhook-module-1a2b3c4d`): broker ACLs
//! should match the prefix.
//!
//! One client and event-loop task are shared per connection. A delivery is `Ok` once the
//! broker answered PUBACK (QoS 1) or PUBCOMP (QoS 2); QoS 0 once the message is written to the
//! socket. When the connection breaks, every waiting delivery fails as `Retryable` and the next
//! delivery opens a new connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::registry::{BuildContext, ModuleSpec};
use super::settings::{Password, flag, number};
use super::{Connections, Delivery, Module, ModuleError};

/// How long connecting (TCP, TLS, CONNECT/CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to acknowledge one message.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest packet MQTT allows (its remaining-length field tops out at 256 MB).
const MAX_PACKET: usize = 268_435_455;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttConfig {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    topic_prefix: Option<String>,
    #[serde(default = "one", deserialize_with = "number")]
    qos: u8,
    #[serde(default, deserialize_with = "flag")]
    retained: bool,
    #[serde(default)]
    format: Format,
    #[serde(default, deserialize_with = "flag")]
    shelly_gen2_format: bool,
    #[serde(default)]
    device_id: Option<Value>,
    #[serde(default, deserialize_with = "flag")]
    tasmota_format: bool,
    #[serde(default)]
    tasmota_type: TasmotaType,
    #[serde(default)]
    device_name: Option<String>,
    #[serde(default)]
    command: Option<String>,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Raw,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TasmotaType {
    #[default]
    Cmnd,
    Stat,
    Tele,
}

/// What the message body is built from.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Plain(Format),
    Shelly { device_id: String },
    Tasmota,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttSettings {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port", deserialize_with = "number")]
    port: u16,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Password>,
    #[serde(default = "default_client_id")]
    client_id: String,
    #[serde(default = "default_keepalive", deserialize_with = "number")]
    keepalive: u64,
    #[serde(default = "default_version")]
    mqtt_version: String,
    #[serde(default, deserialize_with = "flag")]
    tls: bool,
    #[serde(default, deserialize_with = "flag")]
    tls_insecure: bool,
    #[serde(default)]
    tls_ca_cert_file: Option<PathBuf>,
    #[serde(default)]
    tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    tls_key_file: Option<PathBuf>,
}

fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> u16 {
    1883
}
fn default_client_id() -> String {
    "webhook-module".into()
}
fn default_keepalive() -> u64 {
    60
}
fn default_version() -> String {
    "3.1.1".into()
}

impl MqttSettings {
    fn check(&self, connection: &str) -> Result<(), String> {
        match self.mqtt_version.trim() {
            "3.1.1" | "311" | "3" | "3.1" => {}
            other => {
                return Err(format!(
                    "connection `{connection}`.mqtt_version: `{other}` is not supported; use \"3.1.1\" (MQTT 5 brokers speak it too)"
                ));
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(format!(
                "connection `{connection}`: tls_cert_file and tls_key_file go together"
            ));
        }
        if !(5..=65535).contains(&self.keepalive) {
            return Err(format!(
                "connection `{connection}`.keepalive: must be 5 to 65535 seconds"
            ));
        }
        Ok(())
    }

    fn options(&self) -> Result<MqttOptions, ModuleError> {
        let client_id = format!("{}-{:08x}", self.client_id, rand::random::<u32>());
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_keep_alive(Duration::from_secs(self.keepalive))
            .set_clean_session(true)
            .set_max_packet_size(1024 * 1024, MAX_PACKET);
        if let Some(user) = self.username.as_deref().filter(|u| !u.is_empty()) {
            let password = self.password.as_ref().map(Password::expose).unwrap_or("");
            options.set_credentials(user, password);
        }
        if self.tls {
            let config = self.tls_config().map_err(ModuleError::Rejected)?;
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
        }
        Ok(options)
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = if self.tls_insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    crate::connector::outbound::AcceptAnyCertificate(provider),
                ))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &self.tls_ca_cert_file {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| format!("tls_ca_cert_file `{}`: {e}", path.display()))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!(
                            "tls_ca_cert_file `{}`: no usable certificate",
                            path.display()
                        ));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        };
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("tls_cert_file `{}`: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("tls_key_file `{}`: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("tls client certificate: {e}"))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

type Waiter = oneshot::Sender<Result<(), ModuleError>>;

/// Deliveries waiting for the broker, matched to the event loop's events.
///
/// The event loop takes publish requests in the order they were sent, and answers each with
/// `Outgoing::Publish(pkid)` (or `Outgoing::AwaitAck(pkid)` when the id is still in use, followed
/// later by `Outgoing::Publish(pkid)` once it is sent). So requests are matched in order, then
/// by packet id.
#[derive(Default)]
struct Waiters {
    /// Sent to the event loop, not yet given a packet id.
    queued: VecDeque<(QoS, Waiter)>,
    /// Waiting for PUBACK/PUBCOMP, by packet id (oldest first).
    in_flight: HashMap<u16, VecDeque<Waiter>>,
    /// Packet ids whose next `Outgoing::Publish` releases a held (colliding) publish.
    collided: HashSet<u16>,
}

impl Waiters {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if self.collided.remove(pkid) {
                    return;
                }
                match self.queued.pop_front() {
                    Some((QoS::AtMostOnce, waiter)) => {
                        let _ = waiter.send(Ok(()));
                    }
                    Some((_, waiter)) => self.in_flight.entry(*pkid).or_default().push_back(waiter),
                    None => {}
                }
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                if let Some((_, waiter)) = self.queued.pop_front() {
                    self.in_flight.entry(*pkid).or_default().push_back(waiter);
                    self.collided.insert(*pkid);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => self.acked(ack.pkid),
            Event::Incoming(Packet::PubComp(comp)) => self.acked(comp.pkid),
            _ => {}
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(waiters) = self.in_flight.get_mut(&pkid) {
            if let Some(waiter) = waiters.pop_front() {
                let _ = waiter.send(Ok(()));
            }
            if waiters.is_empty() {
                self.in_flight.remove(&pkid);
            }
        }
    }

    fn fail_all(&mut self, error: &ModuleError) {
        for (_, waiter) in self.queued.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        for (_, waiters) in self.in_flight.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
        self.collided.clear();
    }
}

/// The shared client of one connection: the request side, and the task driving the socket.
struct Client {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    alive: Arc<AtomicBool>,
    /// Keeps publish requests and their waiters in the same order.
    send_order: tokio::sync::Mutex<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn classify(error: &ConnectionError) -> ModuleError {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            ModuleError::Rejected(format!("the mqtt broker refused the connection: {code:?}"))
        }
        ConnectionError::Tls(_) => ModuleError::rejected(error),
        _ => ModuleError::retryable(error),
    }
}

impl Client {
    async fn connect(settings: &MqttSettings) -> Result<Self, ModuleError> {
        let place = format!("mqtt broker at `{}:{}`", settings.host, settings.port);
        let (client, mut eventloop) = AsyncClient::new(settings.options()?, 64);
        let connected = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(classify(&e)),
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connected).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("cannot connect to {place}"))),
            Err(_) => {
                return Err(ModuleError::Retryable(format!(
                    "cannot connect to {place}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let alive = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(drive(eventloop, waiters.clone(), alive.clone(), place));
        Ok(Self {
            client,
            waiters,
            alive,
            send_order: tokio::sync::Mutex::new(()),
            task,
        })
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        body: Vec<u8>,
    ) -> Result<(), ModuleError> {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.send_order.lock().await;
            if !self.alive() {
                return Err(ModuleError::Retryable(
                    "the mqtt connection was lost".into(),
                ));
            }
            self.waiters
                .lock()
                .expect("mqtt waiters poisoned")
                .queued
                .push_back((qos, tx));
            if let Err(e) = self.client.publish(topic, qos, retain, body).await {
                // The request never reached the event loop: take back the waiter just queued.
                self.waiters
                    .lock()
                    .expect("mqtt waiters poisoned")
                    .queued
                    .pop_back();
                return Err(ModuleError::retryable(format!("mqtt: {e}")));
            }
        }
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ModuleError::Retryable(
                "the mqtt connection closed before the broker acknowledged".into(),
            )),
            Err(_) => Err(ModuleError::Retryable(format!(
                "the mqtt broker did not acknowledge within {}s",
                ACK_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Drives the connection until it breaks, then fails every waiting delivery.
async fn drive(
    mut eventloop: EventLoop,
    waiters: Arc<Mutex<Waiters>>,
    alive: Arc<AtomicBool>,
    place: String,
) {
    loop {
        match eventloop.poll().await {
            Ok(event) => waiters
                .lock()
                .expect("mqtt waiters poisoned")
                .on_event(&event),
            Err(e) => {
                tracing::warn!(broker = %place, error = %e, "mqtt connection lost");
                alive.store(false, Ordering::SeqCst);
                let error = classify(&e).context(format!("connection to {place} lost"));
                waiters
                    .lock()
                    .expect("mqtt waiters poisoned")
                    .fail_all(&error);
                return;
            }
        }
    }
}

/// See the module docs.
pub struct MqttModule {
    connection: String,
    settings: Arc<MqttSettings>,
    connections: Arc<Connections>,
    topic: String,
    qos: QoS,
    retained: bool,
    shape: Shape,
}

impl std::fmt::Debug for MqttModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttModule")
            .field("connection", &self.connection)
            .field("topic", &self.topic)
            .field("qos", &self.qos)
            .finish_non_exhaustive()
    }
}

/// A topic one may publish to: not empty, no wildcards, no NUL, not a `$` system topic.
fn check_topic(what: &str, topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 32_768 {
        return Err(format!("{what}: must be 1 to 32768 bytes"));
    }
    if topic.contains(['+', '#', '\0']) || topic.chars().any(char::is_control) {
        return Err(format!(
            "{what}: `{topic}` may not contain wildcards (+, #) or control characters"
        ));
    }
    if topic.starts_with('$') {
        return Err(format!(
            "{what}: `{topic}` starts with `$`, which brokers reserve for system topics"
        ));
    }
    Ok(())
}

/// One topic level (a Tasmota device name or command).
fn check_level(what: &str, level: &str) -> Result<(), String> {
    check_topic(what, level)?;
    if level.contains('/') {
        return Err(format!("{what}: `{level}` may not contain `/`"));
    }
    Ok(())
}

impl MqttModule {
    /// Checks the config; connects on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["mqtt"])?;
        let settings: MqttSettings = connection.settings()?;
        settings.check(&connection.name)?;
        let config: MqttConfig = spec.config()?;
        let qos = match config.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => return Err(format!("module-config.qos: {other} is not 0, 1 or 2")),
        };
        if config.shelly_gen2_format && config.tasmota_format {
            return Err(
                "module-config: shelly_gen2_format and tasmota_format exclude each other".into(),
            );
        }
        let (topic, shape) = if config.tasmota_format {
            let device = config.device_name.as_deref().unwrap_or("webhook").trim();
            check_level("module-config.device_name", device)?;
            let topic = match config.tasmota_type {
                TasmotaType::Cmnd => {
                    let command = config.command.as_deref().unwrap_or("webhook").trim();
                    check_level("module-config.command", command)?;
                    format!("cmnd/{device}/{command}")
                }
                TasmotaType::Stat => format!("stat/{device}/status"),
                TasmotaType::Tele => format!("tele/{device}/telemetry"),
            };
            (topic, Shape::Tasmota)
        } else {
            let Some(topic) = config.topic.as_deref().map(str::trim) else {
                return Err(
                    "module-config.topic: required (or set it at the webhook's top level)".into(),
                );
            };
            check_topic("module-config.topic", topic)?;
            let shape = if config.shelly_gen2_format {
                let device_id = match config.device_id {
                    None => "webhook".to_owned(),
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                };
                Shape::Shelly { device_id }
            } else {
                Shape::Plain(config.format)
            };
            (topic.to_owned(), shape)
        };
        let topic = match config.topic_prefix.as_deref().map(str::trim) {
            None => topic,
            Some(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                check_topic("module-config.topic_prefix", prefix)?;
                if topic.starts_with('/') {
                    format!("{prefix}{topic}")
                } else {
                    format!("{prefix}/{topic}")
                }
            }
        };
        Ok(Self {
            connection: connection.name.clone(),
            settings: Arc::new(settings),
            connections: ctx.connections.clone(),
            topic,
            qos,
            retained: config.retained,
            shape,
        })
    }

    fn body(&self, delivery: &Delivery) -> Vec<u8> {
        let object_or_data = |payload: &Value| {
            if payload.is_object() {
                payload.clone()
            } else {
                json!({ "data": payload })
            }
        };
        match &self.shape {
            Shape::Plain(Format::Raw) => delivery.body.to_vec(),
            Shape::Plain(Format::Json) => match &delivery.payload {
                Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            },
            Shape::Shelly { device_id } => json!({
                "id": device_id,
                "source": "webhook",
                "params": object_or_data(&delivery.payload),
            })
            .to_string()
            .into_bytes(),
            Shape::Tasmota => object_or_data(&delivery.payload).to_string().into_bytes(),
        }
    }

    async fn client(&self) -> Result<Arc<Client>, ModuleError> {
        let build = || async { Client::connect(&self.settings).await };
        let client = self.connections.client(&self.connection, build).await?;
        if client.alive() {
            return Ok(client);
        }
        self.connections.forget::<Client>(&self.connection);
        let build = || async { Client::connect(&self.settings).await };
        self.connections.client(&self.connection, build).await
    }
}

#[async_trait]
impl Module for MqttModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let body = self.body(delivery);
        let client = self.client().await?;
        let result = client
            .publish(&self.topic, self.qos, self.retained, body)
            .await
            .map_err(|e| e.context(format!("cannot publish to `{}`", self.topic)));
        if result.is_err() && !client.alive() {
            self.connections.forget::<Client>(&self.connection);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{PubAck, PubComp};

    #[test]
    fn waiters_follow_request_order_then_packet_ids() {
        let mut waiters = Waiters::default();
        let mut receivers = Vec::new();
        for qos in [
            QoS::ExactlyOnce,
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
            QoS::ExactlyOnce,
        ] {
            let (tx, rx) = oneshot::channel();
            waiters.queued.push_back((qos, tx));
            receivers.push(rx);
        }
        let [old, q0, q1, held] = &mut receivers[..] else {
            unreachable!()
        };
        waiters.on_event(&Event::Outgoing(Outgoing::Publish(2)));
        waiters.on_event(&Event::Outgoing(Outgoing::Publish(0)));
        assert_eq!(q0.try_recv().unwrap(), Ok(()));
        waiters.on_event(&Event::Outgoing(Outgoing::Publish(1)));
        // Packet id 2 is still in use: the fourth publish is held until its PUBCOMP.
        waiters.on_event(&Event::Outgoing(Outgoing::AwaitAck(2)));
        assert!(q1.try_recv().is_err());
        waiters.on_event(&Event::Incoming(Packet::PubComp(PubComp { pkid: 2 })));
        assert_eq!(old.try_recv().unwrap(), Ok(()));
        assert!(held.try_recv().is_err());
        // The held publish being sent is not a new request.
        waiters.on_event(&Event::Outgoing(Outgoing::Publish(2)));
        waiters.on_event(&Event::Incoming(Packet::PubAck(PubAck { pkid: 1 })));
        assert_eq!(q1.try_recv().unwrap(), Ok(()));
        waiters.on_event(&Event::Incoming(Packet::PubComp(PubComp { pkid: 2 })));
        assert_eq!(held.try_recv().unwrap(), Ok(()));
        assert!(waiters.queued.is_empty() && waiters.in_flight.is_empty());
    }

    #[test]
    fn tls_ca_file_errors_name_the_file() {
        let settings: MqttSettings = serde_json::from_value(json!({
            "tls": true, "tls_ca_cert_file": "/nonexistent/ca.pem", "password": "hunter22"
        }))
        .unwrap();
        let err = settings.tls_config().unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let settings: MqttSettings = serde_json::from_value(json!({"tls": true})).unwrap();
        assert!(settings.tls_config().is_ok());
        let settings: MqttSettings =
            serde_json::from_value(json!({"tls": true, "tls_insecure": true})).unwrap();
        assert!(settings.tls_config().is_ok());
    }
}
