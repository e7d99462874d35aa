//! The `zeromq` module: sends each webhook's payload as JSON on a ZeroMQ socket.
//!
//! Keys: `endpoint` (`tcp://host:port`, required; the module connects to it) and
//! `socket_type` (`PUB` by default, `PUSH`, `REQ` or `DEALER`), plus `allowed_hosts` (internal
//! hosts the public receiver may still reach). One socket per module, built on the first
//! delivery and rebuilt after a failed send.
//!
//! What "delivered" means depends on the pattern: `REQ` counts a message once the peer
//! replied; `PUSH` and `DEALER` once it is queued to a connected peer; `PUB` once it is
//! published, and ZeroMQ drops what no subscriber takes (that is PUB/SUB). Only `tcp://`
//! endpoints are supported (no `ipc://` or `inproc://` in this build). The host is checked
//! against the network policy before connecting.

use std::time::Duration;

use ::zeromq::{
    DealerSocket, PubSocket, PushSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend,
    ZmqMessage,
};
use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::http_webhook::check_destination;
use super::registry::{BuildContext, ModuleSpec};
use super::{Delivery, Module, ModuleError, NetworkPolicy};

/// How long sending and (for REQ) waiting for the reply may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long the crate keeps retrying to connect before a delivery gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum SocketType {
    #[default]
    #[serde(alias = "pub")]
    Pub,
    #[serde(alias = "push")]
    Push,
    #[serde(alias = "req")]
    Req,
    #[serde(alias = "dealer")]
    Dealer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZeroMqConfig {
    endpoint: String,
    #[serde(default)]
    socket_type: SocketType,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

enum ZmqSocket {
    Pub(PubSocket),
    Push(PushSocket),
    Req(ReqSocket),
    Dealer(DealerSocket),
}

/// See the module docs.
pub struct ZeroMq {
    endpoint: String,
    host: String,
    socket_type: SocketType,
    allowed_hosts: Vec<String>,
    network: NetworkPolicy,
    socket: Mutex<Option<ZmqSocket>>,
}

impl std::fmt::Debug for ZeroMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroMq")
            .field("endpoint", &self.endpoint)
            .field("socket_type", &self.socket_type)
            .finish_non_exhaustive()
    }
}

/// The host of a `tcp://host:port` endpoint.
fn endpoint_host(endpoint: &str) -> Result<String, String> {
    let Some(address) = endpoint.strip_prefix("tcp://") else {
        return Err(format!(
            "module-config.endpoint: `{endpoint}` is not supported; give `tcp://host:port` (ipc:// and inproc:// are not in this build)"
        ));
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("module-config.endpoint: `{endpoint}` has no port"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("module-config.endpoint: `{port}` is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "*" {
        return Err(format!(
            "module-config.endpoint: `{endpoint}` names no host to connect to"
        ));
    }
    Ok(host.to_owned())
}

impl ZeroMq {
    /// Builds it from its spec (validates only; connects on the first delivery).
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        spec.no_connection()?;
        let config: ZeroMqConfig = spec.config()?;
        let host = endpoint_host(&config.endpoint)?;
        Ok(Self {
            endpoint: config.endpoint,
            host,
            socket_type: config.socket_type,
            allowed_hosts: config.allowed_hosts,
            network: ctx.network,
            socket: Mutex::new(None),
        })
    }

    fn err(&self, what: impl std::fmt::Display) -> ModuleError {
        ModuleError::retryable(format!("zeromq: `{}`: {what}", self.endpoint))
    }

    async fn connect(&self) -> Result<ZmqSocket, ModuleError> {
        check_destination(&self.network, "zeromq", &self.host, &self.allowed_hosts).await?;
        let mut options = SocketOptions::default();
        options.connect_timeout(CONNECT_TIMEOUT);
        let endpoint = self.endpoint.as_str();
        let connected = match self.socket_type {
            SocketType::Pub => {
                let mut s = PubSocket::with_options(options);
                s.connect(endpoint).await.map(|()| ZmqSocket::Pub(s))
            }
            SocketType::Push => {
                let mut s = PushSocket::with_options(options);
                s.connect(endpoint).await.map(|()| ZmqSocket::Push(s))
            }
            SocketType::Req => {
                let mut s = ReqSocket::with_options(options);
                s.connect(endpoint).await.map(|()| ZmqSocket::Req(s))
            }
            SocketType::Dealer => {
                let mut s = DealerSocket::with_options(options);
                s.connect(endpoint).await.map(|()| ZmqSocket::Dealer(s))
            }
        };
        connected.map_err(|e| self.err(format!("cannot connect: {e}")))
    }

    async fn send_on(
        &self,
        socket: &mut ZmqSocket,
        message: ZmqMessage,
    ) -> Result<(), ModuleError> {
        let sent = match socket {
            ZmqSocket::Pub(s) => tokio::time::timeout(TIMEOUT, s.send(message)).await,
            ZmqSocket::Push(s) => tokio::time::timeout(TIMEOUT, s.send(message)).await,
            ZmqSocket::Dealer(s) => tokio::time::timeout(TIMEOUT, s.send(message)).await,
            ZmqSocket::Req(s) => {
                tokio::time::timeout(TIMEOUT, async {
                    s.send(message).await?;
                    s.recv().await.map(drop)
                })
                .await
            }
        };
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err(format!("cannot send: {e}"))),
            Err(_) => Err(self.err(format!("not sent within {}s", TIMEOUT.as_secs()))),
        }
    }
}

#[async_trait]
impl Module for ZeroMq {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let payload = delivery.payload_json();
        let mut slot = self.socket.lock().await;
        let fresh = slot.is_none();
        let mut socket = match slot.take() {
            Some(socket) => socket,
            None => self.connect().await?,
        };
        let mut result = self
            .send_on(&mut socket, ZmqMessage::from(payload.clone()))
            .await;
        if result.is_err() && !fresh {
            // The kept socket may have lost its peer: try once on a new one.
            socket = self.connect().await?;
            result = self.send_on(&mut socket, ZmqMessage::from(payload)).await;
        }
        if result.is_ok() {
            *slot = Some(socket);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_tcp_a_host_and_a_port() {
        assert_eq!(endpoint_host("tcp://127.0.0.1:5555").unwrap(), "127.0.0.1");
        assert_eq!(endpoint_host("tcp://[::1]:5555").unwrap(), "::1");
        assert_eq!(endpoint_host("tcp://zmq.example:1").unwrap(), "zmq.example");
        for bad in [
            "ipc:///tmp/x",
            "tcp://*:5555",
            "tcp://host",
            "tcp://host:0",
            "host:1",
        ] {
            assert!(endpoint_host(bad).is_err(), "{bad}");
        }
    }
}
