//! relaybench: the whole relay on loopback, measured in one run.
//!
//! Starts a bare HTTP server (the ceiling), `wcon serve` (release build), `wcon tunnel` and a sink,
//! all on 127.0.0.1, and reports:
//! 1. ingest req/s of `wcon serve` (durable, no connector) against the bare-HTTP ceiling measured
//!    by the same sender. The ceiling is a bare axum server that answers 200 at once, run like
//!    serve in a process of its own (this binary re-executed with `WCON_BENCH_ROLE=bare`), so
//!    both sides pay the same scheduling between processes; it is measured before and after the
//!    ingest phase and the higher of the two is the ceiling;
//! 2. sustained end-to-end msg/s through one connector;
//! 3. end-to-end latency percentiles at a fixed rate (default 2,000 msg/s);
//! 4. idle single-webhook latency.
//!
//! Run: `cargo bench --bench relay` (env: BENCH_SECONDS, BENCH_RATE, BENCH_SENDERS, and
//! BENCH_BUFFER = embedded (default) | redis, with BENCH_REDIS_URL, default
//! redis://127.0.0.1:6379/; the redis run uses a key prefix of its own and deletes it after)
//! | rabbitmq, with BENCH_RABBITMQ_URL, default amqp://guest:guest@127.0.0.1:5672/%2f (queues
//! under a prefix of their own, deleted after); BENCH_WCON runs another wcon binary than the one
//! built with the bench.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use tokio::sync::Mutex;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where arrivals are recorded: count, and (send time → arrival) latencies in µs.
#[derive(Default)]
struct Arrivals {
    count: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

fn now_us(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

async fn start_http(handler: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, handler).await.unwrap() });
    addr
}

/// Sends as fast as `senders` concurrent clients can for `seconds`; returns accepted req/s.
async fn blast(url: &str, seconds: u64, senders: u64, epoch: Instant) -> f64 {
    blast_counted(url, seconds, senders, epoch).await.1
}

/// [`blast`], also returning how many requests were accepted.
async fn blast_counted(url: &str, seconds: u64, senders: u64, epoch: Instant) -> (u64, f64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders as usize)
        .build()
        .unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (client, url, ok) = (client.clone(), url.to_string(), ok.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let body = format!(
                    "{{\"sent_us\":{},\"pad\":\"{}\"}}",
                    now_us(epoch),
                    "x".repeat(100)
                );
                if let Ok(r) = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    if r.status().is_success() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = r.bytes().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = ok.load(Ordering::Relaxed);
    (accepted, accepted as f64 / start.elapsed().as_secs_f64())
}

/// Sends at a fixed `rate` for `seconds`.
async fn paced(url: &str, seconds: u64, rate: u64, epoch: Instant) -> u64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let total = seconds * rate;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (client, url) = (client.clone(), url.to_string());
        tasks.spawn(async move {
            let body = format!(
                "{{\"sent_us\":{},\"pad\":\"{}\"}}",
                now_us(epoch),
                "x".repeat(100)
            );
            let _ = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
        });
        while tasks.len() > 512 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
    total
}

fn spawn_wcon(args: &[&str], envs: &[(&str, &str)]) -> (Proc, Option<String>) {
    // BENCH_WCON: another build of wcon to measure with the same driver (e.g. before/after).
    let wcon = std::env::var("BENCH_WCON").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wcon").into());
    let mut cmd = Command::new(wcon);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("wcon starts");
    use std::io::BufRead as _;
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
    }
    let want = if args[0] == "serve" {
        "listening on http://"
    } else {
        "connected to"
    };
    let line = rx.iter().find(|l| l.contains(want));
    // BENCH_SHOW_PROBLEMS=1: print the first lines that are not a 2xx delivery (to diagnose).
    let show = std::env::var("BENCH_SHOW_PROBLEMS").is_ok();
    std::thread::spawn(move || {
        let mut shown = 0;
        for l in rx {
            if show && shown < 40 && !l.contains(" 200 ") {
                shown += 1;
                eprintln!("[wcon] {l}");
            }
        }
    });
    (Proc(child), line)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The bare ceiling server: prints its address, then answers 200 to every POST until killed.
async fn run_bare_server() {
    let addr = start_http(axum::Router::new().route(
        "/webhook/bench",
        post(|| async { "{\"message\":\"200 OK\"}" }),
    ))
    .await;
    println!("listening on http://{addr}");
    std::future::pending::<()>().await;
}

