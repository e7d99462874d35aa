//! `wcon serve`: loads webhooks.json, opens the buffer, binds, and runs the receiver; reloads
//! webhooks.json on change or SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wcon::buffer::{Buffer, Embedded};
use wcon::config::{ConnectionsConfig, WebhooksConfig, watch};
use wcon::modules::registry::BuildContext;
use wcon::modules::{Connections, NetworkPolicy};
use wcon::receiver::tls::{CertWatcher, ServerTls};
use wcon::receiver::{self, ReceiverConfig};
use wcon::secret::Secret;

use crate::Failure;

/// Run the public receiver.
///
/// Reads webhooks.json and connections.json from the working directory (or --config-dir). With no
/// webhooks.json it starts a quickstart: one relay webhook `default` on channel `default`.
/// Environment: WEBHOOK_CONNECT_ADMIN_TOKEN enables the admin API (and `GET /stats`, which also
/// takes STATS_AUTH_TOKEN when set); WEBHOOK_CONNECT_BUFFER selects the buffer. `GET /health`,
/// `/ready` and `/metrics` need no token. With --tls-cert and --tls-key it serves HTTPS and WSS on
/// the same port, and reloads the certificate when its file changes or on SIGHUP. With
/// --tls-client-ca, connectors may present client certificates, which channels with
/// `require_client_cert` demand.
///
/// Live reload: changes to webhooks.json and connections.json (or SIGHUP) apply while running:
/// new, removed and changed webhooks and channel settings; ingest keeps working. A broken file
/// is refused with a log line and the running configuration stays.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "WCON_LISTEN", default_value = "0.0.0.0:8000")]
    listen: SocketAddr,
    /// Directory holding webhooks.json and connections.json.
    #[arg(long, value_name = "DIR", default_value = ".")]
    config_dir: PathBuf,
    /// webhooks.json to read (default: DIR/webhooks.json).
    #[arg(long, value_name = "FILE")]
    webhooks: Option<PathBuf>,
    /// connections.json to read (default: DIR/connections.json, optional).
    #[arg(long, value_name = "FILE")]
    connections: Option<PathBuf>,
    /// Where the embedded buffer keeps its data (default: the platform data directory).
    #[arg(long, env = "WCON_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Body limit in bytes of webhooks that set no `max_body_bytes`.
    #[arg(long, env = "WCON_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = wcon::config::webhooks::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: u64,
    /// Browser origin allowed to call the API (CORS), e.g. https://app.example.com; repeatable.
    /// Without one, CORS is off. `*` is refused.
    #[arg(
        long = "cors-origin",
        env = "WCON_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Validate webhooks.json and connections.json, reach every connection once, print one
    /// line per item and exit (0 when all pass, 1 otherwise) without serving.
    #[arg(long)]
    check: bool,
    /// Buffer backend.
    #[arg(long, env = "WEBHOOK_CONNECT_BUFFER", value_enum, default_value_t = BufferKind::Embedded)]
    buffer: BufferKind,
    /// PEM certificate chain: serve HTTPS and WSS (needs --tls-key). Reloaded when the file
    /// changes or on SIGHUP, without dropping connections.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates that connectors' client certificates must chain to (mutual TLS).
    /// The handshake asks for a client certificate but does not require one (webhook senders
    /// have none); channels with `require_client_cert` refuse connectors without one. Reloaded
    /// with --tls-cert.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Serve the admin API only on this address (plain HTTP; keep it private, e.g.
    /// 127.0.0.1:9000), not on --listen.
    #[arg(long, env = "WEBHOOK_CONNECT_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Redis of `--buffer redis`: redis://[user:password@]host:port[/db] or
    /// redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db].
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_REDIS_URL",
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    redis_url: String,
    /// Prefix of the Redis keys of `--buffer redis` (deployments sharing one Redis need their own).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_REDIS_PREFIX",
        value_name = "PREFIX",
        default_value = "wcon:"
    )]
    redis_prefix: String,
    /// RabbitMQ of `--buffer rabbitmq`: amqp://user:password@host:port/vhost (the default
    /// vhost `/` is `%2f`).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_RABBITMQ_URL",
        value_name = "URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        hide_default_value = true
    )]
    rabbitmq_url: String,
    /// Prefix of the queue names of `--buffer rabbitmq` (deployments sharing one RabbitMQ need
    /// their own).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_RABBITMQ_PREFIX",
        value_name = "PREFIX",
        default_value = "wcon."
    )]
    rabbitmq_prefix: String,
    /// Queue type of `--buffer rabbitmq`: quorum (replicated) or classic.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_RABBITMQ_QUEUE_TYPE",
        value_enum,
        default_value_t = RabbitQueueType::Quorum
    )]
    rabbitmq_queue_type: RabbitQueueType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RabbitQueueType {
    /// Replicated quorum queues.
    Quorum,
    /// Classic queues.
    Classic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BufferKind {
    /// A durable store under the data directory; no server needed.
    Embedded,
    /// Redis Streams (several instances).
    Redis,
    /// RabbitMQ queues (several instances).
    Rabbitmq,
}

/// What was loaded, and whether it is the quickstart.
struct Loaded {
    webhooks: WebhooksConfig,
    quickstart_token: Option<String>,
}

pub async fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.check {
        return Ok(check(&args).await);
    }
    if std::env::var("WEBHOOK_CONNECT_ENABLED").is_ok_and(|v| v.eq_ignore_ascii_case("false")) {
        return Err(Failure::usage(anyhow::anyhow!(
            "WEBHOOK_CONNECT_ENABLED=false, but relaying webhooks is what `wcon serve` does; unset it"
        )));
    }
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => directories::ProjectDirs::from("", "", "wcon")
            .map(|p| p.data_dir().to_path_buf())
            .context("no home directory to keep data in; pass `--data-dir DIR`")?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory `{}`", data_dir.display()))?;
    let loaded = load_config(&args, &data_dir)?;
    if args.max_body_bytes == 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "--max-body-bytes must be greater than 0"
        )));
    }
    let cors_origins =
        receiver::security::parse_origins(args.cors_origins.iter().map(String::as_str))
            .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    let admin_token = std::env::var("WEBHOOK_CONNECT_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let stats_token = std::env::var("STATS_AUTH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new);

    let buffer = open_buffer(&args, &data_dir)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            ServerTls::load_with_client_ca(cert, key, args.tls_client_ca.as_deref())
                .map_err(|e| Failure::usage(anyhow::Error::new(e)))?,
        )),
        _ => None,
    };
    receiver::check_client_certificates(&loaded.webhooks, tls.as_deref())
        .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = match args.admin_listen {
        None => None,
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} (--admin-listen)"))?,
        ),
    };
    // The watcher lives as long as the server; without it, SIGHUP still reloads.
    let _cert_watcher = tls.clone().and_then(|tls| {
        CertWatcher::start(tls)
            .map_err(|e| {
                eprintln!(
                    "warning: cannot watch the certificate files ({e}); reload them with SIGHUP"
                )
            })
            .ok()
    });
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        tracing::info!("shutting down: no new requests, finishing writes in progress");
        stopper.cancel();
    });
    // One loop for every signal-driven reload (SIGHUP, file changes): each handler is one call.
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let (hup_tx, mut hup_rx) = mpsc::channel(4);
    crate::on_hangup(hup_tx.clone());
    let _watch = if loaded.quickstart_token.is_none() {
        let (webhooks_path, connections_path) = config_paths(&args);
        match watch::watch(&[webhooks_path, connections_path], hup_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch webhooks.json; reload with SIGHUP");
                None
            }
        }
    } else {
        None
    };
    let reload_args = (
        args.webhooks.clone(),
        args.connections.clone(),
        args.config_dir.clone(),
    );
    let reload_tls = tls.clone();
    tokio::spawn(async move {
        while hup_rx.recv().await.is_some() {
            reload_certificate(reload_tls.as_deref());
            reload_webhooks(&reload_args, &reload_tx).await;
        }
    });
    // Ready only now: the signal handlers and file watches are installed, so a change made
    // right after this line is seen.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    if let Some(admin) = &admin_listener {
        println!("admin API on http://{}", admin.local_addr()?);
        if !admin.local_addr()?.ip().is_loopback() {
            eprintln!(
                "warning: the admin API listens on a non-loopback address without TLS; keep it on a private network"
            );
        }
    }
    if let Some(token) = &loaded.quickstart_token {
        print_quickstart(scheme, addr, &args.config_dir, token);
    }
    receiver::run(
        ReceiverConfig {
            admin_token,
            max_body_bytes: args.max_body_bytes,
            cors_origins,
            tls,
            admin_listener,
            reloads: Some(reload_rx),
            stats_token,
            ..ReceiverConfig::new(loaded.webhooks)
        },
        listener,
        buffer,
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Reload handler: the TLS certificate and key (unchanged files are not reloaded).
fn reload_certificate(tls: Option<&ServerTls>) {
    if let Some(tls) = tls {
        tls.reload_and_log();
    }
}

/// `serve --check`: the TLS files load, and channels that require client certificates have a
/// server that can verify them.
fn check_tls(report: &mut crate::check::Report, args: &Args, webhooks: &WebhooksConfig) {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            match ServerTls::load_with_client_ca(cert, key, args.tls_client_ca.as_deref()) {
                Ok(tls) => {
                    report.ok(
                        "tls",
                        match &args.tls_client_ca {
                            Some(ca) => format!(
                                "`{}` loads; client certificates verified with `{}`",
                                cert.display(),
                                ca.display()
                            ),
                            None => format!("`{}` loads", cert.display()),
                        },
                    );
                    Some(tls)
                }
                Err(e) => {
                    report.fail("tls", format!("{:#}", anyhow::Error::new(e)));
                    return;
                }
            }
        }
        _ => None,
    };
    if let Err(e) = receiver::check_client_certificates(webhooks, tls.as_ref()) {
        report.fail("client certificates", e);
    }
}

