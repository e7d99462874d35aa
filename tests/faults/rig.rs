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
}

impl Backend {
    /// Extra `wcon serve` arguments selecting the backend.
    pub fn serve_args(self) -> Vec<String> {
        match self {
            Backend::Embedded => vec!["--buffer".into(), "embedded".into()],
        }
    }

    /// Extra environment of `wcon serve`.
    pub fn serve_env(self) -> Vec<(String, String)> {
        match self {
            Backend::Embedded => Vec::new(),
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
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub serve: Wcon,
    pub addr: SocketAddr,
    pub sink: Sink,
    pub tunnel: Wcon,
    /// Where the tunnel dials: the server, or a proxy in front of it.
    pub tunnel_server: SocketAddr,
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn spawn_serve(backend: Backend, dir: &Path, listen: &str) -> Wcon {
    let data = data_dir(dir);
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        listen.into(),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
    ];
    args.extend(backend.serve_args());
    let mut env: Vec<(String, String)> = vec![(
        "WEBHOOK_CONNECT_ADMIN_TOKEN".into(),
        "admin-secret-token".into(),
    )];
    env.extend(backend.serve_env());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Wcon::run_background_in_env(&args, dir, &env)
}

/// Starts serve on `listen` (retrying while the killed one still holds the port or its data).
pub fn start_serve(backend: Backend, dir: &Path, listen: &str) -> (Wcon, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut w = spawn_serve(backend, dir, listen);
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
        let (serve, addr) = start_serve(backend, dir.path(), "127.0.0.1:0");
        let sink = Sink::start().await;
        let tunnel_server = proxy(addr);
        let tunnel = tokio::task::block_in_place(|| start_tunnel(tunnel_server, &sink.target()));
        Self {
            backend,
            dir,
            serve,
            addr,
            sink,
            tunnel,
            tunnel_server,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook/w", self.addr)
    }

    /// `kill -9` serve, then start it again on the same port and data.
    pub fn kill_and_restart_serve(&mut self) {
        tokio::task::block_in_place(|| {
            self.serve.kill9();
            let (serve, _) = start_serve(self.backend, self.dir.path(), &self.addr.to_string());
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
