//! Module names → module builders.
//!
//! Owns the list of the 17 output modules (names and aliases as in the original), which cargo
//! feature each needs, and which connection types each accepts. A module left out of a build
//! is refused with the feature that brings it back; an unknown name gets the nearest known one.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Connection, Connections, Module, NetworkPolicy};

/// What a module is built from.
#[derive(Debug, Clone, Copy)]
pub struct ModuleSpec<'a> {
    /// The webhook it serves (for messages).
    pub webhook_id: &'a str,
    /// The module name, as written.
    pub name: &'a str,
    /// Its `module-config` (with the original's top-level keys such as `topic` merged in);
    /// an empty object when absent.
    pub config: &'a Value,
    /// The connections.json entry named by `connection`, already checked to exist.
    pub connection: Option<&'a Connection>,
}

impl ModuleSpec<'_> {
    /// The `module-config` read into a typed struct; the error names the offending key.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_path_to_error::deserialize(self.config.clone()).map_err(|e| {
            let path = e.path().to_string();
            let inner = crate::config::explain_serde_error(&e.into_inner().to_string());
            if path == "." {
                inner
            } else {
                format!("module-config.{path}: {inner}")
            }
        })
    }

    /// The connection, which must be present and of one of `kinds`.
    pub fn connection_of(&self, kinds: &[&str]) -> Result<&Connection, String> {
        let Some(connection) = self.connection else {
            return Err(format!(
                "module `{}` needs a `connection` naming a connections.json entry of type {}",
                self.name,
                kinds.join(" or ")
            ));
        };
        if !kinds.contains(&connection.kind.as_str()) {
            return Err(format!(
                "connection `{}` has type `{}`, but module `{}` needs type {}",
                connection.name,
                connection.kind,
                self.name,
                kinds.join(" or ")
            ));
        }
        Ok(connection)
    }

    /// Refuses a `connection` for a module that does not use one.
    pub fn no_connection(&self) -> Result<(), String> {
        match self.connection {
            Some(c) => Err(format!(
                "module `{}` takes no `connection` (got `{}`); its settings go in `module-config`",
                self.name, c.name
            )),
            None => Ok(()),
        }
    }
}

/// What every module may use while it is built and while it runs.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The shared connections of connections.json.
    pub connections: Arc<Connections>,
    /// Which hosts modules may reach.
    pub network: NetworkPolicy,
}

/// Every module name wcon knows (aliases included), with the cargo feature it needs
/// (`None`: always built in).
pub const MODULES: &[(&str, Option<&str>)] = &[
    ("log", None),
    ("save_to_disk", None),
    ("http_webhook", None),
    ("websocket", None),
    ("rabbitmq", Some("rabbitmq")),
    ("redis_rq", Some("redis")),
    ("redis_publish", Some("redis")),
    ("kafka", Some("kafka")),
    ("s3", Some("aws")),
    ("aws_sqs", Some("aws")),
    ("clickhouse", None),
    ("mqtt", Some("mqtt")),
    ("postgresql", Some("postgres")),
    ("postgres", Some("postgres")),
    ("mysql", Some("mysql")),
    ("mariadb", Some("mysql")),
    ("gcp_pubsub", Some("gcp")),
    ("zeromq", Some("zeromq")),
    ("activemq", None),
];

/// Builds the module `spec.name`.
pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Arc<dyn Module>, String> {
    let module: Arc<dyn Module> = match spec.name {
        "log" => Arc::new(super::log::LogModule::build(spec)?),
        "save_to_disk" => Arc::new(super::save_to_disk::SaveToDisk::build(spec)?),
        "http_webhook" => Arc::new(super::http_webhook::HttpWebhook::build(spec, ctx)?),
        "websocket" => Arc::new(super::websocket::WebSocket::build(spec, ctx)?),
        #[cfg(feature = "aws")]
        "s3" => Arc::new(super::s3::S3::build(spec, ctx)?),
        #[cfg(feature = "aws")]
        "aws_sqs" => Arc::new(super::aws_sqs::AwsSqs::build(spec, ctx)?),
        #[cfg(feature = "gcp")]
        "gcp_pubsub" => Arc::new(super::gcp_pubsub::GcpPubSub::build(spec, ctx)?),
        #[cfg(feature = "zeromq")]
        "zeromq" => Arc::new(super::zeromq::ZeroMq::build(spec, ctx)?),
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => Arc::new(super::rabbitmq::RabbitMqModule::build(spec, ctx)?),
        #[cfg(feature = "redis")]
        "redis_rq" => Arc::new(super::redis_rq::RedisRqModule::build(spec, ctx)?),
        #[cfg(feature = "redis")]
        "redis_publish" => Arc::new(super::redis_publish::RedisPublishModule::build(spec, ctx)?),
        #[cfg(feature = "kafka")]
        "kafka" => Arc::new(super::kafka::KafkaModule::build(spec, ctx)?),
        #[cfg(feature = "mqtt")]
        "mqtt" => Arc::new(super::mqtt::MqttModule::build(spec, ctx)?),
        "activemq" => Arc::new(super::activemq::ActivemqModule::build(spec, ctx)?),
        "clickhouse" => Arc::new(super::clickhouse::ClickhouseModule::build(spec, ctx)?),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => Arc::new(super::mysql::MysqlModule::build(spec, ctx)?),
        #[cfg(feature = "postgres")]
        "postgresql" | "postgres" => Arc::new(super::postgresql::PostgresModule::build(spec, ctx)?),
        other => return Err(unavailable(other)),
    };
    Ok(module)
}

/// The error for a name with no builder in this build.
fn unavailable(name: &str) -> String {
    match MODULES.iter().find(|(n, _)| *n == name) {
        Some((_, Some(feature))) => format!(
            "module `{name}` is not in this build of wcon; rebuild with `cargo install wcon --features {feature}`"
        ),
        Some((_, None)) => format!("module `{name}` is not available in this build of wcon"),
        None => {
            let names: Vec<&str> = MODULES.iter().map(|(n, _)| *n).collect();
            match crate::config::nearest(name, &names) {
                Some(near) => format!("unknown module `{name}`; did you mean `{near}`?"),
                None => format!(
                    "unknown module `{name}`; known modules: {}",
                    names.join(", ")
                ),
            }
        }
    }
}

/// Merges the original's top-level module keys (`topic`, `queue_name`, `redis`) into a
/// `module-config`, which wins where both set a key.
pub fn merge_legacy_keys(module_config: Option<&Value>, legacy: &Map<String, Value>) -> Value {
    let mut merged = legacy.clone();
    if let Some(Value::Object(config)) = module_config {
        for (k, v) in config {
            merged.insert(k.clone(), v.clone());
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_get_the_nearest_one() {
        assert!(
            unavailable("kafak").contains("did you mean `kafka`"),
            "{}",
            unavailable("kafak")
        );
        assert!(unavailable("nonsense_module_x").contains("known modules"));
    }
}
