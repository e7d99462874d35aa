//! `recaptcha`: a Google reCAPTCHA token, verified with the siteverify API.
//!
//! The token comes from the header `token_field` (`token_source: "header"`, the default; header
//! `X-Recaptcha-Token`), or from the body (`"body"`): the JSON or urlencoded-form field
//! `token_field`, else `recaptcha_token`, `recaptcha` or `g-recaptcha-response`. It is POSTed to
//! `verify_url` (wcon addition; default Google's siteverify, configurable so tests and
//! self-hosted compatible services can answer) with `secret`, `response` and `remoteip` (the
//! sender's address after `trusted_proxies`). v2 needs `"success": true`; v3 also needs
//! `score` ≥ `min_score` (default 0.5). An unreachable or failing service gives 503
//! `auth_unavailable`. Tokens are single-use at Google, so answers are not cached.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, TrustedProxies, Validator, client_ip,
    http_client, read_capped, single_header,
};
use crate::config::ConfigError;
use crate::secret::Secret;

const DETAIL: &str = "missing or invalid reCAPTCHA token";
const UNAVAILABLE: &str = "reCAPTCHA verification is unavailable; retry later";
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Field names the original reads from a body, after `token_field`.
const BODY_FIELDS: [&str; 3] = ["recaptcha_token", "recaptcha", "g-recaptcha-response"];

/// `"recaptcha": {"secret_key": …, "version": "v3", "token_source": "header", "token_field": "X-Recaptcha-Token", "min_score": 0.5}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecaptchaConfig {
    /// The site's secret key.
    pub secret_key: Secret<String>,
    /// `v3` (default, scored) or `v2` (checkbox / invisible).
    #[serde(default)]
    pub version: RecaptchaVersion,
    /// Where the token is: `header` (default) or `body`.
    #[serde(default)]
    pub token_source: TokenSource,
    /// The header (or body field) holding the token (default `X-Recaptcha-Token`).
    #[serde(default = "default_token_field")]
    pub token_field: String,
    /// The lowest v3 score accepted, 0.0 to 1.0 (default 0.5).
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    /// The siteverify URL (wcon addition; default Google's).
    #[serde(default = "default_verify_url")]
    pub verify_url: Url,
    /// How long to wait for the verification service, in seconds (wcon addition; default 10).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// The reCAPTCHA version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecaptchaVersion {
    /// Scored, invisible.
    #[default]
    V3,
    /// Checkbox or invisible challenge.
    V2,
}

/// Where the token is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// A request header.
    #[default]
    Header,
    /// A field of the JSON or form body.
    Body,
}

fn default_token_field() -> String {
    "X-Recaptcha-Token".into()
}
fn default_min_score() -> f64 {
    0.5
}
fn default_verify_url() -> Url {
    Url::parse("https://www.google.com/recaptcha/api/siteverify").expect("a valid constant URL")
}
fn default_timeout_seconds() -> u64 {
    10
}

/// The configured `recaptcha` check.
#[derive(Debug)]
pub struct Recaptcha {
    secret_key: Secret<String>,
    version: RecaptchaVersion,
    token_source: TokenSource,
    token_field: String,
    min_score: f64,
    verify_url: Url,
    client: reqwest::Client,
    trusted_proxies: TrustedProxies,
}

impl MethodConfig for RecaptchaConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.secret_key.expose().is_empty() {
            errors.push(ctx.error(key, "secret_key", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            errors.push(ctx.error(key, "min_score", "must be between 0.0 and 1.0"));
        }
        if !matches!(self.verify_url.scheme(), "http" | "https") {
            errors.push(ctx.error(key, "verify_url", "must be an http(s) URL"));
        }
        if self.token_source == TokenSource::Header
            && http::HeaderName::from_bytes(self.token_field.as_bytes()).is_err()
        {
            errors.push(ctx.error(
                key,
                "token_field",
                format!("`{}` is not a valid header name", self.token_field),
            ));
        }
        ctx.check_range(
            &mut errors,
            key,
            "timeout_seconds",
            self.timeout_seconds,
            1,
            300,
        );
        let client = http_client(Duration::from_secs(self.timeout_seconds))
            .map_err(|e| errors.push(ctx.error(key, "", e)))
            .ok();
        match client {
            Some(client) if errors.is_empty() => Ok(Box::new(Recaptcha {
                secret_key: self.secret_key,
                version: self.version,
                token_source: self.token_source,
                token_field: self.token_field,
                min_score: self.min_score,
                verify_url: self.verify_url,
                client,
                trusted_proxies: ctx.trusted_proxies().clone(),
            })),
            _ => Err(errors),
        }
    }
}

