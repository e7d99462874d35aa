//! The `redis_publish` module: PUBLISHes each webhook on a Redis pub/sub channel.
//!
//! Two config shapes, as in the original:
//! - its code: a top-level `redis` object (merged into `module-config.redis`) with `host`
//!   ("localhost"), `port` (6379), `channel` ("webhook_events"), `allowed_hosts`, and also `db`,
//!   `username`, `password`. The host is checked by the [`NetworkPolicy`]: on the public
//!   receiver an internal host (localhost, private, link-local…) is refused unless it is listed
//!   in `allowed_hosts`.
//! - its docs: a `connection` of type `redis` (host, port, db, password) and
//!   `module-config.channel`. connections.json is the operator's own file, so its host is not
//!   checked.
//!
//! The message is `{"payload": …, "headers": …}`. Pub/sub does not keep messages: `Ok` means
//! Redis took the PUBLISH, however many subscribers were listening (none is not an error).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt as _;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::redis_rq::{RedisClient, RedisSettings, classify, default_host, default_port};
use super::registry::{BuildContext, ModuleSpec};
use super::settings::{Password, number};
use super::{Connections, Delivery, Module, ModuleError, NetworkPolicy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisPublishConfig {
    #[serde(default)]
    redis: Option<RedisTarget>,
    #[serde(default)]
    channel: Option<String>,
}

/// The original's top-level `redis` object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisTarget {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port", deserialize_with = "number")]
    port: u16,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default, deserialize_with = "number")]
    db: i64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Password>,
}

const DEFAULT_CHANNEL: &str = "webhook_events";

/// Where the client comes from.
#[derive(Debug)]
enum Source {
    /// A connections.json entry, shared through [`Connections`].
    Connection {
        name: String,
        settings: RedisSettings,
        connections: Arc<Connections>,
    },
    /// The module's own `redis` object: its own client, built after the host check.
    Own {
        settings: RedisSettings,
        allowed_hosts: Vec<String>,
        network: NetworkPolicy,
        client: OnceCell<RedisClient>,
    },
}

/// See the module docs.
#[derive(Debug)]
pub struct RedisPublishModule {
    source: Source,
    channel: String,
}

impl RedisPublishModule {
    /// Checks the config (and an address-literal host against the network policy); connects
    /// on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let config: RedisPublishConfig = spec.config()?;
        let (source, channel) = match (spec.connection, config.redis) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "module `{}` takes either a `connection` or a `redis` object, not both",
                    spec.name
                ));
            }
            (Some(_), None) => {
                let connection = spec.connection_of(&["redis"])?;
                let source = Source::Connection {
                    name: connection.name.clone(),
                    settings: connection.settings()?,
                    connections: ctx.connections.clone(),
                };
                (source, config.channel)
            }
            (None, target) => {
                let target = match target {
                    Some(t) => t,
                    None => serde_json::from_value(serde_json::json!({}))
                        .expect("every key of the redis object has a default"),
                };
                if target.host.parse::<IpAddr>().is_ok()
                    // An address literal needs no lookup, so the check completes at once.
                    && let Some(Err(refused)) = ctx
                        .network
                        .check_host(&target.host, &target.allowed_hosts)
                        .now_or_never()
                {
                    return Err(format!("module-config.redis.host: {refused}"));
                }
                let settings = RedisSettings {
                    host: target.host,
                    port: target.port,
                    db: target.db,
                    username: target.username,
                    password: target.password,
                };
                let source = Source::Own {
                    settings,
                    allowed_hosts: target.allowed_hosts,
                    network: ctx.network,
                    client: OnceCell::new(),
                };
                (source, target.channel.or(config.channel))
            }
        };
        let channel = channel.unwrap_or_else(|| DEFAULT_CHANNEL.to_owned());
        if channel.is_empty() {
            return Err("module-config.channel: must not be empty".into());
        }
        Ok(Self { source, channel })
    }

    async fn client(&self) -> Result<RedisClient, ModuleError> {
        match &self.source {
            Source::Connection {
                name,
                settings,
                connections,
            } => Ok((*connections.client(name, || settings.connect()).await?).clone()),
            Source::Own {
                settings,
                allowed_hosts,
                network,
                client,
            } => client
                .get_or_try_init(|| async {
                    network
                        .check_host(&settings.host, allowed_hosts)
                        .await
                        .map_err(ModuleError::Rejected)?;
                    settings.connect().await
                })
                .await
                .cloned(),
        }
    }
}

#[async_trait]
impl Module for RedisPublishModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let message = delivery.envelope(true).to_string();
        let RedisClient(mut conn) = self.client().await?;
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(message)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| {
                classify(&e).context(format!("cannot publish on channel `{}`", self.channel))
            })
    }
}
