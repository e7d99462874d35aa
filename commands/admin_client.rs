//! What `wcon channels`, `wcon dlq` and `wcon dash` share: the `--server` / `--admin-token` /
//! `--json` flags (falling back to the `--profile` of config.toml), the admin API client, tables
//! and confirmations.
//!
//! Turns transport failures and error answers into messages that say what to check; it never
//! prints the admin token.

use std::io::IsTerminal as _;

use anyhow::anyhow;
use comfy_table::{Table, presets};
use serde_json::Value;

use crate::Failure;
use crate::profile::Selected;

/// Where the admin API is and how to talk to it.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// URL of `wcon serve`, e.g. https://hooks.example.com.
    #[arg(long, env = "WCON_SERVER", global = true, value_name = "URL")]
    server: Option<String>,
    /// The server's WEBHOOK_CONNECT_ADMIN_TOKEN.
    #[arg(
        long,
        env = "WCON_ADMIN_TOKEN",
        global = true,
        hide_env_values = true,
        value_parser = parse_token,
        value_name = "TOKEN"
    )]
    admin_token: Option<AdminToken>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The admin token; `Debug` never shows it.
#[derive(Clone)]
struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn parse_token(s: &str) -> Result<AdminToken, std::convert::Infallible> {
    Ok(AdminToken(s.to_string()))
}

/// A client of `/admin/webhook-connect` on one server.
pub struct Admin {
    base: url::Url,
    token: AdminToken,
    http: reqwest::Client,
}

impl Admin {
    /// Checks the flags, taking what they leave out from the profile (exit 2 when one is
    /// missing or malformed).
    pub fn new(args: &AdminArgs, profile: &Selected) -> Result<Self, Failure> {
        let server = args
            .server
            .as_deref()
            .or(profile.profile.server.as_deref())
            .ok_or_else(|| {
                Failure::usage(anyhow!(
                    "no server given; pass --server URL, set WCON_SERVER, or set `server` in \
                     profile `{}` of config.toml (the URL of `wcon serve`)",
                    profile.name
                ))
            })?;
        let base = url::Url::parse(server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Failure::usage(anyhow!(
                    "`{server}` is not an http(s) URL; pass e.g. --server https://hooks.example.com"
                ))
            })?;
        let token = args
            .admin_token
            .clone()
            .or_else(|| profile.profile.admin_token.clone().map(AdminToken))
            .ok_or_else(|| {
                Failure::usage(anyhow!(
                    "no admin token given; pass --admin-token, set WCON_ADMIN_TOKEN, or set \
                     `admin_token` in profile `{}` of config.toml (the server's \
                     WEBHOOK_CONNECT_ADMIN_TOKEN)",
                    profile.name
                ))
            })?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::from(anyhow!(e).context("cannot build the HTTP client")))?;
        Ok(Self { base, token, http })
    }

    /// The server's URL, as given.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Calls `METHOD /admin/webhook-connect{path}` and returns the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let root = self.base.as_str().trim_end_matches('/');
        let url = format!("{root}/admin/webhook-connect{path}");
        let mut req = self.http.request(method, &url).bearer_auth(&self.token.0);
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req.send().await.map_err(|e| {
            Failure::from(anyhow!(e).context(format!(
                "cannot reach the server at `{root}`; check that `wcon serve` runs there and \
                 that --server / WCON_SERVER is right"
            )))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        let detail = answer["detail"].as_str().unwrap_or("").to_string();
        let message = match status.as_u16() {
            401 => "the server refused the admin token; check --admin-token / WCON_ADMIN_TOKEN \
                    against the server's WEBHOOK_CONNECT_ADMIN_TOKEN"
                .to_string(),
            403 => "the admin API is disabled on this server; start `wcon serve` with \
                    WEBHOOK_CONNECT_ADMIN_TOKEN set"
                .to_string(),
            _ if detail.is_empty() => format!("the server answered {status} to {path}"),
            _ => format!("the server answered {status}: {detail}"),
        };
        Err(Failure::from(anyhow!(message)))
    }
}

/// A table for humans: no borders, bold header only on a colour terminal without NO_COLOR.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if color && std::io::stdout().is_terminal() {
        t.set_header(
            header
                .iter()
                .map(|h| comfy_table::Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
        );
    } else {
        t.force_no_tty();
        t.set_header(header.iter().copied());
    }
    t
}

/// Prints a table, each line without trailing spaces.
pub fn print_table(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints JSON for `--json`.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("a JSON value serialises")
    );
}

/// A JSON value as a table cell: strings unquoted, null empty.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Asks before a destructive action unless `yes`; refuses without a terminal to ask on.
pub fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "refusing to go on without confirmation: stdin is not a terminal; pass --yes to confirm"
        )));
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .map_err(|e| Failure::from(anyhow!(e).context("cannot read the answer")))?;
    if ok {
        Ok(())
    } else {
        Err(Failure::from(anyhow!("aborted; nothing was changed")))
    }
}
