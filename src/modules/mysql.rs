//! The `mysql` module (alias `mariadb`): one row per webhook in a MySQL or MariaDB table.
//!
//! module-config: the same keys as `postgresql` — `table` "webhook_events", `storage_mode`
//! "json" | "relational" | "hybrid", `upsert` false, `upsert_key` "id", `include_headers`
//! true, `include_timestamp` true, `schema` {`fields`, `indexes`}; see [`super::sql_common`].
//! JSON columns are `JSON` (MariaDB stores them as checked `LONGTEXT`); times are
//! `DATETIME(6)` in UTC; a key or indexed column must not be `text`/`json` (MySQL cannot
//! index those without a prefix), which is refused when the module is built.
//!
//! Connection type `mysql` (or `mariadb`): `connection_string`, or `host` "localhost", `port`
//! 3306, `database` "mysql", `user` "root", `password`; `ssl`, `ssl_ca_cert`, `ssl_cert`,
//! `ssl_key`; `pool_min_size` 2, `pool_max_size` 10. One pool per connection name, shared,
//! opened on the first delivery.
//!
//! The table (with its indexes: MySQL has no `CREATE INDEX IF NOT EXISTS`) is created once per
//! module. A plain `INSERT` whose primary key (the message id) already exists is a redelivery
//! and counts as delivered; every other error stays an error. (`INSERT IGNORE` would also turn
//! bad values into silent truncation or zeros.) With `upsert` the insert ends in
//! `ON DUPLICATE KEY UPDATE`. Values are always bound parameters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool,
    MySqlPoolOptions, MySqlSslMode,
};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _};

use super::registry::{BuildContext, ModuleSpec};
use super::sql_common::{
    ColumnType, Dialect, Layout, SqlConnectionConfig, SqlModuleConfig, SqlValue, SslChoice,
};
use super::table::TableReady;
use super::{Connections, Delivery, Module, ModuleError};

/// How long opening one connection may take before the delivery is retried later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a delivery waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole of one delivery: connect, create the table the first time, insert.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Run on every new connection: a value that does not fit its column is an error, never a
/// silently truncated or zeroed value, whatever the server's default `sql_mode`.
const STRICT_MODE: &str =
    "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')";

/// MySQL's "duplicate entry" error.
const ER_DUP_ENTRY: u16 = 1062;
/// MySQL's "table doesn't exist" error.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// See the module docs.
pub struct MysqlModule {
    connection: String,
    connections: Arc<Connections>,
    /// Holds the password: never printed (see the `Debug` impl).
    options: MySqlConnectOptions,
    pool_min: u32,
    pool_max: u32,
    layout: Layout,
    create: Vec<String>,
    insert: Arc<str>,
    exists: Arc<str>,
    types: Vec<ColumnType>,
    table_ready: TableReady,
}

impl std::fmt::Debug for MysqlModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlModule")
            .field("connection", &self.connection)
            .field("table", self.layout.table())
            .finish_non_exhaustive()
    }
}

