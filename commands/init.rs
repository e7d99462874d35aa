//! `wcon init`: a wizard that writes a receiver's webhooks.json or a connector's connector.json
//! (plus webhooks.json and connections.json in module mode) from the templates in `templates/`,
//! with a strong generated channel token.
//!
//! Every question has a flag; `--yes` takes the default of each question not given by a flag,
//! so it runs without a terminal. Existing files are kept unless `--force`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::ValueEnum;
use serde_json::Value;

use crate::Failure;

const RECEIVER_WEBHOOKS: &str = include_str!("../templates/receiver/webhooks.json");
const CONNECTOR_HTTP: &str = include_str!("../templates/connector/http.json");
const CONNECTOR_MODULE: &str = include_str!("../templates/connector/module.json");
const MODULE_WEBHOOKS: &str = include_str!("../templates/connector/module-webhooks.json");
const MODULE_CONNECTIONS: &str = include_str!("../templates/connector/module-connections.json");

/// Write a starting configuration: a receiver (`wcon serve`) or a connector (`wcon tunnel`).
///
/// Asks each question not answered by a flag; --yes takes the defaults instead (no terminal
/// needed). Example: wcon init --role receiver --provider stripe --yes
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to set up.
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// Receiver: whose signatures to check.
    #[arg(long, value_enum)]
    provider: Option<Provider>,
    /// Receiver: the webhook id (senders post to /webhook/ID) [default: the provider's name].
    #[arg(long, value_name = "ID")]
    webhook_id: Option<String>,
    /// The relay channel [default: the webhook id, or `default` for a connector].
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
    /// Receiver: the signing secret of the provider (Stripe's whsec_…, GitHub's or Shopify's
    /// webhook secret) [default: a generated one, printed once].
    #[arg(
        long,
        value_name = "SECRET",
        hide_env_values = true,
        env = "WCON_INIT_HMAC_SECRET"
    )]
    hmac_secret: Option<String>,
    /// Receiver: the channel token [default: a generated strong token, printed once].
    /// Connector: the channel token [default: {$WCON_TOKEN}, read from the environment].
    #[arg(
        long,
        value_name = "TOKEN",
        hide_env_values = true,
        env = "WCON_INIT_TOKEN"
    )]
    token: Option<String>,
    /// Connector: deliver to an HTTP app, or through output modules.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Connector: URL of `wcon serve` [default: http://localhost:8000].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Connector: where webhooks go [default: http://localhost:3000/webhooks].
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Directory to write the files in.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// Take the default answer of every question not given by a flag.
    #[arg(long, short)]
    yes: bool,
}

/// What `init` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// The public side: webhooks.json for `wcon serve`.
    Receiver,
    /// The private side: connector.json for `wcon tunnel --config`.
    Connector,
}

/// Provider presets: the signature check of the receiver's webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Provider {
    /// Stripe-Signature (t=…,v1=…), 5 minutes tolerance.
    Stripe,
    /// X-Hub-Signature-256 (sha256=…).
    Github,
    /// X-Shopify-Hmac-Sha256 (base64).
    Shopify,
    /// X-HMAC-Signature: hex HMAC-SHA256 of the body.
    Hmac,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Hmac => "hmac",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Self::Stripe => include_str!("../templates/providers/stripe.json"),
            Self::Github => include_str!("../templates/providers/github.json"),
            Self::Shopify => include_str!("../templates/providers/shopify.json"),
            Self::Hmac => include_str!("../templates/providers/hmac.json"),
        }
    }
}

/// How a connector delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// POST each webhook to a local HTTP app.
    Http,
    /// Run output modules (webhooks.json + connections.json next to connector.json).
    Module,
}

/// Asks questions, or answers them with defaults.
struct Wizard {
    interactive: bool,
}

impl Wizard {
    fn choose<T: ValueEnum + Copy>(
        &self,
        given: Option<T>,
        prompt: &str,
        default: T,
    ) -> Result<T, Failure> {
        if let Some(v) = given {
            return Ok(v);
        }
        if !self.interactive {
            return Ok(default);
        }
        let variants = T::value_variants();
        let labels: Vec<String> = variants
            .iter()
            .map(|v| {
                let p = v.to_possible_value().expect("no variant is skipped");
                match p.get_help() {
                    Some(help) => format!("{} — {help}", p.get_name()),
                    None => p.get_name().to_string(),
                }
            })
            .collect();
        let default_index = variants
            .iter()
            .position(|v| {
                v.to_possible_value().map(|p| p.get_name().to_string())
                    == default
                        .to_possible_value()
                        .map(|p| p.get_name().to_string())
            })
            .unwrap_or(0);
        let i = dialoguer::Select::new()
            .with_prompt(prompt)
            .items(&labels)
            .default(default_index)
            .interact()
            .map_err(|e| Failure::from(anyhow!(e).context("cannot read the answer")))?;
        Ok(variants[i])
    }

