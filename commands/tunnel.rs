//! `wcon tunnel`: connects out to a receiver and delivers one or more channels locally; reloads
//! its files on change or SIGHUP.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wcon::config::connector::{self, ConnectorSetup, Layer};
use wcon::config::watch;
use wcon::connector::deliver::Verdict;
use wcon::connector::observe::Observer;
use wcon::connector::supervisor::{Applied, Supervisor};
use wcon::connector::{self as engine, Event, Report, Route};

use crate::Failure;

/// The long help of `wcon tunnel`: shapes, precedence, environment, reload, examples.
const LONG_HELP: &str = "\
One channel: `wcon tunnel CHANNEL --to TARGET`. Several channels in one process: repeat
`--route CHANNEL=TARGET` (token from --token / WCON_TOKEN, or `--route CHANNEL:TOKEN=TARGET`), or
use the multi-channel connector.json (`cloud` {url, connector_id}, `concurrency`, `routes`
{CHANNEL: {token, target | module... | chain...}}, `connections`). Each channel has its own
stream, backoff and health; one failing channel does not stop the others.

Settings, lowest to highest: defaults, the --profile of config.toml (`server`, and the
channel's saved token), --config FILE (connector.json), CONNECTOR_* environment variables (and
WCON_SERVER, WCON_TOKEN), flags.

Environment: CONNECTOR_CLOUD_URL, CONNECTOR_CHANNEL, CONNECTOR_TOKEN, CONNECTOR_PROTOCOL,
CONNECTOR_ID, CONNECTOR_CONCURRENCY (or CONNECTOR_MAX_CONCURRENT_REQUESTS),
CONNECTOR_RECONNECT_DELAY, CONNECTOR_MAX_RECONNECT_DELAY, CONNECTOR_RECONNECT_BACKOFF_MULTIPLIER,
CONNECTOR_HEARTBEAT_TIMEOUT, CONNECTOR_CONNECTION_TIMEOUT, CONNECTOR_ACK_TIMEOUT,
CONNECTOR_TARGET_URL, CONNECTOR_TARGET_METHOD, CONNECTOR_TARGET_TIMEOUT,
CONNECTOR_WEBHOOKS_CONFIG, CONNECTOR_CONNECTIONS_CONFIG, CONNECTOR_HEALTH_LISTEN,
CONNECTOR_HEALTH_DOWN_AFTER, CONNECTOR_LOG_LEVEL, CONNECTOR_LOG_FORMAT, CONNECTOR_VERIFY_SSL,
CONNECTOR_CA_CERT_PATH, CONNECTOR_CLIENT_CERT_PATH, CONNECTOR_CLIENT_KEY_PATH.

Live reload: changes to the connector.json, webhooks.json and connections.json in use (or SIGHUP)
apply without dropping messages in flight: a new target or module applies to new deliveries at
once; a new server, token or transport reconnects that channel after its deliveries settle. A
broken file is refused with a log line and the running configuration stays.

Examples:
  wcon tunnel stripe-payments --to localhost:3000 --server https://hooks.example.com
  wcon tunnel --server https://hooks.example.com --route stripe-payments=3000 \\
      --route github-events:$GITHUB_TOKEN=localhost:4000/gh --health-listen 127.0.0.1:9090";

// The command's one-line about is the `Tunnel` variant's doc in main.rs.
#[derive(Debug, clap::Args)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    /// The channel to stream (or `channel` in connector.json / CONNECTOR_CHANNEL).
    channel: Option<String>,
    /// Where to deliver: a port, host:port, or an http(s) URL with a path.
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// Stream CHANNEL to TARGET; repeat for several channels in one process. The channel token
    /// is --token (WCON_TOKEN) unless given as CHANNEL:TOKEN=TARGET (visible in `ps`: prefer
    /// `$VAR` from the shell's environment or connector.json with `{$VAR}`).
    #[arg(
        long = "route",
        value_name = "CHANNEL[:TOKEN]=TARGET",
        conflicts_with_all = ["channel", "to", "webhooks"]
    )]
    routes: Vec<String>,
    /// The receiver's base URL.
    #[arg(long, env = "WCON_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`).
    #[arg(long, env = "WCON_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// connector.json to read (single- or multi-channel shape).
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
    /// Deliveries running at once, over every channel (`concurrency`, max_concurrent_requests).
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
    /// Present this PEM client certificate (chain) to the server on every transport, for
    /// channels with `require_client_cert` (client_cert_path, CONNECTOR_CLIENT_CERT_PATH).
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert (client_key_path, CONNECTOR_CLIENT_KEY_PATH).
    #[arg(long, value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// Serve GET /health and GET /metrics (Prometheus) on this address, e.g. 127.0.0.1:9090.
    /// Off by default.
    #[arg(long, value_name = "ADDR")]
    health_listen: Option<String>,
    /// /health answers 503 once a channel has been down this many seconds (default 60).
    #[arg(long, value_name = "SECONDS")]
    health_down_after: Option<f64>,
}

