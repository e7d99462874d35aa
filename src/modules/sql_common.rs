//! What the `postgresql` and `mysql` modules share: their `module-config` and connection keys,
//! the table layout, SQL identifier checks, the column type allow-list and how payload fields
//! become column values.
//!
//! Every name that reaches SQL text (table, columns, indexes) is checked here to be a plain
//! identifier, and every column type comes from an allow-list, so a webhook's config cannot
//! inject SQL. Values are never SQL text: the modules bind them as parameters. Nothing here
//! touches the network.
//!
//! The table, in every storage mode: `id` (the message id, primary key, so a redelivery does
//! not write a second row), `webhook_id`, `timestamp` (when wcon received it; NULL unless
//! `include_timestamp`), `headers` (JSON; NULL unless `include_headers`), then the mapped
//! columns of `schema.fields` (relational and hybrid), `payload` (the whole payload as JSON;
//! json and hybrid) and `created_at` (set by the database).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::settings::{self, defaults::yes};
use super::table::{MAX_IDENTIFIER, check_identifier};
use super::{Delivery, ModuleError, headers_json};
use crate::secret::Secret;

/// The columns the module fills itself; `schema.fields` may not map onto them.
pub const META_COLUMNS: &[&str] = &[
    "id",
    "webhook_id",
    "timestamp",
    "headers",
    "payload",
    "created_at",
];

/// The SQL dialect a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `"quoted"` identifiers.
    Postgres,
    /// MySQL and MariaDB: `` `quoted` `` identifiers.
    MySql,
}

impl Dialect {
    /// `name` quoted as an identifier (already checked by [`check_identifier`]).
    pub fn quote(self, name: &str) -> String {
        match self {
            Self::Postgres => format!("\"{name}\""),
            Self::MySql => format!("`{name}`"),
        }
    }
}

// ---------------------------------------------------------------- module-config

/// The `module-config` of `postgresql` and `mysql` (the original's keys and defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlModuleConfig {
    #[serde(default = "default_table")]
    table: String,
    #[serde(default)]
    storage_mode: StorageMode,
    #[serde(default, deserialize_with = "settings::flag")]
    upsert: bool,
    #[serde(default = "default_upsert_key")]
    upsert_key: String,
    #[serde(default = "yes", deserialize_with = "settings::flag")]
    include_headers: bool,
    #[serde(default = "yes", deserialize_with = "settings::flag")]
    include_timestamp: bool,
    #[serde(default)]
    schema: SchemaConfig,
}

fn default_table() -> String {
    "webhook_events".into()
}

fn default_upsert_key() -> String {
    "id".into()
}

/// `storage_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// The whole payload in one JSON column.
    #[default]
    Json,
    /// Only the mapped columns of `schema.fields`.
    Relational,
    /// The mapped columns and the whole payload.
    Hybrid,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaConfig {
    #[serde(default)]
    fields: BTreeMap<String, FieldConfig>,
    #[serde(default)]
    indexes: BTreeMap<String, IndexConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldConfig {
    #[serde(default)]
    column: Option<String>,
    #[serde(rename = "type", default = "default_type")]
    kind: String,
    #[serde(default)]
    constraints: Option<OneOrMany>,
    #[serde(default)]
    default: Option<Value>,
}

fn default_type() -> String {
    "text".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexConfig {
    columns: Vec<String>,
    #[serde(default, deserialize_with = "settings::flag")]
    unique: bool,
}

// ---------------------------------------------------------------- connection keys

/// A connections.json entry of type `postgresql` or `mysql`: `connection_string`, or host,
/// port, database, user and password (defaults differ per database), plus TLS and pool sizes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConnectionConfig {
    /// A `postgres://…` or `mysql://…` URL instead of the separate keys.
    #[serde(default)]
    pub connection_string: Option<Secret<String>>,
    /// Server host.
    #[serde(default)]
    pub host: Option<String>,
    /// Server port.
    #[serde(default, deserialize_with = "settings::optional_number")]
    pub port: Option<u16>,
    /// Database name.
    #[serde(default)]
    pub database: Option<String>,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// `true`/`false` or a mode name (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`); absent: TLS when the server offers it.
    #[serde(default)]
    pub ssl: Option<Value>,
    /// CA certificate (PEM file) that the server's certificate must chain to.
    #[serde(default)]
    pub ssl_ca_cert: Option<PathBuf>,
    /// Client certificate (PEM file).
    #[serde(default)]
    pub ssl_cert: Option<PathBuf>,
    /// Client key (PEM file).
    #[serde(default)]
    pub ssl_key: Option<PathBuf>,
    /// Connections the pool keeps open.
    #[serde(default = "default_pool_min", deserialize_with = "settings::number")]
    pub pool_min_size: u32,
    /// Connections the pool opens at most.
    #[serde(default = "default_pool_max", deserialize_with = "settings::number")]
    pub pool_max_size: u32,
}

fn default_pool_min() -> u32 {
    2
}

fn default_pool_max() -> u32 {
    10
}

/// What `ssl` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslChoice {
    /// Not set: the driver's default (TLS when the server offers it).
    Default,
    /// `false`.
    Off,
    /// `true`: TLS required; the certificate is verified when `ssl_ca_cert` is given.
    On,
    /// A mode name, lowercased, for the driver to parse.
    Mode(String),
}

