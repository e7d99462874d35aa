//! Output modules against real servers on 127.0.0.1 (started by `scripts/services.sh`, whose
//! addresses arrive as `WCON_TEST_*` variables). A missing service fails the test loudly.

mod support;

#[cfg(feature = "aws")]
mod aws_sqs;
#[cfg(feature = "gcp")]
mod gcp_pubsub;
mod http_webhook;
mod log;
#[cfg(feature = "aws")]
mod s3;
mod save_to_disk;
mod websocket;
#[cfg(feature = "zeromq")]
mod zeromq;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "mqtt")]
mod mqtt;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis_publish;
#[cfg(feature = "redis")]
mod redis_rq;
mod activemq;
mod clickhouse;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgresql;