/// `wcon serve --check`.
async fn check(args: &Args) -> ExitCode {
    let mut report = crate::check::Report::default();
    let (webhooks_path, connections_path) = config_paths(args);
    let connections = match ConnectionsConfig::load_optional(&connections_path) {
        Ok(c) if !connections_path.exists() => {
            report.skip(
                "connections.json",
                format!("no `{}`", connections_path.display()),
            );
            c
        }
        Ok(c) => {
            report.ok(
                "connections.json",
                format!(
                    "{} connection(s) in `{}`",
                    c.connections.len(),
                    connections_path.display()
                ),
            );
            c
        }
        Err(e) => {
            report.fail("connections.json", e);
            ConnectionsConfig::default()
        }
    };
    if webhooks_path.exists() {
        let modules = BuildContext {
            connections: Arc::new(Connections::new(&connections)),
            network: NetworkPolicy::receiver_from_env(),
        };
        match WebhooksConfig::load(&webhooks_path, &modules) {
            Ok(w) => {
                report.ok(
                    "webhooks.json",
                    format!(
                        "{} webhook(s), {} relay channel(s) in `{}`",
                        w.webhooks.len(),
                        w.channels().len(),
                        webhooks_path.display()
                    ),
                );
                check_tls(&mut report, args, &w);
            }
            Err(e) => report.fail("webhooks.json", e),
        }
    } else if args.webhooks.is_some() {
        report.fail(
            "webhooks.json",
            format!("`{}` does not exist", webhooks_path.display()),
        );
    } else {
        report.skip(
            "webhooks.json",
            format!(
                "no `{}`; `wcon serve` would start the quickstart",
                webhooks_path.display()
            ),
        );
    }
    report.connections(&connections).await;
    check_buffer(&mut report, args).await;
    if std::env::var("WEBHOOK_CONNECT_ADMIN_TOKEN").is_ok_and(|t| !t.is_empty()) {
        report.ok("admin API", "enabled (WEBHOOK_CONNECT_ADMIN_TOKEN is set)");
    } else {
        report.skip(
            "admin API",
            "disabled; set WEBHOOK_CONNECT_ADMIN_TOKEN to enable it",
        );
    }
    report.finish()
}