impl SqlConnectionConfig {
    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), String> {
        if self.connection_string.is_some()
            && (self.host.is_some()
                || self.port.is_some()
                || self.database.is_some()
                || self.user.is_some()
                || self.password.is_some())
        {
            return Err(
                "give either `connection_string` or host/port/database/user/password, not both"
                    .into(),
            );
        }
        if self.pool_max_size == 0 {
            return Err("`pool_max_size` must be at least 1".into());
        }
        if self.pool_min_size > self.pool_max_size {
            return Err(format!(
                "`pool_min_size` ({}) is larger than `pool_max_size` ({})",
                self.pool_min_size, self.pool_max_size
            ));
        }
        self.ssl_choice().map(|_| ())
    }

    /// The `ssl` key, read.
    pub fn ssl_choice(&self) -> Result<SslChoice, String> {
        match &self.ssl {
            None | Some(Value::Null) => Ok(SslChoice::Default),
            Some(Value::Bool(true)) => Ok(SslChoice::On),
            Some(Value::Bool(false)) => Ok(SslChoice::Off),
            Some(Value::String(s)) => Ok(match settings::parse_flag(s) {
                Some(true) => SslChoice::On,
                Some(false) => SslChoice::Off,
                None => SslChoice::Mode(s.trim().to_ascii_lowercase()),
            }),
            Some(other) => Err(format!(
                "`ssl` must be true, false or a mode name, not {other}"
            )),
        }
    }
}

// ---------------------------------------------------------------- identifiers and types

/// A table name: `name` or `schema.name`, both plain identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    /// Parses and checks `table`.
    pub fn parse(table: &str) -> Result<Self, String> {
        let (schema, name) = match table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, table),
        };
        if let Some(schema) = schema {
            check_identifier("module-config.table: schema", schema)?;
        }
        check_identifier("module-config.table", name)?;
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The table without its schema.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quoted, possibly schema-qualified name.
    pub fn quoted(&self, dialect: Dialect) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", dialect.quote(schema), dialect.quote(&self.name)),
            None => dialect.quote(&self.name),
        }
    }
}

/// A column type from the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `text`, `string`.
    Text,
    /// `varchar`, `varchar(n)`.
    Varchar(Option<u32>),
    /// `smallint`.
    SmallInt,
    /// `integer`, `int`.
    Integer,
    /// `bigint`.
    BigInt,
    /// `real`, `float`.
    Real,
    /// `double`, `double precision`.
    Double,
    /// `numeric`, `decimal`, optionally `(precision[, scale])`.
    Numeric(Option<(u32, u32)>),
    /// `boolean`, `bool`.
    Boolean,
    /// `timestamp`, `datetime`: a UTC time without zone.
    Timestamp,
    /// `timestamptz`, `timestamp with time zone`.
    TimestampTz,
    /// `date`.
    Date,
    /// `json`.
    Json,
    /// `jsonb` (plain JSON on MySQL).
    Jsonb,
    /// `uuid` (`CHAR(36)` on MySQL).
    Uuid,
}

/// The type names `type` accepts, for error messages.
const TYPE_NAMES: &str = "text, varchar(n), smallint, integer, bigint, real, double precision, numeric(p,s), boolean, timestamp, timestamptz, date, json, jsonb, uuid";

