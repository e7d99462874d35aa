//! `wcon channels`: list the relay channels of a server, show one, its stats, disconnect a
//! connection and rotate a channel token — through the admin API.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::Failure;
use crate::admin_client::{Admin, AdminArgs, cell, print_json, print_table, table};

/// Inspect relay channels on a running `wcon serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every channel with its webhooks, connected clients and limits.
    List,
    /// One channel: settings, counts and connected clients.
    Show {
        /// The channel.
        channel: String,
    },
    /// Counts of one channel (queued, in flight, delivered, expired, dead-lettered).
    Stats {
        /// The channel.
        channel: String,
    },
    /// Close one connection of a channel; its in-flight messages go back to the queue.
    Disconnect {
        /// The channel.
        channel: String,
        /// The connection id (see `wcon channels show CHANNEL`).
        connection_id: String,
    },
    /// Replace a channel's token; prints the new one once. The old token keeps working for
    /// --grace, then connections still using it are closed and it is refused.
    RotateToken {
        /// The channel.
        channel: String,
        /// How long the old token stays valid, e.g. 1h, 30m, 90s, 0 (at most 30 days).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_grace)]
        grace: std::time::Duration,
        /// Also store the new token in the profile's config.toml (channel_tokens).
        #[arg(long)]
        save: bool,
    },
}

fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e}; write e.g. 1h, 30m, 90s or 0"))
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs `wcon channels …`.
pub async fn run(args: Args, profile: Option<&str>) -> Result<ExitCode, Failure> {
    let profile = crate::profile::load(profile)?;
    let admin = Admin::new(&args.admin, &profile)?;
    let json = args.admin.json;
    match args.command {
        Command::List => {
            let v = admin.call(Method::GET, "/channels", None).await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&[
                "CHANNEL",
                "WEBHOOKS",
                "CLIENTS",
                "MAX CLIENTS",
                "TTL (s)",
                "MAX QUEUE",
            ]);
            for c in v.as_array().into_iter().flatten() {
                let webhooks: Vec<String> = c["webhook_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(cell)
                    .collect();
                t.add_row([
                    cell(&c["name"]),
                    webhooks.join(","),
                    cell(&c["connected_clients"]),
                    cell(&c["max_connections"]),
                    cell(&c["ttl_seconds"]),
                    cell(&c["max_queue_size"]),
                ]);
            }
            print_table(&t);
        }
        Command::Show { channel } => {
            let v = admin
                .call(Method::GET, &format!("/channels/{}", seg(&channel)), None)
                .await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["SETTING", "VALUE"]);
            for (k, value) in v["config"].as_object().into_iter().flatten() {
                let shown = match value {
                    Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
                    other => cell(other),
                };
                t.add_row([k.clone(), shown]);
            }
            for (k, value) in v["stats"].as_object().into_iter().flatten() {
                if k != "channel" {
                    t.add_row([k.clone(), cell(value)]);
                }
            }
            print_table(&t);
            println!();
            let clients = v["connected_clients"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if clients.is_empty() {
                println!("no connected clients");
            } else {
                let mut t = table(&[
                    "CONNECTION",
                    "CONNECTOR",
                    "PROTOCOL",
                    "ADDRESS",
                    "IN FLIGHT",
                    "LAST HEARTBEAT",
                ]);
                for c in &clients {
                    t.add_row([
                        cell(&c["connection_id"]),
                        cell(&c["connector_id"]),
                        cell(&c["protocol"]),
                        cell(&c["remote_ip"]),
                        cell(&c["in_flight_count"]),
                        cell(&c["last_heartbeat_at"]),
                    ]);
                }
                print_table(&t);
            }
        }
        Command::Stats { channel } => {
            let v = admin
                .call(
                    Method::GET,
                    &format!("/channels/{}/stats", seg(&channel)),
                    None,
                )
                .await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["COUNT", "VALUE"]);
            for k in [
                "messages_queued",
                "messages_in_flight",
                "messages_delivered",
                "messages_expired",
                "messages_dead_lettered",
                "connected_clients",
            ] {
                t.add_row([k.to_string(), cell(&v[k])]);
            }
            print_table(&t);
        }
        Command::RotateToken {
            channel,
            grace,
            save,
        } => {
            let v = admin
                .call(
                    Method::POST,
                    &format!("/channels/{}/rotate-token", seg(&channel)),
                    Some(&serde_json::json!({"grace_period_seconds": grace.as_secs()})),
                )
                .await?;
            let saved = if save {
                let token = v["new_token"].as_str().unwrap_or_default();
                Some(
                    crate::profile::save_channel_token(&profile.name, &channel, token).map_err(
                        |e| {
                            // The rotation happened: the token must not be lost with the error.
                            println!("new token: {token}");
                            Failure::from(e.context(
                                "the token was rotated but could not be saved; it is printed above",
                            ))
                        },
                    )?,
                )
            } else {
                None
            };
            if json {
                print_json(&v);
            } else {
                println!("new token: {}", cell(&v["new_token"]));
                println!(
                    "the old token is valid until {}",
                    cell(&v["old_token_expires_at"])
                );
                println!("this token is shown only once; update your connectors now");
            }
            if let Some(path) = saved {
                eprintln!("saved in profile `{}` of {}", profile.name, path.display());
            }
        }
        Command::Disconnect {
            channel,
            connection_id,
        } => {
            let v = admin
                .call(
                    Method::DELETE,
                    &format!(
                        "/channels/{}/connections/{}",
                        seg(&channel),
                        seg(&connection_id)
                    ),
                    None,
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                println!("disconnected {connection_id} from {channel}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
