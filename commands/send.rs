//! `wcon send WEBHOOK_ID`: posts a test webhook to a server, signed the way Stripe, GitHub,
//! Shopify or a plain HMAC sender signs it (`wcon::auth::hmac::sign`), and prints the answer.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::ValueEnum;
use serde_json::{Value, json};
use wcon::auth::hmac::{HmacFormat, sign};

use crate::Failure;

/// Send a test webhook, optionally signed like a real provider, and print the server's answer.
///
/// Exits 0 when the server answers 2xx, 1 otherwise.
///
/// Example: wcon send stripe-payments --server http://localhost:8000 --hmac-secret whsec_… --provider stripe --data @event.json
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The webhook id (`namespace/id` for a namespaced webhook).
    webhook_id: String,
    /// URL of `wcon serve` (or WCON_SERVER, or `server` of the profile).
    #[arg(long, env = "WCON_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The body: JSON text, @FILE to read a file, or @- for stdin
    /// (default: a small JSON test event).
    #[arg(long, short, value_name = "DATA")]
    data: Option<String>,
    /// Sign the body with this shared secret (prefer WCON_HMAC_SECRET: flags show in `ps`).
    #[arg(
        long,
        env = "WCON_HMAC_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    hmac_secret: Option<String>,
    /// Whose signature scheme to use with --hmac-secret.
    #[arg(long, value_enum, default_value_t = Provider::Plain, requires = "hmac_secret")]
    provider: Provider,
    /// Content-Type of the body.
    #[arg(long, value_name = "TYPE", default_value = "application/json")]
    content_type: String,
    /// An extra request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    headers: Vec<String>,
    /// Print `{"status": …, "body": …}` instead of text.
    #[arg(long)]
    json: bool,
}

/// A sender's signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Provider {
    /// `X-HMAC-Signature: <hex HMAC-SHA256>` (the `plain` format).
    Plain,
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=…`.
    Github,
    /// `X-Shopify-Hmac-Sha256: <base64>`.
    Shopify,
}

impl Provider {
    fn format(self) -> HmacFormat {
        match self {
            Self::Plain => HmacFormat::Plain,
            Self::Stripe => HmacFormat::Stripe,
            Self::Github => HmacFormat::Github,
            Self::Shopify => HmacFormat::Shopify,
        }
    }
}

fn body(data: Option<&str>) -> Result<Vec<u8>, Failure> {
    match data {
        None => Ok(serde_json::to_vec(&json!({
            "id": format!("evt_wcon_{}", hex::encode(rand::random::<[u8; 6]>())),
            "type": "wcon.test",
            "created": chrono::Utc::now().timestamp(),
        }))
        .expect("JSON serialises")),
        Some("@-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the body from stdin")?;
            Ok(buf)
        }
        Some(path) if path.starts_with('@') => std::fs::read(&path[1..]).map_err(|e| {
            Failure::usage(anyhow!(e).context(format!(
                "cannot read `{}`; --data @FILE needs a readable file",
                &path[1..]
            )))
        }),
        Some(text) => Ok(text.as_bytes().to_vec()),
    }
}

/// Runs `wcon send …`.
pub async fn run(args: Args, profile: Option<&str>) -> Result<ExitCode, Failure> {
    let profile = crate::profile::load(profile)?;
    let server = args
        .server
        .clone()
        .or(profile.profile.server.clone())
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no server given; pass --server URL, set WCON_SERVER, or set `server` in profile `{}`",
                profile.name
            ))
        })?;
    let mut url = url::Url::parse(&server)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "`{server}` is not an http(s) URL; pass e.g. --server http://localhost:8000"
            ))
        })?;
    url.path_segments_mut()
        .map_err(|()| Failure::usage(anyhow!("`{server}` cannot take a path")))?
        .pop_if_empty()
        .push("webhook")
        .extend(args.webhook_id.split('/'));
    let body = body(args.data.as_deref())?;
    let mut request = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?
        .post(url.clone())
        .header(http::header::CONTENT_TYPE, &args.content_type);
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| Failure::usage(anyhow!("--header `{h}` is not `Name: value`")))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Failure::usage(anyhow!("--header `{h}`: invalid header name")))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| Failure::usage(anyhow!("--header `{h}`: invalid header value")))?;
        request = request.header(name, value);
    }
    if let Some(secret) = &args.hmac_secret {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let (name, value) = sign(args.provider.format(), secret, &body, now);
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.map_err(|e| {
        Failure::from(anyhow!(e).context(format!(
            "cannot reach `{url}`; check that `wcon serve` runs there and --server is right"
        )))
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if args.json {
        let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        crate::admin_client::print_json(&json!({"status": status.as_u16(), "body": body}));
    } else {
        println!("{status}");
        if !text.is_empty() {
            println!("{text}");
        }
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