impl ColumnType {
    /// Parses a type name of the allow-list (case and spacing do not matter).
    pub fn parse(text: &str) -> Result<Self, String> {
        let unsupported = || format!("type `{text}` is not supported; use one of: {TYPE_NAMES}");
        let lower = text.to_ascii_lowercase();
        let normal = lower.split_whitespace().collect::<Vec<_>>().join(" ");
        let (base, args) = match normal.split_once('(') {
            Some((base, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(unsupported)?;
                let numbers: Result<Vec<u32>, _> =
                    inner.split(',').map(|n| n.trim().parse::<u32>()).collect();
                (base.trim(), Some(numbers.map_err(|_| unsupported())?))
            }
            None => (normal.as_str(), None),
        };
        let ty = match (base, args.as_deref()) {
            ("text" | "string", None) => Self::Text,
            ("varchar" | "character varying", None) => Self::Varchar(None),
            ("varchar" | "character varying", Some(&[n])) if (1..=65_535).contains(&n) => {
                Self::Varchar(Some(n))
            }
            ("smallint" | "int2", None) => Self::SmallInt,
            ("integer" | "int" | "int4", None) => Self::Integer,
            ("bigint" | "int8", None) => Self::BigInt,
            ("real" | "float" | "float4", None) => Self::Real,
            ("double" | "double precision" | "float8", None) => Self::Double,
            ("numeric" | "decimal", None) => Self::Numeric(None),
            ("numeric" | "decimal", Some(&[p])) if (1..=65).contains(&p) => {
                Self::Numeric(Some((p, 0)))
            }
            ("numeric" | "decimal", Some(&[p, s])) if (1..=65).contains(&p) && s <= p.min(30) => {
                Self::Numeric(Some((p, s)))
            }
            ("boolean" | "bool", None) => Self::Boolean,
            ("timestamp" | "timestamp without time zone" | "datetime", None) => Self::Timestamp,
            ("timestamptz" | "timestamp with time zone", None) => Self::TimestampTz,
            ("date", None) => Self::Date,
            ("json", None) => Self::Json,
            ("jsonb", None) => Self::Jsonb,
            ("uuid", None) => Self::Uuid,
            _ => return Err(unsupported()),
        };
        Ok(ty)
    }

    /// The type as written in `CREATE TABLE` (and in PostgreSQL's casts).
    pub fn sql(self, dialect: Dialect) -> String {
        use Dialect::{MySql, Postgres};
        match (self, dialect) {
            (Self::Text, _) => "TEXT".into(),
            (Self::Varchar(Some(n)), _) => format!("VARCHAR({n})"),
            (Self::Varchar(None), Postgres) => "VARCHAR".into(),
            // MySQL needs a length; 255 is the usual one.
            (Self::Varchar(None), MySql) => "VARCHAR(255)".into(),
            (Self::SmallInt, _) => "SMALLINT".into(),
            (Self::Integer, Postgres) => "INTEGER".into(),
            (Self::Integer, MySql) => "INT".into(),
            (Self::BigInt, _) => "BIGINT".into(),
            (Self::Real, Postgres) => "REAL".into(),
            (Self::Real, MySql) => "FLOAT".into(),
            (Self::Double, Postgres) => "DOUBLE PRECISION".into(),
            (Self::Double, MySql) => "DOUBLE".into(),
            (Self::Numeric(Some((p, s))), Postgres) => format!("NUMERIC({p},{s})"),
            (Self::Numeric(None), Postgres) => "NUMERIC".into(),
            (Self::Numeric(Some((p, s))), MySql) => format!("DECIMAL({p},{s})"),
            // MySQL's bare DECIMAL is DECIMAL(10,0), which would drop every fraction.
            (Self::Numeric(None), MySql) => "DECIMAL(65,30)".into(),
            (Self::Boolean, _) => "BOOLEAN".into(),
            (Self::Timestamp, Postgres) => "TIMESTAMP".into(),
            (Self::TimestampTz, Postgres) => "TIMESTAMPTZ".into(),
            (Self::Timestamp | Self::TimestampTz, MySql) => "DATETIME(6)".into(),
            (Self::Date, _) => "DATE".into(),
            (Self::Json, Postgres) => "JSON".into(),
            (Self::Jsonb, Postgres) => "JSONB".into(),
            (Self::Json | Self::Jsonb, MySql) => "JSON".into(),
            (Self::Uuid, Postgres) => "UUID".into(),
            (Self::Uuid, MySql) => "CHAR(36)".into(),
        }
    }

    /// Whether MySQL can index the column without a prefix length.
    fn indexable_in_mysql(self) -> bool {
        !matches!(self, Self::Text | Self::Json | Self::Jsonb)
    }

    /// The value a payload field gives this column; the error says what was expected.
    pub fn value_of(self, value: &Value) -> Result<SqlValue, String> {
        if value.is_null() {
            return Ok(SqlValue::Null);
        }
        match self {
            Self::Text | Self::Varchar(_) => Ok(SqlValue::Text(match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })),
            Self::Uuid => match value.as_str() {
                Some(s) if is_uuid(s) => Ok(SqlValue::Text(s.to_ascii_lowercase())),
                _ => Err("expected a UUID string".into()),
            },
            Self::SmallInt => integer(value, i64::from(i16::MIN), i64::from(i16::MAX)),
            Self::Integer => integer(value, i64::from(i32::MIN), i64::from(i32::MAX)),
            Self::BigInt => integer(value, i64::MIN, i64::MAX),
            Self::Real | Self::Double => {
                let f = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match f {
                    Some(f) if f.is_finite() => Ok(SqlValue::Float(f)),
                    _ => Err("expected a number".into()),
                }
            }
            Self::Numeric(_) => {
                let text = match value {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.trim().to_owned(),
                    _ => return Err("expected a number".into()),
                };
                let is_decimal = text.parse::<f64>().is_ok_and(f64::is_finite)
                    && text
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'));
                if is_decimal {
                    Ok(SqlValue::Decimal(text))
                } else {
                    Err("expected a number".into())
                }
            }
            Self::Boolean => match value {
                Value::Bool(b) => Ok(SqlValue::Bool(*b)),
                Value::String(s) => settings::parse_flag(s)
                    .map(SqlValue::Bool)
                    .ok_or_else(|| "expected true or false".into()),
                Value::Number(n) if n.as_i64() == Some(0) => Ok(SqlValue::Bool(false)),
                Value::Number(n) if n.as_i64() == Some(1) => Ok(SqlValue::Bool(true)),
                _ => Err("expected true or false".into()),
            },
            Self::Timestamp | Self::TimestampTz => {
                timestamp(value).map(SqlValue::Timestamp).ok_or_else(|| {
                    "expected an RFC 3339 time, `YYYY-MM-DD HH:MM:SS` (UTC) or Unix seconds".into()
                })
            }
            Self::Date => match value.as_str() {
                Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .or_else(|| timestamp(value).map(|t| t.date_naive()))
                    .map(SqlValue::Date)
                    .ok_or_else(|| "expected a date `YYYY-MM-DD`".into()),
                None => Err("expected a date `YYYY-MM-DD`".into()),
            },
            Self::Json | Self::Jsonb => Ok(SqlValue::Json(value.clone())),
        }
    }
}