impl MysqlModule {
    /// Checks the config and the connection entry; connects only on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["mysql", "mariadb"])?;
        let settings: SqlConnectionConfig = connection.settings()?;
        let options = connect_options(&settings)
            .map_err(|e| format!("connection `{}`: {e}", connection.name))?;
        let config: SqlModuleConfig = spec.config()?;
        let layout = Layout::new(config, Dialect::MySql)?;
        let create = layout.create_statements(Dialect::MySql);
        let insert = insert_statement(&layout);
        let exists = format!(
            "SELECT 1 FROM {} WHERE {} = ?",
            layout.table().quoted(Dialect::MySql),
            Dialect::MySql.quote("id")
        );
        let types = layout.columns().into_iter().map(|(_, ty)| ty).collect();
        Ok(Self {
            connection: connection.name.clone(),
            connections: ctx.connections.clone(),
            options,
            pool_min: settings.pool_min_size,
            pool_max: settings.pool_max_size,
            layout,
            create,
            insert: insert.into(),
            exists: exists.into(),
            types,
            table_ready: TableReady::default(),
        })
    }

    /// The shared pool of this connection, opened on first use.
    async fn pool(&self) -> Result<Arc<MySqlPool>, ModuleError> {
        self.connections
            .client(&self.connection, || async {
                // One plain connection first: the pool retries a refused connection until its
                // acquire timeout and then only reports "timed out", hiding the cause.
                let mut probe = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    MySqlConnection::connect_with(&self.options),
                )
                .await
                .map_err(|_| ModuleError::retryable("connecting timed out"))?
                .map_err(|e| classify(&e))?;
                let strict = probe.execute(STRICT_MODE).await.map(|_| ());
                let _ = probe.close().await;
                strict.map_err(|e| classify(&e))?;
                Ok(MySqlPoolOptions::new()
                    .min_connections(self.pool_min)
                    .max_connections(self.pool_max)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|connection, _| {
                        Box::pin(async move { connection.execute(STRICT_MODE).await.map(|_| ()) })
                    })
                    .connect_lazy_with(self.options.clone()))
            })
            .await
            .map_err(|e| {
                e.context(format_args!(
                    "mysql: cannot connect to `{}:{}` (connection `{}`)",
                    self.options.get_host(),
                    self.options.get_port(),
                    self.connection
                ))
            })
    }

    /// Creates the table with its indexes.
    async fn create_table(&self, pool: &MySqlPool) -> Result<(), ModuleError> {
        for statement in &self.create {
            sqlx::query(AssertSqlSafe(statement.as_str()))
                .persistent(false)
                .execute(pool)
                .await
                .map_err(|e| {
                    classify(&e).context(format_args!(
                        "mysql: cannot create table `{}`",
                        self.layout.table().name()
                    ))
                })?;
        }
        Ok(())
    }

    async fn insert(&self, message_id: &str, row: Vec<SqlValue>) -> Result<(), ModuleError> {
        let pool = self.pool().await?;
        self.table_ready.ensure(|| self.create_table(&pool)).await?;
        let mut query = sqlx::query(AssertSqlSafe(self.insert.clone()));
        for (value, ty) in row.into_iter().zip(&self.types) {
            query = bind(query, *ty, value);
        }
        let error = match query.execute(&*pool).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let table = self.layout.table().name();
        match error_number(&error) {
            Some(ER_NO_SUCH_TABLE) => {
                // The table was dropped while we ran: create it again on the next try.
                self.table_ready.reset();
                Err(ModuleError::retryable(format_args!(
                    "mysql: table `{table}` does not exist (any more); it is created again on the next attempt"
                )))
            }
            Some(ER_DUP_ENTRY) if self.layout.upsert_key().is_none() => {
                // Already stored by an earlier delivery of the same message: that is success.
                // A clash on another unique column is not.
                let stored = sqlx::query(AssertSqlSafe(self.exists.clone()))
                    .bind(message_id)
                    .fetch_optional(&*pool)
                    .await
                    .map_err(|e| {
                        classify(&e).context("mysql: checking for an earlier delivery failed")
                    })?;
                match stored {
                    Some(_) => Ok(()),
                    None => Err(classify(&error)
                        .context(format_args!("mysql: insert into `{table}` failed"))),
                }
            }
            _ => Err(classify(&error).context(format_args!("mysql: insert into `{table}` failed"))),
        }
    }
}

#[async_trait]
impl Module for MysqlModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let row = self
            .layout
            .row(delivery)
            .map_err(|e| ModuleError::Rejected(format!("mysql: {e}")))?;
        tokio::time::timeout(
            DELIVERY_TIMEOUT,
            self.insert(delivery.message_id.as_str(), row),
        )
        .await
        .map_err(|_| {
            ModuleError::retryable(format_args!(
                "mysql: no answer within {}s",
                DELIVERY_TIMEOUT.as_secs()
            ))
        })?
    }
}

