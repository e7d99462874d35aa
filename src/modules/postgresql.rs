//! The `postgresql` module (alias `postgres`): one row per webhook in a PostgreSQL table.
//!
//! module-config: `table` "webhook_events", `storage_mode` "json" | "relational" | "hybrid",
//! `upsert` false, `upsert_key` "id", `include_headers` true, `include_timestamp` true,
//! `schema` {`fields`: {name: {`column`, `type`, `constraints`, `default`}}, `indexes`:
//! {name: {`columns`, `unique`}}}. The table layout, identifier checks and type allow-list are
//! in [`super::sql_common`].
//!
//! Connection type `postgresql` (or `postgres`): `connection_string`, or `host` "localhost",
//! `port` 5432, `database` "postgres", `user` "postgres", `password`; `ssl`, `ssl_ca_cert`,
//! `ssl_cert`, `ssl_key`; `pool_min_size` 2, `pool_max_size` 10. One pool per connection name,
//! shared by every webhook that names it, opened on the first delivery.
//!
//! The table is created (`CREATE TABLE IF NOT EXISTS`, then its indexes) once per module. The
//! message id is the primary key and the insert ends in `ON CONFLICT (id) DO NOTHING`, so a
//! redelivered message leaves one row; with `upsert` it is `ON CONFLICT (upsert_key) DO UPDATE`
//! (the last delivery wins). Values are always bound parameters.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode,
};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection as _, Postgres};

use super::registry::{BuildContext, ModuleSpec};
use super::sql_common::{
    ColumnType, Dialect, Layout, SqlConnectionConfig, SqlModuleConfig, SqlValue, SslChoice,
};
use super::table::TableReady;
use super::{Connections, Delivery, Module, ModuleError};

/// How long opening one connection may take before the delivery is retried later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a delivery waits for a free pooled connection (the pool retries refused
/// connections until then).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole of one delivery: connect, create the table the first time, insert.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// See the module docs.
pub struct PostgresModule {
    connection: String,
    connections: Arc<Connections>,
    /// Holds the password: never printed (see the `Debug` impl).
    options: PgConnectOptions,
    pool_min: u32,
    pool_max: u32,
    layout: Layout,
    create: Vec<String>,
    insert: Arc<str>,
    types: Vec<ColumnType>,
    table_ready: TableReady,
}

impl std::fmt::Debug for PostgresModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresModule")
            .field("connection", &self.connection)
            .field("table", self.layout.table())
            .finish_non_exhaustive()
    }
}

