//! `wcon tunnel`: connects out to a receiver and delivers one channel to a local target.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wcon::config::connector::{self, ConnectorConfig, Layer};
use wcon::connector::deliver::Verdict;
use wcon::connector::{self as engine, Event};

use crate::Failure;

/// Connect out to a receiver and deliver a channel's webhooks to a local app.
///
/// Settings come from, lowest to highest: defaults, the --profile of config.toml (`server`, and
/// the channel's saved token), --config FILE (connector.json), CONNECTOR_* environment variables
/// (and WCON_SERVER, WCON_TOKEN), then flags.
///
/// Example: wcon tunnel stripe-payments --to localhost:3000 --server https://hooks.example.com
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The channel to stream (or `channel` in connector.json / CONNECTOR_CHANNEL).
    channel: Option<String>,
    /// Where to deliver: a port, host:port, or an http(s) URL with a path.
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// The receiver's base URL.
    #[arg(long, env = "WCON_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`).
    #[arg(long, env = "WCON_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// connector.json to read.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Name sent as X-Connector-ID.
    #[arg(long, value_name = "ID")]
    connector_id: Option<String>,
    /// Module mode: deliver to the output modules of this webhooks.json instead of HTTP.
    #[arg(long, value_name = "FILE", conflicts_with = "to")]
    webhooks: Option<PathBuf>,
    /// Module mode: the connections.json the modules use.
    #[arg(long, value_name = "FILE", requires = "webhooks")]
    connections: Option<PathBuf>,
    /// Deliveries running at once (max_concurrent_requests).
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Streaming transport: websocket (default), sse, long_poll, or auto (WebSocket, falling
    /// back to SSE, then long-poll, and going back up later). CONNECTOR_PROTOCOL in the env.
    #[arg(long, value_name = "PROTOCOL", value_parser = ["websocket", "sse", "long_poll", "auto"])]
    protocol: Option<String>,
    /// Validate the settings, reach the server's status endpoint with the token, every HTTP
    /// target and every connection once, print one line per item and exit (0 when all pass, 1
    /// otherwise) without streaming.
    #[arg(long)]
    check: bool,
    /// Also trust the CA certificates of this PEM file for the server's certificate
    /// (ca_cert_path); the public web roots stay trusted.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (verify_ssl false). Unsafe: anyone on the
    /// path can read and change the stream; for tests with a self-signed certificate only.
    #[arg(long)]
    insecure: bool,
}

pub async fn run(args: Args, profile: Option<&str>) -> Result<ExitCode, Failure> {
    let profile = crate::profile::load(profile)?;
    if args.check {
        return Ok(crate::check::tunnel(build_config(&args, &profile)).await);
    }
    let config = build_config(&args, &profile).map_err(Failure::usage)?;
    let delivery = engine::Deliverer::from_config(&config).map_err(Failure::usage)?;
    // A CA file that cannot be used stops the tunnel before it connects.
    engine::outbound::Outbound::from_config(&config).map_err(Failure::usage)?;
    if !config.verify_ssl {
        eprintln!(
            "warning: TLS certificate verification is off (--insecure / verify_ssl false): anyone on the path to the server can read and change the stream"
        );
    }
    let shutdown = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(print_events(events_rx));
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        eprintln!("stopping: finishing deliveries in progress");
        stopper.cancel();
    });
    let result = engine::run(config, delivery, shutdown, events_tx).await;
    let _ = printer.await;
    result?;
    Ok(ExitCode::SUCCESS)
}

