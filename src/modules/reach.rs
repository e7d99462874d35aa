//! Reaching a connection of connections.json once, for `serve --check` and `tunnel --check`:
//! finds the host:port addresses an entry names (`url`-like keys, `bootstrap_servers`, or
//! `host` / `port` with the type's default port) and opens one TCP connection to each.
//!
//! It proves the network path and that something listens there; it does not log in or speak
//! the broker's protocol (the first delivery does that).

use std::time::Duration;

use serde_json::Value;

use super::connections::Connection;

/// The default port of a connection type (and of the URL schemes those types use).
fn default_port(kind: &str) -> Option<u16> {
    Some(match kind {
        "redis" | "redis-rq" | "redis_rq" => 6379,
        "rediss" => 6380,
        "rabbitmq" | "amqp" => 5672,
        "amqps" => 5671,
        "kafka" => 9092,
        "postgresql" | "postgres" => 5432,
        "mysql" | "mariadb" => 3306,
        "clickhouse" => 8123,
        "mqtt" => 1883,
        "mqtts" => 8883,
        "activemq" | "stomp" => 61613,
        "http" => 80,
        "https" => 443,
        _ => return None,
    })
}

/// Where an entry points: `host:port` strings, or an explanation of why it cannot be reached
/// from its settings alone (a cloud service without `endpoint_url`).
pub fn addresses(connection: &Connection) -> Result<Vec<(String, u16)>, String> {
    let s = &connection.settings;
    let text = |k: &str| s.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    for key in ["url", "uri", "endpoint_url", "connection_string", "dsn"] {
        if let Some(raw) = text(key) {
            let url = url::Url::parse(raw).map_err(|e| format!("`{key}` is not a URL: {e}"))?;
            let host = url
                .host_str()
                .ok_or_else(|| format!("`{key}` has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = url
                .port_or_known_default()
                .or_else(|| default_port(url.scheme()))
                .or_else(|| default_port(&connection.kind))
                .ok_or_else(|| format!("`{key}` has no port"))?;
            return Ok(vec![(host, port)]);
        }
    }
    if let Some(servers) = text("bootstrap_servers").or(text("brokers")) {
        return servers
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| split_host_port(h, default_port(&connection.kind)))
            .collect();
    }
    match connection.kind.as_str() {
        "s3" | "aws_sqs" | "sqs" | "gcp_pubsub" => {
            return Err("a cloud service without `endpoint_url`; not reached".into());
        }
        "kafka" => return Ok(vec![("localhost".into(), 9092)]),
        _ => {}
    }
    let host = text("host").unwrap_or("localhost").to_string();
    let port = match s.get("port") {
        Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(Value::String(p)) => p.parse().ok(),
        _ => default_port(&connection.kind),
    }
    .ok_or_else(|| "no valid `port`".to_string())?;
    Ok(vec![(host, port)])
}

fn split_host_port(s: &str, default: Option<u16>) -> Result<(String, u16), String> {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => p
            .parse()
            .map(|p| (h.trim_matches(['[', ']']).to_string(), p))
            .map_err(|_| format!("`{s}` has no valid port")),
        _ => default
            .map(|p| (s.to_string(), p))
            .ok_or_else(|| format!("`{s}` has no port")),
    }
}

/// Opens one TCP connection to `host:port` within `timeout`.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
        Err(_) => Err(format!(
            "no answer from {host}:{port} within {}s",
            timeout.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(kind: &str, settings: Value) -> Connection {
        Connection {
            name: "c".into(),
            kind: kind.into(),
            settings,
        }
    }

    #[test]
    fn addresses_from_each_shape() {
        let a = |kind, v| addresses(&conn(kind, v));
        assert_eq!(
            a("redis", json!({"host": "r", "port": 7000})),
            Ok(vec![("r".into(), 7000)])
        );
        assert_eq!(
            a("postgresql", json!({"host": "db"})),
            Ok(vec![("db".into(), 5432)])
        );
        assert_eq!(
            a("rabbitmq", json!({"port": "5673"})),
            Ok(vec![("localhost".into(), 5673)])
        );
        assert_eq!(
            a("redis", json!({"url": "redis://:pw@cache.example:6390/0"})),
            Ok(vec![("cache.example".into(), 6390)])
        );
        assert_eq!(
            a("clickhouse", json!({"url": "https://ch.example/"})),
            Ok(vec![("ch.example".into(), 443)])
        );
        assert_eq!(
            a("kafka", json!({"bootstrap_servers": "k1:9093, k2"})),
            Ok(vec![("k1".into(), 9093), ("k2".into(), 9092)])
        );
        assert!(a("s3", json!({"bucket": "b"})).is_err());
        assert_eq!(
            a("s3", json!({"endpoint_url": "http://127.0.0.1:9000"})),
            Ok(vec![("127.0.0.1".into(), 9000)])
        );
        assert!(a("redis", json!({"port": "x"})).is_err());
    }

    #[tokio::test]
    async fn tcp_reaches_a_listener_and_reports_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tcp("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap();
        drop(listener);
        let err = tcp("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}
