//! `oauth2`: OAuth 2.0 bearer tokens, checked by token introspection (RFC 7662) or locally as
//! JWTs.
//!
//! With `introspection_endpoint`, the token is POSTed there (`token`, `token_type_hint`) with
//! the `client_id`/`client_secret` as HTTP Basic credentials (RFC 6749 section 2.3.1); the answer
//! must say `"active": true`, and its `exp`, `iss` (`issuer`), `aud` (`audience`) and `scope`
//! (every `required_scope`) must fit. Answers are cached by the token's SHA-256 for
//! `cache_ttl_seconds` (default 60; never past the token's `exp`; inactive tokens too, so a flood
//! of junk does not reach the identity provider), in at most `max_cache_entries` (default
//! 10,000). An unreachable or failing endpoint gives 503 `auth_unavailable`, so senders retry.
//! Private and loopback endpoints are allowed, unlike the original: the operator writes this
//! URL, and identity providers often live on the private network.
//!
//! With `jwt_secret` instead, the token is a JWT checked like [`super::jwt`]: only the
//! `jwt_algorithms` of the key's family are accepted (an HMAC secret takes the HS ones, a PEM
//! key the RS/PS or ES ones), so the default `["HS256", "RS256"]` cannot be turned into
//! algorithm confusion; `required_scope` is checked against the `scope` (or `scp`) claim.
//! Setting both is refused. `validate_token: false` only checks that a token is present, as the
//! original did. The token comes from `Authorization: <token_type> …` (default `Bearer`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::jwt::{JwtRules, JwtVerifier, MAX_LEEWAY_SECONDS, OneOrMany, parse_algorithm};
use super::replay::{ExpiringMap, key};
use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, Validator, authorization_param,
    http_client, read_capped, unix_now,
};
use crate::config::ConfigError;
use crate::secret::Secret;

const DETAIL: &str = "missing or invalid access token";
/// Introspection answers are small JSON objects; more than this is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `"oauth2": {"introspection_endpoint": …, "client_id": …, "client_secret": …, "required_scope": […], …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The `Authorization` scheme carrying the token (default `Bearer`).
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// The RFC 7662 introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<Url>,
    /// This server's client id at the identity provider.
    #[serde(default)]
    pub client_id: Option<String>,
    /// This server's client secret at the identity provider.
    #[serde(default)]
    pub client_secret: Option<Secret<String>>,
    /// Scopes the token must all have.
    #[serde(default)]
    pub required_scope: Vec<String>,
    /// Whether the token is checked at all (default true; false only checks it is present).
    #[serde(default = "yes")]
    pub validate_token: bool,
    /// The HMAC secret or PEM public key for local JWT validation.
    #[serde(default)]
    pub jwt_secret: Option<Secret<String>>,
    /// Algorithms accepted for local JWT validation (default `["HS256", "RS256"]`, filtered to the key's family).
    #[serde(default = "default_jwt_algorithms")]
    pub jwt_algorithms: Vec<String>,
    /// The accepted `aud` value(s).
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// The required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Whether `exp` is checked (default true).
    #[serde(default = "yes")]
    pub verify_exp: bool,
    /// How long an introspection answer is reused, in seconds (wcon addition; default 60; 0 = never).
    #[serde(default = "default_cache_ttl_seconds")]
    pub cache_ttl_seconds: u64,
    /// How many answers are cached at once (wcon addition; default 10,000).
    #[serde(default = "default_max_cache_entries")]
    pub max_cache_entries: usize,
    /// How long to wait for the endpoint, in seconds (wcon addition; default 10).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (wcon addition; default 30).
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
}

fn default_token_type() -> String {
    "Bearer".into()
}
fn default_jwt_algorithms() -> Vec<String> {
    vec!["HS256".into(), "RS256".into()]
}
fn default_cache_ttl_seconds() -> u64 {
    60
}
fn default_max_cache_entries() -> usize {
    10_000
}
fn default_timeout_seconds() -> u64 {
    10
}
fn default_leeway_seconds() -> u64 {
    30
}
fn yes() -> bool {
    true
}

#[derive(Debug)]
enum Mode {
    PresenceOnly,
    Introspect(Introspection),
    Jwt(JwtVerifier),
}

#[derive(Debug)]
struct Introspection {
    endpoint: Url,
    client_id: String,
    client_secret: Secret<String>,
    client: reqwest::Client,
    cache_ttl: Duration,
    cache: Mutex<ExpiringMap<Result<(), &'static str>>>,
}

