//! `wcon dlq`: a channel's dead letters — list, show one, replay, purge — through the admin API.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::Failure;
use crate::admin_client::{Admin, AdminArgs, cell, confirm, print_json, print_table, table};

/// Inspect, replay and purge dead letters on a running `wcon serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dead letters of a channel, oldest first, with why they died.
    List {
        /// The channel.
        channel: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// One dead letter in full: headers, body and the last error.
    Show {
        /// The channel.
        channel: String,
        /// The message id (msg_…).
        message_id: String,
    },
    /// Put dead letters back in the queue, with their attempts reset.
    Replay {
        /// The channel.
        channel: String,
        /// These messages.
        #[arg(conflicts_with_all = ["all", "since", "until"])]
        message_ids: Vec<String>,
        /// Every dead letter of the channel (asks first unless --yes).
        #[arg(long, conflicts_with_all = ["since", "until"])]
        all: bool,
        /// Those dead-lettered at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<DateTime<Utc>>,
        /// Those dead-lettered before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<DateTime<Utc>>,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Delete dead letters for good (asks first unless --yes).
    Purge {
        /// The channel.
        channel: String,
        /// These messages.
        message_ids: Vec<String>,
        /// Every dead letter of the channel.
        #[arg(long, conflicts_with = "message_ids")]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

/// Ids replayed per request in a bulk replay.
const REPLAY_BATCH: usize = 100;

/// The ids of the dead letters dead-lettered in `[since, until)` (all when both are open), in
/// the server's order.
async fn select_dead(
    admin: &Admin,
    channel: &str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<String>, Failure> {
    const PAGE: usize = 1000;
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let v = admin
            .call(
                Method::GET,
                &format!(
                    "/channels/{}/dead-letters?limit={PAGE}&offset={offset}",
                    seg(channel)
                ),
                None,
            )
            .await?;
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        for m in &page {
            let at = m["dead_lettered_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let selected = match at {
                Some(at) => since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u),
                None => since.is_none() && until.is_none(),
            };
            if selected && let Some(id) = m["message_id"].as_str() {
                ids.push(id.to_string());
            }
        }
        if page.len() < PAGE {
            return Ok(ids);
        }
        offset += page.len();
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (pipes, files, CI).
fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({eta})")
            .expect("the template is valid"),
    );
    bar
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs `wcon dlq …`.
pub async fn run(args: Args, profile: Option<&str>) -> Result<ExitCode, Failure> {
    match &args.command {
        Command::Replay {
            message_ids,
            all: false,
            since: None,
            until: None,
            ..
        } if message_ids.is_empty() => {
            return Err(Failure::usage(anyhow::anyhow!(
                "name what to replay: message ids, --all, or --since TIME / --until TIME"
            )));
        }
        Command::Purge {
            message_ids,
            all: false,
            ..
        } if message_ids.is_empty() => {
            return Err(Failure::usage(anyhow::anyhow!(
                "name what to purge: message ids or --all"
            )));
        }
        _ => {}
    }
    let profile = crate::profile::load(profile)?;
    let admin = Admin::new(&args.admin, &profile)?;
    let json = args.admin.json;
    match args.command {
        Command::List {
            channel,
            limit,
            offset,
        } => {
            let v = admin
                .call(
                    Method::GET,
                    &format!(
                        "/channels/{}/dead-letters?limit={limit}&offset={offset}",
                        seg(&channel)
                    ),
                    None,
                )
                .await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let messages = v["messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                println!("no dead letters in {channel}");
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&[
                "MESSAGE",
                "WEBHOOK",
                "REASON",
                "ATTEMPTS",
                "DEAD-LETTERED AT",
                "ERROR",
            ]);
            for m in &messages {
                t.add_row([
                    cell(&m["message_id"]),
                    cell(&m["webhook_id"]),
                    cell(&m["reason"]),
                    cell(&m["delivery_count"]),
                    cell(&m["dead_lettered_at"]),
                    cell(&m["error"]),
                ]);
            }
            print_table(&t);
            let total = v["total"].as_u64().unwrap_or(messages.len() as u64);
            if total > messages.len() as u64 {
                println!(
                    "{} of {total} shown; see --limit and --offset",
                    messages.len()
                );
            }
        }
        Command::Show {
            channel,
            message_id,
        } => {
            let v = admin
                .call(
                    Method::GET,
                    &format!(
                        "/channels/{}/dead-letters/{}",
                        seg(&channel),
                        seg(&message_id)
                    ),
                    None,
                )
                .await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["FIELD", "VALUE"]);
            for k in [
                "message_id",
                "webhook_id",
                "sequence",
                "reason",
                "error",
                "delivery_count",
                "timestamp",
                "dead_lettered_at",
                "expires_at",
                "source_ip",
                "body_len",
            ] {
                t.add_row([k.to_string(), cell(&v[k])]);
            }
            print_table(&t);
            println!("\nheaders:");
            for (k, h) in v["headers"].as_object().into_iter().flatten() {
                println!("  {k}: {}", cell(h));
            }
            println!("\nbody:");
            match &v["payload"] {
                Value::String(s) => println!("{s}"),
                other => println!(
                    "{}",
                    serde_json::to_string_pretty(other).expect("JSON serialises")
                ),
            }
        }
        Command::Replay {
            channel,
            message_ids,
            all,
            since,
            until,
            yes,
        } => {
            let path = format!("/channels/{}/dead-letters/replay", seg(&channel));
            if !message_ids.is_empty() {
                let v = admin
                    .call(Method::POST, &path, Some(&json!({"ids": message_ids})))
                    .await?;
                if json {
                    print_json(&v);
                } else {
                    println!("replayed {} message(s) of {channel}", cell(&v["replayed"]));
                }
                return Ok(ExitCode::SUCCESS);
            }
            if all {
                confirm(yes, &format!("Replay every dead letter of {channel}?"))?;
            }
            // Bulk: the selection is listed first, then replayed in batches so that a progress
            // bar can follow it. Dead letters that arrive meanwhile are left alone.
            let ids = select_dead(&admin, &channel, since, until).await?;
            let bar = progress(ids.len() as u64);
            let mut replayed: Vec<Value> = Vec::new();
            for batch in ids.chunks(REPLAY_BATCH) {
                let v = admin
                    .call(Method::POST, &path, Some(&json!({"ids": batch})))
                    .await
                    .inspect_err(|_| bar.abandon())?;
                replayed.extend(v["message_ids"].as_array().cloned().unwrap_or_default());
                bar.inc(batch.len() as u64);
            }
            bar.finish();
            if json {
                print_json(&json!({
                    "channel": channel,
                    "replayed": replayed.len(),
                    "message_ids": replayed,
                }));
            } else {
                println!("replayed {} message(s) of {channel}", replayed.len());
            }
        }
        Command::Purge {
            channel,
            message_ids,
            all,
            yes,
        } => {
            let body = if all {
                confirm(
                    yes,
                    &format!("Delete every dead letter of {channel} for good?"),
                )?;
                json!({"all": true})
            } else {
                confirm(
                    yes,
                    &format!(
                        "Delete {} dead letter(s) of {channel} for good?",
                        message_ids.len()
                    ),
                )?;
                json!({"ids": message_ids})
            };
            let v = admin
                .call(
                    Method::DELETE,
                    &format!("/channels/{}/dead-letters", seg(&channel)),
                    Some(&body),
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                println!("purged {} message(s) of {channel}", cell(&v["purged"]));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
