//! `serve --check` and `tunnel --check`: validate the config, reach every connection, server
//! and HTTP target once, print one line per item (`ok`, `skip` or `FAIL`), exit 0 or 1.

use std::process::ExitCode;
use std::time::Duration;

use wcon::config::ConnectionsConfig;
use wcon::config::connector::{ConnectorConfig, ConnectorSetup};
use wcon::modules::Connections;
use wcon::modules::reach;

/// How long one reach may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The lines printed so far and whether one failed.
#[derive(Debug, Default)]
pub struct Report {
    failed: usize,
}

impl Report {
    /// A passed item.
    pub fn ok(&mut self, item: &str, detail: impl std::fmt::Display) {
        println!("ok    {item}: {detail}");
    }

    /// An item that cannot be checked from here (not a failure).
    pub fn skip(&mut self, item: &str, detail: impl std::fmt::Display) {
        println!("skip  {item}: {detail}");
    }

    /// A failed item.
    pub fn fail(&mut self, item: &str, detail: impl std::fmt::Display) {
        self.failed += 1;
        println!("FAIL  {item}: {detail}");
    }

    /// Exit 0 when nothing failed, else 1 with a summary on stderr.
    pub fn finish(self) -> ExitCode {
        if self.failed == 0 {
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "{} check(s) failed; fix them and run --check again",
                self.failed
            );
            ExitCode::FAILURE
        }
    }

    /// Reaches every entry of connections.json once.
    pub async fn connections(&mut self, config: &ConnectionsConfig) {
        let connections = Connections::new(config);
        for name in connections.names() {
            let connection = connections.get(name).expect("a listed name exists");
            let item = format!("connection `{name}` ({})", connection.kind);
            match reach::addresses(connection) {
                Err(why) if why.contains("not reached") => self.skip(&item, why),
                Err(why) => self.fail(&item, why),
                Ok(addresses) => {
                    for (host, port) in addresses {
                        match reach::tcp(&host, port, TIMEOUT).await {
                            Ok(()) => self.ok(&item, format!("reached {host}:{port}")),
                            Err(e) => self.fail(&item, e),
                        }
                    }
                }
            }
        }
    }

    /// Sends one HEAD request to an HTTP target: any answer means it is reachable.
    pub async fn http_target(&mut self, item: &str, url: &url::Url, client: &reqwest::Client) {
        match client.head(url.clone()).send().await {
            Ok(r) => self.ok(item, format!("{} answered {}", shown(url), r.status())),
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                self.fail(item, format!("{}: {why}", shown(url)));
            }
        }
    }
}

/// An HTTP client for checks, with the check timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("the HTTP client builds")
}

/// A URL without credentials or query (they may hold secrets).
pub fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// `wcon tunnel --check`: the settings, the server (status endpoint with the token), every HTTP
/// target, and in module mode every connection.
pub async fn tunnel(setup: anyhow::Result<ConnectorSetup>) -> ExitCode {
    let mut report = Report::default();
    match setup {
        Ok(setup) => {
            for config in &setup.channels {
                check_channel(&mut report, config).await;
            }
        }
        Err(e) => report.fail("settings", format!("{e:#}")),
    }
    report.finish()
}

/// Checks one channel of the connector: its modules, the server with its token, its targets
/// and connections.
async fn check_channel(report: &mut Report, config: &ConnectorConfig) {
    report.ok(
        "settings",
        format!(
            "channel `{}` on {}",
            config.channel,
            shown(&config.cloud_url)
        ),
    );
    match wcon::connector::Deliverer::from_config(config) {
        Ok(_) if config.webhooks_config.is_some() => report.ok(
            "modules",
            format!(
                "`{}` is valid",
                config.webhooks_config.as_deref().unwrap_or_default()
            ),
        ),
        Ok(_) => {}
        Err(e) => report.fail("modules", e),
    }
    // The server is reached as the tunnel would: with its CA file, or without verification.
    let (outbound, server_client) = match wcon::connector::outbound::Outbound::from_config(config)
        .and_then(|o| o.http_client(config).map(|c| (o, c)))
    {
        Ok(pair) => pair,
        Err(e) => {
            report.fail("tls", wcon::connector::outbound::describe(&e));
            return;
        }
    };
    let client = client();
    let channel = percent_encoding::utf8_percent_encode(
        config.channel.as_str(),
        percent_encoding::NON_ALPHANUMERIC,
    );
    let status = format!(
        "{}/connect/status/{channel}",
        config.cloud_url.as_str().trim_end_matches('/')
    );
    let item = "server";
    match server_client
        .get(&status)
        .timeout(TIMEOUT)
        .bearer_auth(config.token.expose())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => report.ok(
            item,
            format!(
                "{} accepts the token for channel `{}`",
                shown(&config.cloud_url),
                config.channel
            ),
        ),
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let code = body.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let detail = body.get("detail").and_then(|d| d.as_str()).unwrap_or("");
            let why = match code {
                "client_certificate_required" => format!(
                    "channel `{}` requires a TLS client certificate ({status} {code}); give --client-cert and --client-key (client_cert_path, client_key_path)",
                    config.channel
                ),
                "client_certificate_not_allowed" | "address_not_allowed" => {
                    format!(
                        "{status} {code}: {}",
                        detail.chars().take(300).collect::<String>()
                    )
                }
                _ => format!(
                    "refused the token for channel `{}`; check --token / WCON_TOKEN and the channel name",
                    config.channel
                ),
            };
            report.fail(item, format!("{} {why}", shown(&config.cloud_url)));
        }
        Ok(r) => report.fail(
            item,
            format!(
                "{} answered {} on /connect/status",
                shown(&config.cloud_url),
                r.status()
            ),
        ),
        Err(e) => {
            let refused = match wcon::connector::outbound::client_certificate_problem(&e) {
                Some(problem) => Some(problem),
                None => outbound.refused_client_certificate(&config.cloud_url).await,
            };
            let why = match (refused, wcon::connector::outbound::certificate_problem(&e)) {
                (Some(problem), _) | (None, Some(problem)) => problem,
                (None, None) if e.is_timeout() => "timed out; check --server / WCON_SERVER".into(),
                (None, None) => "cannot connect; check --server / WCON_SERVER".into(),
            };
            report.fail(
                item,
                format!("cannot reach {} ({why})", shown(&config.cloud_url)),
            );
        }
    }
    if let Some(target) = &config.default_target {
        report
            .http_target("target (default)", &target.url, &client)
            .await;
    }
    for (id, target) in &config.targets {
        report
            .http_target(&format!("target `{id}`"), &target.url, &client)
            .await;
    }
    if let Some(path) = &config.connections_config {
        match ConnectionsConfig::load_optional(std::path::Path::new(path)) {
            Ok(c) => report.connections(&c).await,
            Err(e) => report.fail("connections.json", e),
        }
    }
}
