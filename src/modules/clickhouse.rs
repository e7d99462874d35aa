//! The `clickhouse` module: one row per webhook in a ClickHouse table, over ClickHouse's HTTP
//! interface (so it works with every server version, 18.x included).
//!
//! module-config: `table` "webhook_logs", `include_headers` true, `include_timestamp` true.
//!
//! Connection type `clickhouse`: `host` "localhost", `port` **8123** (wcon talks HTTP; the
//! original's default 9000 is the native TCP port, which wcon does not speak), `database`
//! "default", `user` "default", `password`; or `url` (`http://…` or `https://…`) instead of
//! host and port. One HTTP client per connection name, shared.
//!
//! The table — `id` (message id), `webhook_id`, `timestamp` (`DateTime('UTC')`), `payload`
//! and `headers` (JSON text) — is created once per module as a `MergeTree` ordered by
//! `(webhook_id, timestamp)`. Each webhook is one `INSERT … FORMAT JSONEachRow`. Without
//! `include_timestamp` the timestamp keeps ClickHouse's default (0); without
//! `include_headers`, `headers` is empty. MergeTree does not de-duplicate: a redelivered
//! message adds a row with the same `id` (`LIMIT 1 BY id` reads each once).
//!
//! Errors: no connection, a timeout or HTTP 5xx are retried, except server exceptions that
//! no retry can fix (unparsable row, type mismatch); other 4xx (bad credentials, unknown
//! database) are rejected; a missing table is created again on the next attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::registry::{BuildContext, ModuleSpec};
use super::settings::{self, defaults::yes};
use super::table::{TableReady, check_identifier};
use super::{Connections, Delivery, Module, ModuleError, headers_json};
use crate::secret::Secret;

/// How long opening a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of ClickHouse's exception text an error keeps.
const MAX_ERROR_TEXT: usize = 300;
/// ClickHouse's UNKNOWN_TABLE exception code.
const UNKNOWN_TABLE: u32 = 60;
/// Exception codes that come with HTTP 500 on older servers but that no retry can fix:
/// syntax error (62), cannot parse input (26, 27, 38, 41, 72, 117), type mismatch (53),
/// no such column (16), unknown identifier (47).
const PERMANENT_CODES: &[u32] = &[16, 26, 27, 38, 41, 47, 53, 62, 72, 117];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickhouseConfig {
    #[serde(default = "default_table")]
    table: String,
    #[serde(default = "yes", deserialize_with = "settings::flag")]
    include_headers: bool,
    #[serde(default = "yes", deserialize_with = "settings::flag")]
    include_timestamp: bool,
}

fn default_table() -> String {
    "webhook_logs".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickhouseConnectionConfig {
    #[serde(default)]
    url: Option<Url>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default, deserialize_with = "settings::optional_number")]
    port: Option<u16>,
    #[serde(default = "default_name")]
    database: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<Secret<String>>,
}

fn default_name() -> String {
    "default".into()
}

/// The HTTP client shared by every module on one connection.
struct ClickhouseClient(reqwest::Client);

/// See the module docs.
pub struct ClickhouseModule {
    connection: String,
    connections: Arc<Connections>,
    endpoint: Url,
    user: String,
    password: Secret<String>,
    /// `` `database`.`table` ``, checked identifiers.
    table: String,
    create: String,
    insert: String,
    include_headers: bool,
    include_timestamp: bool,
    table_ready: TableReady,
}

