//! `query_auth`: an API key in a query parameter.
//!
//! The parameter (percent-decoded) must appear exactly once: a repeated parameter, even with a
//! name differing only in case, is parameter pollution and is refused, because the app behind
//! the relay might read the other copy. The key is compared in constant time, without regard to
//! case unless `case_sensitive` is true (the original's default is false).

use async_trait::async_trait;
use serde::Deserialize;

use super::header_auth::ApiKey;
use super::{AuthError, AuthRequest, BuildContext, MethodConfig, Validator};
use crate::config::ConfigError;
use crate::secret::Secret;

const DETAIL: &str = "missing or invalid API key";

/// `"query_auth": {"parameter_name": "api_key", "api_key": …, "case_sensitive": false}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryAuthConfig {
    /// The query parameter carrying the key (default `api_key`).
    #[serde(default = "default_parameter_name")]
    pub parameter_name: String,
    /// The expected key.
    pub api_key: Secret<String>,
    /// Whether case matters when comparing the key (default false, as the original).
    #[serde(default)]
    pub case_sensitive: bool,
}

fn default_parameter_name() -> String {
    "api_key".into()
}

/// The configured `query_auth` check.
#[derive(Debug)]
pub struct QueryAuth {
    parameter: String,
    key: ApiKey,
}

impl MethodConfig for QueryAuthConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.parameter_name.is_empty() {
            errors.push(ctx.error(key, "parameter_name", "must not be empty"));
        }
        if self.api_key.expose().is_empty() {
            errors.push(ctx.error(key, "api_key", "must not be empty"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(QueryAuth {
            parameter: self.parameter_name,
            key: ApiKey::new(&self.api_key, self.case_sensitive),
        }))
    }
}

#[async_trait]
impl Validator for QueryAuth {
    fn name(&self) -> &'static str {
        "query_auth"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let query = req.uri.query().unwrap_or("");
        let mut found = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k.eq_ignore_ascii_case(&self.parameter));
        match (found.next(), found.next()) {
            (Some((_, v)), None) if self.key.matches(&v) => Ok(()),
            (Some(_), None) => Err(AuthError::unauthorized(DETAIL).with_reason("wrong API key")),
            (None, _) => Err(AuthError::unauthorized(DETAIL).with_reason("key parameter absent")),
            (Some(_), Some(_)) => Err(AuthError::unauthorized(DETAIL)
                .with_reason("key parameter repeated (parameter pollution)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    async fn check(config: serde_json::Value, uri: &str) -> Result<(), AuthError> {
        let v = validator::<QueryAuthConfig>("query_auth", config);
        v.validate(&Req::post(uri).as_auth()).await
    }

    #[tokio::test]
    async fn the_key_passes_once_in_any_case() {
        let cfg = json!({"api_key": "Key/ABC+1"});
        assert!(
            check(cfg.clone(), "/webhook/hook?api_key=Key%2FABC%2B1")
                .await
                .is_ok()
        );
        assert!(
            check(cfg.clone(), "/webhook/hook?x=1&api_key=key%2fabc%2b1&y=2")
                .await
                .is_ok()
        );
        assert_unauthorized(check(cfg.clone(), "/webhook/hook?api_key=Key%2FABC%2B2").await);
        assert_unauthorized(check(cfg.clone(), "/webhook/hook?api_key=Key/ABC+1").await); // `+` is a space
        assert_unauthorized(check(cfg.clone(), "/webhook/hook").await);
        assert_unauthorized(check(cfg.clone(), "/webhook/hook?api_key=").await);
        assert_unauthorized(check(cfg, "/webhook/hook?apikey=Key%2FABC%2B1").await);
    }

    #[tokio::test]
    async fn a_repeated_parameter_is_refused_even_when_one_copy_is_right() {
        let cfg = json!({"api_key": "k3y-value"});
        let e = assert_unauthorized(
            check(cfg.clone(), "/webhook/hook?api_key=k3y-value&api_key=other").await,
        );
        assert!(e.reason().contains("pollution"));
        assert_unauthorized(
            check(
                cfg.clone(),
                "/webhook/hook?api_key=k3y-value&api_key=k3y-value",
            )
            .await,
        );
        assert_unauthorized(check(cfg, "/webhook/hook?API_KEY=other&api_key=k3y-value").await);
    }

    #[tokio::test]
    async fn case_sensitive_keys_and_custom_names() {
        let cfg = json!({"parameter_name": "token", "api_key": "AbC-123", "case_sensitive": true});
        assert!(
            check(cfg.clone(), "/webhook/hook?token=AbC-123")
                .await
                .is_ok()
        );
        assert_unauthorized(check(cfg.clone(), "/webhook/hook?token=abc-123").await);
        assert_unauthorized(check(cfg, "/webhook/hook?api_key=AbC-123").await);
    }

    #[test]
    fn an_empty_key_is_refused_at_load() {
        assert_eq!(
            config_errors::<QueryAuthConfig>("query_auth", json!({"api_key": ""}))[0].path,
            "hook.query_auth.api_key"
        );
    }
}