impl Args {
    /// The connector.json named with `--config`, if any.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }
}

pub async fn run(args: Args, profile: Option<&str>, lines: Lines) -> Result<ExitCode, Failure> {
    let profile = crate::profile::load(profile)?;
    if args.check {
        return Ok(crate::check::tunnel(build_setup(&args, &profile)).await);
    }
    let setup = build_setup(&args, &profile).map_err(Failure::usage)?;
    if setup.channels.iter().any(|c| !c.verify_ssl) {
        say(
            lines,
            "WARN",
            "insecure",
            "warning: TLS certificate verification is off (--insecure / verify_ssl false): anyone on the path to the server can read and change the stream".into(),
        );
    }
    let routes = build_routes(&setup).map_err(Failure::usage)?;
    let observer = Arc::new(Observer::new(Duration::from_secs_f64(
        setup.health_down_after,
    )));
    let shutdown = CancellationToken::new();
    if let Some(addr) = setup.health_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::usage(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
        say(
            lines,
            "INFO",
            "health_listening",
            format!(
                "health and metrics on http://{}",
                listener.local_addr().map_err(anyhow::Error::from)?
            ),
        );
        let (observer, shutdown) = (observer.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = engine::health::serve(listener, observer, shutdown).await {
                tracing::error!(error = %e, "the health server stopped");
            }
        });
    }
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(print_events(events_rx, setup.multi, lines));
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        say(
            lines,
            "INFO",
            "stopping",
            "stopping: finishing deliveries in progress".into(),
        );
        stopper.cancel();
    });
    let mut supervisor = Supervisor::new(events_tx, observer, shutdown.clone());
    supervisor.apply(routes, setup.concurrency);

    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    crate::on_hangup(reload_tx.clone());
    let mut files = watched_files(&args, &setup);
    let mut watch = start_watch(&files, &reload_tx, lines);
    let mut running = setup;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = reload_rx.recv() => {
                match build_setup(&args, &profile).and_then(|s| Ok((build_routes(&s)?, s))) {
                    Ok((routes, setup)) => {
                        if setup.health_listen != running.health_listen {
                            say(lines, "WARN", "reload_note", "note: a new health_listen takes effect after a restart".into());
                        }
                        let applied = supervisor.apply(routes, setup.concurrency);
                        say(lines, "INFO", "reloaded", format!("reloaded: {}", describe(&applied)));
                        let now = watched_files(&args, &setup);
                        if now != files {
                            drop(watch);
                            watch = start_watch(&now, &reload_tx, lines);
                            files = now;
                        }
                        running = setup;
                    }
                    Err(e) => say(
                        lines,
                        "ERROR",
                        "reload_refused",
                        format!("reload refused, the running configuration stays: {e:#}"),
                    ),
                }
            }
        }
    }
    drop(watch);
    supervisor.wait().await;
    let _ = printer.await;
    Ok(ExitCode::SUCCESS)
}

/// The files whose changes trigger a reload: connector.json and the module files in use.
fn watched_files(args: &Args, setup: &ConnectorSetup) -> Vec<PathBuf> {
    let mut files = setup.files();
    files.extend(args.config.iter().cloned());
    files
}

fn start_watch(
    files: &[PathBuf],
    reload: &mpsc::Sender<()>,
    lines: Lines,
) -> Option<watch::FileWatch> {
    if files.is_empty() {
        return None;
    }
    match watch::watch(files, reload.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            say(
                lines,
                "WARN",
                "watch_failed",
                format!("note: cannot watch the config files ({e}); reload with SIGHUP"),
            );
            None
        }
    }
}