fn integer(value: &Value, min: i64, max: i64) -> Result<SqlValue, String> {
    let n = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(SqlValue::Int(n)),
        Some(_) => Err(format!("the integer is outside {min}..={max}")),
        None => Err("expected an integer".into()),
    }
}

fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .map(|naive| naive.and_utc())
        }
        Value::Number(n) => {
            let seconds = n.as_f64()?;
            let whole = seconds.floor();
            let nanos = ((seconds - whole) * 1e9).round() as u32;
            DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
        }
        _ => None,
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A value ready to be bound as a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (range already checked for the column).
    Int(i64),
    /// A float.
    Float(f64),
    /// A decimal number as text, so no precision is lost on the way.
    Decimal(String),
    /// Text.
    Text(String),
    /// A JSON document.
    Json(Value),
    /// An instant.
    Timestamp(DateTime<Utc>),
    /// A calendar date.
    Date(NaiveDate),
}

// ---------------------------------------------------------------- the layout

/// A `schema.fields` entry, checked.
#[derive(Debug, Clone)]
pub struct MappedColumn {
    /// The payload field (a top-level key, or a dotted path into nested objects).
    field: String,
    /// The column it goes to.
    column: String,
    ty: ColumnType,
    not_null: bool,
    unique: bool,
    /// What an absent field stores.
    default: SqlValue,
}

/// A `schema.indexes` entry, checked.
#[derive(Debug, Clone)]
struct Index {
    name: String,
    columns: Vec<String>,
    unique: bool,
}

/// The table a module writes and how a delivery becomes a row; built from a checked config.
#[derive(Debug, Clone)]
pub struct Layout {
    table: TableName,
    mode: StorageMode,
    mapped: Vec<MappedColumn>,
    indexes: Vec<Index>,
    /// The conflict column when `upsert` is on.
    upsert_key: Option<String>,
    include_headers: bool,
    include_timestamp: bool,
}