/// `serve --check`: a Redis or RabbitMQ buffer answers, within 10 s. The embedded buffer has
/// no server to reach (and its directory is left alone: a running serve holds it).
async fn check_buffer(report: &mut crate::check::Report, args: &Args) {
    let (name, flag, opened) = match args.buffer {
        BufferKind::Embedded => {
            report.skip("buffer", "embedded: no server to reach");
            return;
        }
        BufferKind::Redis => ("Redis", "--redis-url", open_redis(args)),
        BufferKind::Rabbitmq => ("RabbitMQ", "--rabbitmq-url", open_rabbitmq(args)),
    };
    let buffer = match opened {
        Ok(buffer) => buffer,
        Err(failure) => {
            report.fail("buffer", failure.error);
            return;
        }
    };
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while !buffer.healthy().await {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .is_ok();
    buffer.close().await;
    if answered {
        report.ok("buffer", format!("{name} answers and takes writes"));
    } else {
        report.fail(
            "buffer",
            format!("{name} does not answer within 10 s; check {flag} and that the server is up"),
        );
    }
}

/// The buffer `--buffer` names.
fn open_buffer(args: &Args, data_dir: &Path) -> Result<Arc<dyn Buffer>, Failure> {
    Ok(match args.buffer {
        BufferKind::Embedded => {
            Arc::new(Embedded::open(&data_dir.join("buffer")).with_context(|| {
                format!(
                    "opening the buffer in `{}` (is another `wcon serve` using it?)",
                    data_dir.display()
                )
            })?)
        }
        BufferKind::Redis => open_redis(args)?,
        BufferKind::Rabbitmq => open_rabbitmq(args)?,
    })
}

#[cfg(feature = "rabbitmq")]
fn open_rabbitmq(args: &Args) -> Result<Arc<dyn Buffer>, Failure> {
    let options = wcon::buffer::RabbitOptions {
        url: Secret::new(args.rabbitmq_url.clone()),
        prefix: args.rabbitmq_prefix.clone(),
        queue_type: match args.rabbitmq_queue_type {
            RabbitQueueType::Quorum => wcon::buffer::QueueType::Quorum,
            RabbitQueueType::Classic => wcon::buffer::QueueType::Classic,
        },
    };
    let buffer = wcon::buffer::RabbitBuffer::open(&options).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "--rabbitmq-url / WEBHOOK_CONNECT_RABBITMQ_URL: {e}"
        ))
    })?;
    Ok(Arc::new(buffer))
}