/// The configured `oauth2` check.
#[derive(Debug)]
pub struct OAuth2 {
    token_type: String,
    mode: Mode,
    required_scope: Vec<String>,
    issuer: Option<String>,
    audience: Vec<String>,
    verify_exp: bool,
    leeway: u64,
}

impl MethodConfig for OAuth2Config {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let audience = self
            .audience
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        let mode = match (
            self.validate_token,
            self.introspection_endpoint,
            self.jwt_secret,
        ) {
            (false, _, _) => Some(Mode::PresenceOnly),
            (true, Some(_), Some(_)) => {
                errors.push(ctx.error(
                    key,
                    "",
                    "set either `introspection_endpoint` or `jwt_secret`, not both",
                ));
                None
            }
            (true, None, None) => {
                errors.push(ctx.error(key, "", "needs `introspection_endpoint` (with `client_id` and `client_secret`) or `jwt_secret`"));
                None
            }
            (true, Some(endpoint), None) => {
                if !matches!(endpoint.scheme(), "http" | "https") {
                    errors.push(ctx.error(key, "introspection_endpoint", "must be an http(s) URL"));
                }
                if self.client_id.as_deref().unwrap_or("").is_empty() {
                    errors.push(ctx.error(
                        key,
                        "client_id",
                        "is required with `introspection_endpoint`",
                    ));
                }
                if self
                    .client_secret
                    .as_ref()
                    .is_none_or(|s| s.expose().is_empty())
                {
                    errors.push(ctx.error(
                        key,
                        "client_secret",
                        "is required with `introspection_endpoint`",
                    ));
                }
                if self.max_cache_entries == 0 {
                    errors.push(ctx.error(key, "max_cache_entries", "must be greater than 0"));
                }
                ctx.check_range(
                    &mut errors,
                    key,
                    "timeout_seconds",
                    self.timeout_seconds,
                    1,
                    300,
                );
                ctx.check_range(
                    &mut errors,
                    key,
                    "cache_ttl_seconds",
                    self.cache_ttl_seconds,
                    0,
                    86_400,
                );
                match http_client(Duration::from_secs(self.timeout_seconds)) {
                    Ok(client) if errors.is_empty() => Some(Mode::Introspect(Introspection {
                        endpoint,
                        client_id: self.client_id.unwrap_or_default(),
                        client_secret: self.client_secret.unwrap_or_default(),
                        client,
                        cache_ttl: Duration::from_secs(self.cache_ttl_seconds),
                        cache: Mutex::new(ExpiringMap::new(self.max_cache_entries)),
                    })),
                    Ok(_) => None,
                    Err(e) => {
                        errors.push(ctx.error(key, "introspection_endpoint", e));
                        None
                    }
                }
            }
            (true, None, Some(secret)) => {
                match jwt_algorithms_for(secret.expose(), &self.jwt_algorithms) {
                    Err(e) => {
                        errors.push(ctx.error(key, "jwt_algorithms", e));
                        None
                    }
                    Ok(algorithms) => {
                        let rules = JwtRules {
                            issuer: self.issuer.as_deref(),
                            audience: audience.clone(),
                            verify_exp: self.verify_exp,
                            leeway_seconds: self.leeway_seconds,
                        };
                        match JwtVerifier::new(secret.expose(), &algorithms, rules) {
                            Ok(v) => Some(Mode::Jwt(v)),
                            Err(e) => {
                                errors.push(ctx.error(key, "jwt_secret", e));
                                None
                            }
                        }
                    }
                }
            }
        };
        ctx.check_range(
            &mut errors,
            key,
            "leeway_seconds",
            self.leeway_seconds,
            0,
            MAX_LEEWAY_SECONDS,
        );
        if self.token_type.is_empty() || self.token_type.contains(' ') {
            errors.push(ctx.error(key, "token_type", "must be one word, like `Bearer`"));
        }
        match mode {
            Some(mode) if errors.is_empty() => Ok(Box::new(OAuth2 {
                token_type: self.token_type,
                mode,
                required_scope: self.required_scope,
                issuer: self.issuer,
                audience,
                verify_exp: self.verify_exp,
                leeway: self.leeway_seconds,
            })),
            _ => Err(errors),
        }
    }
}

