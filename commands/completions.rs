//! `wcon completions SHELL`: prints a shell completion script for `wcon` (clap_complete).
//!
//! The generated scripts are committed in `completions/`; a test fails when they drift.

use std::process::ExitCode;

use clap::CommandFactory as _;

use crate::Failure;

/// Print a shell completion script to stdout.
///
/// Example: wcon completions bash > ~/.local/share/bash-completion/completions/wcon
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Runs `wcon completions SHELL`.
pub async fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "wcon", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
