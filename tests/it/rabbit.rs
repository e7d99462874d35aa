//! Several `wcon serve` instances on one RabbitMQ (`--buffer rabbitmq`), and a RabbitMQ node
//! killed (-9) and started again in the middle of a stream. The shared RabbitMQ is used under
//! a queue prefix per test (its queues are deleted after); the restart test starts a private
//! node of its own, so the machine's RabbitMQ is never restarted.

use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Sink, TOKEN, Wcon, admin_get, post, relay, temp_dir};

fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/services.sh` and `. /var/tmp/wcon-services/env.sh` (scripts/test.sh does both)")
    })
}

/// Deletes the queues of a test prefix when dropped.
struct Prefix {
    url: String,
    prefix: String,
    channels: Vec<String>,
}

impl Prefix {
    fn new(url: &str, channels: &[&str]) -> Self {
        Self {
            url: url.to_string(),
            prefix: format!("wcon-it-{:016x}.", rand::random::<u64>()),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let channels: Vec<wcon::protocol::ChannelName> =
            self.channels.iter().map(|c| c.as_str().into()).collect();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(wcon::buffer::rabbitmq::delete_deployment(
                    &url, &prefix, &channels,
                ));
        })
        .join();
    }
}

fn serve_on_rabbitmq(webhooks: &serde_json::Value, dir: &Path, url: &str, prefix: &str) -> Wcon {
    Wcon::serve(
        webhooks,
        dir,
        &[
            ("WEBHOOK_CONNECT_BUFFER", "rabbitmq"),
            ("WEBHOOK_CONNECT_RABBITMQ_URL", url),
            ("WEBHOOK_CONNECT_RABBITMQ_PREFIX", prefix),
        ],
    )
}

async fn stats(serve: &Wcon, channel: &str) -> serde_json::Value {
    let mut s = admin_get(serve, &format!("/channels/{channel}/stats")).await;
    // Connections are each instance's own; every count of the buffer is shared.
    s.as_object_mut().unwrap().remove("connected_clients");
    s
}

async fn status_with(serve: &Wcon, channel: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(serve.url(&format!("/connect/status/{channel}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

/// Sends webhooks `range` alternately to `a` and `b`; every one must get 200.
async fn send_round_robin(
    a: &Wcon,
    b: &Wcon,
    range: std::ops::Range<u32>,
    sent: &mut HashSet<axum::body::Bytes>,
) {
    let client = reqwest::Client::new();
    for i in range {
        let target = if i % 2 == 0 { a } else { b };
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let (status, text) = post(&client, &target.url("/webhook/hook"), body.clone(), &[]).await;
        assert_eq!(status, 200, "{text}");
        sent.insert(axum::body::Bytes::from(body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_rabbitmq_deliver_everything_and_share_tokens() {
    let url = service("WCON_TEST_RABBITMQ_URL");
    let prefix = Prefix::new(&url, &["shared"]);
    let webhooks = relay("hook", "shared", serde_json::json!({}));
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let a = serve_on_rabbitmq(&webhooks, dir_a.path(), &url, &prefix.prefix);
    let b = serve_on_rabbitmq(&webhooks, dir_b.path(), &url, &prefix.prefix);
    let sink = Sink::start().await;
    let _on_a = Wcon::tunnel("shared", a.addr.unwrap(), &sink.target(), &[]);
    let mut sent = HashSet::new();
    send_round_robin(&a, &b, 0..20, &mut sent).await;
    sink.wait_until(
        Duration::from_secs(30),
        "every webhook, through A's connector",
        |s| s.delivered_bodies().is_superset(&sent),
    )
    .await;

    // A second connector on B: the two share the channel across instances.
    let _on_b = Wcon::tunnel("shared", b.addr.unwrap(), &sink.target(), &[]);
    send_round_robin(&a, &b, 20..60, &mut sent).await;
    sink.wait_until(
        Duration::from_secs(30),
        "every webhook, through both connectors",
        |s| s.delivered_bodies().is_superset(&sent),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(15);
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A token rotated through A (no grace) is the only one B accepts.
    assert_eq!(status_with(&b, "shared", TOKEN).await, 200);
    let r = reqwest::Client::new()
        .post(a.url("/admin/channels/shared/rotate-token"))
        .bearer_auth("admin-secret-token")
        .json(&serde_json::json!({"grace_period_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let new = v["new_token"].as_str().unwrap().to_string();
    assert_eq!(status_with(&a, "shared", TOKEN).await, 401);
    assert_eq!(status_with(&a, "shared", &new).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (old, fresh) = (
            status_with(&b, "shared", TOKEN).await,
            status_with(&b, "shared", &new).await,
        );
        if (old, fresh) == (401, 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never followed A's rotation: old token {old}, new token {fresh}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A private RabbitMQ node (its own node name, ports and data directory), so the machine's
/// shared RabbitMQ is never restarted.
struct PrivateRabbit {
    port: u16,
    dist_port: u16,
    base: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateRabbit {
    /// Starts a node on fresh ports and a fresh directory. A node that does not come up (under
    /// a loaded machine Erlang's boot can stall, or a port picked here was taken meanwhile) is
    /// killed and tried again, twice at most; the last failure panics with the node's log.
    fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut r = Self::prepare();
            match r.spawn(Duration::from_secs(90)) {
                Ok(()) => return r,
                Err(log) => {
                    r.kill9();
                    failures.push(log);
                }
            }
        }
        panic!(
            "the private RabbitMQ node did not start in 3 tries of 90 s; its last log:\n{}",
            failures.pop().unwrap_or_default()
        );
    }

    /// Starts the node again on the same ports and directory (what it stored survives).
    fn restart(&mut self) {
        if let Err(log) = self.spawn(Duration::from_secs(180)) {
            panic!("the private RabbitMQ node did not restart within 180 s; its log:\n{log}");
        }
    }

    fn prepare() -> Self {
        let base = temp_dir();
        for d in ["mnesia", "log"] {
            std::fs::create_dir_all(base.path().join(d)).unwrap();
        }
        let port = free_port();
        std::fs::write(
            base.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users.guest = false\n"),
        )
        .unwrap();
        std::fs::write(base.path().join("enabled_plugins"), "[].\n").unwrap();
        // The node runs as the `rabbitmq` user (the Debian wrapper switches to it).
        let chown = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(base.path())
            .status()
            .expect("chown runs");
        assert!(
            chown.success(),
            "cannot hand the node's directory to rabbitmq"
        );
        Self {
            port,
            // Not `port + 20000` (RabbitMQ's default), which may be an ephemeral port in use.
            dist_port: free_port(),
            base,
            child: None,
        }
    }

    /// The last lines of the node's log files, for a failure report.
    fn log_tail(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.base.path().join("log")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("== {}\n", entry.path().display()));
                for line in &lines[lines.len().saturating_sub(40)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Spawns the node and waits until it takes AMQP connections; on timeout, its log.
    fn spawn(&mut self, within: Duration) -> Result<(), String> {
        let b = self.base.path();
        let child = Command::new("rabbitmq-server")
            .env(
                "RABBITMQ_NODENAME",
                format!("wcon-test-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", b.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", b.join("log"))
            .env("RABBITMQ_CONFIG_FILE", b.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", b.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", b.join("node.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("rabbitmq-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let url = self.url();
        let deadline = Instant::now() + within;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            let up = rt.block_on(async {
                let c = tokio::time::timeout(
                    Duration::from_secs(5),
                    lapin::Connection::connect(&url, lapin::ConnectionProperties::default()),
                )
                .await;
                match c {
                    Ok(Ok(c)) => {
                        let _ = c.close(200, "up".into()).await;
                        true
                    }
                    _ => false,
                }
            });
            if up {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `kill -9` of the node (its pid file names the Erlang VM, which runs as another user
    /// under `su`), then of the wrapper's process group.
    fn kill9(&mut self) {
        let pid_file = self.base.path().join("node.pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(pid_file);
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // Keep the node's logs for the failure report.
            let keep = std::env::temp_dir().join(format!("wcon-private-rabbitmq-{}", self.port));
            let _ = Command::new("cp")
                .arg("-r")
                .arg(self.base.path().join("log"))
                .arg(&keep)
                .status();
            eprintln!("the private RabbitMQ node's logs: {}", keep.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rabbitmq_kill_loses_nothing_that_got_200_and_service_resumes() {
    let mut rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .unwrap();
    let url = rabbit.url();
    let webhooks = relay(
        "hook",
        "restart",
        serde_json::json!({"ack_timeout_seconds": 2}),
    );
    let dir = temp_dir();
    let serve = serve_on_rabbitmq(&webhooks, dir.path(), &url, "wcon.");
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("restart", serve.addr.unwrap(), &sink.target(), &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let hook = serve.url("/webhook/hook");
    let mut accepted = HashSet::new();
    let mut refused = 0;
    let mut ready_during_outage = None;
    for i in 0..30 {
        if i == 10 {
            // RabbitMQ 3.10 did not restart its stream coordinator (so the channel's streams
            // stayed down) when a node was killed within seconds of first creating them; a
            // node that ran for a while recovers them. Let it settle first.
            tokio::time::sleep(Duration::from_secs(10)).await;
            rabbit.kill9();
            // `/health` is liveness (200) and names the buffer's state; `/ready` refuses.
            // The client notices the closed connection within moments.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let health: serde_json::Value = client
                    .get(serve.url("/health"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if health["buffer"] == "unavailable" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the outage is not reported: {health}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let ready = client.get(serve.url("/ready")).send().await.unwrap();
            ready_during_outage = Some(ready.status().as_u16());
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
        if i == 15 {
            rabbit = tokio::task::spawn_blocking(move || {
                let mut r = rabbit;
                r.restart();
                r
            })
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready_during_outage, Some(503), "/ready reports the outage");
    assert!(refused > 0, "webhooks during the outage are refused (503)");
    // Service resumes by itself: after the restart webhooks are accepted again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 100;
    loop {
        let body = format!("{{\"n\":{n}}}").into_bytes();
        let (status, _) = post(&client, &hook, body.clone(), &[]).await;
        if status == 200 {
            accepted.insert(axum::body::Bytes::from(body));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest did not come back; wcon serve said:\n{}",
            serve.output().join("\n")
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
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