fn describe(applied: &Applied) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("added", &applied.added),
        ("removed", &applied.removed),
        ("reconnecting", &applied.restarted),
        ("new delivery for", &applied.rerouted),
    ] {
        if !list.is_empty() {
            let names: Vec<String> = list.iter().map(|c| c.to_string()).collect();
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    if parts.is_empty() {
        "nothing changed".into()
    } else {
        parts.join("; ")
    }
}

/// Builds every channel's deliverer (module mode reads and builds its files now, so a bad file
/// stops the tunnel before it connects, or refuses a reload).
fn build_routes(setup: &ConnectorSetup) -> anyhow::Result<Vec<Route>> {
    setup
        .channels
        .iter()
        .map(|c| {
            // A CA file or client certificate that cannot be used stops the tunnel (or refuses a
            // reload) here.
            engine::outbound::Outbound::from_config(c)?;
            Ok(Route {
                delivery: engine::Deliverer::from_config(c)?,
                config: Arc::new(c.clone()),
            })
        })
        .collect()
}

/// `CHANNEL=TARGET` or `CHANNEL:TOKEN=TARGET` → (channel, token, target URL).
fn parse_route(text: &str) -> anyhow::Result<(String, Option<String>, String)> {
    let Some((left, target)) = text.split_once('=') else {
        // Never echo a token.
        let shown = match text.split_once(':') {
            Some((channel, _)) => format!("{channel}:***"),
            None => text.to_string(),
        };
        anyhow::bail!(
            "--route `{shown}`: expected CHANNEL=TARGET or CHANNEL:TOKEN=TARGET, e.g. --route stripe-payments=localhost:3000"
        );
    };
    let (channel, token) = match left.split_once(':') {
        Some((c, t)) if !t.is_empty() => (c, Some(t.to_string())),
        Some((c, _)) => (c, None),
        None => (left, None),
    };
    if channel.is_empty() {
        anyhow::bail!("--route `=…{target}`: the channel is missing before `=`");
    }
    let url = connector::parse_target(target).map_err(anyhow::Error::msg)?;
    Ok((channel.to_string(), token, url.to_string()))
}

fn build_setup(args: &Args, profile: &crate::profile::Selected) -> anyhow::Result<ConnectorSetup> {
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
    if let Some(path) = &args.client_cert {
        set("client_cert_path", json!(path.display().to_string()));
    }
    if let Some(path) = &args.client_key {
        set("client_key_path", json!(path.display().to_string()));
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
    if let Some(addr) = &args.health_listen {
        set("health_listen", json!(addr));
    }
    if let Some(s) = args.health_down_after {
        set("health_down_after", json!(s));
    }
    if !args.routes.is_empty() {
        let mut routes = Map::new();
        for text in &args.routes {
            let (channel, token, target) = parse_route(text)?;
            let mut route = Map::new();
            route.insert("target".into(), json!(target));
            if let Some(token) = token {
                route.insert("token".into(), json!(token));
            }
            routes.insert(channel, Value::Object(route));
        }
        set("routes", Value::Object(routes));
    }
    layers.push(flags);
    Ok(ConnectorSetup::from_layers(&file_name, &layers)?)
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

/// How the tunnel's own lines look: for people (the default), or one JSON object per line
/// (`--log-format json`), shaped like the JSON log lines: `timestamp`, `level`, `message` (the
/// human line's text), `event`, and the event's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// One line of the tunnel's own output.
struct Line {
    level: &'static str,
    event: &'static str,
    /// The human text, without the time.
    text: String,
    fields: Map<String, Value>,
}

impl Line {
    fn new(level: &'static str, event: &'static str, text: String) -> Self {
        Self {
            level,
            event,
            text,
            fields: Map::new(),
        }
    }

    fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    /// As JSON: one object, no newline.
    fn json(self) -> String {
        let mut object = Map::new();
        object.insert(
            "timestamp".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        object.insert("level".into(), json!(self.level));
        object.insert("message".into(), json!(self.text));
        object.insert("event".into(), json!(self.event));
        object.extend(self.fields);
        Value::Object(object).to_string()
    }
}

/// Writes a line that is not about one channel (start, stop, reload) to stderr.
fn say(lines: Lines, level: &'static str, event: &'static str, text: String) {
    let out = match lines {
        Lines::Human => text,
        Lines::Json => Line::new(level, event, text).json(),
    };
    // A closed stderr is not a reason to stop delivering.
    let _ = writeln!(std::io::stderr(), "{out}");
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The line of an event, if people see it.
fn event_line(event: Event) -> Option<Line> {
    let line = match event {
        Event::Connected {
            server,
            channel,
            protocol,
        } => Line::new(
            "INFO",
            "connected",
            format!("connected to {server} channel {channel} ({protocol})"),
        )
        .field("server", server)
        .field("protocol", protocol),
        Event::Ready { .. } | Event::Received { .. } => return None,
        Event::Disconnected { reason, retry_in } => Line::new(
            "WARN",
            "disconnected",
            format!(
                "disconnected: {reason}; reconnecting in {:.1}s",
                retry_in.as_secs_f64()
            ),
        )
        .field("reason", reason)
        .field("retry_in_seconds", seconds(retry_in)),
        Event::Unauthorized { detail, retry_in } => {
            let hint = if detail.contains("channel token") {
                "; check --token (or WCON_TOKEN)"
            } else {
                ""
            };
            Line::new(
                "ERROR",
                "unauthorized",
                format!(
                    "error: {detail}{hint}; retrying in {:.0}s",
                    retry_in.as_secs_f64()
                ),
            )
            .field("detail", detail)
            .field("retry_in_seconds", seconds(retry_in))
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
            Line::new(
                "INFO",
                "attempt",
                format!(
                    "{webhook_id} {message_id} {status} {:.1}ms attempt {}",
                    attempt.latency.as_secs_f64() * 1000.0,
                    attempt.number
                ),
            )
            .field("webhook_id", webhook_id.to_string())
            .field("message_id", message_id.to_string())
            .field("status", attempt.status.map(|s| s.as_u16()))
            .field("error", attempt.error)
            .field("latency_ms", millis(attempt.latency))
            .field("attempt", attempt.number)
        }
        Event::Settled {
            message_id,
            verdict: Verdict::Nack { retry, reason },
            latency,
        } => {
            let what = if retry {
                "will be delivered again"
            } else {
                "dead-lettered by the server"
            };
            Line::new(
                "WARN",
                "not_delivered",
                format!("{message_id} not delivered ({reason}); {what}"),
            )
            .field("message_id", message_id.to_string())
            .field("reason", reason)
            .field("retry", retry)
            .field("latency_ms", millis(latency))
        }
        Event::Settled { .. } => return None,
        Event::Duplicate {
            message_id,
            already_acked,
        } => Line::new(
            "INFO",
            "duplicate",
            if already_acked {
                format!(
                    "{message_id} sent again by the server just after it was acked here; acked again, not delivered twice"
                )
            } else {
                format!(
                    "{message_id} sent again by the server while still in progress here; delivered once"
                )
            },
        )
        .field("message_id", message_id.to_string()),
        Event::ServerError { code, detail } => {
            Line::new("WARN", "server_error", format!("server: {code}: {detail}"))
                .field("code", code)
                .field("detail", detail)
        }
    };
    Some(line)
}

async fn print_events(mut events: mpsc::UnboundedReceiver<Report>, multi: bool, lines: Lines) {
    let mut err = std::io::stderr();
    while let Some(Report { channel, event }) = events.recv().await {
        let connected = matches!(event, Event::Connected { .. });
        let Some(line) = event_line(event) else {
            continue;
        };
        let out = match lines {
            Lines::Json => line.field("channel", channel.to_string()).json(),
            // The ready line is the same for every run (scripts wait for it).
            Lines::Human if connected => line.text,
            Lines::Human => {
                let now = chrono::Local::now().format("%H:%M:%S%.3f");
                // With several channels, each line says which one (`connected` names it).
                if multi {
                    format!("{now} [{channel}] {}", line.text)
                } else {
                    format!("{now} {}", line.text)
                }
            }
        };
        // A closed stderr is not a reason to stop delivering.
        let _ = writeln!(err, "{out}");
    }
}