    fn text(
        &self,
        given: Option<String>,
        prompt: &str,
        default: String,
    ) -> Result<String, Failure> {
        if let Some(v) = given {
            return Ok(v);
        }
        if !self.interactive {
            return Ok(default);
        }
        dialoguer::Input::<String>::new()
            .with_prompt(prompt)
            .default(default)
            .interact_text()
            .map_err(|e| Failure::from(anyhow!(e).context("cannot read the answer")))
    }
}

/// Replaces every `{{key}}` in the string values (and keys) of a template.
fn fill(template: &str, values: &[(&str, &str)]) -> Value {
    fn walk(v: &mut Value, values: &[(&str, &str)]) {
        let sub = |s: &str| {
            values.iter().fold(s.to_string(), |acc, (k, val)| {
                acc.replace(&format!("{{{{{k}}}}}"), val)
            })
        };
        match v {
            Value::String(s) => *s = sub(s),
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, values)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (k, mut item) in old {
                    walk(&mut item, values);
                    map.insert(sub(&k), item);
                }
            }
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(template).expect("templates are valid JSON");
    walk(&mut v, values);
    v
}

fn secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// Webhook ids and channel names: letters, digits, `-`, `_` and `.`.
fn check_name(what: &str, s: &str) -> Result<(), Failure> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(Failure::usage(anyhow!(
            "{what} `{s}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// Runs `wcon init`.
pub async fn run(args: Args) -> Result<ExitCode, Failure> {
    let interactive = !args.yes;
    if interactive && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Failure::usage(anyhow!(
            "no terminal to ask questions on; pass --yes to take the defaults (and flags such as \
             --role, --provider, --channel to choose)"
        )));
    }
    let w = Wizard { interactive };
    let role = w.choose(args.role, "What are you setting up?", Role::Receiver)?;
    let (files, notes) = match role {
        Role::Receiver => receiver(&w, &args)?,
        Role::Connector => connector(&w, &args)?,
    };
    let existing: Vec<&PathBuf> = files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !args.force {
        let names: Vec<String> = existing
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        return Err(Failure::usage(anyhow!(
            "{} already exist(s); nothing was written. Pass --force to overwrite, or --dir DIR",
            names.join(", ")
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    for (path, value) in &files {
        write_private(path, value)?;
        println!("wrote {}", path.display());
    }
    for note in notes {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Files to write, and what to tell the user once they are written.
type Plan = (Vec<(PathBuf, Value)>, Vec<String>);

fn receiver(w: &Wizard, args: &Args) -> Result<Plan, Failure> {
    let provider = w.choose(
        args.provider,
        "Which provider sends the webhooks?",
        Provider::Stripe,
    )?;
    let webhook_id = w.text(
        args.webhook_id.clone(),
        "Webhook id (senders post to /webhook/ID)",
        provider.name().to_string(),
    )?;
    check_name("the webhook id", &webhook_id)?;
    let channel = w.text(args.channel.clone(), "Relay channel", webhook_id.clone())?;
    check_name("the channel", &channel)?;
    let default_secret = secret(if provider == Provider::Stripe {
        "whsec_"
    } else {
        ""
    });
    let hmac_secret = w.text(
        args.hmac_secret.clone(),
        "Signing secret (from the provider's dashboard)",
        default_secret.clone(),
    )?;
    let generated_secret = hmac_secret == default_secret;
    let generated_token = args.token.is_none();
    let token = args.token.clone().unwrap_or_else(crate_token);
    let values = [
        ("webhook_id", webhook_id.as_str()),
        ("channel", channel.as_str()),
        ("channel_token", token.as_str()),
        ("hmac_secret", hmac_secret.as_str()),
    ];
    let mut webhooks = fill(RECEIVER_WEBHOOKS, &values);
    let auth = fill(provider.template(), &values);
    if let (Some(entry), Value::Object(auth)) = (webhooks[&webhook_id].as_object_mut(), auth) {
        entry.extend(auth);
    }
    let mut notes = vec![format!(
        "receiver: webhook `{webhook_id}` ({}) relays to channel `{channel}`",
        provider.name()
    )];
    if generated_token {
        notes.push(format!(
            "channel token (give it to the connector; shown once): {token}"
        ));
    }
    if generated_secret {
        notes.push(format!(
            "signing secret (generated; replace it with the provider's, shown once): {hmac_secret}"
        ));
    }
    notes.push(format!(
        "next: wcon serve --config-dir {} --check   then   wcon serve --config-dir {}",
        args.dir.display(),
        args.dir.display()
    ));
    Ok((vec![(args.dir.join("webhooks.json"), webhooks)], notes))
}

fn crate_token() -> String {
    secret("ch_tok_")
}

fn connector(w: &Wizard, args: &Args) -> Result<Plan, Failure> {
    let mode = w.choose(args.mode, "How should webhooks be delivered?", Mode::Http)?;
    let server = w.text(
        args.server.clone(),
        "URL of wcon serve",
        "http://localhost:8000".into(),
    )?;
    url::Url::parse(&server)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| Failure::usage(anyhow!("`{server}` is not an http(s) URL")))?;
    let channel = w.text(args.channel.clone(), "Relay channel", "default".into())?;
    check_name("the channel", &channel)?;
    let token = w.text(
        args.token.clone(),
        "Channel token (keep {$WCON_TOKEN} to read it from the environment)",
        "{$WCON_TOKEN}".into(),
    )?;
    let target = w.text(
        args.target.clone(),
        "Where should webhooks go?",
        "http://localhost:3000/webhooks".into(),
    )?;
    url::Url::parse(&target)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| Failure::usage(anyhow!("`{target}` is not an http(s) URL")))?;
    let dir = absolute(&args.dir)?;
    let webhooks_path = dir.join("webhooks.json");
    let connections_path = dir.join("connections.json");
    let webhooks_config = webhooks_path.display().to_string();
    let connections_config = connections_path.display().to_string();
    let webhook_id = args.webhook_id.clone().unwrap_or_else(|| channel.clone());
    check_name("the webhook id", &webhook_id)?;
    let values = [
        ("server", server.as_str()),
        ("channel", channel.as_str()),
        ("token", token.as_str()),
        ("target", target.as_str()),
        ("webhook_id", webhook_id.as_str()),
        ("webhooks_config", webhooks_config.as_str()),
        ("connections_config", connections_config.as_str()),
    ];
    let connector_path = args.dir.join("connector.json");
    let notes = vec![
        format!("connector: channel `{channel}` of {server} → {target}"),
        format!(
            "next: wcon tunnel --config {} --check   then   wcon tunnel --config {}",
            connector_path.display(),
            connector_path.display()
        ),
    ];
    let files = match mode {
        Mode::Http => vec![(connector_path, fill(CONNECTOR_HTTP, &values))],
        Mode::Module => vec![
            (connector_path, fill(CONNECTOR_MODULE, &values)),
            (
                args.dir.join("webhooks.json"),
                fill(MODULE_WEBHOOKS, &values),
            ),
            (
                args.dir.join("connections.json"),
                fill(MODULE_CONNECTIONS, &values),
            ),
        ],
    };
    Ok((files, notes))
}

fn absolute(dir: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(dir)
        .with_context(|| format!("cannot resolve `{}`", dir.display()))
        .map_err(Failure::usage)
}

/// Writes pretty JSON, mode 0600 (the files hold tokens and secrets).
fn write_private(path: &Path, value: &Value) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON serialises");
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_marker() {
        let values = [
            ("webhook_id", "w"),
            ("channel", "c"),
            ("channel_token", "t"),
            ("hmac_secret", "s"),
            ("server", "http://x"),
            ("token", "t"),
            ("target", "http://y"),
            ("webhooks_config", "/a"),
            ("connections_config", "/b"),
        ];
        for t in [
            RECEIVER_WEBHOOKS,
            CONNECTOR_HTTP,
            CONNECTOR_MODULE,
            MODULE_WEBHOOKS,
            MODULE_CONNECTIONS,
            Provider::Stripe.template(),
            Provider::Github.template(),
            Provider::Shopify.template(),
            Provider::Hmac.template(),
        ] {
            let filled = fill(t, &values).to_string();
            assert!(!filled.contains("{{"), "{filled}");
        }
    }
}
