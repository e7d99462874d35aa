//! The rig of a fault scenario: a backend, `wcon serve` restartable on its port, a sink, and
//! `wcon tunnel` restartable, optionally dialling through a proxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Sink, TOKEN, Wcon};

/// Held by each heavy scenario: they run one at a time, so that one's load does not slow
/// another's (the machine has two cores) and each measures its own faults.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A buffer backend the scenarios run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store under the data directory.
    Embedded,
    /// Redis at `WCON_TEST_REDIS_URL` (127.0.0.1:6379, started by `scripts/services.sh`), each
    /// test under a key prefix of its own.
    #[cfg(feature = "redis")]
    Redis,
}

impl Backend {
    /// The storage of one test: checked reachable now (a missing service fails the test),
    /// emptied when dropped.
    pub fn storage(self) -> Storage {
        match self {
            Backend::Embedded => Storage { redis: None },
            #[cfg(feature = "redis")]
            Backend::Redis => {
                let url = std::env::var("WCON_TEST_REDIS_URL").unwrap_or_else(|_| {
                    panic!("WCON_TEST_REDIS_URL is not set: run `scripts/services.sh` and `. /var/tmp/wcon-services/env.sh` (scripts/test.sh does both)")
                });
                let pong: redis::RedisResult<String> = redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query(&mut c));
                if let Err(e) = pong {
                    panic!("Redis at {url} does not answer ({e}): run `scripts/services.sh`");
                }
                Storage {
                    redis: Some((url, format!("wcon-faults-{:016x}:", rand::random::<u64>()))),
                }
            }
        }
    }
}

/// Where one test's serve keeps its messages: the data directory, or a Redis key prefix.
pub struct Storage {
    /// Redis URL and key prefix.
    redis: Option<(String, String)>,
}

impl Storage {
    /// Extra `wcon serve` arguments selecting the backend.
    fn serve_args(&self) -> Vec<String> {
        match &self.redis {
            None => vec!["--buffer".into(), "embedded".into()],
            Some(_) => vec!["--buffer".into(), "redis".into()],
        }
    }

    /// Extra environment of `wcon serve`.
    fn serve_env(&self) -> Vec<(String, String)> {
        match &self.redis {
            None => Vec::new(),
            Some((url, prefix)) => vec![
                ("WEBHOOK_CONNECT_REDIS_URL".into(), url.clone()),
                ("WEBHOOK_CONNECT_REDIS_PREFIX".into(), prefix.clone()),
            ],
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        #[cfg(feature = "redis")]
        if let Some((url, prefix)) = &self.redis
            && let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}

/// The webhooks.json of the scenarios: one binary-safe relay webhook `w` on channel `c`, with
/// room for a whole run in the queue and attempts enough to outlast any outage.
pub fn webhooks() -> serde_json::Value {
    serde_json::json!({"w": {"module": "webhook_connect", "data_type": "blob", "module-config": {
        "channel": "c", "channel_token": TOKEN, "max_queue_size": 200_000,
        "max_delivery_attempts": 10_000}}})
}

/// Whether the long mode is on (`WCON_FAULTS_LONG=1`).
pub fn long_mode() -> bool {
    std::env::var("WCON_FAULTS_LONG").is_ok_and(|v| v == "1")
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub serve: Wcon,
    pub addr: SocketAddr,
    pub sink: Sink,
    pub tunnel: Wcon,
    /// Where the tunnel dials: the server, or a proxy in front of it.
    pub tunnel_server: SocketAddr,
    /// Last, so that it is emptied after serve stopped.
    pub storage: Storage,
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn spawn_serve(storage: &Storage, dir: &Path, listen: &str) -> Wcon {
    let data = data_dir(dir);
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        listen.into(),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
    ];
    args.extend(storage.serve_args());
    let mut env: Vec<(String, String)> = vec![(
        "WEBHOOK_CONNECT_ADMIN_TOKEN".into(),
        "admin-secret-token".into(),
    )];
    env.extend(storage.serve_env());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Wcon::run_background_in_env(&args, dir, &env)
}

/// Starts serve on `listen` (retrying while the killed one still holds the port or its data).
pub fn start_serve(storage: &Storage, dir: &Path, listen: &str) -> (Wcon, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut w = spawn_serve(storage, dir, listen);
        if let Some(line) = w.try_wait_for("listening on http://", Duration::from_secs(20)) {
            let addr: SocketAddr = line
                .trim_start_matches("listening on http://")
                .parse()
                .expect("an address");
            w.addr = Some(addr);
            return (w, addr);
        }
        assert!(
            Instant::now() < deadline,
            "serve did not start: {:#?}",
            w.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_tunnel(server: SocketAddr, target: &str) -> Wcon {
    let server = format!("http://{server}");
    let args = ["tunnel", "c", "--to", target, "--server", &server];
    let env = [
        ("WCON_TOKEN", TOKEN),
        // Reconnect quickly: the scenarios cut the connection on purpose, again and again.
        ("CONNECTOR_RECONNECT_DELAY", "0.1"),
        ("CONNECTOR_MAX_RECONNECT_DELAY", "0.5"),
    ];
    let mut w = Wcon::run_background_in_env(&args, Path::new("."), &env);
    w.wait_for("connected to", Duration::from_secs(30));
    w
}

impl Rig {
    /// Serve, sink and tunnel; `proxy` (given the server's address, returns where the tunnel
    /// should dial) puts something between the tunnel and the server.
    pub async fn start(backend: Backend, proxy: impl FnOnce(SocketAddr) -> SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("webhooks.json"),
            serde_json::to_vec_pretty(&webhooks()).unwrap(),
        )
        .unwrap();
        let storage = backend.storage();
        let (serve, addr) = start_serve(&storage, dir.path(), "127.0.0.1:0");
        let sink = Sink::start().await;
        let tunnel_server = proxy(addr);
        let tunnel = tokio::task::block_in_place(|| start_tunnel(tunnel_server, &sink.target()));
        Self {
            dir,
            serve,
            addr,
            sink,
            tunnel,
            tunnel_server,
            storage,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook/w", self.addr)
    }

    /// `kill -9` serve, then start it again on the same port and data.
    pub fn kill_and_restart_serve(&mut self) {
        tokio::task::block_in_place(|| {
            self.serve.kill9();
            let (serve, _) = start_serve(&self.storage, self.dir.path(), &self.addr.to_string());
            self.serve = serve;
        });
    }

    /// `kill -9` the tunnel, then start it again.
    pub fn kill_and_restart_tunnel(&mut self) {
        tokio::task::block_in_place(|| {
            self.tunnel.kill9();
            self.tunnel = start_tunnel(self.tunnel_server, &self.sink.target());
        });
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
