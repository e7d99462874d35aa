//! The `http_webhook` module: forwards each webhook to another HTTP endpoint.
//!
//! Keys: `url` (required), `method` ("POST", or "PUT" / "PATCH"), `headers` (static headers
//! added to every request), `forward_headers` (false: whether the request's own headers are
//! passed on), `allowed_headers` (with `forward_headers`, only these are passed on; hop-by-hop
//! headers, `host` and `content-length` never are), `timeout` (30 seconds) and
//! `allowed_hosts` (internal hosts the public receiver may still reach).
//!
//! The body is the raw body, byte for byte, with the original `content-type`, so the
//! destination can verify the sender's signature; `X-Webhook-Message-ID` and `X-Webhook-ID`
//! let it de-duplicate. 2xx counts as delivered; a connect error, a timeout, 408, 425, 429 and
//! 5xx are worth retrying; any other status is a refusal. Redirects are followed only within
//! the same host. On the public receiver the host is checked before every request, and the
//! client's resolver connects only to public addresses (unless the host is in
//! `allowed_hosts`), so a name re-pointed after the check cannot reach inside either. Error
//! texts name the host only: a webhook URL's path often is its secret.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use tokio::sync::OnceCell;
use url::Url;

use super::network::is_internal;
use super::registry::{BuildContext, ModuleSpec};
use super::{Delivery, Module, ModuleError, NetworkPolicy};

/// Request headers that are never forwarded: they describe one hop, not the webhook.
const NEVER_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// How many redirects within the same host are followed.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum HttpMethod {
    #[default]
    #[serde(alias = "post")]
    Post,
    #[serde(alias = "put")]
    Put,
    #[serde(alias = "patch")]
    Patch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpWebhookConfig {
    url: Url,
    #[serde(default)]
    method: HttpMethod,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    forward_headers: bool,
    #[serde(default)]
    allowed_headers: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    timeout: f64,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

fn default_timeout() -> f64 {
    30.0
}

/// See the module docs.
pub struct HttpWebhook {
    url: Url,
    host: String,
    method: Method,
    static_headers: HeaderMap,
    forward_headers: bool,
    allowed_headers: Option<Vec<String>>,
    timeout: Duration,
    allowed_hosts: Vec<String>,
    network: NetworkPolicy,
    client: OnceCell<reqwest::Client>,
}

impl std::fmt::Debug for HttpWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's path and the static headers may hold secrets.
        f.debug_struct("HttpWebhook")
            .field("host", &self.host)
            .field("method", &self.method)
            .field("forward_headers", &self.forward_headers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpWebhook {
    /// Builds it from its spec (validates only; connects on the first delivery).
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        spec.no_connection()?;
        let config: HttpWebhookConfig = spec.config()?;
        if !matches!(config.url.scheme(), "http" | "https") {
            return Err(format!(
                "module-config.url: scheme `{}` is not supported; use http:// or https://",
                config.url.scheme()
            ));
        }
        let host = config
            .url
            .host_str()
            .ok_or("module-config.url: the URL has no host")?
            .to_owned();
        let timeout = seconds("timeout", config.timeout)?;
        let mut static_headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("module-config.headers: `{name}` is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("module-config.headers.{name}: not a valid header value"))?;
            static_headers.insert(name, value);
        }
        let method = match config.method {
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Patch => Method::PATCH,
        };
        Ok(Self {
            url: config.url,
            host,
            method,
            static_headers,
            forward_headers: config.forward_headers,
            allowed_headers: config
                .allowed_headers
                .map(|names| names.iter().map(|n| n.to_ascii_lowercase()).collect()),
            timeout,
            allowed_hosts: config.allowed_hosts,
            network: ctx.network,
            client: OnceCell::new(),
        })
    }

    fn client(&self) -> Result<&reqwest::Client, ModuleError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(same_host_redirects())
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .tcp_nodelay(true);
        if matches!(
            self.network,
            NetworkPolicy::Receiver {
                allow_private: false
            }
        ) && !self
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&self.host))
        {
            // check_host resolved the name once; this resolver applies the same rule to the
            // addresses actually connected to, so a name re-pointed in between (DNS
            // rebinding) cannot reach an internal address either.
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().map_err(|e| {
            ModuleError::rejected(format!("http_webhook: cannot build a client: {e}"))
        })?;
        // Another delivery may have won the race; either client is as good.
        let _ = self.client.set(client);
        Ok(self.client.get().expect("the client was just set"))
    }

    /// The headers of one request: forwarded ones, then the static ones, then ours.
    fn request_headers(&self, delivery: &Delivery) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in &delivery.headers {
            let forwarded = self.forward_headers
                && self
                    .allowed_headers
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(name));
            if !(forwarded || name == "content-type") || NEVER_FORWARDED.contains(&name.as_str()) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        for (name, value) in &self.static_headers {
            headers.insert(name.clone(), value.clone());
        }
        let ours = [
            ("x-webhook-message-id", delivery.message_id.as_str()),
            ("x-webhook-id", delivery.webhook_id.as_str()),
        ];
        for (name, value) in ours {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        headers
    }
}