impl Recaptcha {
    fn token(&self, req: &AuthRequest<'_>) -> Option<String> {
        let token = match self.token_source {
            TokenSource::Header => single_header(req.headers, &self.token_field).map(str::to_owned),
            TokenSource::Body => {
                let names = std::iter::once(self.token_field.as_str()).chain(BODY_FIELDS);
                if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(req.body) {
                    return names
                        .filter_map(|n| map.get(n)?.as_str())
                        .next()
                        .map(str::to_owned);
                }
                let form: Vec<(String, String)> = form_urlencoded::parse(req.body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                names
                    .filter_map(|n| form.iter().find(|(k, _)| k == n))
                    .next()
                    .map(|(_, v)| v.clone())
            }
        };
        token.filter(|t| !t.is_empty())
    }

    fn judge(&self, answer: &Value) -> Result<(), String> {
        if answer.get("success") != Some(&Value::Bool(true)) {
            let codes = answer
                .get("error-codes")
                .map(Value::to_string)
                .unwrap_or_default();
            return Err(format!("verification failed {codes}"));
        }
        if self.version == RecaptchaVersion::V3 {
            let score = answer
                .get("score")
                .and_then(Value::as_f64)
                .ok_or("v3 answer without a score (is this a v2 key?)")?;
            if score < self.min_score {
                return Err(format!("score {score} below {}", self.min_score));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Validator for Recaptcha {
    fn name(&self) -> &'static str {
        "recaptcha"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let token = self
            .token(req)
            .ok_or_else(|| AuthError::unauthorized(DETAIL).with_reason("no token"))?;
        let remote_ip = client_ip(req.peer, req.headers, &self.trusted_proxies).to_string();
        let form = [
            ("secret", self.secret_key.expose().as_str()),
            ("response", token.as_str()),
            ("remoteip", remote_ip.as_str()),
        ];
        let resp = self
            .client
            .post(self.verify_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                AuthError::unavailable(UNAVAILABLE)
                    .with_reason(format!("siteverify request failed: {e}"))
            })?;
        if !resp.status().is_success() {
            return Err(AuthError::unavailable(UNAVAILABLE)
                .with_reason(format!("siteverify answered {}", resp.status())));
        }
        let body = read_capped(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| AuthError::unavailable(UNAVAILABLE).with_reason(e))?;
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            AuthError::unavailable(UNAVAILABLE).with_reason("siteverify answer is not JSON")
        })?;
        self.judge(&answer)
            .map_err(|reason| AuthError::unauthorized(DETAIL).with_reason(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use axum::extract::{Form, State};
    use axum::routing::post;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

    /// A local siteverify: it checks the secret and knows a few tokens; it records what it got.
    async fn siteverify(
        State(seen): State<Seen>,
        Form(form): Form<HashMap<String, String>>,
    ) -> (http::StatusCode, axum::Json<Value>) {
        seen.lock().unwrap().push(form.clone());
        if form.get("secret").map(String::as_str) != Some("6Lc-test-secret") {
            return (
                http::StatusCode::OK,
                axum::Json(json!({"success": false, "error-codes": ["invalid-input-secret"]})),
            );
        }
        let answer = match form.get("response").map(String::as_str) {
            Some("human") => {
                json!({"success": true, "score": 0.9, "action": "submit", "hostname": "example.com"})
            }
            Some("borderline") => json!({"success": true, "score": 0.5}),
            Some("bot") => json!({"success": true, "score": 0.1}),
            Some("checkbox") => json!({"success": true, "hostname": "example.com"}),
            Some("boom") => return (http::StatusCode::BAD_GATEWAY, axum::Json(json!({}))),
            _ => json!({"success": false, "error-codes": ["invalid-input-response"]}),
        };
        (http::StatusCode::OK, axum::Json(answer))
    }

    async fn google() -> (Seen, String) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/recaptcha/api/siteverify", post(siteverify))
            .with_state(seen.clone());
        let addr = serve(app).await;
        (seen, format!("http://{addr}/recaptcha/api/siteverify"))
    }

    fn recaptcha(url: &str, extra: Value) -> Box<dyn Validator> {
        let mut cfg = json!({"secret_key": "6Lc-test-secret", "verify_url": url});
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        validator::<RecaptchaConfig>("recaptcha", cfg)
    }

    fn with_token(token: &str) -> Req {
        Req::post("/webhook/hook")
            .header("x-recaptcha-token", token)
            .peer("198.51.100.20")
    }

    #[tokio::test]
    async fn v3_needs_the_minimum_score() {
        let (seen, url) = google().await;
        let v = recaptcha(&url, json!({}));
        assert!(v.validate(&with_token("human").as_auth()).await.is_ok());
        assert!(
            v.validate(&with_token("borderline").as_auth())
                .await
                .is_ok()
        );
        let e = assert_unauthorized(v.validate(&with_token("bot").as_auth()).await);
        assert!(e.reason().contains("score"), "{}", e.reason());
        assert_unauthorized(v.validate(&with_token("checkbox").as_auth()).await);
        assert_unauthorized(v.validate(&with_token("forged").as_auth()).await);
        assert_unauthorized(v.validate(&Req::post("/").as_auth()).await);
        let strict = recaptcha(&url, json!({"min_score": 0.95}));
        assert_unauthorized(strict.validate(&with_token("human").as_auth()).await);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            6,
            "a request without a token never reaches the service"
        );
        assert_eq!(seen[0]["remoteip"], "198.51.100.20");
        assert_eq!(seen[0]["response"], "human");
    }

    #[tokio::test]
    async fn v2_needs_success_only() {
        let (_, url) = google().await;
        let v = recaptcha(&url, json!({"version": "v2"}));
        assert!(v.validate(&with_token("checkbox").as_auth()).await.is_ok());
        assert!(
            v.validate(&with_token("bot").as_auth()).await.is_ok(),
            "v2 has no score to hold against it"
        );
        assert_unauthorized(
            v.validate(&with_token("expired-or-duplicate").as_auth())
                .await,
        );
        let wrong_secret = recaptcha(&url, json!({"version": "v2", "secret_key": "6Lc-other"}));
        assert_unauthorized(
            wrong_secret
                .validate(&with_token("checkbox").as_auth())
                .await,
        );
    }

    #[tokio::test]
    async fn tokens_from_the_body() {
        let (_, url) = google().await;
        let v = recaptcha(&url, json!({"token_source": "body", "version": "v2"}));
        for body in [
            r#"{"g-recaptcha-response":"checkbox","name":"x"}"#,
            r#"{"recaptcha_token":"checkbox"}"#,
            "name=x&g-recaptcha-response=checkbox",
        ] {
            assert!(
                v.validate(&Req::post("/").body(body).as_auth())
                    .await
                    .is_ok(),
                "{body}"
            );
        }
        assert_unauthorized(
            v.validate(
                &Req::post("/")
                    .body(r#"{"recaptcha_token":"nope"}"#)
                    .as_auth(),
            )
            .await,
        );
        assert_unauthorized(
            v.validate(&Req::post("/").body(r#"{"token":"checkbox"}"#).as_auth())
                .await,
        );
        assert_unauthorized(
            v.validate(&Req::post("/").body(r#"{"recaptcha_token":7}"#).as_auth())
                .await,
        );
        assert_unauthorized(v.validate(&with_token("checkbox").as_auth()).await);
        let named = recaptcha(
            &url,
            json!({"token_source": "body", "version": "v2", "token_field": "captcha"}),
        );
        assert!(
            named
                .validate(&Req::post("/").body(r#"{"captcha":"checkbox"}"#).as_auth())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_unreachable_service_is_503() {
        let (_, url) = google().await;
        let e = recaptcha(&url, json!({}))
            .validate(&with_token("boom").as_auth())
            .await
            .unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (503, "auth_unavailable"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}/siteverify", listener.local_addr().unwrap());
        drop(listener);
        let e = recaptcha(&closed, json!({}))
            .validate(&with_token("human").as_auth())
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 503);
    }

    #[test]
    fn bad_config_is_reported() {
        let e = config_errors::<RecaptchaConfig>(
            "recaptcha",
            json!({"secret_key": "s", "min_score": 1.5, "version": "v4"}),
        );
        assert_eq!(e[0].path, "hook.recaptcha.version");
        let e = config_errors::<RecaptchaConfig>(
            "recaptcha",
            json!({"secret_key": "s", "min_score": 1.5, "verify_url": "ftp://x/"}),
        );
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["hook.recaptcha.min_score", "hook.recaptcha.verify_url"]
        );
    }
}