#[cfg(not(feature = "rabbitmq"))]
fn open_rabbitmq(_: &Args) -> Result<Arc<dyn Buffer>, Failure> {
    Err(Failure::usage(anyhow::anyhow!(
        "this wcon was built without the `rabbitmq` feature; rebuild with `--features rabbitmq` or use `--buffer embedded`"
    )))
}

#[cfg(feature = "redis")]
fn open_redis(args: &Args) -> Result<Arc<dyn Buffer>, Failure> {
    let options = wcon::buffer::RedisOptions {
        url: Secret::new(args.redis_url.clone()),
        prefix: args.redis_prefix.clone(),
    };
    let buffer = wcon::buffer::RedisBuffer::open(&options).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "--redis-url / WEBHOOK_CONNECT_REDIS_URL: {e}"
        ))
    })?;
    Ok(Arc::new(buffer))
}

#[cfg(not(feature = "redis"))]
fn open_redis(_: &Args) -> Result<Arc<dyn Buffer>, Failure> {
    Err(Failure::usage(anyhow::anyhow!(
        "this wcon was built without the `redis` feature; rebuild with `--features redis` or use `--buffer embedded`"
    )))
}

/// The webhooks.json and connections.json paths `args` name.
fn config_paths(args: &Args) -> (PathBuf, PathBuf) {
    paths_of(&args.webhooks, &args.connections, &args.config_dir)
}