/// The driver's options from the connection entry; the error never shows the password.
fn connect_options(settings: &SqlConnectionConfig) -> Result<MySqlConnectOptions, String> {
    settings.validate()?;
    let mut options = match &settings.connection_string {
        Some(url) => url.expose().parse::<MySqlConnectOptions>().map_err(|_| {
            "`connection_string` is not a valid mysql://user:password@host:port/database URL"
                .to_owned()
        })?,
        None => {
            let mut options = MySqlConnectOptions::new()
                .host(settings.host.as_deref().unwrap_or("localhost"))
                .port(settings.port.unwrap_or(3306))
                .database(settings.database.as_deref().unwrap_or("mysql"))
                .username(settings.user.as_deref().unwrap_or("root"));
            if let Some(password) = &settings.password {
                options = options.password(password.expose());
            }
            options
        }
    };
    options = match settings.ssl_choice()? {
        SslChoice::Default => options,
        SslChoice::Off => options.ssl_mode(MySqlSslMode::Disabled),
        SslChoice::On if settings.ssl_ca_cert.is_some() => {
            options.ssl_mode(MySqlSslMode::VerifyIdentity)
        }
        SslChoice::On => options.ssl_mode(MySqlSslMode::Required),
        // Both MySQL's names and PostgreSQL's, since the two modules share their keys.
        SslChoice::Mode(mode) => options.ssl_mode(match mode.replace('_', "-").as_str() {
            "disable" | "disabled" => MySqlSslMode::Disabled,
            "prefer" | "preferred" => MySqlSslMode::Preferred,
            "require" | "required" => MySqlSslMode::Required,
            "verify-ca" => MySqlSslMode::VerifyCa,
            "verify-full" | "verify-identity" => MySqlSslMode::VerifyIdentity,
            _ => {
                return Err(format!(
                    "`ssl` mode `{mode}` is unknown; use disabled, preferred, required, verify_ca or verify_identity"
                ));
            }
        }),
    };
    if let Some(path) = &settings.ssl_ca_cert {
        options = options.ssl_ca(path);
    }
    if let Some(path) = &settings.ssl_cert {
        options = options.ssl_client_cert(path);
    }
    if let Some(path) = &settings.ssl_key {
        options = options.ssl_client_key(path);
    }
    Ok(options)
}

/// `INSERT …` (with `ON DUPLICATE KEY UPDATE` for `upsert`), one parameter per column.
fn insert_statement(layout: &Layout) -> String {
    let q = |name: &str| Dialect::MySql.quote(name);
    let columns = layout.columns();
    let names: Vec<String> = columns.iter().map(|(c, _)| q(c)).collect();
    let values = vec!["?"; columns.len()].join(", ");
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({values})",
        layout.table().quoted(Dialect::MySql),
        names.join(", ")
    );
    if let Some(key) = layout.upsert_key() {
        // `VALUES(col)` rather than MySQL 8's row alias, which MariaDB does not have.
        let sets: Vec<String> = columns
            .iter()
            .filter(|(c, _)| *c != key)
            .map(|(c, _)| format!("{0} = VALUES({0})", q(c)))
            .collect();
        sql.push_str(" ON DUPLICATE KEY UPDATE ");
        sql.push_str(&sets.join(", "));
    }
    sql
}

