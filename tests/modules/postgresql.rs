//! The postgresql module against the real PostgreSQL at `WCON_TEST_POSTGRES_URL`, every row
//! read back with an independent sqlx connection.

use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use crate::support::{delivery, module, service, try_module};
use wcon::modules::{ModuleError, NetworkPolicy};

fn url() -> String {
    service("WCON_TEST_POSTGRES_URL")
}

fn connection() -> Value {
    json!({"type": "postgresql", "connection_string": url()})
}

/// A table name no other run or test uses.
fn table(prefix: &str) -> String {
    format!("wcon_{prefix}_{:08x}", rand::random::<u32>())
}

async fn reader() -> PgPool {
    PgPool::connect(&url())
        .await
        .expect("connecting the test's own reader")
}

async fn drop_table(db: &PgPool, table: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS \"{table}\""
    )))
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn json_mode_stores_one_row_and_a_redelivery_adds_none() {
    let table = table("pg_json");
    let config = json!({"table": table});
    let m = module("postgresql", config.clone(), Some(connection()));
    let d = delivery(&json!({"event": "order.paid", "amount": 12.5, "items": [1, 2]}));
    m.deliver(&d).await.unwrap();
    m.deliver(&d).await.unwrap();
    // A restarted wcon (a new module, the table already there) redelivers it once more.
    let again = module("postgres", config, Some(connection()));
    again.deliver(&d).await.unwrap();

    let db = reader().await;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, webhook_id, timestamp, payload, headers, created_at FROM \"{table}\""
    )))
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "a redelivered message must not add a row");
    let row = &rows[0];
    assert_eq!(row.get::<String, _>("id"), d.message_id.to_string());
    assert_eq!(row.get::<String, _>("webhook_id"), "orders");
    let stored: chrono::DateTime<chrono::Utc> = row.get("timestamp");
    assert_eq!(stored.timestamp_micros(), d.received_at.timestamp_micros());
    assert_eq!(row.get::<Value, _>("payload"), d.payload);
    assert_eq!(row.get::<Value, _>("headers")["x-github-event"], "push");
    assert!(
        row.get::<Option<chrono::DateTime<chrono::Utc>>, _>("created_at")
            .is_some()
    );
    drop_table(&db, &table).await;
}

#[tokio::test]
async fn relational_mode_maps_payload_fields_to_typed_columns() {
    let table = table("pg_rel");
    let index = format!("{table}_by_customer");
    let m = module(
        "postgresql",
        json!({
            "table": table,
            "storage_mode": "relational",
            "schema": {
                "fields": {
                    "order_id": {"type": "varchar(32)", "constraints": ["NOT NULL", "UNIQUE"]},
                    "amount": {"type": "numeric(10,2)"},
                    "paid": {"type": "boolean"},
                    "customer.name": {"column": "customer", "type": "text"},
                    "paid_at": {"type": "timestamptz"},
                    "qty": {"type": "integer", "default": 1}
                },
                "indexes": {index.clone(): {"columns": ["customer"]}}
            }
        }),
        Some(connection()),
    );
    let d = delivery(&json!({
        "order_id": "A-1", "amount": "19.99", "paid": true,
        "customer": {"name": "Ann"}, "paid_at": "2024-05-01T10:00:00+02:00"
    }));
    m.deliver(&d).await.unwrap();

    let db = reader().await;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, order_id, amount::text AS amount, paid, customer, paid_at, qty FROM \"{table}\""
    )))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("id"), d.message_id.to_string());
    assert_eq!(row.get::<String, _>("order_id"), "A-1");
    assert_eq!(row.get::<String, _>("amount"), "19.99");
    assert!(row.get::<bool, _>("paid"));
    assert_eq!(row.get::<String, _>("customer"), "Ann");
    let paid_at: chrono::DateTime<chrono::Utc> = row.get("paid_at");
    assert_eq!(paid_at.to_rfc3339(), "2024-05-01T08:00:00+00:00");
    assert_eq!(
        row.get::<i32, _>("qty"),
        1,
        "an absent field takes its default"
    );
    let payload_column: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 AND column_name = 'payload'",
    )
    .bind(&table)
    .fetch_optional(&db)
    .await
    .unwrap();
    assert_eq!(
        payload_column, None,
        "relational mode keeps no payload column"
    );
    let index: Option<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = $1 AND indexname = $2",
    )
    .bind(&table)
    .bind(&index)
    .fetch_optional(&db)
    .await
    .unwrap();
    assert!(index.is_some(), "schema.indexes are created");

    // A value the column cannot hold is refused for good, and a NOT NULL column too.
    let err = m
        .deliver(&delivery(&json!({"order_id": "A-2", "qty": "many"})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModuleError::Rejected(m) if m.contains("qty")),
        "{err:?}"
    );
    let err = m
        .deliver(&delivery(&json!({"amount": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Rejected(_)), "{err:?}");
    // So is a second message with the same UNIQUE value: only the message id is idempotent.
    let err = m
        .deliver(&delivery(&json!({"order_id": "A-1"})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Rejected(_)), "{err:?}");
    drop_table(&db, &table).await;
}

#[tokio::test]
async fn hybrid_mode_keeps_mapped_columns_and_the_whole_payload() {
    let table = table("pg_hyb");
    let m = module(
        "postgresql",
        json!({
            "table": table,
            "storage_mode": "hybrid",
            "include_headers": false,
            "include_timestamp": false,
            "schema": {"fields": {"event": {"column": "event_type", "type": "varchar(50)"}}}
        }),
        Some(connection()),
    );
    let d = delivery(&json!({"event": "push", "repo": {"name": "wcon"}}));
    m.deliver(&d).await.unwrap();
    m.deliver(&d).await.unwrap();

    let db = reader().await;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT event_type, payload, headers, timestamp FROM \"{table}\""
    )))
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("event_type"), "push");
    assert_eq!(rows[0].get::<Value, _>("payload"), d.payload);
    assert_eq!(rows[0].get::<Option<Value>, _>("headers"), None);
    assert_eq!(
        rows[0].get::<Option<chrono::DateTime<chrono::Utc>>, _>("timestamp"),
        None
    );
    drop_table(&db, &table).await;
}

