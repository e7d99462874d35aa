//! The redis_rq module against the real Redis of `scripts/services.sh`, run by a real RQ worker.

use std::time::Duration;

use serde_json::{Value, json};
use wcon::modules::{ModuleError, NetworkPolicy};

use crate::support::{closed_port, delivery, module, service, try_module, unique};

/// The connections.json entry for the test Redis.
pub fn redis_entry(kind: &str) -> Value {
    let url = url::Url::parse(&service("WCON_TEST_REDIS_URL")).unwrap();
    json!({"type": kind, "host": url.host_str().unwrap(), "port": url.port().unwrap_or(6379), "db": 0})
}

const PROBE: &str = r#"
import json, os

def record(payload, headers):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "result.json"), "w") as f:
        json.dump({"payload": payload, "headers": headers}, f)
"#;

#[tokio::test]
async fn redis_rq_jobs_run_on_a_real_rq_worker() {
    let redis_url = service("WCON_TEST_REDIS_URL");
    let rq = service("WCON_TEST_RQ_BIN");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wcon_rq_probe.py"), PROBE).unwrap();
    let queue = unique("wcon-rq");

    let module = module(
        "redis_rq",
        json!({"function": "wcon_rq_probe.record", "queue_name": queue}),
        Some(redis_entry("redis-rq")),
    );
    let payload =
        json!({"order": 42, "price": 9.5, "tags": ["a", null, true], "nested": {"k": "v"}});
    module.deliver(&delivery(&payload)).await.unwrap();

    let worker = tokio::process::Command::new(&rq)
        .args(["worker", "--burst", "--url", &redis_url, &queue])
        .env("PYTHONPATH", dir.path())
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), worker)
        .await
        .expect("the rq worker finishes within 2 minutes")
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "rq worker failed: {log}");
    let result = std::fs::read_to_string(dir.path().join("result.json"))
        .unwrap_or_else(|e| panic!("the job did not run ({e}); worker output: {log}"));
    let result: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["payload"], payload);
    assert_eq!(result["headers"]["x-github-event"], "push");
    assert_eq!(result["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn redis_rq_config_errors_and_unreachable_server() {
    let err = try_module(
        "redis_rq",
        json!({"function": "tasks.run", "queue": "x"}),
        Some(redis_entry("redis")),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("queue"), "{err}");
    let err = try_module(
        "redis_rq",
        json!({}),
        Some(redis_entry("redis_rq")),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("function"), "{err}");
    let err = try_module(
        "redis_rq",
        json!({"function": "no dots here"}),
        Some(redis_entry("redis-rq")),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("dotted"), "{err}");

    let entry = json!({"type": "redis-rq", "host": "127.0.0.1", "port": closed_port(), "password": "s3cr3t-pw"});
    let module = module("redis_rq", json!({"function": "tasks.run"}), Some(entry));
    let err = module
        .deliver(&delivery(&json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Retryable(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}