fn build_config(
    args: &Args,
    profile: &crate::profile::Selected,
) -> anyhow::Result<ConnectorConfig> {
    let mut layers: Vec<Layer> = vec![profile_layer(args, profile)];
    let file_name = match &args.config {
        Some(path) => {
            layers.push(connector::file_layer(path)?);
            path.display().to_string()
        }
        None => "<flags>".to_string(),
    };
    // CONNECTOR_* sit beneath the flags; WCON_SERVER / WCON_TOKEN arrive through clap as flags.
    layers.push(connector::env_layer(&|name| std::env::var(name).ok())?);
    let mut flags = Layer::new();
    let mut set = |k: &str, v: Value| {
        flags.insert(k.to_string(), v);
    };
    if let Some(c) = &args.channel {
        set("channel", json!(c));
    }
    if let Some(s) = &args.server {
        let url = if s.contains("://") {
            s.clone()
        } else {
            format!("http://{s}")
        };
        set("cloud_url", json!(url));
    }
    if let Some(t) = &args.token {
        set("token", json!(t));
    }
    if let Some(id) = &args.connector_id {
        set("connector_id", json!(id));
    }
    if let Some(p) = &args.protocol {
        set("protocol", json!(p));
    }
    if let Some(path) = &args.ca_cert {
        set("ca_cert_path", json!(path.display().to_string()));
    }
    if args.insecure {
        set("verify_ssl", json!(false));
    }
    if let Some(n) = args.concurrency {
        set("max_concurrent_requests", json!(n));
    }
    if let Some(path) = &args.webhooks {
        set("webhooks_config", json!(path.display().to_string()));
    }
    if let Some(path) = &args.connections {
        set("connections_config", json!(path.display().to_string()));
    }
    if let Some(to) = &args.to {
        let url = connector::parse_target(to).map_err(anyhow::Error::msg)?;
        set("default_target", json!({"url": url.as_str()}));
    }
    layers.push(flags);
    Ok(ConnectorConfig::from_layers(&file_name, &layers)?)
}

/// What the profile gives: the server, and the token saved for the channel named on the
/// command line (`wcon channels rotate-token --save`).
fn profile_layer(args: &Args, profile: &crate::profile::Selected) -> Layer {
    let mut layer = Layer::new();
    if let Some(server) = &profile.profile.server {
        layer.insert("cloud_url".into(), json!(server));
    }
    if let Some(token) = args
        .channel
        .as_ref()
        .and_then(|c| profile.profile.channel_tokens.get(c))
    {
        layer.insert("token".into(), json!(token));
    }
    layer
}

async fn print_events(mut events: mpsc::UnboundedReceiver<Event>) {
    let mut err = std::io::stderr();
    while let Some(event) = events.recv().await {
        let now = chrono::Local::now().format("%H:%M:%S%.3f");
        let line = match event {
            Event::Connected {
                server,
                channel,
                protocol,
            } => {
                format!("connected to {server} channel {channel} ({protocol})")
            }
            Event::Ready { .. } => continue,
            Event::Disconnected { reason, retry_in } => {
                format!(
                    "{now} disconnected: {reason}; reconnecting in {:.1}s",
                    retry_in.as_secs_f64()
                )
            }
            Event::Unauthorized { detail, retry_in } => {
                let hint = if detail.contains("channel token") {
                    "; check --token (or WCON_TOKEN)"
                } else {
                    ""
                };
                format!(
                    "{now} error: {detail}{hint}; retrying in {:.0}s",
                    retry_in.as_secs_f64()
                )
            }
            Event::Attempt {
                webhook_id,
                message_id,
                attempt,
            } => {
                let status = match (attempt.status, &attempt.error) {
                    (Some(s), _) => s.as_u16().to_string(),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "-".into(),
                };
                format!(
                    "{now} {webhook_id} {message_id} {status} {:.1}ms attempt {}",
                    attempt.latency.as_secs_f64() * 1000.0,
                    attempt.number
                )
            }
            Event::Settled {
                message_id,
                verdict: Verdict::Nack { retry, reason },
            } => {
                let what = if retry {
                    "will be delivered again"
                } else {
                    "dead-lettered by the server"
                };
                format!("{now} {message_id} not delivered ({reason}); {what}")
            }
            Event::Settled { .. } => continue,
            Event::ServerError { code, detail } => format!("{now} server: {code}: {detail}"),
        };
        // A closed stderr is not a reason to stop delivering.
        let _ = writeln!(err, "{line}");
    }
}