/// The configured algorithms that fit the key: HS for a secret, RS/PS for an RSA PEM key, ES
/// for an EC PEM key.
fn jwt_algorithms_for(secret: &str, names: &[String]) -> Result<Vec<Algorithm>, String> {
    let algorithms = names
        .iter()
        .map(|n| parse_algorithm(n))
        .collect::<Result<Vec<_>, _>>()?;
    let family = if !secret.trim_start().starts_with("-----BEGIN") {
        AlgorithmFamily::Hmac
    } else if DecodingKey::from_rsa_pem(secret.as_bytes()).is_ok() {
        AlgorithmFamily::Rsa
    } else {
        AlgorithmFamily::Ec
    };
    let fitting: Vec<Algorithm> = algorithms
        .into_iter()
        .filter(|a| a.family() == family)
        .collect();
    if fitting.is_empty() {
        return Err(format!(
            "none of the listed algorithms fits a `jwt_secret` of this kind ({family:?}); add one"
        ));
    }
    Ok(fitting)
}

/// Space-separated `scope`, or `scp` as a list or a string.
fn scopes(claims: &Value) -> Vec<&str> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => {
            s.split(' ').filter(|s| !s.is_empty()).collect()
        }
        (None, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl OAuth2 {
    fn has_scopes(&self, claims: &Value) -> bool {
        let have = scopes(claims);
        self.required_scope
            .iter()
            .all(|r| have.contains(&r.as_str()))
    }

    /// Checks an introspection answer (RFC 7662 section 2.2).
    fn judge(&self, answer: &Value, now: u64) -> Result<(), &'static str> {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err("token is not active");
        }
        let exp = answer.get("exp").and_then(Value::as_u64);
        if self.verify_exp && exp.is_some_and(|e| e.saturating_add(self.leeway) <= now) {
            return Err("token expired");
        }
        if answer
            .get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|nbf| nbf > now + self.leeway)
        {
            return Err("token not yet valid");
        }
        if self
            .issuer
            .as_ref()
            .is_some_and(|iss| answer.get("iss").and_then(Value::as_str) != Some(iss.as_str()))
        {
            return Err("wrong issuer");
        }
        if !self.audience.is_empty() {
            let ok = match answer.get("aud") {
                Some(Value::String(a)) => self.audience.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audience.iter().any(|w| w == a)),
                _ => false,
            };
            if !ok {
                return Err("wrong audience");
            }
        }
        if !self.has_scopes(answer) {
            return Err("missing a required scope");
        }
        Ok(())
    }

    async fn introspect(&self, i: &Introspection, token: &str) -> Result<(), AuthError> {
        let refuse = |reason: &'static str| AuthError::unauthorized(DETAIL).with_reason(reason);
        let id = key(&[token.as_bytes()]);
        let cached = i
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id, Instant::now())
            .copied();
        if let Some(outcome) = cached {
            return outcome.map_err(refuse);
        }
        // RFC 6749 section 2.3.1: the client id and secret are form-encoded before Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = i
            .client
            .post(i.endpoint.clone())
            .basic_auth(enc(&i.client_id), Some(enc(i.client_secret.expose())))
            .header(http::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| {
                AuthError::unavailable("token verification is unavailable; retry later")
                    .with_reason(format!("introspection request failed: {e}"))
            })?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(
                AuthError::unavailable("token verification is unavailable; retry later")
                    .with_reason(format!("introspection endpoint answered {status}")),
            );
        }
        let body = read_capped(resp, MAX_ANSWER_BYTES).await.map_err(|e| {
            AuthError::unavailable("token verification is unavailable; retry later").with_reason(e)
        })?;
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            AuthError::unavailable("token verification is unavailable; retry later")
                .with_reason("introspection answer is not JSON")
        })?;
        let now = unix_now();
        let outcome = self.judge(&answer, now);
        if !i.cache_ttl.is_zero() {
            let mut ttl = i.cache_ttl;
            if let (Ok(()), Some(exp)) = (outcome, answer.get("exp").and_then(Value::as_u64)) {
                ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now)));
            }
            let now_i = Instant::now();
            i.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert_evicting(id, outcome, now_i + ttl, now_i);
        }
        outcome.map_err(refuse)
    }
}