/// Starts the bare ceiling server in a process of its own; returns it and its address.
fn spawn_bare_server() -> (Proc, String) {
    use std::io::BufRead as _;
    let mut child = Command::new(std::env::current_exe().expect("the bench's own path"))
        .env("WCON_BENCH_ROLE", "bare")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bare server starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the bare server prints its address");
    let addr = line
        .trim()
        .trim_start_matches("listening on http://")
        .to_string();
    (Proc(child), addr)
}

/// The bare-HTTP ceiling: `seconds` of [`blast`] against a fresh bare server process.
async fn ceiling(seconds: u64, senders: u64, epoch: Instant) -> f64 {
    let (_bare, addr) = spawn_bare_server();
    blast(
        &format!("http://{addr}/webhook/bench"),
        seconds,
        senders,
        epoch,
    )
    .await
}

#[tokio::main]
async fn main() {
    if std::env::var("WCON_BENCH_ROLE").as_deref() == Ok("bare") {
        return run_bare_server().await;
    }
    let seconds = env_u64("BENCH_SECONDS", 10);
    let rate = env_u64("BENCH_RATE", 2000);
    let senders = env_u64("BENCH_SENDERS", 64);
    let buffer = std::env::var("BENCH_BUFFER").unwrap_or_else(|_| "embedded".into());
    let redis_url =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let redis_prefix = format!("wcon-bench-{:016x}:", rand::random::<u64>());
    assert!(
        buffer != "redis" || cfg!(feature = "redis") || std::env::var("BENCH_WCON").is_ok(),
        "BENCH_BUFFER=redis needs the redis feature: cargo bench --bench relay --no-default-features --features redis"
    );
    assert!(
        buffer != "rabbitmq" || cfg!(feature = "rabbitmq") || std::env::var("BENCH_WCON").is_ok(),
        "BENCH_BUFFER=rabbitmq needs the rabbitmq feature: cargo bench --bench relay --no-default-features --features rabbitmq"
    );
    let rabbitmq_url = std::env::var("BENCH_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rabbitmq_prefix = format!("wcon-bench-{:016x}.", rand::random::<u64>());
    let serve_env: Vec<(&str, &str)> = match buffer.as_str() {
        "embedded" => vec![],
        "redis" => vec![
            ("WEBHOOK_CONNECT_BUFFER", "redis"),
            ("WEBHOOK_CONNECT_REDIS_URL", &redis_url),
            ("WEBHOOK_CONNECT_REDIS_PREFIX", &redis_prefix),
        ],
        "rabbitmq" => vec![
            ("WEBHOOK_CONNECT_BUFFER", "rabbitmq"),
            ("WEBHOOK_CONNECT_RABBITMQ_URL", &rabbitmq_url),
            ("WEBHOOK_CONNECT_RABBITMQ_PREFIX", &rabbitmq_prefix),
        ],
        other => panic!("BENCH_BUFFER={other}: expected embedded, redis or rabbitmq"),
    };
    let epoch = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let token = "ch_tok_benchmark_token";
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::json!({"bench": {"module": "webhook_connect", "module-config": {
            "channel": "bench", "channel_token": token, "max_queue_size": 10_000_000u64, "max_in_flight": 1000}}})
        .to_string(),
    )
    .unwrap();

    // 1. The ceiling: a bare HTTP server process that answers 200 without doing anything.
    let ceiling_before = ceiling(seconds, senders, epoch).await;

    // 2. Ingest: durable writes, no connector attached.
    let data = dir.path().join("data");
    let (serve, line) = spawn_wcon(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config-dir",
            dir.path().to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &serve_env,
    );
    let addr = line
        .expect("serve started")
        .trim_start_matches("listening on http://")
        .to_string();
    let url = format!("http://{addr}/webhook/bench");
    let ingest = blast(&url, seconds, senders, epoch).await;
    let ceiling_after = ceiling(seconds, senders, epoch).await;
    let ceiling = ceiling_before.max(ceiling_after);

    // 3. Sink + tunnel: drain the backlog ingest left, then sustained end to end.
    let arrivals = Arc::new(Arrivals::default());
    let record = move |State(a): State<Arc<Arrivals>>, body: Bytes| async move {
        a.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(sent) = v["sent_us"].as_u64()
        {
            a.latencies_us
                .lock()
                .await
                .push(now_us(epoch).saturating_sub(sent));
        }
        "ok"
    };
    let sink = start_http(
        axum::Router::new()
            .route("/in", post(record))
            .with_state(arrivals.clone()),
    )
    .await;
    let backlog = (ingest * seconds as f64) as u64;
    let drain_start = Instant::now();
    let (tunnel, _) = spawn_wcon(
        &[
            "tunnel",
            "bench",
            "--to",
            &format!("http://{sink}/in"),
            "--server",
            &format!("http://{addr}"),
            "--concurrency",
            "256",
        ],
        &[("WCON_TOKEN", token)],
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while arrivals.count.load(Ordering::Relaxed) < backlog.saturating_sub(backlog / 100)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = arrivals.count.load(Ordering::Relaxed);
    let drain_rate = drained as f64 / drain_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 4. Sustained: send at full speed with the connector attached; count what arrives.
    let before = arrivals.count.load(Ordering::Relaxed);
    let start = Instant::now();
    let (sent, _) = blast_counted(&url, seconds, senders, epoch).await;
    while arrivals.count.load(Ordering::Relaxed) < before + sent
        && start.elapsed() < Duration::from_secs(seconds * 10)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrived = arrivals.count.load(Ordering::Relaxed) - before;
    if arrived < sent {
        eprintln!("warning: {arrived} of {sent} accepted webhooks arrived within the wait");
    }
    let e2e = arrived as f64 / start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 5. Latency at a fixed rate.
    arrivals.latencies_us.lock().await.clear();
    let before = arrivals.count.load(Ordering::Relaxed);
    let n = paced(&url, seconds, rate, epoch).await;
    let wait = Instant::now();
    while arrivals.count.load(Ordering::Relaxed) < before + n
        && wait.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat = arrivals.latencies_us.lock().await.clone();
    lat.sort_unstable();

    // 6. Idle single webhook: the sink stamps the arrival itself (polling here would add the
    // timer's 1 ms granularity to every sample).
    let client = reqwest::Client::new();
    arrivals.latencies_us.lock().await.clear();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = arrivals.count.load(Ordering::Relaxed);
        let body = format!("{{\"sent_us\":{}}}", now_us(epoch));
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        while arrivals.count.load(Ordering::Relaxed) == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut idle = arrivals.latencies_us.lock().await.clone();
    idle.sort_unstable();

    println!(
        "relaybench: {buffer} buffer, {seconds}s per phase, {senders} senders, 2 cores shared by everything"
    );
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| bare HTTP ceiling (same sender, own process) | {ceiling:.0} req/s (before {ceiling_before:.0}, after {ceiling_after:.0}) |"
    );
    println!(
        "| ingest, durable ({buffer}) | {ingest:.0} req/s ({:.0}% of ceiling) |",
        ingest / ceiling * 100.0
    );
    println!(
        "| backlog drain through one connector | {drain_rate:.0} msg/s ({drained} messages) |"
    );
    println!("| sustained end to end, sending at full speed | {e2e:.0} msg/s |");
    println!(
        "| end-to-end latency at {rate} msg/s | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} samples) |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.len()
    );
    println!(
        "| idle single webhook, send to arrival | median {:.2} ms |",
        percentile(&idle, 0.5)
    );
    // The same run as one row of the README's per-buffer table.
    println!(
        "README row: | {buffer} | {ingest:.0} req/s | {e2e:.0} msg/s | {:.1} ms |",
        percentile(&lat, 0.99)
    );
    drop(tunnel);
    drop(serve);
    if buffer == "redis" {
        delete_redis_keys(&redis_url, &redis_prefix);
    }
    if buffer == "rabbitmq" {
        delete_rabbitmq_queues(&rabbitmq_url, &rabbitmq_prefix).await;
    }
}

#[cfg(feature = "rabbitmq")]
async fn delete_rabbitmq_queues(url: &str, prefix: &str) {
    wcon::buffer::rabbitmq::delete_deployment(url, prefix, &["bench".into()]).await;
}

#[cfg(not(feature = "rabbitmq"))]
async fn delete_rabbitmq_queues(_: &str, _: &str) {}

#[cfg(feature = "redis")]
fn delete_redis_keys(url: &str, prefix: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}

#[cfg(not(feature = "redis"))]
fn delete_redis_keys(_: &str, _: &str) {}
