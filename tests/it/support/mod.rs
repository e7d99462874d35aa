//! Test support: the real `wcon` binary as a child process, and a local HTTP sink.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;

pub const TOKEN: &str = "ch_tok_integration_secret";

/// A running `wcon` process, killed on drop. Its stdout/stderr lines are collected.
pub struct Wcon {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub addr: Option<SocketAddr>,
}

impl Wcon {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wcon"));
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        for k in [
            "WCON_SERVER",
            "WCON_TOKEN",
            "CONNECTOR_TOKEN",
            "WEBHOOK_CONNECT_ADMIN_TOKEN",
            "RUST_LOG",
        ] {
            if !envs.iter().any(|(e, _)| e == &k) {
                cmd.env_remove(k);
            }
        }
        // If the test process dies, its children die with it instead of lingering.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("wcon starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self {
            child,
            lines,
            addr: None,
        }
    }

    /// `wcon serve` on 127.0.0.1:0 with `webhooks` written to a config dir, data in `data_dir`.
    pub fn serve(webhooks: &serde_json::Value, dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("webhooks.json"),
            serde_json::to_vec_pretty(webhooks).unwrap(),
        )
        .unwrap();
        let data = dir.join("data");
        let buffer_env = buffer_env(dir);
        let mut env = vec![("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin-secret-token")];
        env.extend(buffer_env.iter().map(|(k, v)| (*k, v.as_str())));
        env.extend_from_slice(extra_env);
        let mut w = Self::spawn(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &env,
            dir,
        );
        let line = w.wait_for("listening on http://", Duration::from_secs(20));
        w.addr = Some(
            line.trim_start_matches("listening on http://")
                .parse()
                .expect("an address"),
        );
        w
    }

    /// `wcon serve` again on the same directory and port.
    pub fn serve_again(dir: &Path, addr: SocketAddr) -> Self {
        let data = dir.join("data");
        let listen = addr.to_string();
        let buffer_env = buffer_env(dir);
        let mut env = vec![("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin-secret-token")];
        env.extend(buffer_env.iter().map(|(k, v)| (*k, v.as_str())));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut w = Self::spawn(
                &[
                    "serve",
                    "--listen",
                    &listen,
                    "--data-dir",
                    data.to_str().unwrap(),
                ],
                &env,
                dir,
            );
            match w.try_wait_for("listening on http://", Duration::from_secs(20)) {
                Some(_) => {
                    w.addr = Some(addr);
                    return w;
                }
                None if Instant::now() < deadline => {
                    // The port or the data dir may still be held by the killed process for a moment.
                    std::thread::sleep(Duration::from_millis(100));
                }
                None => panic!("serve did not restart: {:?}", w.output()),
            }
        }
    }

    /// `wcon tunnel CHANNEL --to TARGET --server URL --token TOKEN`, waiting for the ready line.
    pub fn tunnel(channel: &str, server: SocketAddr, target: &str, extra: &[&str]) -> Self {
        let server = format!("http://{server}");
        let mut args = vec!["tunnel", channel, "--to", target, "--server", &server];
        args.extend_from_slice(extra);
        let mut w = Self::spawn(&args, &[("WCON_TOKEN", TOKEN)], Path::new("."));
        w.wait_for("connected to", Duration::from_secs(20));
        w
    }

    /// `wcon tunnel CHANNEL --webhooks FILE --server URL` (module mode), waiting for the ready line.
    pub fn tunnel_modules(channel: &str, server: SocketAddr, webhooks: &Path, cwd: &Path) -> Self {
        let server = format!("http://{server}");
        let webhooks = webhooks.to_str().unwrap();
        let args = [
            "tunnel",
            channel,
            "--webhooks",
            webhooks,
            "--server",
            &server,
        ];
        let mut w = Self::spawn(&args, &[("WCON_TOKEN", TOKEN)], cwd);
        w.wait_for("connected to", Duration::from_secs(20));
        w
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr.expect("a serve process"), path)
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn try_wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(line.clone());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l.contains(needle))
                    .cloned();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        match self.try_wait_for(needle, timeout) {
            Some(l) => l,
            None => panic!("no line with {needle:?}; output: {:#?}", self.output()),
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM: {:#?}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `wcon ARGS` to completion.
    pub fn run(args: &[&str], cwd: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_wcon"))
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("wcon runs")
    }
}

/// The buffer of every `serve` a test starts: embedded, or with `WCON_TEST_BUFFER=redis` the
/// Redis at `WCON_TEST_REDIS_URL` under a key prefix of the serve's directory (so a restarted
/// serve finds its channel again and tests do not share one). Lets the whole suite run against
/// the shared backend: `WCON_TEST_BUFFER=redis cargo test --test it` (it leaves its keys under
/// `wcon-it-*`: `redis-cli --scan --pattern 'wcon-it-*' | xargs redis-cli DEL`). The same with
/// `WCON_TEST_BUFFER=rabbitmq` and `WCON_TEST_RABBITMQ_URL` (queues `wcon-it-*`; delete them
/// with `rabbitmqctl list_queues name | grep '^wcon-it-' | xargs -n1 rabbitmqctl delete_queue`).
fn buffer_env(dir: &Path) -> Vec<(&'static str, String)> {
    match std::env::var("WCON_TEST_BUFFER").as_deref() {
        Ok("redis") => {
            use std::hash::{Hash, Hasher};
            let url = std::env::var("WCON_TEST_REDIS_URL")
                .expect("WCON_TEST_BUFFER=redis needs WCON_TEST_REDIS_URL (. /var/tmp/wcon-services/env.sh)");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            dir.hash(&mut h);
            vec![
                ("WEBHOOK_CONNECT_BUFFER", "redis".to_string()),
                ("WEBHOOK_CONNECT_REDIS_URL", url),
                (
                    "WEBHOOK_CONNECT_REDIS_PREFIX",
                    format!("wcon-it-{:016x}:", h.finish()),
                ),
            ]
        }
        Ok("rabbitmq") => {
            use std::hash::{Hash, Hasher};
            let url = std::env::var("WCON_TEST_RABBITMQ_URL")
                .expect("WCON_TEST_BUFFER=rabbitmq needs WCON_TEST_RABBITMQ_URL (. /var/tmp/wcon-services/env.sh)");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            dir.hash(&mut h);
            vec![
                ("WEBHOOK_CONNECT_BUFFER", "rabbitmq".to_string()),
                ("WEBHOOK_CONNECT_RABBITMQ_URL", url),
                (
                    "WEBHOOK_CONNECT_RABBITMQ_PREFIX",
                    format!("wcon-it-{:016x}.", h.finish()),
                ),
            ]
        }
        Ok("embedded") | Err(_) => Vec::new(),
        Ok(other) => panic!("WCON_TEST_BUFFER={other}: expected embedded, redis or rabbitmq"),
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for Wcon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the sink answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A local HTTP target on 127.0.0.1:0 that records requests and answers a settable status.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Arc::new(Mutex::new(Vec::new())),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let app = axum::Router::new()
            .route("/{*path}", any(record))
            .route("/", any(record))
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    pub fn target(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Distinct bodies answered with 2xx.
    pub fn delivered_bodies(&self) -> std::collections::HashSet<Bytes> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status < 300)
            .map(|r| r.body.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds, checking every 20 ms (the sink's lock is not held meanwhile).
    pub async fn wait_until(&self, timeout: Duration, what: &str, pred: impl Fn(&Sink) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !pred(self) {
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; {} requests received",
                    self.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = StatusCode::from_u16(sink.status.load(Ordering::SeqCst)).unwrap();
    sink.received.lock().unwrap().push(Received {
        headers,
        body,
        status: status.as_u16(),
    });
    let delay = sink.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    status
}

/// A webhooks.json with one relay webhook `id` on `channel`.
pub fn relay(id: &str, channel: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut mc = serde_json::json!({"channel": channel, "channel_token": TOKEN});
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            mc[k] = v;
        }
    }
    serde_json::json!({id: {"module": "webhook_connect", "module-config": mc}})
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// HMAC-SHA256 hex, as GitHub's `X-Hub-Signature-256` carries it.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Stripe's `Stripe-Signature: t=…,v1=…` over `t.body`.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// POSTs a JSON body to a webhook and returns (status, body).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

impl Wcon {
    /// Any `wcon ARGS` in the background, in the current directory.
    pub fn run_background(args: &[&str]) -> Self {
        Self::spawn(args, &[], Path::new("."))
    }

    /// Any `wcon ARGS` in the background, in `cwd`, with extra environment variables.
    pub fn run_background_in_env(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Self {
        Self::spawn(args, envs, cwd)
    }

    /// Any `wcon ARGS` in the background, in `cwd`.
    pub fn run_background_in(args: &[&str], cwd: &Path) -> Self {
        Self::spawn(args, &[], cwd)
    }
}

/// GET an admin API path (after `/admin/webhook-connect`) with the test admin token.
pub async fn admin_get(serve: &Wcon, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(serve.url(&format!("/admin/webhook-connect{path}")))
        .bearer_auth("admin-secret-token")
        .send()
        .await
        .expect("the admin API answers")
        .json()
        .await
        .expect("the admin API answers JSON")
}