impl std::fmt::Debug for ClickhouseModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickhouseModule")
            .field("connection", &self.connection)
            .field("endpoint", &self.endpoint.as_str())
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl ClickhouseModule {
    /// Checks the config and the connection entry; connects only on the first delivery.
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["clickhouse"])?;
        let settings: ClickhouseConnectionConfig = connection.settings()?;
        let at = |e: String| format!("connection `{}`: {e}", connection.name);
        let config: ClickhouseConfig = spec.config()?;
        check_identifier("module-config.table", &config.table)?;
        check_identifier("database", &settings.database).map_err(at)?;
        let Endpoint {
            url,
            user: url_user,
            password: url_password,
        } = endpoint(&settings).map_err(at)?;
        let table = format!("`{}`.`{}`", settings.database, config.table);
        Ok(Self {
            connection: connection.name.clone(),
            connections: ctx.connections.clone(),
            endpoint: url,
            user: settings.user.or(url_user).unwrap_or_else(default_name),
            password: settings.password.or(url_password).unwrap_or_default(),
            create: format!(
                "CREATE TABLE IF NOT EXISTS {table} (id String, webhook_id String, timestamp DateTime('UTC'), payload String, headers String) ENGINE = MergeTree() ORDER BY (webhook_id, timestamp)"
            ),
            insert: format!(
                "INSERT INTO {table} (id, webhook_id, timestamp, payload, headers) FORMAT JSONEachRow"
            ),
            table,
            include_headers: config.include_headers,
            include_timestamp: config.include_timestamp,
            table_ready: TableReady::default(),
        })
    }

    async fn client(&self) -> Result<Arc<ClickhouseClient>, ModuleError> {
        self.connections
            .client(&self.connection, || async {
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .map(ClickhouseClient)
                    .map_err(|e| ModuleError::rejected(e.without_url()))
            })
            .await
    }

    /// Runs one statement: `query` in the URL and the rows of an INSERT as the body, or (no
    /// `query`) the statement itself as the body.
    async fn run(&self, query: Option<&str>, body: String) -> Result<(), Failure> {
        let client = self.client().await.map_err(Failure::Other)?;
        let mut request = client.0.post(self.endpoint.clone());
        if let Some(query) = query {
            request = request.query(&[("query", query)]);
        }
        let response = request
            .basic_auth(&self.user, Some(self.password.expose()))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Failure::Other(ModuleError::retryable(format_args!(
                    "cannot reach clickhouse at `{}` (connection `{}`): {}",
                    self.endpoint,
                    self.connection,
                    e.without_url()
                )))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(classify(status, &text))
    }

    async fn create_table(&self) -> Result<(), ModuleError> {
        self.run(None, self.create.clone()).await.map_err(|f| {
            f.into_error().context(format_args!(
                "clickhouse: cannot create table {}",
                self.table
            ))
        })
    }

    fn row(&self, delivery: &Delivery) -> String {
        let mut row = json!({
            "id": delivery.message_id,
            "webhook_id": delivery.webhook_id,
            "payload": delivery.payload.to_string(),
        });
        if self.include_timestamp {
            row["timestamp"] = delivery
                .received_at
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
                .into();
        }
        if self.include_headers {
            row["headers"] = headers_json(&delivery.headers).to_string().into();
        }
        let mut line = row.to_string();
        line.push('\n');
        line
    }
}

#[async_trait]
impl Module for ClickhouseModule {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        self.table_ready.ensure(|| self.create_table()).await?;
        match self.run(Some(&self.insert), self.row(delivery)).await {
            Ok(()) => Ok(()),
            Err(Failure::UnknownTable(text)) => {
                // Dropped while we ran: create it again on the next attempt.
                self.table_ready.reset();
                Err(ModuleError::retryable(format_args!(
                    "clickhouse: table {} does not exist (any more); it is created again on the next attempt: {text}",
                    self.table
                )))
            }
            Err(failure) => Err(failure.into_error().context(format_args!(
                "clickhouse: insert into {} failed",
                self.table
            ))),
        }
    }
}

/// Why a statement failed.
enum Failure {
    /// ClickHouse says the table does not exist.
    UnknownTable(String),
    /// Anything else.
    Other(ModuleError),
}

impl Failure {
    fn into_error(self) -> ModuleError {
        match self {
            Self::UnknownTable(text) => ModuleError::Retryable(text),
            Self::Other(e) => e,
        }
    }
}

