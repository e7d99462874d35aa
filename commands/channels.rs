//! `wcon channels`: list the relay channels of a server, show one, its stats, and disconnect a
//! connection — through the admin API.

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
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs `wcon channels …`.
pub async fn run(args: Args) -> Result<ExitCode, Failure> {
    let admin = Admin::new(&args.admin)?;
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
