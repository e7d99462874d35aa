//! Several `wcon serve` instances on one shared buffer (`--buffer redis`), and a Redis restart
//! in the middle of a stream. Each test uses its own key prefix (or its own Redis server), so
//! tests running in parallel and other users of the shared Redis do not collide.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Sink, Wcon, admin_get, post, relay, temp_dir};

fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/services.sh` and `. /var/tmp/wcon-services/env.sh` (scripts/test.sh does both)")
    })
}

/// Deletes the keys of a test prefix when dropped.
struct Prefix {
    url: String,
    prefix: String,
}

impl Prefix {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: format!("wcon-it-{:016x}:", rand::random::<u64>()),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

fn serve_on_redis(webhooks: &serde_json::Value, dir: &Path, url: &str, prefix: &str) -> Wcon {
    Wcon::serve(
        webhooks,
        dir,
        &[
            ("WEBHOOK_CONNECT_BUFFER", "redis"),
            ("WEBHOOK_CONNECT_REDIS_URL", url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", prefix),
        ],
    )
}

async fn stats(serve: &Wcon, channel: &str) -> serde_json::Value {
    let mut s = admin_get(serve, &format!("/channels/{channel}/stats")).await;
    // Connections are each instance's own; every count of the buffer is shared.
    s.as_object_mut().unwrap().remove("connected_clients");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_redis_deliver_everything() {
    let url = service("WCON_TEST_REDIS_URL");
    let prefix = Prefix::new(&url);
    let webhooks = relay("hook", "shared", serde_json::json!({}));
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let a = serve_on_redis(&webhooks, dir_a.path(), &url, &prefix.prefix);
    let b = serve_on_redis(&webhooks, dir_b.path(), &url, &prefix.prefix);
    let sink = Sink::start().await;
    let _on_a = Wcon::tunnel("shared", a.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    let mut sent = HashSet::new();
    for i in 0..20 {
        let target = if i % 2 == 0 { &a } else { &b };
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let (status, text) = post(&client, &target.url("/webhook/hook"), body.clone(), &[]).await;
        assert_eq!(status, 200, "{text}");
        sent.insert(axum::body::Bytes::from(body));
    }
    sink.wait_until(
        Duration::from_secs(30),
        "every webhook, through A's connector",
        |s| s.delivered_bodies().is_superset(&sent),
    )
    .await;

    // A second connector on B: the two share the channel across instances.
    let _on_b = Wcon::tunnel("shared", b.addr.unwrap(), &sink.target(), &[]);
    for i in 20..60 {
        let target = if i % 2 == 0 { &a } else { &b };
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let (status, text) = post(&client, &target.url("/webhook/hook"), body.clone(), &[]).await;
        assert_eq!(status, 200, "{text}");
        sent.insert(axum::body::Bytes::from(body));
    }
    sink.wait_until(
        Duration::from_secs(30),
        "every webhook, through both connectors",
        |s| s.delivered_bodies().is_superset(&sent),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (sa, sb) = (stats(&a, "shared").await, stats(&b, "shared").await);
        if sa["messages_delivered"] == 60 && sa == sb {
            assert_eq!(sa["messages_queued"], 0);
            assert_eq!(sa["messages_in_flight"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the instances disagree or miss acks: {sa} vs {sb}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private `redis-server` with an append-only file, on a port of its own.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The master's port, for a replica.
    replica_of: Option<u16>,
}

impl PrivateRedis {
    fn start() -> Self {
        Self::start_as(None)
    }

    fn start_as(replica_of: Option<u16>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            port,
            dir: temp_dir(),
            child: None,
            replica_of,
        };
        r.spawn();
        r
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        cmd.query(&mut c)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .args(["--save", "", "--dir"])
                .arg(self.dir.path());
            if let Some(master) = self.replica_of {
                cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
            }
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (scripts/services.sh installs it)");
            self.child = Some(child);
            let up = Instant::now() + Duration::from_secs(5);
            while Instant::now() < up {
                if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                    && redis::cmd("PING").query::<String>(&mut c).is_ok()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // The port may still be held by the server killed a moment ago.
            self.kill();
            assert!(Instant::now() < deadline, "redis-server did not start");
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_loses_nothing_that_got_200_and_service_resumes() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let webhooks = relay(
        "hook",
        "restart",
        serde_json::json!({"ack_timeout_seconds": 2}),
    );
    let dir = temp_dir();
    let serve = serve_on_redis(&webhooks, dir.path(), &url, "wcon:");
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("restart", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let hook = serve.url("/webhook/hook");
    let mut accepted = HashSet::new();
    let mut refused = 0;
    let mut health_during_outage = None;
    for i in 0..30 {
        if i == 10 {
            redis.kill();
            // `/health` is liveness (200) and names the buffer's state; `/ready` refuses.
            let health: serde_json::Value = client
                .get(serve.url("/health"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(health["buffer"], "unavailable", "{health}");
            let ready = client.get(serve.url("/ready")).send().await.unwrap();
            health_during_outage = Some(ready.status().as_u16());
        }
        if i == 15 {
            redis.spawn();
        }
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let (status, _) = post(&client, &hook, body.clone(), &[]).await;
        match status {
            200 => {
                accepted.insert(axum::body::Bytes::from(body));
            }
            503 => refused += 1,
            other => panic!("unexpected answer {other} to webhook {i}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health_during_outage, Some(503), "/ready reports the outage");
    assert!(refused > 0, "webhooks during the outage are refused (503)");
    // Service resumes by itself: after the restart webhooks are accepted again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 100;
    loop {
        let body = format!("{{\"n\":{n}}}").into_bytes();
        let (status, _) = post(&client, &hook, body.clone(), &[]).await;
        if status == 200 {
            accepted.insert(axum::body::Bytes::from(body));
            break;
        }
        assert!(Instant::now() < deadline, "ingest did not come back");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink.wait_until(
        Duration::from_secs(60),
        "every webhook that got 200, after the restart",
        |s| s.delivered_bodies().is_superset(&accepted),
    )
    .await;
    let health = client.get(serve.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// A private Redis Sentinel watching `master_port` as `wcon-master`.
struct PrivateSentinel {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl PrivateSentinel {
    fn start(master_port: u16) -> Self {
        Self::start_with(master_port, "")
    }

    /// With extra `sentinel …` lines for `wcon-master`.
    fn start_with(master_port: u16, extra: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = temp_dir();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor wcon-master 127.0.0.1 {master_port} 1\n{extra}"
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs as a Sentinel");
        let s = Self {
            port,
            _dir: dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = format!("redis://127.0.0.1:{port}/");
            if let Ok(mut c) = redis::Client::open(url).and_then(|c| c.get_connection())
                && redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg("wcon-master")
                    .query::<Vec<String>>(&mut c)
                    .is_ok_and(|a| a.len() == 2)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "the Sentinel did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_url_finds_the_master() {
    let redis = PrivateRedis::start();
    let sentinel = PrivateSentinel::start(redis.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/wcon-master", sentinel.port);
    let webhooks = relay("hook", "watched", serde_json::json!({}));
    let dir = temp_dir();
    let serve = serve_on_redis(&webhooks, dir.path(), &url, "wcon:");
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("watched", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::new();
    let (status, text) = post(
        &client,
        &serve.url("/webhook/hook"),
        b"{\"via\":\"sentinel\"}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    sink.wait_until(Duration::from_secs(20), "the webhook", |s| s.count() == 1)
        .await;
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // The ack follows the delivery; the counter is in the master Sentinel named.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered: Option<u64> = redis::cmd("HGET")
            .arg("wcon:{watched}:n")
            .arg("delivered")
            .query(&mut conn)
            .unwrap();
        if delivered == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ack never reached the master"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_sentinel_failover_service_resumes_on_the_new_master() {
    let mut master = PrivateRedis::start();
    let replica = PrivateRedis::start_as(Some(master.port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replica
        .query::<String>(redis::cmd("INFO").arg("replication"))
        .is_ok_and(|i| i.contains("master_link_status:up"))
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinel = PrivateSentinel::start_with(
        master.port,
        "sentinel down-after-milliseconds wcon-master 1000\nsentinel failover-timeout wcon-master 5000\n",
    );
    let url = format!("redis+sentinel://127.0.0.1:{}/wcon-master", sentinel.port);
    let webhooks = relay("hook", "failover", serde_json::json!({}));
    let dir = temp_dir();
    let serve = serve_on_redis(&webhooks, dir.path(), &url, "wcon:");
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("failover", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let hook = serve.url("/webhook/hook");
    let (status, text) = post(&client, &hook, b"{\"before\":1}".to_vec(), &[]).await;
    assert_eq!(status, 200, "{text}");
    sink.wait_until(Duration::from_secs(20), "the first webhook", |s| {
        s.count() == 1
    })
    .await;

    master.kill();
    // Refused (503) until Sentinel promoted the replica, then accepted by it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut accepted = HashSet::new();
    let mut n = 0;
    while accepted.len() < 5 {
        let body = format!("{{\"after\":{n}}}").into_bytes();
        let (status, _) = post(&client, &hook, body.clone(), &[]).await;
        match status {
            200 => {
                accepted.insert(axum::body::Bytes::from(body));
            }
            503 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("unexpected answer {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "ingest never moved to the new master"
        );
        n += 1;
    }
    sink.wait_until(
        Duration::from_secs(60),
        "every webhook accepted by the new master",
        |s| s.delivered_bodies().is_superset(&accepted),
    )
    .await;
    let role: String = replica
        .query(redis::cmd("INFO").arg("replication"))
        .unwrap();
    assert!(role.contains("role:master"), "{role}");
}

/// `serve --check` reaches a Redis or RabbitMQ buffer, and says so when it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_check_reaches_the_shared_buffer() {
    let url = service("WCON_TEST_REDIS_URL");
    let prefix = Prefix::new(&url);
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("webhooks.json"),
        relay("hook", "checked", serde_json::json!({})).to_string(),
    )
    .unwrap();
    let check = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wcon"))
            .args(["serve", "--check", "--config-dir"])
            .arg(dir.path())
            .args(extra)
            .env_remove("WEBHOOK_CONNECT_BUFFER")
            .output()
            .expect("wcon runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = check(&[
        "--buffer",
        "redis",
        "--redis-url",
        &url,
        "--redis-prefix",
        &prefix.prefix,
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("ok    buffer: Redis answers and takes writes"),
        "{stdout}"
    );
    // Nobody listens on a port just freed: the check fails and names the flag to fix.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("amqp://guest:secret-pw@127.0.0.1:{port}/%2f");
    let (code, stdout) = check(&["--buffer", "rabbitmq", "--rabbitmq-url", &dead]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  buffer: RabbitMQ does not answer within 10 s; check --rabbitmq-url"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("secret-pw"),
        "the password is never shown: {stdout}"
    );
    let (_, stdout) = check(&[]);
    assert!(
        stdout.contains("skip  buffer: embedded: no server to reach"),
        "{stdout}"
    );
}
