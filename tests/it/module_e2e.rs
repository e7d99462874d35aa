//! End to end through every piece: a webhook → `wcon serve` (relay) → `wcon tunnel` in module
//! mode → a PostgreSQL row and a Kafka message (librdkafka's mock cluster), both read back by
//! independent clients; and a failing chain step that leaves the message unacked until it works.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::support::*;

fn postgres_url() -> String {
    std::env::var("WCON_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("WCON_TEST_POSTGRES_URL is not set: run scripts/services.sh and source /var/tmp/wcon-services/env.sh (scripts/test.sh does both)")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_then_tunnel_modules_write_postgres_and_kafka() {
    let cluster = MockCluster::new(1).unwrap();
    let suffix = format!("{:08x}", rand::random::<u32>());
    let topic = format!("wcon-e2e-{suffix}");
    let table = format!("wcon_e2e_{suffix}");
    cluster.create_topic(&topic, 1, 1).unwrap();

    let dir = temp_dir();
    let serve = Wcon::serve(&relay("payments", "pay", json!({})), dir.path(), &[]);
    std::fs::write(
        dir.path().join("local.json"),
        json!({"payments": {
            "chain": [
                {"module": "postgresql", "connection": "db", "module-config": {"table": table}},
                {"module": "kafka", "connection": "bus", "module-config": {"topic": topic, "key": "payments"}}
            ],
            "chain-config": {"execution": "parallel", "continue_on_error": false}
        }})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("connections.json"),
        json!({
            "db": {"type": "postgresql", "connection_string": postgres_url()},
            "bus": {"type": "kafka", "bootstrap_servers": cluster.bootstrap_servers()}
        })
        .to_string(),
    )
    .unwrap();
    let server = format!("http://{}", serve.addr.unwrap());
    let mut tunnel = Wcon::run_background_in_env(
        &[
            "tunnel",
            "pay",
            "--server",
            &server,
            "--webhooks",
            "local.json",
            "--connections",
            "connections.json",
        ],
        dir.path(),
        &[("WCON_TOKEN", TOKEN)],
    );
    tunnel.wait_for("connected to", Duration::from_secs(20));

    let client = reqwest::Client::new();
    let secret = "whsec_e2e";
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","amount":4200}"#.to_vec();
    let signature = stripe_signature(secret, chrono::Utc::now().timestamp(), &body);
    let (status, answer) = post(
        &client,
        &serve.url("/webhook/payments"),
        body.clone(),
        &[("stripe-signature", signature)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let message_id = serde_json::from_str::<Value>(&answer).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    tunnel.wait_for(
        &format!("{message_id} ok (postgresql, kafka)"),
        Duration::from_secs(60),
    );

    let db = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, payload FROM \"{table}\""
    )))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("id"), message_id);
    let payload: Value = row.get("payload");
    assert_eq!(payload["amount"], 4200);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
        .execute(&db)
        .await
        .unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", format!("wcon-e2e-{suffix}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic.as_str()]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a Kafka message")
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(message.payload().unwrap()).unwrap(),
        serde_json::from_slice::<Value>(&body).unwrap()
    );
    assert_eq!(message.key(), Some(&b"payments"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chain_step_in_a_tunnel_is_redelivered_until_it_works() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("orders", "ord", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(503);
    let out = dir.path().join("out");
    std::fs::write(
        dir.path().join("local.json"),
        json!({"orders": {
            "chain": [
                {"module": "save_to_disk", "module-config": {"base_dir": out.to_str().unwrap()}},
                {"module": "http_webhook", "module-config": {"url": sink.target()}}
            ],
            "chain-config": {"execution": "sequential", "continue_on_error": false}
        }})
        .to_string(),
    )
    .unwrap();
    let server = format!("http://{}", serve.addr.unwrap());
    let mut tunnel = Wcon::run_background_in_env(
        &[
            "tunnel",
            "ord",
            "--server",
            &server,
            "--webhooks",
            "local.json",
        ],
        dir.path(),
        &[("WCON_TOKEN", TOKEN)],
    );
    tunnel.wait_for("connected to", Duration::from_secs(20));
    let client = reqwest::Client::new();
    let (status, answer) = post(
        &client,
        &serve.url("/webhook/orders"),
        br#"{"order":9}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let message_id = serde_json::from_str::<Value>(&answer).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    tunnel.wait_for("not delivered", Duration::from_secs(30));
    assert!(
        sink.count() >= 1,
        "the sink saw the failed attempt: {:?}",
        tunnel.output()
    );
    let stats = admin_get(&serve, "/channels/ord").await;
    assert_eq!(
        stats["stats"]["messages_delivered"], 0,
        "not acked while a step fails: {stats}"
    );
    sink.set_status(200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = admin_get(&serve, "/channels/ord").await;
        if stats["stats"]["messages_delivered"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never acked: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        out.join(format!("{message_id}.json")).exists(),
        "save_to_disk wrote the message once, by id"
    );
    assert!(
        sink.all()
            .iter()
            .any(|r| r.status == 200 && r.body.as_ref() == br#"{"order":9}"#)
    );
}