#[tokio::test]
async fn upsert_updates_the_row_with_the_same_key() {
    let table = table("pg_ups");
    let m = module(
        "postgresql",
        json!({
            "table": table,
            "storage_mode": "hybrid",
            "upsert": true,
            "upsert_key": "order_id",
            "schema": {"fields": {
                "order_id": {"type": "varchar(32)"},
                "status": {"type": "text"}
            }}
        }),
        Some(connection()),
    );
    let first = delivery(&json!({"order_id": "B-7", "status": "created"}));
    let second = delivery(&json!({"order_id": "B-7", "status": "shipped"}));
    m.deliver(&first).await.unwrap();
    m.deliver(&second).await.unwrap();

    let db = reader().await;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, status, payload FROM \"{table}\" WHERE order_id = 'B-7'"
    )))
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "the second delivery updates, not inserts");
    assert_eq!(rows[0].get::<String, _>("status"), "shipped");
    assert_eq!(
        rows[0].get::<String, _>("id"),
        second.message_id.to_string()
    );
    assert_eq!(rows[0].get::<Value, _>("payload"), second.payload);
    drop_table(&db, &table).await;
}

#[tokio::test]
async fn bad_identifiers_types_and_keys_are_refused_when_built() {
    let build = |config: Value| {
        try_module(
            "postgresql",
            config,
            Some(connection()),
            NetworkPolicy::Tunnel,
        )
        .unwrap_err()
    };
    let err = build(json!({"table": "events; DROP TABLE users"}));
    assert!(err.contains("not a valid SQL identifier"), "{err}");
    let err = build(json!({
        "storage_mode": "hybrid",
        "schema": {"fields": {"a": {"column": "a\" text); --"}}}
    }));
    assert!(err.contains("not a valid SQL identifier"), "{err}");
    let err = build(json!({
        "storage_mode": "hybrid",
        "schema": {"fields": {"a": {"type": "text DEFAULT pg_sleep(10)"}}}
    }));
    assert!(err.contains("is not supported"), "{err}");
    let err = build(json!({"tabel": "x"}));
    assert!(err.contains("tabel"), "{err}");
    let err = try_module(
        "postgresql",
        json!({}),
        Some(json!({"type": "postgresql", "hots": "db"})),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("hots"), "{err}");
    let err = try_module("postgresql", json!({}), None, NetworkPolicy::Tunnel).unwrap_err();
    assert!(err.contains("connection"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let m = module(
        "postgresql",
        json!({"table": "never_created"}),
        Some(
            json!({"type": "postgresql", "host": "127.0.0.1", "port": port, "password": "hunter22"}),
        ),
    );
    let started = std::time::Instant::now();
    let err = m.deliver(&delivery(&json!({"a": 1}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(!err.to_string().contains("hunter22"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
