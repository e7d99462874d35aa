//! Output modules against real servers on 127.0.0.1 (started by `scripts/services.sh`, whose
//! addresses arrive as `WCON_TEST_*` variables). A missing service fails the test loudly.

mod support;

mod activemq;
#[cfg(feature = "aws")]
mod aws_sqs;
mod clickhouse;
#[cfg(feature = "gcp")]
mod gcp_pubsub;
mod http_webhook;
#[cfg(feature = "kafka")]
mod kafka;
mod log;
#[cfg(feature = "mqtt")]
mod mqtt;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgresql;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis_publish;
#[cfg(feature = "redis")]
mod redis_rq;
#[cfg(feature = "aws")]
mod s3;
mod save_to_disk;
mod websocket;
#[cfg(feature = "zeromq")]
mod zeromq;