#[async_trait]
impl Module for HttpWebhook {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        check_destination(
            &self.network,
            "http_webhook",
            &self.host,
            &self.allowed_hosts,
        )
        .await?;
        let response = self
            .client()?
            .request(self.method.clone(), self.url.clone())
            .headers(self.request_headers(delivery))
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| request_error("http_webhook", &self.host, &e))?;
        let status = response.status();
        // Drain the body so the connection goes back to the pool.
        let _ = response.bytes().await;
        if status.is_success() {
            Ok(())
        } else if matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error() {
            Err(ModuleError::retryable(format!(
                "http_webhook: `{}` answered {status}",
                self.host
            )))
        } else {
            Err(ModuleError::rejected(format!(
                "http_webhook: `{}` answered {status}",
                self.host
            )))
        }
    }
}

/// A resolver that returns only addresses outside private networks.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("`{host}` resolves only to internal addresses").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// A redirect policy that follows only redirects to the same scheme, host and port.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = &attempt.previous()[0];
        let next = attempt.url();
        let same = next.scheme() == first.scheme()
            && next.host_str() == first.host_str()
            && next.port_or_known_default() == first.port_or_known_default();
        if same && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// A positive number of seconds from a config key.
pub(crate) fn seconds(key: &str, value: f64) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "module-config.{key}: must be a number of seconds above 0 (got {value})"
        ))
    }
}

/// [`NetworkPolicy::check_host`] as a module error: a refused host is a configuration
/// problem (rejected); a name that does not resolve may resolve later (retryable).
pub(crate) async fn check_destination(
    network: &NetworkPolicy,
    module: &str,
    host: &str,
    allowed_hosts: &[String],
) -> Result<(), ModuleError> {
    network.check_host(host, allowed_hosts).await.map_err(|e| {
        if e.starts_with("cannot resolve") {
            ModuleError::retryable(format!("{module}: {e}"))
        } else {
            ModuleError::rejected(format!("{module}: {e}"))
        }
    })
}

/// A failed request, without its URL, with the underlying cause.
fn request_error(module: &str, host: &str, e: &reqwest::Error) -> ModuleError {
    super::http_request_error(&format!("{module}: `{host}`"), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;

    fn module(config: serde_json::Value) -> HttpWebhook {
        let spec = ModuleSpec {
            webhook_id: "orders",
            name: "http_webhook",
            config: &config,
            connection: None,
        };
        let ctx = BuildContext {
            connections: Arc::default(),
            network: NetworkPolicy::Tunnel,
        };
        HttpWebhook::build(&spec, &ctx).unwrap()
    }

    #[tokio::test]
    async fn the_public_resolver_drops_internal_addresses() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        assert!(PublicOnly.resolve(name).await.is_err());
    }

    #[test]
    fn only_chosen_headers_are_forwarded() {
        let mut d = delivery(b"{}");
        d.headers.insert("host".into(), "public.example".into());
        d.headers.insert("connection".into(), "close".into());
        d.headers.insert("x-keep".into(), "1".into());
        d.headers.insert("x-drop".into(), "2".into());

        let none = module(serde_json::json!({"url": "http://a.example/"}));
        let h = none.request_headers(&d);
        assert_eq!(h["content-type"], "application/json");
        assert!(h.get("x-keep").is_none() && h.get("host").is_none());
        assert_eq!(h["x-webhook-id"], "orders");

        let some = module(serde_json::json!({
            "url": "http://a.example/", "forward_headers": true,
            "allowed_headers": ["X-Keep", "host"], "headers": {"x-static": "s"}
        }));
        let h = some.request_headers(&d);
        assert_eq!(h["x-keep"], "1");
        assert_eq!(h["x-static"], "s");
        assert!(h.get("x-drop").is_none() && h.get("host").is_none());

        let all = module(serde_json::json!({"url": "http://a.example/", "forward_headers": true}));
        let h = all.request_headers(&d);
        assert!(h.get("x-drop").is_some());
        assert!(h.get("connection").is_none() && h.get("host").is_none());
    }
}
