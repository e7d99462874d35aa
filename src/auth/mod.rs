//! Webhook authentication: the [`Validator`] trait, the [`Authenticator`] that runs every method
//! configured for one webhook, [`AuthError`], and the client-address rule of `trusted_proxies`.
//!
//! Each method lives in its own file and owns its `*Config` (the original's webhooks.json keys)
//! and its checks. Every configured method must pass; they combine freely. A failure never says
//! which secret was wrong: the `detail` a sender sees is fixed per method, and the precise cause
//! is in [`AuthError::reason`], for logs only. This module does not read bodies or answer HTTP:
//! the receiver hands it an [`AuthRequest`] and turns an [`AuthError`] into the response.
//!
//! ```
//! use std::net::IpAddr;
//! use wcon::auth::{AuthRequest, Authenticator};
//! use wcon::config::WebhookConfig;
//!
//! let cfg: WebhookConfig = serde_json::from_value(serde_json::json!({
//!     "module": "webhook_connect",
//!     "header_auth": {"header_name": "X-API-Key", "api_key": "s3cret-key"}
//! })).unwrap();
//! let auth = Authenticator::from_config("webhooks.json", "demo", &cfg).unwrap();
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-api-key", "s3cret-key".parse().unwrap());
//! let (method, uri) = (http::Method::POST, "/webhook/demo".parse().unwrap());
//! let peer: IpAddr = "203.0.113.7".parse().unwrap();
//! let req = AuthRequest { method: &method, uri: &uri, headers: &headers, body: b"{}", peer };
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! assert!(rt.block_on(auth.verify(&req)).is_ok());
//! let mut wrong = headers.clone();
//! wrong.insert("x-api-key", "guess".parse().unwrap());
//! let req = AuthRequest { headers: &wrong, ..req };
//! let err = rt.block_on(auth.verify(&req)).unwrap_err();
//! assert_eq!((err.status().as_u16(), err.code()), (401, "unauthorized"));
//! ```

pub mod authorization;
pub mod basic_auth;
pub mod digest_auth;
pub mod header_auth;
pub mod hmac;
pub mod ip_whitelist;
pub mod jwt;
pub mod oauth1;
pub mod oauth2;
pub mod query_auth;
pub mod recaptcha;
mod replay;

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{ConfigError, WebhookConfig, from_value, join_path};
pub use ip_whitelist::{IpRange, IpRanges};

/// What a validator may look at: one incoming webhook request, body fully read.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target as received (`/webhook/stripe?x=1`).
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body bytes, exactly as received (signatures are computed over these).
    pub body: &'a [u8],
    /// The TCP peer's address. The sender's address, after `trusted_proxies`, is
    /// [`Authenticator::client_ip`].
    pub peer: IpAddr,
}

/// One authentication method, configured.
#[async_trait]
pub trait Validator: Send + Sync + fmt::Debug {
    /// The method's webhooks.json key (`hmac`, `jwt`, …), for logs.
    fn name(&self) -> &'static str;
    /// `Ok` only when the request proves what the method demands.
    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError>;
}

/// Why a request was refused: an HTTP status, a stable code, a detail safe to show the sender,
/// extra response headers (a Digest challenge), and a reason for logs only.
#[derive(Debug, Clone)]
pub struct AuthError {
    status: StatusCode,
    code: &'static str,
    detail: Cow<'static, str>,
    reason: Cow<'static, str>,
    method: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl AuthError {
    /// 401 `unauthorized`: credentials missing or wrong.
    pub fn unauthorized(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail.into())
    }

    /// 403 `forbidden`: the sender's address is not allowed.
    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail.into())
    }

    /// 503 `auth_unavailable`: a verification service (reCAPTCHA, OAuth 2.0 introspection) could
    /// not be asked; the sender should retry later. Carries `Retry-After: 5`.
    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            detail.into(),
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    fn new(status: StatusCode, code: &'static str, detail: Cow<'static, str>) -> Self {
        Self {
            status,
            code,
            reason: detail.clone(),
            detail,
            method: "",
            headers: Vec::new(),
        }
    }

    /// Sets the cause for logs (never shown to the sender; must not contain a secret).
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Adds a response header, such as `WWW-Authenticate`.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A stable machine-readable code: `unauthorized`, `forbidden` or `auth_unavailable`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// A sentence safe to return to the sender; it never hints which secret was wrong.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The precise cause, for logs only.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The method that refused (`hmac`, `jwt`, …), for logs; empty outside an [`Authenticator`].
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Headers to add to the response.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.detail
        )
    }
}