#[async_trait]
impl Validator for OAuth2 {
    fn name(&self) -> &'static str {
        "oauth2"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let challenge = || {
            http::HeaderValue::from_str(&self.token_type)
                .unwrap_or(http::HeaderValue::from_static("Bearer"))
        };
        let token = authorization_param(req.headers, &self.token_type).ok_or_else(|| {
            AuthError::unauthorized(DETAIL)
                .with_reason("no token in Authorization")
                .with_header(http::header::WWW_AUTHENTICATE, challenge())
        })?;
        match &self.mode {
            Mode::PresenceOnly => Ok(()),
            Mode::Introspect(i) => self.introspect(i, token).await,
            Mode::Jwt(v) => {
                let claims = v
                    .verify(token)
                    .map_err(|e| AuthError::unauthorized(DETAIL).with_reason(e))?;
                if self.has_scopes(&claims) {
                    Ok(())
                } else {
                    Err(AuthError::unauthorized(DETAIL).with_reason("missing a required scope"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::jwt::tests::{RSA_PRIVATE, RSA_PUBLIC, SECRET, hs, sign};
    use super::super::test_support::*;
    use super::*;
    use axum::extract::{Form, State};
    use axum::routing::post;
    use base64::Engine;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Idp {
        calls: AtomicUsize,
    }

    /// A local RFC 7662 endpoint: it checks this server's client credentials and knows a few tokens.
    async fn introspect(
        State(idp): State<Arc<Idp>>,
        headers: http::HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> (http::StatusCode, axum::Json<Value>) {
        idp.calls.fetch_add(1, Ordering::SeqCst);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("wcon%2Frelay:s%26cret")
        );
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return (
                http::StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "invalid_client"})),
            );
        }
        assert_eq!(
            form.get("token_type_hint").map(String::as_str),
            Some("access_token")
        );
        let exp = unix_now() + 600;
        let answer = match form.get("token").map(String::as_str) {
            Some("good") => {
                json!({"active": true, "scope": "read webhooks:write", "exp": exp, "iss": "https://idp.example", "aud": ["wcon"]})
            }
            Some("read-only") => {
                json!({"active": true, "scope": "read", "exp": exp, "iss": "https://idp.example", "aud": "wcon"})
            }
            Some("other-aud") => {
                json!({"active": true, "scope": "read webhooks:write", "exp": exp, "iss": "https://idp.example", "aud": "billing"})
            }
            Some("expired") => {
                json!({"active": true, "scope": "read webhooks:write", "exp": unix_now() - 100, "iss": "https://idp.example", "aud": "wcon"})
            }
            Some("boom") => {
                return (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({})),
                );
            }
            _ => json!({"active": false}),
        };
        (http::StatusCode::OK, axum::Json(answer))
    }

    async fn idp() -> (Arc<Idp>, String) {
        let state = Arc::new(Idp::default());
        let app = axum::Router::new()
            .route("/introspect", post(introspect))
            .with_state(state.clone());
        let addr = serve(app).await;
        (state, format!("http://{addr}/introspect"))
    }