fn paths_of(
    webhooks: &Option<PathBuf>,
    connections: &Option<PathBuf>,
    config_dir: &Path,
) -> (PathBuf, PathBuf) {
    (
        webhooks
            .clone()
            .unwrap_or_else(|| config_dir.join("webhooks.json")),
        connections
            .clone()
            .unwrap_or_else(|| config_dir.join("connections.json")),
    )
}

/// Reads and validates webhooks.json (with connections.json).
fn read_webhooks(webhooks: &Path, connections: &Path) -> Result<WebhooksConfig, anyhow::Error> {
    let connections = ConnectionsConfig::load_optional(connections)?;
    let modules = BuildContext {
        connections: Arc::new(Connections::new(&connections)),
        network: NetworkPolicy::receiver_from_env(),
    };
    Ok(WebhooksConfig::load(webhooks, &modules)?)
}

/// Live reload of webhooks.json: read and validate it, hand it to the running receiver, and log
/// what changed; a broken file is refused and the running configuration stays.
async fn reload_webhooks(
    (webhooks, connections, config_dir): &(Option<PathBuf>, Option<PathBuf>, PathBuf),
    receiver: &mpsc::Sender<receiver::Reload>,
) {
    let (webhooks_path, connections_path) = paths_of(webhooks, connections, config_dir);
    let config = match read_webhooks(&webhooks_path, &connections_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, the running configuration stays: {e:#}");
            return;
        }
    };
    let count = config.webhooks.len();
    let (done, answer) = oneshot::channel();
    if receiver
        .send(receiver::Reload {
            webhooks: config,
            done,
        })
        .await
        .is_err()
    {
        return;
    }
    match answer.await {
        Ok(Ok(changes)) => tracing::info!(
            webhooks = count,
            added = ?changes.added,
            removed = ?changes.removed,
            changed = ?changes.changed,
            "reloaded {}",
            webhooks_path.display()
        ),
        Ok(Err(e)) => tracing::error!(
            "reload refused, the running configuration stays: {:#}",
            anyhow::Error::from(e)
        ),
        Err(_) => {}
    }
}

fn load_config(args: &Args, data_dir: &Path) -> Result<Loaded, Failure> {
    let (webhooks_path, connections_path) = config_paths(args);
    if webhooks_path.exists() {
        let webhooks = read_webhooks(&webhooks_path, &connections_path).map_err(Failure::usage)?;
        return Ok(Loaded {
            webhooks,
            quickstart_token: None,
        });
    }
    if args.webhooks.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "`{}` does not exist",
            webhooks_path.display()
        )));
    }
    let token = quickstart_token(data_dir)?;
    let doc = serde_json::json!({
        "default": {"module": "webhook_connect", "module-config": {"channel": "default", "channel_token": token}}
    });
    let webhooks = WebhooksConfig::from_json("<quickstart>", doc).map_err(Failure::usage)?;
    Ok(Loaded {
        webhooks,
        quickstart_token: Some(token),
    })
}

/// The quickstart channel token: generated once, kept in the data directory (mode 0600).
fn quickstart_token(data_dir: &Path) -> Result<String, Failure> {
    let path = data_dir.join("quickstart-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if existing.len() >= 16 {
            return Ok(existing);
        }
    }
    let token = format!("ch_tok_{}", hex::encode(rand::random::<[u8; 24]>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(token.as_bytes()))
        .with_context(|| format!("writing `{}`", path.display()))?;
    Ok(token)
}

fn print_quickstart(scheme: &str, addr: SocketAddr, config_dir: &Path, token: &str) {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let base = format!("{scheme}://{host}:{}", addr.port());
    println!(
        "quickstart: no webhooks.json in `{}`, relaying webhook `default` on channel `default`",
        config_dir.display()
    );
    println!("  receive: wcon tunnel default --to localhost:3000 --server {base} --token {token}");
    println!(
        "  send:    curl -X POST {base}/webhook/default -H 'Content-Type: application/json' -d '{{\"hello\":\"world\"}}'"
    );
}
