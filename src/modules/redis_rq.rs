//! The `redis_rq` module: enqueues each webhook as a job for Python RQ workers.
//!
//! Keys: `function` (required: the dotted name of the Python function the worker calls, as
//! `function(payload, headers)`), `queue_name` ("default"). Connection type `redis-rq` (also
//! `redis` and `redis_rq`): `host` ("localhost"), `port` (6379), `db` (0), `password`,
//! `username`.
//!
//! The job is written the way RQ itself writes one: the hash `rq:job:<id>` (`data` =
//! zlib(pickle((function, None, (payload, headers), {}))), `status` queued, `origin`,
//! `created_at`, `enqueued_at`, `description`, `timeout` …), the queue key added to
//! `rq:queues`, and the id pushed onto `rq:queue:<name>` — all in one MULTI/EXEC, so a worker
//! never sees half a job. A delivery is `Ok` once Redis executed the transaction.
//!
//! Also owns the Redis connection settings and client that `redis_publish` shares.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RetryMethod};
use serde::Deserialize;
use serde_json::Value;

use super::registry::{BuildContext, ModuleSpec};
use super::settings::{Password, number};
use super::{Connections, Delivery, Module, ModuleError, headers_json};

/// RQ's default job timeout, in seconds (what `Queue.enqueue` stores when none is given).
const RQ_DEFAULT_TIMEOUT: u32 = 180;

/// Where a Redis server is and how to log in; the keys of a `redis`/`redis-rq` connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisSettings {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port", deserialize_with = "number")]
    pub port: u16,
    #[serde(default, deserialize_with = "number")]
    pub db: i64,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Password>,
}

pub(crate) fn default_host() -> String {
    "localhost".into()
}
pub(crate) fn default_port() -> u16 {
    6379
}

/// A shared, self-reconnecting Redis connection.
#[derive(Clone)]
pub(crate) struct RedisClient(pub ConnectionManager);

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisClient")
    }
}

