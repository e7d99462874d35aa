//! Log output of the binary: `tracing` to stderr, human by default or JSON lines.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Logging flags shared by every subcommand.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set.
    #[arg(long, global = true, env = "WCON_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: `text` for people, `json` for one JSON object per line (log shippers).
    #[arg(long, global = true, env = "WCON_LOG_FORMAT", value_enum, default_value_t = Format::Text)]
    pub log_format: Format,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the subscriber. The tunnel prints its own lines, so its default level is `warn`.
pub fn init(args: &Args, quiet_by_default: bool) {
    let level = args
        .log_level
        .clone()
        .unwrap_or_else(|| if quiet_by_default { "warn" } else { "info" }.to_string());
    // The storage engine narrates its housekeeping at info; keep that out of operators' logs.
    // lapin logs a message RabbitMQ returned with its whole body at warn (webhook bodies and
    // headers do not belong in logs); wcon reports those failures itself.
    let default = if level.contains('=') {
        level
    } else {
        format!("{level},fjall=warn,lsm_tree=warn,lapin=error")
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false);
    match args.log_format {
        Format::Text => builder.init(),
        // Fields at the top level next to `timestamp`, `level` and `message`: easy to query.
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