/// Sorts ClickHouse's answer: 5xx, 408 and 429 are worth retrying unless the exception code
/// says the statement itself is wrong; other 4xx are not.
fn classify(status: StatusCode, text: &str) -> Failure {
    let code = exception_code(text);
    let mut shown: String = text.trim().chars().take(MAX_ERROR_TEXT).collect();
    if shown.is_empty() {
        shown = "(no message)".into();
    }
    let message = format!("HTTP {}: {shown}", status.as_u16());
    if code == Some(UNKNOWN_TABLE) {
        return Failure::UnknownTable(message);
    }
    let retry = (status.is_server_error() && !code.is_some_and(|c| PERMANENT_CODES.contains(&c)))
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    Failure::Other(if retry {
        ModuleError::Retryable(message)
    } else {
        ModuleError::Rejected(message)
    })
}

/// The `N` of ClickHouse's `Code: N, …` exception text.
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The HTTP endpoint, with the credentials that were written into `url`.
struct Endpoint {
    /// Without user, password or query, so it can show in errors.
    url: Url,
    user: Option<String>,
    password: Option<Secret<String>>,
}

/// The endpoint of a connection entry.
fn endpoint(settings: &ClickhouseConnectionConfig) -> Result<Endpoint, String> {
    let Some(url) = &settings.url else {
        let host = settings.host.as_deref().unwrap_or("localhost");
        let port = settings.port.unwrap_or(8123);
        let url = Url::parse(&format!("http://{host}:{port}/"))
            .map_err(|_| format!("`host` `{host}` is not a valid host name"))?;
        return Ok(Endpoint {
            url,
            user: None,
            password: None,
        });
    };
    if settings.host.is_some() || settings.port.is_some() {
        return Err("give either `url` or `host`/`port`, not both".into());
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`url` must be http:// or https:// (ClickHouse's HTTP interface), not `{}://`",
            url.scheme()
        ));
    }
    let mut url = url.clone();
    let user = (!url.username().is_empty()).then(|| url.username().to_owned());
    let password = url.password().map(|p| Secret::new(p.to_owned()));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    Ok(Endpoint {
        url,
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_by_status_and_exception_code() {
        let retry =
            |status: u16, text: &str| match classify(StatusCode::from_u16(status).unwrap(), text) {
                Failure::Other(e) => e.is_retryable(),
                Failure::UnknownTable(_) => panic!("not a missing table"),
            };
        assert!(retry(
            503,
            "Code: 202, e.displayText() = DB::Exception: Too many simultaneous queries"
        ));
        assert!(!retry(
            500,
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input"
        ));
        assert!(!retry(
            401,
            "Code: 193, e.displayText() = DB::Exception: Wrong password"
        ));
        assert!(!retry(400, "Code: 62, Syntax error"));
        assert!(retry(429, ""));
        assert!(matches!(
            classify(
                StatusCode::NOT_FOUND,
                "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist."
            ),
            Failure::UnknownTable(_)
        ));
        assert_eq!(exception_code("Code: 516. DB::Exception"), Some(516));
        assert_eq!(exception_code("no code"), None);
    }

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        let settings: ClickhouseConnectionConfig = serde_json::from_value(serde_json::json!({
            "url": "https://alice:hunter22@ch.example.com:8443/?database=x"
        }))
        .unwrap();
        let parsed = endpoint(&settings).unwrap();
        assert_eq!(parsed.url.as_str(), "https://ch.example.com:8443/");
        assert_eq!(parsed.user.as_deref(), Some("alice"));
        assert_eq!(parsed.password.unwrap().expose(), "hunter22");
        let settings: ClickhouseConnectionConfig =
            serde_json::from_value(serde_json::json!({"host": "ch", "port": "8124"})).unwrap();
        assert_eq!(endpoint(&settings).unwrap().url.as_str(), "http://ch:8124/");
    }
}