impl RedisSettings {
    /// Connects (the manager then reconnects by itself after a drop).
    pub async fn connect(&self) -> Result<RedisClient, ModuleError> {
        let mut login = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = self.username.as_deref().filter(|u| !u.is_empty()) {
            login = login.set_username(user);
        }
        if let Some(password) = self.password.as_ref().filter(|p| !p.is_empty()) {
            login = login.set_password(password.expose());
        }
        let place = format!("redis at `{}:{}`", self.host, self.port);
        let info = ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()
            .map_err(|e| classify(&e).context(format!("cannot connect to {place}")))?
            .set_redis_settings(login);
        let client = redis::Client::open(info)
            .map_err(|e| classify(&e).context(format!("cannot connect to {place}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        client
            .get_connection_manager_with_config(config)
            .await
            .map(RedisClient)
            .map_err(|e| classify(&e).context(format!("cannot connect to {place}")))
    }
}

/// Network trouble and busy servers pass; a wrong password or a refused command does not.
pub(crate) fn classify(error: &redis::RedisError) -> ModuleError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        return ModuleError::retryable(error);
    }
    match (error.kind(), error.retry_method()) {
        (redis::ErrorKind::AuthenticationFailed, _) | (_, RetryMethod::NoRetry) => {
            ModuleError::rejected(error)
        }
        _ => ModuleError::retryable(error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisRqConfig {
    function: String,
    #[serde(default = "default_queue")]
    queue_name: String,
}

fn default_queue() -> String {
    "default".into()
}

/// See the module docs.
#[derive(Debug)]
pub struct RedisRqModule {
    connection: String,
    settings: RedisSettings,
    connections: Arc<Connections>,
    function: String,
    queue: String,
}

impl RedisRqModule {
    /// Checks the config; connects on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["redis-rq", "redis_rq", "redis"])?;
        let settings: RedisSettings = connection.settings()?;
        let config: RedisRqConfig = spec.config()?;
        let dotted = config.function.split('.').collect::<Vec<_>>();
        let identifier = |part: &&str| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        };
        if dotted.len() < 2 || !dotted.iter().all(identifier) {
            return Err(format!(
                "module-config.function: `{}` is not a dotted Python name such as `tasks.process_webhook`",
                config.function
            ));
        }
        if config.queue_name.is_empty() {
            return Err("module-config.queue_name: must not be empty".into());
        }
        Ok(Self {
            connection: connection.name.clone(),
            settings,
            connections: ctx.connections.clone(),
            function: config.function,
            queue: config.queue_name,
        })
    }

    /// The fields of the `rq:job:<id>` hash.
    fn job_fields(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<Vec<(&'static str, Vec<u8>)>, ModuleError> {
        let args = (delivery.payload.clone(), headers_json(&delivery.headers));
        let kwargs = serde_json::Map::new();
        let call: (
            &str,
            Option<()>,
            (Value, Value),
            serde_json::Map<String, Value>,
        ) = (&self.function, None, args, kwargs);
        let pickled = serde_pickle::to_vec(&call, serde_pickle::SerOptions::new())
            .map_err(|e| ModuleError::rejected(format!("cannot pickle the job: {e}")))?;
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&pickled)
            .map_err(|e| ModuleError::rejected(format!("cannot compress the job: {e}")))?;
        let data = zlib
            .finish()
            .map_err(|e| ModuleError::rejected(format!("cannot compress the job: {e}")))?;
        // RQ's `utcformat`: `%Y-%m-%dT%H:%M:%S.%fZ`.
        let stamp = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let text = |s: &str| s.as_bytes().to_vec();
        Ok(vec![
            ("data", data),
            ("created_at", text(&stamp)),
            ("enqueued_at", text(&stamp)),
            ("origin", text(&self.queue)),
            ("status", text("queued")),
            (
                "description",
                text(&format!(
                    "{}(<webhook {} message {}>, <headers>)",
                    self.function, delivery.webhook_id, delivery.message_id
                )),
            ),
            ("timeout", text(&RQ_DEFAULT_TIMEOUT.to_string())),
            ("success_callback_name", Vec::new()),
            ("failure_callback_name", Vec::new()),
            ("stopped_callback_name", Vec::new()),
            ("started_at", Vec::new()),
            ("ended_at", Vec::new()),
            ("last_heartbeat", Vec::new()),
            ("worker_name", Vec::new()),
            ("group_id", Vec::new()),
        ])
    }
}

/// A fresh RQ job id (RQ uses uuid4 hex).
fn job_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[async_trait]
impl Module for RedisRqModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let fields = self.job_fields(delivery, Utc::now())?;
        let settings = &self.settings;
        let client = self
            .connections
            .client(&self.connection, || settings.connect())
            .await?;
        let id = job_id();
        let job_key = format!("rq:job:{id}");
        let queue_key = format!("rq:queue:{}", self.queue);
        let mut hset = redis::cmd("HSET");
        hset.arg(&job_key);
        for (field, value) in &fields {
            hset.arg(*field).arg(value.as_slice());
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .add_command(hset)
            .ignore()
            .cmd("SADD")
            .arg("rq:queues")
            .arg(&queue_key)
            .ignore()
            .cmd("RPUSH")
            .arg(&queue_key)
            .arg(&id)
            .ignore();
        let mut conn = client.0.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| classify(&e).context(format!("cannot enqueue on `{queue_key}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;
    use std::io::Read;

    #[test]
    fn the_job_data_is_zlib_of_a_pickled_call() {
        let module = RedisRqModule {
            connection: "r".into(),
            settings: serde_json::from_value(serde_json::json!({})).unwrap(),
            connections: Arc::default(),
            function: "tasks.handle".into(),
            queue: "default".into(),
        };
        let d = delivery(br#"{"a":[1,2.5,null,true]}"#);
        let fields = module.job_fields(&d, Utc::now()).unwrap();
        let data = &fields.iter().find(|(k, _)| *k == "data").unwrap().1;
        let mut pickled = Vec::new();
        flate2::read::ZlibDecoder::new(data.as_slice())
            .read_to_end(&mut pickled)
            .unwrap();
        let value: serde_pickle::Value =
            serde_pickle::value_from_slice(&pickled, serde_pickle::DeOptions::new()).unwrap();
        let serde_pickle::Value::Tuple(parts) = value else {
            panic!("not a tuple: {value:?}")
        };
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], serde_pickle::Value::String("tasks.handle".into()));
        assert_eq!(parts[1], serde_pickle::Value::None);
        assert!(matches!(&parts[2], serde_pickle::Value::Tuple(args) if args.len() == 2));
        assert_eq!(parts[3], serde_pickle::Value::Dict(Default::default()));
    }
}