impl PostgresModule {
    /// Checks the config and the connection entry; connects only on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["postgresql", "postgres"])?;
        let settings: SqlConnectionConfig = connection.settings()?;
        let options = connect_options(&settings)
            .map_err(|e| format!("connection `{}`: {e}", connection.name))?;
        let config: SqlModuleConfig = spec.config()?;
        let layout = Layout::new(config, Dialect::Postgres)?;
        let create = layout.create_statements(Dialect::Postgres);
        let insert = insert_statement(&layout);
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
            types,
            table_ready: TableReady::default(),
        })
    }

    /// The shared pool of this connection, opened on first use.
    async fn pool(&self) -> Result<Arc<PgPool>, ModuleError> {
        self.connections
            .client(&self.connection, || async {
                // One plain connection first: the pool retries a refused connection until its
                // acquire timeout and then only reports "timed out", hiding the cause.
                let probe = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    PgConnection::connect_with(&self.options),
                )
                .await
                .map_err(|_| ModuleError::retryable("connecting timed out"))?
                .map_err(|e| classify(&e))?;
                let _ = probe.close().await;
                Ok(PgPoolOptions::new()
                    .min_connections(self.pool_min)
                    .max_connections(self.pool_max)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(self.options.clone()))
            })
            .await
            .map_err(|e| {
                e.context(format_args!(
                    "postgresql: cannot connect to `{}:{}` (connection `{}`)",
                    self.options.get_host(),
                    self.options.get_port(),
                    self.connection
                ))
            })
    }

    /// Creates the table and its indexes.
    async fn create_table(&self, pool: &PgPool) -> Result<(), ModuleError> {
        for statement in &self.create {
            let result = sqlx::query(AssertSqlSafe(statement.as_str()))
                .persistent(false)
                .execute(pool)
                .await;
            match result {
                Ok(_) => {}
                // Two processes creating the same table at once: the loser hits the catalog's
                // unique index (23505) or sees the table appear (42P07). Either way it exists.
                Err(sqlx::Error::Database(db))
                    if matches!(db.code().as_deref(), Some("23505" | "42P07")) => {}
                Err(e) => {
                    return Err(classify(&e).context(format_args!(
                        "postgresql: cannot create table `{}`",
                        self.layout.table().name()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn insert(&self, row: Vec<SqlValue>) -> Result<(), ModuleError> {
        let pool = self.pool().await?;
        self.table_ready.ensure(|| self.create_table(&pool)).await?;
        let mut query = sqlx::query(AssertSqlSafe(self.insert.clone()));
        for (value, ty) in row.into_iter().zip(&self.types) {
            query = bind(query, *ty, value);
        }
        match query.execute(&*pool).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if let sqlx::Error::Database(db) = &e
                    && db.code().as_deref() == Some("42P01")
                {
                    // The table was dropped while we ran: create it again on the next try.
                    self.table_ready.reset();
                    return Err(ModuleError::retryable(format_args!(
                        "postgresql: table `{}` does not exist (any more); it is created again on the next attempt",
                        self.layout.table().name()
                    )));
                }
                Err(classify(&e).context(format_args!(
                    "postgresql: insert into `{}` failed",
                    self.layout.table().name()
                )))
            }
        }
    }
}

#[async_trait]
impl Module for PostgresModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let row = self
            .layout
            .row(delivery)
            .map_err(|e| ModuleError::Rejected(format!("postgresql: {e}")))?;
        tokio::time::timeout(DELIVERY_TIMEOUT, self.insert(row))
            .await
            .map_err(|_| {
                ModuleError::retryable(format_args!(
                    "postgresql: no answer within {}s",
                    DELIVERY_TIMEOUT.as_secs()
                ))
            })?
    }
}

/// The driver's options from the connection entry; the error never shows the password.
fn connect_options(settings: &SqlConnectionConfig) -> Result<PgConnectOptions, String> {
    settings.validate()?;
    let mut options = match &settings.connection_string {
        Some(url) => PgConnectOptions::from_str(url.expose()).map_err(|_| {
            "`connection_string` is not a valid postgres://user:password@host:port/database URL"
                .to_owned()
        })?,
        None => {
            let mut options = PgConnectOptions::new_without_pgpass()
                .host(settings.host.as_deref().unwrap_or("localhost"))
                .port(settings.port.unwrap_or(5432))
                .database(settings.database.as_deref().unwrap_or("postgres"))
                .username(settings.user.as_deref().unwrap_or("postgres"));
            if let Some(password) = &settings.password {
                options = options.password(password.expose());
            }
            options
        }
    };
    options = match settings.ssl_choice()? {
        SslChoice::Default => options,
        SslChoice::Off => options.ssl_mode(PgSslMode::Disable),
        SslChoice::On if settings.ssl_ca_cert.is_some() => options.ssl_mode(PgSslMode::VerifyFull),
        SslChoice::On => options.ssl_mode(PgSslMode::Require),
        SslChoice::Mode(mode) => options.ssl_mode(PgSslMode::from_str(&mode).map_err(|_| {
            format!("`ssl` mode `{mode}` is unknown; use disable, allow, prefer, require, verify-ca or verify-full")
        })?),
    };
    if let Some(path) = &settings.ssl_ca_cert {
        options = options.ssl_root_cert(path);
    }
    if let Some(path) = &settings.ssl_cert {
        options = options.ssl_client_cert(path);
    }
    if let Some(path) = &settings.ssl_key {
        options = options.ssl_client_key(path);
    }
    Ok(options.application_name("wcon"))
}

/// `INSERT … ON CONFLICT …` with one cast parameter per column.
fn insert_statement(layout: &Layout) -> String {
    let q = |name: &str| Dialect::Postgres.quote(name);
    let columns = layout.columns();
    let names: Vec<String> = columns.iter().map(|(c, _)| q(c)).collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("CAST(${} AS {})", i + 1, cast_type(*ty)))
        .collect();
    let conflict = match layout.upsert_key() {
        None => format!("ON CONFLICT ({}) DO NOTHING", q("id")),
        Some(key) => {
            let sets: Vec<String> = columns
                .iter()
                .filter(|(c, _)| *c != key)
                .map(|(c, _)| format!("{0} = EXCLUDED.{0}", q(c)))
                .collect();
            format!("ON CONFLICT ({}) DO UPDATE SET {}", q(key), sets.join(", "))
        }
    };
    format!(
        "INSERT INTO {} ({}) VALUES ({}) {conflict}",
        layout.table().quoted(Dialect::Postgres),
        names.join(", "),
        values.join(", ")
    )
}

/// The type a parameter is cast to. A length is left out on purpose: an explicit cast to
/// `VARCHAR(n)` truncates silently, while storing an over-long value into the column fails.
fn cast_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Varchar(_) => "TEXT".into(),
        other => other.sql(Dialect::Postgres),
    }
}