impl Layout {
    /// Checks a `module-config` for `dialect`: every identifier, type, constraint, default
    /// and key.
    pub fn new(config: SqlModuleConfig, dialect: Dialect) -> Result<Self, String> {
        let table = TableName::parse(&config.table)?;
        let mode = config.storage_mode;
        let fields = config.schema.fields;
        match mode {
            StorageMode::Json if !fields.is_empty() => {
                return Err("module-config.schema.fields is only used with `storage_mode` \"relational\" or \"hybrid\"; remove it or change the mode".into());
            }
            StorageMode::Relational if fields.is_empty() => {
                return Err("`storage_mode` \"relational\" needs module-config.schema.fields (field name → {column, type, constraints, default})".into());
            }
            _ => {}
        }
        let mut mapped: Vec<MappedColumn> = Vec::with_capacity(fields.len());
        for (field, spec) in fields {
            let at = format!("module-config.schema.fields.{field}");
            let column = match spec.column {
                Some(column) => column,
                None => field.replace('.', "_"),
            };
            check_identifier(&format!("{at}: column"), &column)?;
            if META_COLUMNS.contains(&column.as_str()) {
                return Err(format!(
                    "{at}: column `{column}` is written by the module itself ({}); map the field to another column",
                    META_COLUMNS.join(", ")
                ));
            }
            if mapped.iter().any(|m| m.column == column) {
                return Err(format!("{at}: column `{column}` is mapped twice"));
            }
            let ty = ColumnType::parse(&spec.kind).map_err(|e| format!("{at}: {e}"))?;
            let (not_null, unique) =
                constraints(spec.constraints).map_err(|e| format!("{at}: {e}"))?;
            if unique && dialect == Dialect::MySql && !ty.indexable_in_mysql() {
                return Err(format!(
                    "{at}: MySQL cannot make a {} column UNIQUE; use varchar(n)",
                    ty.sql(dialect)
                ));
            }
            let default = match &spec.default {
                Some(value) => ty
                    .value_of(value)
                    .map_err(|e| format!("{at}.default: {e}"))?,
                None => SqlValue::Null,
            };
            mapped.push(MappedColumn {
                field,
                column,
                ty,
                not_null,
                unique,
                default,
            });
        }
        let known = |column: &str| {
            (META_COLUMNS.contains(&column)
                && (column != "payload" || mode != StorageMode::Relational))
                || mapped.iter().any(|m| m.column == column)
        };
        let column_type = |column: &str| {
            mapped
                .iter()
                .find(|m| m.column == column)
                .map(|m| m.ty)
                .unwrap_or(match column {
                    "headers" | "payload" => ColumnType::Jsonb,
                    _ => ColumnType::Varchar(Some(191)),
                })
        };
        let mut indexes = Vec::new();
        for (name, spec) in config.schema.indexes {
            let at = format!("module-config.schema.indexes.{name}");
            check_identifier(&format!("{at}: index name"), &name)?;
            if spec.columns.is_empty() {
                return Err(format!("{at}.columns: name at least one column"));
            }
            for column in &spec.columns {
                check_identifier(&format!("{at}.columns: column"), column)?;
                if !known(column) {
                    return Err(format!("{at}.columns: the table has no column `{column}`"));
                }
                if dialect == Dialect::MySql && !column_type(column).indexable_in_mysql() {
                    return Err(format!(
                        "{at}.columns: MySQL cannot index the {} column `{column}`; use varchar(n)",
                        column_type(column).sql(dialect)
                    ));
                }
            }
            indexes.push(Index {
                name,
                columns: spec.columns,
                unique: spec.unique,
            });
        }
        let upsert_key = if config.upsert {
            let key = config.upsert_key;
            check_identifier("module-config.upsert_key", &key)?;
            let allowed =
                key == "id" || key == "webhook_id" || mapped.iter().any(|m| m.column == key);
            if !allowed {
                return Err(format!(
                    "module-config.upsert_key `{key}` must be `id`, `webhook_id` or a column of schema.fields"
                ));
            }
            if dialect == Dialect::MySql && !column_type(&key).indexable_in_mysql() {
                return Err(format!(
                    "module-config.upsert_key: MySQL cannot index the {} column `{key}`; use varchar(n)",
                    column_type(&key).sql(dialect)
                ));
            }
            Some(key)
        } else {
            None
        };
        Ok(Self {
            table,
            mode,
            mapped,
            indexes,
            upsert_key,
            include_headers: config.include_headers,
            include_timestamp: config.include_timestamp,
        })
    }

    /// The table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// The conflict column when `upsert` is on.
    pub fn upsert_key(&self) -> Option<&str> {
        self.upsert_key.as_deref()
    }

    /// The columns every insert writes, in order, with their types.
    pub fn columns(&self) -> Vec<(&str, ColumnType)> {
        let mut columns = vec![
            ("id", ColumnType::Text),
            ("webhook_id", ColumnType::Text),
            ("timestamp", ColumnType::TimestampTz),
            ("headers", ColumnType::Jsonb),
        ];
        columns.extend(self.mapped.iter().map(|m| (m.column.as_str(), m.ty)));
        if self.mode != StorageMode::Relational {
            columns.push(("payload", ColumnType::Jsonb));
        }
        columns
    }

