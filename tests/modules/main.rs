//! Output modules against real servers on 127.0.0.1 (started by `scripts/services.sh`, whose
//! addresses arrive as `WCON_TEST_*` variables). A missing service fails the test loudly.

mod support;

mod activemq;
mod clickhouse;
mod log;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgresql;