/// Binds `value` with the Rust type fixed by the column type (NULL included).
fn bind<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    ty: ColumnType,
    value: SqlValue,
) -> Query<'q, MySql, MySqlArguments> {
    match (ty, value) {
        (ColumnType::Boolean, SqlValue::Bool(b)) => query.bind(Some(b)),
        (ColumnType::Boolean, _) => query.bind(None::<bool>),
        (ColumnType::SmallInt | ColumnType::Integer | ColumnType::BigInt, SqlValue::Int(n)) => {
            query.bind(Some(n))
        }
        (ColumnType::SmallInt | ColumnType::Integer | ColumnType::BigInt, _) => {
            query.bind(None::<i64>)
        }
        (ColumnType::Real | ColumnType::Double, SqlValue::Float(f)) => query.bind(Some(f)),
        (ColumnType::Real | ColumnType::Double, _) => query.bind(None::<f64>),
        (ColumnType::Timestamp | ColumnType::TimestampTz, SqlValue::Timestamp(t)) => {
            query.bind(Some(t.naive_utc()))
        }
        (ColumnType::Timestamp | ColumnType::TimestampTz, _) => {
            query.bind(None::<chrono::NaiveDateTime>)
        }
        (ColumnType::Date, SqlValue::Date(d)) => query.bind(Some(d)),
        (ColumnType::Date, _) => query.bind(None::<chrono::NaiveDate>),
        (ColumnType::Json | ColumnType::Jsonb, SqlValue::Json(v)) => {
            query.bind(Some(v.to_string()))
        }
        (
            ColumnType::Text | ColumnType::Varchar(_) | ColumnType::Uuid | ColumnType::Numeric(_),
            SqlValue::Text(s) | SqlValue::Decimal(s),
        ) => query.bind(Some(s)),
        (
            ColumnType::Json
            | ColumnType::Jsonb
            | ColumnType::Text
            | ColumnType::Varchar(_)
            | ColumnType::Uuid
            | ColumnType::Numeric(_),
            _,
        ) => query.bind(None::<String>),
    }
}

/// The server's error number, for a database error.
fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Whether a failure may pass by retrying: lost connections, too many connections, lock
/// timeouts, deadlocks, a server shutting down or a killed query are retried; bad values,
/// constraint violations, unknown databases, syntax and access errors are not.
fn classify(error: &sqlx::Error) -> ModuleError {
    super::sql_common::classify(error, |_| {
        matches!(
            error_number(error),
            // too many connections (1040, 1203), server shutdown (1053), query interrupted
            // (1317), lock wait timeout (1205), deadlock (1213), connection killed (1927),
            // execution time exceeded (3024), client-side connection errors (2002–2013)
            Some(1040 | 1053 | 1203 | 1205 | 1213 | 1317 | 1927 | 3024 | 2002..=2013)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(config: serde_json::Value) -> Layout {
        Layout::new(serde_json::from_value(config).unwrap(), Dialect::MySql).unwrap()
    }

    #[test]
    fn inserts_are_parameterized() {
        assert_eq!(
            insert_statement(&layout(json!({"table": "events"}))),
            "INSERT INTO `events` (`id`, `webhook_id`, `timestamp`, `headers`, `payload`) VALUES (?, ?, ?, ?, ?)"
        );
        let sql = insert_statement(&layout(json!({
            "storage_mode": "hybrid", "upsert": true, "upsert_key": "sku",
            "schema": {"fields": {"sku": {"type": "varchar(20)"}}}
        })));
        assert!(
            sql.ends_with("ON DUPLICATE KEY UPDATE `id` = VALUES(`id`), `webhook_id` = VALUES(`webhook_id`), `timestamp` = VALUES(`timestamp`), `headers` = VALUES(`headers`), `payload` = VALUES(`payload`)"),
            "{sql}"
        );
    }

    #[test]
    fn connection_settings_never_leak_the_password() {
        let settings: SqlConnectionConfig = serde_json::from_value(json!({
            "connection_string": "mysql://u:hunter22@db:notaport/x"
        }))
        .unwrap();
        let err = connect_options(&settings).unwrap_err();
        assert!(!err.contains("hunter22"), "{err}");
        let settings: SqlConnectionConfig = serde_json::from_value(
            json!({"host": "db", "password": "hunter22", "ssl": "verify_ca"}),
        )
        .unwrap();
        let options = connect_options(&settings).unwrap();
        assert_eq!((options.get_host(), options.get_port()), ("db", 3306));
        assert!(matches!(options.get_ssl_mode(), MySqlSslMode::VerifyCa));
    }
}