    /// The values of [`Layout::columns`] for one delivery; the error names the field.
    pub fn row(&self, delivery: &Delivery) -> Result<Vec<SqlValue>, String> {
        let mut row = vec![
            SqlValue::Text(delivery.message_id.to_string()),
            SqlValue::Text(delivery.webhook_id.to_string()),
            if self.include_timestamp {
                SqlValue::Timestamp(delivery.received_at)
            } else {
                SqlValue::Null
            },
            if self.include_headers {
                SqlValue::Json(headers_json(&delivery.headers))
            } else {
                SqlValue::Null
            },
        ];
        for m in &self.mapped {
            let value = match lookup(&delivery.payload, &m.field) {
                Some(value) => {
                    m.ty.value_of(value)
                        .map_err(|e| format!("payload field `{}`: {e}", m.field))?
                }
                None => m.default.clone(),
            };
            if value == SqlValue::Null && self.upsert_key.as_deref() == Some(m.column.as_str()) {
                return Err(format!(
                    "payload field `{}` is the upsert key and is missing",
                    m.field
                ));
            }
            row.push(value);
        }
        if self.mode != StorageMode::Relational {
            row.push(SqlValue::Json(delivery.payload.clone()));
        }
        Ok(row)
    }

    /// `CREATE TABLE IF NOT EXISTS …` and, on PostgreSQL, one `CREATE INDEX IF NOT EXISTS`
    /// per index (MySQL has no such statement, so its indexes are part of the table).
    pub fn create_statements(&self, dialect: Dialect) -> Vec<String> {
        let q = |name: &str| dialect.quote(name);
        let table = self.table.quoted(dialect);
        let mut definitions: Vec<String> = match dialect {
            Dialect::Postgres => vec![
                format!("{} TEXT PRIMARY KEY", q("id")),
                format!("{} TEXT NOT NULL", q("webhook_id")),
                format!("{} TIMESTAMPTZ", q("timestamp")),
                format!("{} JSONB", q("headers")),
            ],
            // 191 characters of utf8mb4 fit the 767-byte index limit of older servers.
            Dialect::MySql => vec![
                format!("{} VARCHAR(191) NOT NULL", q("id")),
                format!("{} VARCHAR(191) NOT NULL", q("webhook_id")),
                format!("{} DATETIME(6) NULL", q("timestamp")),
                format!("{} JSON NULL", q("headers")),
            ],
        };
        for m in &self.mapped {
            let mut definition = format!("{} {}", q(&m.column), m.ty.sql(dialect));
            if m.not_null {
                definition.push_str(" NOT NULL");
            }
            if m.unique {
                definition.push_str(" UNIQUE");
            }
            definitions.push(definition);
        }
        let (json, now) = match dialect {
            Dialect::Postgres => ("JSONB", "TIMESTAMPTZ NOT NULL DEFAULT now()"),
            Dialect::MySql => ("JSON", "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"),
        };
        if self.mode != StorageMode::Relational {
            definitions.push(format!("{} {json} NOT NULL", q("payload")));
        }
        definitions.push(format!("{} {now}", q("created_at")));
        let upsert_index = self
            .upsert_key
            .as_deref()
            .filter(|key| *key != "id")
            .map(|key| Index {
                name: truncate(&format!("{}_{key}_upsert", self.table.name())),
                columns: vec![key.to_owned()],
                unique: true,
            });
        let indexes = self.indexes.iter().chain(upsert_index.as_ref());
        let columns_of = |index: &Index| {
            index
                .columns
                .iter()
                .map(|c| q(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match dialect {
            Dialect::Postgres => {
                let mut statements = vec![format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({})",
                    definitions.join(", ")
                )];
                statements.extend(indexes.map(|index| {
                    format!(
                        "CREATE {}INDEX IF NOT EXISTS {} ON {table} ({})",
                        if index.unique { "UNIQUE " } else { "" },
                        q(&index.name),
                        columns_of(index)
                    )
                }));
                statements
            }
            Dialect::MySql => {
                definitions.push(format!("PRIMARY KEY ({})", q("id")));
                definitions.extend(indexes.map(|index| {
                    format!(
                        "{}KEY {} ({})",
                        if index.unique { "UNIQUE " } else { "" },
                        q(&index.name),
                        columns_of(index)
                    )
                }));
                vec![format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({}) DEFAULT CHARSET=utf8mb4",
                    definitions.join(", ")
                )]
            }
        }
    }
}

fn truncate(name: &str) -> String {
    name.chars().take(MAX_IDENTIFIER).collect()
}

/// `constraints`: `NOT NULL` and `UNIQUE` (a string or a list). `PRIMARY KEY` is refused:
/// the message id is the primary key.
fn constraints(spec: Option<OneOrMany>) -> Result<(bool, bool), String> {
    let words: Vec<String> = match spec {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(list)) => list,
    };
    let text = words.join(" ").to_ascii_uppercase();
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let (mut not_null, mut unique) = (false, false);
    let mut i = 0;
    while i < tokens.len() {
        match (tokens[i], tokens.get(i + 1).copied()) {
            ("NOT", Some("NULL")) => {
                not_null = true;
                i += 2;
            }
            ("NULL", _) => i += 1,
            ("UNIQUE", _) => {
                unique = true;
                i += 1;
            }
            ("PRIMARY", Some("KEY")) => {
                return Err("constraint PRIMARY KEY is not allowed: the message id (`id`) is the primary key; use UNIQUE".into());
            }
            _ => {
                return Err(format!(
                    "constraints `{}` are not supported; use NOT NULL and/or UNIQUE",
                    words.join(" ")
                ));
            }
        }
    }
    Ok((not_null, unique))
}