/// Binds `value` with the Rust type fixed by the column type, so a cached prepared statement
/// always sees the same parameter types (NULL included).
fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    ty: ColumnType,
    value: SqlValue,
) -> Query<'q, Postgres, PgArguments> {
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
        (ColumnType::Timestamp, SqlValue::Timestamp(t)) => query.bind(Some(t.naive_utc())),
        (ColumnType::Timestamp, _) => query.bind(None::<chrono::NaiveDateTime>),
        (ColumnType::TimestampTz, SqlValue::Timestamp(t)) => query.bind(Some(t)),
        (ColumnType::TimestampTz, _) => query.bind(None::<chrono::DateTime<chrono::Utc>>),
        (ColumnType::Date, SqlValue::Date(d)) => query.bind(Some(d)),
        (ColumnType::Date, _) => query.bind(None::<chrono::NaiveDate>),
        (ColumnType::Json | ColumnType::Jsonb, SqlValue::Json(v)) => query.bind(Some(Json(v))),
        (ColumnType::Json | ColumnType::Jsonb, _) => query.bind(None::<Json<serde_json::Value>>),
        (
            ColumnType::Text | ColumnType::Varchar(_) | ColumnType::Uuid | ColumnType::Numeric(_),
            SqlValue::Text(s) | SqlValue::Decimal(s),
        ) => query.bind(Some(s)),
        (
            ColumnType::Text | ColumnType::Varchar(_) | ColumnType::Uuid | ColumnType::Numeric(_),
            _,
        ) => query.bind(None::<String>),
    }
}

/// Whether a failure may pass by retrying, by SQLSTATE class: connection problems (08),
/// resources (53), operator intervention (57), system errors (58), serialization failures,
/// deadlocks and lock timeouts are retried; data, constraint, syntax, permission and
/// authentication errors are not.
fn classify(error: &sqlx::Error) -> ModuleError {
    super::sql_common::classify(error, |db| {
        let code = db.code().unwrap_or_default();
        ["08", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class))
            || matches!(&*code, "40001" | "40P01" | "55P03" | "55006")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(config: serde_json::Value) -> Layout {
        Layout::new(serde_json::from_value(config).unwrap(), Dialect::Postgres).unwrap()
    }

    #[test]
    fn inserts_are_parameterized_and_idempotent() {
        let sql = insert_statement(&layout(json!({"table": "public.events"})));
        assert_eq!(
            sql,
            "INSERT INTO \"public\".\"events\" (\"id\", \"webhook_id\", \"timestamp\", \"headers\", \"payload\") \
             VALUES (CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TIMESTAMPTZ), CAST($4 AS JSONB), CAST($5 AS JSONB)) \
             ON CONFLICT (\"id\") DO NOTHING"
        );
        let sql = insert_statement(&layout(json!({
            "storage_mode": "relational", "upsert": true, "upsert_key": "sku",
            "schema": {"fields": {"sku": {"type": "varchar(20)"}, "qty": {"type": "integer"}}}
        })));
        assert!(
            sql.contains("CAST($5 AS INTEGER), CAST($6 AS TEXT)"),
            "{sql}"
        );
        assert!(sql.ends_with("ON CONFLICT (\"sku\") DO UPDATE SET \"id\" = EXCLUDED.\"id\", \"webhook_id\" = EXCLUDED.\"webhook_id\", \"timestamp\" = EXCLUDED.\"timestamp\", \"headers\" = EXCLUDED.\"headers\", \"qty\" = EXCLUDED.\"qty\""), "{sql}");
    }

    #[test]
    fn connection_settings_never_leak_the_password() {
        let settings: SqlConnectionConfig = serde_json::from_value(json!({
            "connection_string": "postgres://u:hunter22@db:5432/x?sslmode=nonsense"
        }))
        .unwrap();
        let err = connect_options(&settings).unwrap_err();
        assert!(!err.contains("hunter22"), "{err}");
        let settings: SqlConnectionConfig = serde_json::from_value(
            json!({"host": "db", "port": "6543", "password": "hunter22", "ssl": "verify-full"}),
        )
        .unwrap();
        let options = connect_options(&settings).unwrap();
        assert_eq!((options.get_host(), options.get_port()), ("db", 6543));
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
        let bad: SqlConnectionConfig = serde_json::from_value(json!({"ssl": "sometimes"})).unwrap();
        assert!(connect_options(&bad).unwrap_err().contains("`ssl` mode"));
    }
}