impl std::error::Error for AuthError {}

/// The proxies whose `X-Forwarded-For` / `X-Real-IP` are believed (`trusted_proxies`:
/// addresses and CIDR ranges). Empty by default: then the TCP peer is the sender.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct TrustedProxies(pub IpRanges);

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(ip)
    }
}

/// The sender's address. The TCP `peer` is the answer unless it is a trusted proxy; then the
/// right-most `X-Forwarded-For` hop that is not a trusted proxy is (hops left of it could have
/// been written by anyone), or `X-Real-IP` when there is no `X-Forwarded-For`. A malformed hop
/// stops the walk at the last address a trusted proxy vouched for.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        hops.extend(
            text.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(ToOwned::to_owned),
        );
    }
    if hops.is_empty() {
        let mut real = headers.get_all("x-real-ip").iter();
        return match (real.next(), real.next()) {
            (Some(v), None) => v.to_str().ok().and_then(parse_hop).unwrap_or(peer),
            _ => peer,
        };
    }
    let mut last_vouched = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return last_vouched;
        };
        if !trusted.contains(ip) {
            return ip;
        }
        last_vouched = ip;
    }
    last_vouched
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1` or `[::1]:80`, normalised (`::ffff:1.2.3.4` is `1.2.3.4`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            hop.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
        })
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Every authentication method configured for one webhook; all must pass.
#[derive(Debug, Default)]
pub struct Authenticator {
    validators: Vec<Box<dyn Validator>>,
    trusted_proxies: TrustedProxies,
}

impl Authenticator {
    /// Parses every auth key of one webhooks.json entry (the original's key names) and
    /// `trusted_proxies` into validators. Errors name `file` and the key's path under
    /// `webhook_id`; every problem is reported.
    pub fn from_config(
        file: &str,
        webhook_id: &str,
        cfg: &WebhookConfig,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let trusted_proxies = match &cfg.trusted_proxies {
            Some(v) => parse::<TrustedProxies>(file, webhook_id, "trusted_proxies", v, &mut errors)
                .unwrap_or_default(),
            None => TrustedProxies::default(),
        };
        let mut validators: Vec<Box<dyn Validator>> = Vec::new();
        let ctx = BuildContext {
            file,
            webhook_id,
            trusted_proxies: &trusted_proxies,
        };
        // Cheap local checks first, nonce-keeping ones next, remote calls last, so that junk is
        // refused before it costs a round trip to Google or the identity provider.
        let methods: &[(&str, &Option<Value>, Builder)] = &[
            (
                "ip_whitelist",
                &cfg.ip_whitelist,
                build::<ip_whitelist::IpWhitelistConfig>,
            ),
            (
                "authorization",
                &cfg.authorization,
                build::<authorization::AuthorizationConfig>,
            ),
            (
                "basic_auth",
                &cfg.basic_auth,
                build::<basic_auth::BasicAuthConfig>,
            ),
            (
                "header_auth",
                &cfg.header_auth,
                build::<header_auth::HeaderAuthConfig>,
            ),
            (
                "query_auth",
                &cfg.query_auth,
                build::<query_auth::QueryAuthConfig>,
            ),
            ("hmac", &cfg.hmac, build::<hmac::HmacConfig>),
            ("jwt", &cfg.jwt, build::<jwt::JwtConfig>),
            ("oauth1", &cfg.oauth1, build::<oauth1::OAuth1Config>),
            (
                "digest_auth",
                &cfg.digest_auth,
                build::<digest_auth::DigestAuthConfig>,
            ),
            ("oauth2", &cfg.oauth2, build::<oauth2::OAuth2Config>),
            (
                "recaptcha",
                &cfg.recaptcha,
                build::<recaptcha::RecaptchaConfig>,
            ),
        ];
        for &(key, value, builder) in methods {
            if let Some(value) = value {
                match builder(&ctx, key, value) {
                    Ok(v) => validators.push(v),
                    Err(mut e) => errors.append(&mut e),
                }
            }
        }
        if errors.is_empty() {
            Ok(Self {
                validators,
                trusted_proxies,
            })
        } else {
            Err(errors)
        }
    }

    /// An authenticator with the given validators (tests, or methods built in code).
    pub fn from_validators(
        validators: Vec<Box<dyn Validator>>,
        trusted_proxies: TrustedProxies,
    ) -> Self {
        Self {
            validators,
            trusted_proxies,
        }
    }

    /// Whether no method is configured (every request passes).
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The configured methods, in the order they run.
    pub fn methods(&self) -> Vec<&'static str> {
        self.validators.iter().map(|v| v.name()).collect()
    }

    /// The webhook's `trusted_proxies`.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// The sender's address for this webhook (see [`client_ip`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.trusted_proxies)
    }

    /// Runs every method in turn; the first refusal is returned.
    pub async fn verify(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        for v in &self.validators {
            if let Err(mut e) = v.validate(req).await {
                e.method = v.name();
                return Err(e);
            }
        }
        Ok(())
    }
}

/// What a method's config needs besides its own keys.
pub(crate) struct BuildContext<'a> {
    file: &'a str,
    webhook_id: &'a str,
    trusted_proxies: &'a TrustedProxies,
}

impl BuildContext<'_> {
    /// A config error at `key.sub` of this webhook.
    pub(crate) fn error(&self, key: &str, sub: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(
            self.file,
            join_path(&join_path(self.webhook_id, key), sub),
            message,
        )
    }

    /// Adds an error when `value` (of `key.sub`) is outside `min..=max`. Durations are bounded so
    /// that the clock arithmetic they feed cannot overflow.
    pub(crate) fn check_range(
        &self,
        errors: &mut Vec<ConfigError>,
        key: &str,
        sub: &str,
        value: u64,
        min: u64,
        max: u64,
    ) {
        if !(min..=max).contains(&value) {
            errors.push(self.error(key, sub, format!("must be between {min} and {max}")));
        }
    }

    /// The webhook's trusted proxies.
    pub(crate) fn trusted_proxies(&self) -> &TrustedProxies {
        self.trusted_proxies
    }
}

/// A method's config: parsed by serde, then checked and turned into its validator.
pub(crate) trait MethodConfig: DeserializeOwned {
    /// Cross-field checks and key parsing; `key` is the webhooks.json key, for error paths.
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>>;
}

type Builder = fn(&BuildContext<'_>, &str, &Value) -> Result<Box<dyn Validator>, Vec<ConfigError>>;

fn build<C: MethodConfig>(
    ctx: &BuildContext<'_>,
    key: &str,
    value: &Value,
) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    match parse::<C>(ctx.file, ctx.webhook_id, key, value, &mut errors) {
        Some(c) => c.into_validator(ctx, key),
        None => Err(errors),
    }
}

fn parse<T: DeserializeOwned>(
    file: &str,
    id: &str,
    key: &str,
    value: &Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    from_value::<T>(file, &join_path(id, key), value.clone())
        .map_err(|mut e| {
            // serde_path_to_error writes a list index as a segment of its own: `key.[0]`.
            e.path = e.path.replace(".[", "[");
            errors.push(e)
        })
        .ok()
}

/// The single value of header `name`, as text; `None` when absent, repeated or not text
/// (a repeated credential header is ambiguous, so it is refused rather than guessed).
pub(crate) fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

/// The credentials after `scheme` in the single `Authorization` header (scheme compared without
/// regard to case, as RFC 9110 says).
pub(crate) fn authorization_param<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = single_header(headers, "authorization")?;
    let (got, rest) = value.split_once(' ')?;
    got.eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_start_matches(' '))
        .filter(|r| !r.is_empty())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads at most `limit` bytes of a verification service's answer (it is not trusted to be small).
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
    {
        if out.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An HTTP client for verification services, with a whole-request timeout.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! An owned request to build [`AuthRequest`]s from, and a runner for one validator.

    use super::*;

    /// An owned request.
    pub struct Req {
        pub method: Method,
        pub uri: Uri,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
        pub peer: IpAddr,
    }

    impl Req {
        pub fn post(uri: &str) -> Self {
            Self {
                method: Method::POST,
                uri: uri.parse().unwrap(),
                headers: HeaderMap::new(),
                body: Vec::new(),
                peer: "203.0.113.9".parse().unwrap(),
            }
        }

        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
            self
        }

        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        pub fn peer(mut self, peer: &str) -> Self {
            self.peer = peer.parse().unwrap();
            self
        }

        pub fn as_auth(&self) -> AuthRequest<'_> {
            AuthRequest {
                method: &self.method,
                uri: &self.uri,
                headers: &self.headers,
                body: &self.body,
                peer: self.peer,
            }
        }
    }

    static NO_PROXIES: TrustedProxies = TrustedProxies(IpRanges(Vec::new()));

    /// The context of webhook `hook` in `w.json`, without trusted proxies.
    pub fn ctx() -> BuildContext<'static> {
        BuildContext {
            file: "w.json",
            webhook_id: "hook",
            trusted_proxies: &NO_PROXIES,
        }
    }

    /// Builds the validator of one method from JSON, as webhooks.json would hold it.
    pub fn validator<C: MethodConfig>(key: &str, value: Value) -> Box<dyn Validator> {
        build::<C>(&ctx(), key, &value).unwrap_or_else(|e| panic!("config refused: {e:?}"))
    }

    /// The config errors of one method's JSON.
    pub fn config_errors<C: MethodConfig>(key: &str, value: Value) -> Vec<ConfigError> {
        match build::<C>(&ctx(), key, &value) {
            Ok(v) => panic!("config accepted: {v:?}"),
            Err(e) => e,
        }
    }

    /// Serves `app` on 127.0.0.1 at a free port for the rest of the test.
    pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// Asserts a 401 `unauthorized` and returns it.
    #[track_caller]
    pub fn assert_unauthorized(result: Result<(), AuthError>) -> AuthError {
        let e = result.expect_err("request should have been refused");
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{e:?}"
        );
        e
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    fn trusted(list: Value) -> TrustedProxies {
        serde_json::from_value(list).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
        let t = trusted(json!(["10.0.0.1"]));
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(client_ip(ip("203.0.113.5"), &h, &t), ip("203.0.113.5"));
        assert_eq!(
            client_ip(ip("203.0.113.5"), &h, &TrustedProxies::default()),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_sender() {
        let t = trusted(json!(["10.0.0.0/8", "192.168.1.1"]));
        // A sender can write anything left of its own address; only the hops our proxies added count.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.1.2.3")]);
        assert_eq!(client_ip(ip("192.168.1.1"), &h, &t), ip("198.51.100.4"));
        // Split across two header lines, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4, 10.1.2.3"),
        ]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &t), ip("198.51.100.4"));
        // Every hop trusted: the left-most is the farthest known.
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &t), ip("10.0.0.7"));
    }

    #[test]
    fn a_malformed_hop_stops_at_the_last_vouched_address() {
        let t = trusted(json!(["10.0.0.0/8"]));
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.2"));
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn real_ip_ports_and_mapped_addresses() {
        let t = trusted(json!(["::1", "127.0.0.1"]));
        assert_eq!(
            client_ip(ip("::1"), &headers(&[("x-real-ip", "198.51.100.1")]), &t),
            ip("198.51.100.1")
        );
        // Two X-Real-IP lines are ambiguous: the peer stands.
        let h = headers(&[("x-real-ip", "198.51.100.1"), ("x-real-ip", "198.51.100.2")]);
        assert_eq!(client_ip(ip("::1"), &h, &t), ip("::1"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), &h, &t), ip("2001:db8::1"));
        let h = headers(&[("x-forwarded-for", "198.51.100.1:8080")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), ip("198.51.100.1"));
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.3")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), ip("198.51.100.3"));
    }

    fn webhook(extra: Value) -> WebhookConfig {
        let mut v = json!({"module": "webhook_connect"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn no_method_means_every_request_passes() {
        let a = Authenticator::from_config("w.json", "a", &webhook(json!({}))).unwrap();
        assert!(a.is_empty());
        let r = Req::post("/webhook/a");
        assert!(tokio_test_block_on(a.verify(&r.as_auth())).is_ok());
    }

    #[test]
    fn every_configured_method_must_pass() {
        let cfg = webhook(json!({
            "authorization": "Bearer tok-123456",
            "header_auth": {"api_key": "key-abcdef"},
        }));
        let a = Authenticator::from_config("w.json", "a", &cfg).unwrap();
        assert_eq!(a.methods(), ["authorization", "header_auth"]);
        let both = Req::post("/webhook/a")
            .header("authorization", "Bearer tok-123456")
            .header("x-api-key", "key-abcdef");
        assert!(tokio_test_block_on(a.verify(&both.as_auth())).is_ok());
        let one = Req::post("/webhook/a").header("authorization", "Bearer tok-123456");
        let e = assert_unauthorized(tokio_test_block_on(a.verify(&one.as_auth())));
        assert_eq!(e.method(), "header_auth");
        let other = Req::post("/webhook/a").header("x-api-key", "key-abcdef");
        assert_eq!(
            tokio_test_block_on(a.verify(&other.as_auth()))
                .unwrap_err()
                .method(),
            "authorization"
        );
    }

    #[test]
    fn every_bad_method_is_reported_with_its_path() {
        let cfg = webhook(json!({
            "basic_auth": {"username": "u"},
            "query_auth": {"api_key": ""},
            "trusted_proxies": ["10.0.0.0/33"],
            "ip_whitelist": ["10.0.0.0/8", "10.0.0.1/8"],
        }));
        let errors = Authenticator::from_config("w.json", "a", &cfg).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "a.trusted_proxies[0]",
                "a.ip_whitelist[1]",
                "a.basic_auth",
                "a.query_auth.api_key"
            ],
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| e.file == "w.json"));
    }

    #[test]
    fn errors_carry_status_code_and_headers() {
        let e = AuthError::forbidden("address not allowed").with_reason("203.0.113.1 not listed");
        assert_eq!(
            (e.status().as_u16(), e.code(), e.detail(), e.reason()),
            (
                403,
                "forbidden",
                "address not allowed",
                "203.0.113.1 not listed"
            )
        );
        let e = AuthError::unavailable("try later");
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(e.headers()[0].0, http::header::RETRY_AFTER);
        assert_eq!(e.to_string(), "auth_unavailable (503): try later");
    }

    #[test]
    fn authorization_param_matches_the_scheme_without_case() {
        let h = headers(&[("authorization", "bearer abc")]);
        assert_eq!(authorization_param(&h, "Bearer"), Some("abc"));
        assert_eq!(authorization_param(&h, "Basic"), None);
        assert_eq!(
            authorization_param(&headers(&[("authorization", "Bearer ")]), "Bearer"),
            None
        );
        assert_eq!(
            authorization_param(
                &headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]),
                "Bearer"
            ),
            None
        );
    }

    /// Random junk in every header and field a method reads: no method may panic, and every
    /// refusal must be a 401 or a 403.
    #[tokio::test]
    async fn random_requests_never_panic_and_are_only_refused() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        let secret = "a-shared-secret-of-32-characters";
        let configs: Vec<Box<dyn Validator>> = vec![
            validator::<authorization::AuthorizationConfig>(
                "authorization",
                json!("Bearer tok-123456"),
            ),
            validator::<authorization::AuthorizationConfig>("authorization", json!("Token x")),
            validator::<basic_auth::BasicAuthConfig>(
                "basic_auth",
                json!({"username": "u", "password": "p"}),
            ),
            validator::<header_auth::HeaderAuthConfig>("header_auth", json!({"api_key": "k"})),
            validator::<query_auth::QueryAuthConfig>("query_auth", json!({"api_key": "k"})),
            validator::<ip_whitelist::IpWhitelistConfig>("ip_whitelist", json!(["10.0.0.0/8"])),
            validator::<hmac::HmacConfig>("hmac", json!({"secret": secret})),
            validator::<hmac::HmacConfig>("hmac", json!({"secret": secret, "encoding": "base64"})),
            validator::<hmac::HmacConfig>(
                "hmac",
                json!({"secret": secret, "format": "github", "header": "x-sig"}),
            ),
            validator::<hmac::HmacConfig>(
                "hmac",
                json!({"secret": secret, "format": "stripe", "header": "x-sig"}),
            ),
            validator::<hmac::HmacConfig>(
                "hmac",
                json!({"secret": secret, "format": "shopify", "header": "x-sig"}),
            ),
            validator::<jwt::JwtConfig>("jwt", json!({"secret": secret})),
            validator::<oauth1::OAuth1Config>(
                "oauth1",
                json!({"consumer_key": "k", "consumer_secret": "s"}),
            ),
            validator::<oauth1::OAuth1Config>(
                "oauth1",
                json!({"consumer_key": "k", "consumer_secret": "s", "signature_method": "PLAINTEXT"}),
            ),
            validator::<digest_auth::DigestAuthConfig>(
                "digest_auth",
                json!({"username": "u", "password": "p", "qop": "auth-int"}),
            ),
            validator::<oauth2::OAuth2Config>("oauth2", json!({"jwt_secret": secret})),
        ];
        let schemes = [
            "", "Bearer ", "Basic ", "Digest ", "OAuth ", "bearer  ", "Token ",
        ];
        let pieces = [
            "a",
            "Z",
            "0",
            "=",
            ",",
            " ",
            "\"",
            "\\",
            ":",
            ";",
            "/",
            "+",
            "%",
            "%2",
            "%zz",
            ".",
            "-",
            "_",
            "t=",
            "v1=",
            "sha256=",
            "nc=",
            "nonce=",
            "oauth_signature=",
            "username=\"u\"",
            "::1",
            "10.0.0.1",
            "[",
            "]",
            "99999999999999999999",
        ];
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let junk = |rng: &mut StdRng| -> Vec<u8> {
            let mut v = Vec::new();
            for _ in 0..rng.random_range(0..12) {
                if rng.random_bool(0.05) {
                    v.push(rng.random_range(0x80..=0xff));
                } else {
                    v.extend_from_slice(pieces[rng.random_range(0..pieces.len())].as_bytes());
                }
            }
            v
        };
        for _ in 0..400 {
            let mut r = Req::post("/webhook/hook");
            if let Ok(uri) = format!(
                "/webhook/hook?{}",
                String::from_utf8_lossy(&junk(&mut rng))
                    .replace([' ', '"', '\\', '[', ']', '%'], "")
            )
            .parse()
            {
                r.uri = uri;
            }
            for name in [
                "authorization",
                "x-forwarded-for",
                "x-real-ip",
                "x-hmac-signature",
                "x-sig",
                "x-api-key",
                "content-type",
                "host",
            ] {
                for _ in 0..rng.random_range(0..3) {
                    let mut value = if name == "authorization" {
                        schemes[rng.random_range(0..schemes.len())]
                            .as_bytes()
                            .to_vec()
                    } else {
                        Vec::new()
                    };
                    value.extend(junk(&mut rng));
                    if let Ok(v) = HeaderValue::from_bytes(&value) {
                        r.headers.append(HeaderName::from_static(name), v);
                    }
                }
            }
            r.body = junk(&mut rng);
            r.peer = if rng.random_bool(0.5) {
                ip("10.1.2.3")
            } else {
                ip("2001:db8::7")
            };
            for v in &configs {
                if let Err(e) = v.validate(&r.as_auth()).await {
                    assert!(
                        matches!(e.status().as_u16(), 401 | 403),
                        "{}: {e:?}",
                        v.name()
                    );
                }
            }
        }
    }

    fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }
}