/// The value at `field`: a top-level key, or else a dotted path into nested objects.
fn lookup<'a>(payload: &'a Value, field: &str) -> Option<&'a Value> {
    if let Some(value) = payload.get(field) {
        return Some(value);
    }
    field
        .split('.')
        .try_fold(payload, |value, key| value.get(key))
}

/// Retryable or rejected, for a failed query: lost connections, pool timeouts and protocol
/// errors are retried; a database error is retried when `database_retryable` says so (each
/// server has its own codes); anything else (bad values, configuration) is rejected.
pub(crate) fn classify(
    error: &sqlx::Error,
    database_retryable: impl Fn(&dyn sqlx::error::DatabaseError) -> bool,
) -> ModuleError {
    let retry = match error {
        sqlx::Error::Database(db) => database_retryable(db.as_ref()),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        _ => false,
    };
    if retry {
        ModuleError::retryable(error)
    } else {
        ModuleError::rejected(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;
    use serde_json::json;

    fn layout(config: Value, dialect: Dialect) -> Result<Layout, String> {
        let config: SqlModuleConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        Layout::new(config, dialect)
    }

    #[test]
    fn table_names_may_have_a_schema() {
        assert!(TableName::parse("public.events").is_ok());
        assert!(TableName::parse("a.b.c").is_err());
        assert_eq!(
            TableName::parse("s.t").unwrap().quoted(Dialect::MySql),
            "`s`.`t`"
        );
    }

    #[test]
    fn types_come_from_the_allow_list() {
        assert_eq!(
            ColumnType::parse("VARCHAR( 100 )").unwrap(),
            ColumnType::Varchar(Some(100))
        );
        assert_eq!(
            ColumnType::parse("Double  Precision").unwrap(),
            ColumnType::Double
        );
        assert_eq!(
            ColumnType::parse("numeric(10,2)").unwrap(),
            ColumnType::Numeric(Some((10, 2)))
        );
        for bad in [
            "varchar(0)",
            "text; drop",
            "integer)",
            "serial",
            "numeric(5,9)",
            "int(11)",
        ] {
            assert!(ColumnType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_converted_or_explained() {
        let t = ColumnType::Integer;
        assert_eq!(t.value_of(&json!(5)).unwrap(), SqlValue::Int(5));
        assert_eq!(t.value_of(&json!("7")).unwrap(), SqlValue::Int(7));
        assert!(t.value_of(&json!(1.5)).is_err());
        assert!(t.value_of(&json!(1u64 << 40)).is_err());
        assert_eq!(
            ColumnType::Text.value_of(&json!({"a": 1})).unwrap(),
            SqlValue::Text("{\"a\":1}".into())
        );
        assert_eq!(
            ColumnType::Boolean.value_of(&json!("yes")).unwrap(),
            SqlValue::Bool(true)
        );
        assert_eq!(
            ColumnType::Numeric(None).value_of(&json!("12.50")).unwrap(),
            SqlValue::Decimal("12.50".into())
        );
        assert!(
            ColumnType::Numeric(None)
                .value_of(&json!("1; drop"))
                .is_err()
        );
        let SqlValue::Timestamp(t) = ColumnType::TimestampTz
            .value_of(&json!("2024-05-01T10:00:00+02:00"))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(t.to_rfc3339(), "2024-05-01T08:00:00+00:00");
        assert!(
            ColumnType::Timestamp
                .value_of(&json!(1_714_550_400))
                .is_ok()
        );
        assert!(ColumnType::Uuid.value_of(&json!("not-a-uuid")).is_err());
        assert_eq!(
            ColumnType::Date.value_of(&Value::Null).unwrap(),
            SqlValue::Null
        );
    }

    #[test]
    fn relational_rows_follow_the_schema() {
        let layout = layout(
            json!({
                "table": "orders",
                "storage_mode": "relational",
                "upsert": true,
                "upsert_key": "order_id",
                "schema": {
                    "fields": {
                        "order_id": {"type": "varchar(64)", "constraints": ["NOT NULL"]},
                        "customer.name": {"column": "customer", "type": "text"},
                        "status": {"type": "text", "default": "new"}
                    },
                    "indexes": {"orders_by_customer": {"columns": ["customer"]}}
                }
            }),
            Dialect::Postgres,
        )
        .unwrap();
        let columns: Vec<&str> = layout.columns().iter().map(|(c, _)| *c).collect();
        assert_eq!(
            columns,
            [
                "id",
                "webhook_id",
                "timestamp",
                "headers",
                "customer",
                "order_id",
                "status"
            ]
        );
        let d = delivery(br#"{"order_id":"A1","customer":{"name":"Ann"}}"#);
        let row = layout.row(&d).unwrap();
        assert_eq!(row[4], SqlValue::Text("Ann".into()));
        assert_eq!(row[5], SqlValue::Text("A1".into()));
        assert_eq!(row[6], SqlValue::Text("new".into()));
        let missing = layout
            .row(&delivery(br#"{"customer":{"name":"Ann"}}"#))
            .unwrap_err();
        assert!(missing.contains("upsert key"), "{missing}");
        let ddl = layout.create_statements(Dialect::Postgres);
        assert_eq!(ddl.len(), 3, "{ddl:?}");
        assert!(
            ddl[0].contains("\"order_id\" VARCHAR(64) NOT NULL"),
            "{}",
            ddl[0]
        );
        assert!(!ddl[0].contains("\"payload\""), "{}", ddl[0]);
        assert!(ddl[2].contains("CREATE UNIQUE INDEX IF NOT EXISTS \"orders_order_id_upsert\""));
    }

    #[test]
    fn bad_configs_are_refused_with_the_key() {
        let cases = [
            (json!({"table": "x;drop"}), "module-config.table"),
            (
                json!({"storage_mode": "relational"}),
                "needs module-config.schema.fields",
            ),
            (json!({"schema": {"fields": {"a": {}}}}), "only used with"),
            (
                json!({"storage_mode": "hybrid", "schema": {"fields": {"a": {"column": "a b"}}}}),
                "schema.fields.a: column",
            ),
            (
                json!({"storage_mode": "hybrid", "schema": {"fields": {"a": {"type": "blob"}}}}),
                "type `blob` is not supported",
            ),
            (
                json!({"storage_mode": "hybrid", "schema": {"fields": {"id": {}}}}),
                "written by the module itself",
            ),
            (
                json!({"storage_mode": "hybrid", "schema": {"fields": {"a": {"constraints": "CHECK (1)"}}}}),
                "not supported",
            ),
            (
                json!({"storage_mode": "hybrid", "schema": {"fields": {"a": {"type": "integer", "default": "x"}}}}),
                "schema.fields.a.default",
            ),
            (
                json!({"storage_mode": "hybrid", "schema": {"fields": {"a": {}}, "indexes": {"i": {"columns": ["b"]}}}}),
                "no column `b`",
            ),
            (
                json!({"upsert": true, "upsert_key": "nope"}),
                "upsert_key `nope`",
            ),
        ];
        for (config, expected) in cases {
            let err = layout(config.clone(), Dialect::Postgres).unwrap_err();
            assert!(err.contains(expected), "{config}: {err}");
        }
        let err = layout(
            json!({"storage_mode": "hybrid", "upsert": true, "upsert_key": "a", "schema": {"fields": {"a": {"type": "text"}}}}),
            Dialect::MySql,
        )
        .unwrap_err();
        assert!(err.contains("use varchar(n)"), "{err}");
    }

    #[test]
    fn mysql_keeps_indexes_in_the_table() {
        let layout = layout(
            json!({"storage_mode": "hybrid", "schema": {
                "fields": {"kind": {"type": "varchar(32)"}},
                "indexes": {"by_kind": {"columns": ["kind", "webhook_id"], "unique": true}}
            }}),
            Dialect::MySql,
        )
        .unwrap();
        let ddl = layout.create_statements(Dialect::MySql);
        assert_eq!(ddl.len(), 1);
        assert!(
            ddl[0].contains("UNIQUE KEY `by_kind` (`kind`, `webhook_id`)"),
            "{}",
            ddl[0]
        );
        assert!(ddl[0].contains("PRIMARY KEY (`id`)"), "{}", ddl[0]);
    }

    #[test]
    fn connection_keys_are_checked() {
        let both: SqlConnectionConfig =
            serde_json::from_value(json!({"connection_string": "postgres://x", "host": "h"}))
                .unwrap();
        assert!(both.validate().unwrap_err().contains("either"));
        let pools: SqlConnectionConfig =
            serde_json::from_value(json!({"pool_min_size": "5", "pool_max_size": 2})).unwrap();
        assert!(pools.validate().unwrap_err().contains("pool_min_size"));
        let ssl: SqlConnectionConfig = serde_json::from_value(json!({"ssl": "Require"})).unwrap();
        assert_eq!(ssl.ssl_choice().unwrap(), SslChoice::Mode("require".into()));
    }
}
