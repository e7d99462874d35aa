//! `wcon serve`: loads webhooks.json, opens the buffer, binds, and runs the receiver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use tokio_util::sync::CancellationToken;
use wcon::buffer::{Buffer, Embedded};
use wcon::config::{ConnectionsConfig, WebhooksConfig};
use wcon::modules::registry::BuildContext;
use wcon::modules::{Connections, NetworkPolicy};
use wcon::receiver::{self, ReceiverConfig};
use wcon::secret::Secret;

use crate::Failure;

/// Run the public receiver.
///
/// Reads webhooks.json and connections.json from the working directory (or --config-dir). With no
/// webhooks.json it starts a quickstart: one relay webhook `default` on channel `default`.
/// Environment: WEBHOOK_CONNECT_ADMIN_TOKEN enables the admin API; WEBHOOK_CONNECT_BUFFER selects
/// the buffer.
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
    /// Buffer backend.
    #[arg(long, env = "WEBHOOK_CONNECT_BUFFER", value_enum, default_value_t = BufferKind::Embedded)]
    buffer: BufferKind,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BufferKind {
    /// A durable store under the data directory; no server needed.
    Embedded,
    /// Redis Streams (several instances).
    Redis,
    /// RabbitMQ queues.
    Rabbitmq,
}

/// What was loaded, and whether it is the quickstart.
struct Loaded {
    webhooks: WebhooksConfig,
    quickstart_token: Option<String>,
}

pub async fn run(args: Args) -> Result<ExitCode, Failure> {
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

    let buffer = open_buffer(&args, &data_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    if let Some(token) = &loaded.quickstart_token {
        print_quickstart(addr, &args.config_dir, token);
    }
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        tracing::info!("shutting down: no new requests, finishing writes in progress");
        stopper.cancel();
    });
    receiver::run(
        ReceiverConfig {
            admin_token,
            max_body_bytes: args.max_body_bytes,
            cors_origins,
            ..ReceiverConfig::new(loaded.webhooks)
        },
        listener,
        buffer,
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
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
        BufferKind::Rabbitmq => {
            return Err(Failure::usage(anyhow::anyhow!(
                "the `rabbitmq` buffer is not supported yet by this version of wcon; use `--buffer redis` to run several instances"
            )));
        }
    })
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

fn load_config(args: &Args, data_dir: &Path) -> Result<Loaded, Failure> {
    let webhooks_path = args
        .webhooks
        .clone()
        .unwrap_or_else(|| args.config_dir.join("webhooks.json"));
    let connections_path = args
        .connections
        .clone()
        .unwrap_or_else(|| args.config_dir.join("connections.json"));
    let connections =
        ConnectionsConfig::load_optional(&connections_path).map_err(Failure::usage)?;
    if webhooks_path.exists() {
        let modules = BuildContext {
            connections: Arc::new(Connections::new(&connections)),
            network: NetworkPolicy::receiver_from_env(),
        };
        let webhooks = WebhooksConfig::load(&webhooks_path, &modules).map_err(Failure::usage)?;
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

fn print_quickstart(addr: SocketAddr, config_dir: &Path, token: &str) {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let base = format!("http://{host}:{}", addr.port());
    println!(
        "quickstart: no webhooks.json in `{}`, relaying webhook `default` on channel `default`",
        config_dir.display()
    );
    println!("  receive: wcon tunnel default --to localhost:3000 --server {base} --token {token}");
    println!(
        "  send:    curl -X POST {base}/webhook/default -H 'Content-Type: application/json' -d '{{\"hello\":\"world\"}}'"
    );
}
