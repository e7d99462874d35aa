//! The `wcon` binary: parses the command line and runs one subcommand.
//!
//! Exit codes: 0 success, 1 runtime failure (e.g. the server cannot be reached or refused the
//! request), 2 usage or configuration error (including a refused confirmation without a terminal).
//! They are listed in `wcon --help` (see [`EXIT_CODES`]).

mod admin_client;
mod channels;
mod check;
mod completions;
mod dash;
mod dlq;
mod init;
mod logging;
mod profile;
mod send;
mod serve;
mod tunnel;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "Exit codes: 0 success, 1 runtime failure (server unreachable, \
request refused, delivery failed), 2 usage or configuration error.";

/// mimalloc instead of glibc malloc: the relay allocates many small, short-lived buffers per
/// message, and glibc's malloc/free took about a fifth of its CPU time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// wcon — a webhook relay: receive webhooks publicly, deliver them behind a firewall.
#[derive(Debug, Parser)]
#[command(name = "wcon", version, about, long_about = None, propagate_version = true, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    log: logging::Args,
    /// Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving
    /// --server, --admin-token and saved channel tokens; flags and env vars win over it.
    #[arg(long, env = "WCON_PROFILE", global = true, value_name = "NAME")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the public receiver: accept webhooks, store them durably, stream them to connectors.
    Serve(serve::Args),
    /// Connect out to a receiver and deliver channels' webhooks to local apps or output modules.
    Tunnel(tunnel::Args),
    /// Inspect relay channels of a running server (admin API).
    Channels(channels::Args),
    /// List, show, replay and purge dead letters of a running server (admin API).
    Dlq(dlq::Args),
    /// Write a starting config (receiver or connector) from templates, with a strong token.
    Init(init::Args),
    /// Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer.
    Send(send::Args),
    /// Watch a running server live: channels, connectors, messages, dead letters (terminal UI).
    Dash(dash::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::Args),
}

/// A failure with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }

    /// The error, without its exit code.
    pub fn into_error(self) -> anyhow::Error {
        self.error
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Tunnel(args) = &cli.command {
        // The tunnel's documented settings sit beneath the flags (and WCON_LOG_*): first
        // CONNECTOR_LOG_*, then connector.json's `log_level` / `log_format`. A file that cannot
        // be read is reported by the tunnel itself, with the rest of its settings.
        let file = args
            .config_file()
            .and_then(|path| wcon::config::connector::file_layer(path).ok());
        let from_file = |key: &str| {
            file.as_ref()
                .and_then(|f| f.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        if cli.log.log_level.is_none() {
            cli.log.log_level = std::env::var("CONNECTOR_LOG_LEVEL")
                .ok()
                .filter(|l| !l.is_empty())
                .or_else(|| from_file("log_level"));
        }
        let format_given = matches!(
            matches.value_source("log_format"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let format = std::env::var("CONNECTOR_LOG_FORMAT")
            .ok()
            .map(|f| ("CONNECTOR_LOG_FORMAT".to_string(), f))
            .or_else(|| {
                let path = args.config_file()?.display();
                from_file("log_format").map(|f| (format!("`log_format` in {path}"), f))
            });
        if !format_given && let Some((source, format)) = format {
            match logging::Format::from_str(format.trim(), true) {
                Ok(format) => cli.log.log_format = format,
                Err(_) => {
                    eprintln!("error: {source} must be `text` or `json`, not `{format}`");
                    return ExitCode::from(2);
                }
            }
        }
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other crypto provider is installed at start-up");
    logging::init(
        &cli.log,
        matches!(cli.command, Command::Tunnel(_) | Command::Dash(_)),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Tunnel(args) => {
                let lines = match cli.log.log_format {
                    logging::Format::Text => tunnel::Lines::Human,
                    logging::Format::Json => tunnel::Lines::Json,
                };
                tunnel::run(args, cli.profile.as_deref(), lines).await
            }
            Command::Channels(args) => channels::run(args, cli.profile.as_deref()).await,
            Command::Dlq(args) => dlq::run(args, cli.profile.as_deref()).await,
            Command::Init(args) => init::run(args).await,
            Command::Send(args) => send::run(args, cli.profile.as_deref()).await,
            Command::Dash(args) => dash::run(args, cli.profile.as_deref()).await,
            Command::Completions(args) => completions::run(args).await,
        }
    });
    // Do not wait for blocking tasks (e.g. a stdin reader) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// Sends `()` on `reload` at every SIGHUP (a no-op where there is none).
pub fn on_hangup(reload: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            if reload.send(()).await.is_err() {
                return;
            }
        }
    });
    #[cfg(not(unix))]
    drop(reload);
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