    fn config(endpoint: &str, extra: Value) -> Box<dyn Validator> {
        let mut cfg = json!({
            "introspection_endpoint": endpoint, "client_id": "wcon/relay", "client_secret": "s&cret",
            "required_scope": ["webhooks:write"], "issuer": "https://idp.example", "audience": "wcon",
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        validator::<OAuth2Config>("oauth2", cfg)
    }

    fn bearer(token: &str) -> Req {
        Req::post("/webhook/hook").header("authorization", &format!("Bearer {token}"))
    }

    #[tokio::test]
    async fn introspection_accepts_active_tokens_with_the_scope() {
        let (idp, url) = idp().await;
        let v = config(&url, json!({}));
        assert!(v.validate(&bearer("good").as_auth()).await.is_ok());
        for (token, reason) in [
            ("read-only", "missing a required scope"),
            ("other-aud", "wrong audience"),
            ("expired", "token expired"),
            ("revoked", "token is not active"),
        ] {
            let e = assert_unauthorized(v.validate(&bearer(token).as_auth()).await);
            assert_eq!(e.reason(), reason, "{token}");
            assert_eq!(e.detail(), DETAIL);
        }
        assert_unauthorized(v.validate(&Req::post("/").as_auth()).await);
        assert_unauthorized(
            v.validate(
                &Req::post("/")
                    .header("authorization", "Basic good")
                    .as_auth(),
            )
            .await,
        );
        assert_eq!(
            idp.calls.load(Ordering::SeqCst),
            5,
            "a request without a token never reaches the endpoint"
        );
    }

    #[tokio::test]
    async fn answers_are_cached_for_the_ttl() {
        let (idp, url) = idp().await;
        let v = config(&url, json!({}));
        for _ in 0..3 {
            assert!(v.validate(&bearer("good").as_auth()).await.is_ok());
            assert_unauthorized(v.validate(&bearer("revoked").as_auth()).await);
        }
        assert_eq!(idp.calls.load(Ordering::SeqCst), 2);
        let uncached = config(&url, json!({"cache_ttl_seconds": 0}));
        for _ in 0..3 {
            assert!(uncached.validate(&bearer("good").as_auth()).await.is_ok());
        }
        assert_eq!(idp.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_503_and_not_cached() {
        let (idp, url) = idp().await;
        let v = config(&url, json!({}));
        for _ in 0..2 {
            let e = v.validate(&bearer("boom").as_auth()).await.unwrap_err();
            assert_eq!((e.status().as_u16(), e.code()), (503, "auth_unavailable"));
        }
        assert_eq!(idp.calls.load(Ordering::SeqCst), 2);
        // Wrong client credentials: the endpoint refuses us, which is our problem, not the sender's.
        let bad_client = config(&url, json!({"client_secret": "wrong"}));
        assert_eq!(
            bad_client
                .validate(&bearer("good").as_auth())
                .await
                .unwrap_err()
                .status()
                .as_u16(),
            503
        );
        // Nothing listening.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}/introspect", listener.local_addr().unwrap());
        drop(listener);
        assert_eq!(
            config(&closed, json!({}))
                .validate(&bearer("good").as_auth())
                .await
                .unwrap_err()
                .status()
                .as_u16(),
            503
        );
    }

    #[tokio::test]
    async fn local_jwt_validation_with_scopes() {
        let v = validator::<OAuth2Config>(
            "oauth2",
            json!({"jwt_secret": SECRET, "required_scope": ["webhooks:write"]}),
        );
        let exp = unix_now() + 600;
        assert!(
            v.validate(
                &bearer(&hs(&json!({"exp": exp, "scope": "read webhooks:write"}))).as_auth()
            )
            .await
            .is_ok()
        );
        assert!(
            v.validate(&bearer(&hs(&json!({"exp": exp, "scp": ["webhooks:write"]}))).as_auth())
                .await
                .is_ok()
        );
        assert_unauthorized(
            v.validate(&bearer(&hs(&json!({"exp": exp, "scope": "read"}))).as_auth())
                .await,
        );
        assert_unauthorized(
            v.validate(
                &bearer(&hs(
                    &json!({"exp": unix_now() - 100, "scope": "webhooks:write"}),
                ))
                .as_auth(),
            )
            .await,
        );
        assert_unauthorized(v.validate(&bearer("opaque-token").as_auth()).await);
    }

    #[tokio::test]
    async fn the_default_algorithm_list_cannot_be_confused() {
        // Default jwt_algorithms ["HS256", "RS256"] with an RSA public key: only RS256 is accepted,
        // so an HS256 token signed with the public key as secret is refused.
        let v = validator::<OAuth2Config>("oauth2", json!({"jwt_secret": RSA_PUBLIC}));
        let claims = json!({"exp": unix_now() + 600});
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            &claims,
        );
        assert_unauthorized(v.validate(&bearer(&forged).as_auth()).await);
        let real = sign(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            &claims,
        );
        assert!(v.validate(&bearer(&real).as_auth()).await.is_ok());
    }

    #[tokio::test]
    async fn presence_only_when_validation_is_off() {
        let v = validator::<OAuth2Config>(
            "oauth2",
            json!({"validate_token": false, "token_type": "Token"}),
        );
        assert!(
            v.validate(
                &Req::post("/")
                    .header("authorization", "token anything")
                    .as_auth()
            )
            .await
            .is_ok()
        );
        assert_unauthorized(v.validate(&bearer("anything").as_auth()).await);
    }

    #[test]
    fn bad_config_is_reported() {
        for (cfg, path) in [
            (json!({}), "hook.oauth2"),
            (
                json!({"introspection_endpoint": "https://idp.example/i", "jwt_secret": SECRET}),
                "hook.oauth2",
            ),
            (
                json!({"introspection_endpoint": "https://idp.example/i", "client_id": "x"}),
                "hook.oauth2.client_secret",
            ),
            (
                json!({"introspection_endpoint": "ftp://idp.example/i", "client_id": "x", "client_secret": "y"}),
                "hook.oauth2.introspection_endpoint",
            ),
            (
                json!({"jwt_secret": SECRET, "jwt_algorithms": ["RS256"]}),
                "hook.oauth2.jwt_algorithms",
            ),
            (
                json!({"jwt_secret": SECRET, "jwt_algorithms": ["none"]}),
                "hook.oauth2.jwt_algorithms",
            ),
            (
                json!({"introspection_endpoint": "https://idp.example/i", "client_id": "x", "client_secret": "y", "cache_ttl_seconds": 86_401}),
                "hook.oauth2.cache_ttl_seconds",
            ),
            (
                json!({"jwt_secret": SECRET, "leeway_seconds": u64::MAX}),
                "hook.oauth2.leeway_seconds",
            ),
        ] {
            let e = config_errors::<OAuth2Config>("oauth2", cfg.clone());
            assert_eq!(e[0].path, path, "{cfg}: {e:?}");
        }
    }
}
