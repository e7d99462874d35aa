//! `header_auth`: an API key in a named header.
//!
//! The header must appear once; its value is compared with `api_key` in constant time, without
//! regard to case unless `case_sensitive` is true (the original's default is false).

use async_trait::async_trait;
use http::HeaderName;
use serde::Deserialize;

use super::{AuthError, AuthRequest, BuildContext, MethodConfig, Validator, single_header};
use crate::config::ConfigError;
use crate::secret::{Secret, constant_time_eq};

/// `"header_auth": {"header_name": "X-API-Key", "api_key": …, "case_sensitive": false}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderAuthConfig {
    /// The header carrying the key (default `X-API-Key`).
    #[serde(default = "default_header_name")]
    pub header_name: String,
    /// The expected key.
    pub api_key: Secret<String>,
    /// Whether case matters when comparing the key (default false, as the original).
    #[serde(default)]
    pub case_sensitive: bool,
}

fn default_header_name() -> String {
    "X-API-Key".into()
}

/// The configured `header_auth` check.
#[derive(Debug)]
pub struct HeaderAuth {
    header: HeaderName,
    key: ApiKey,
}

/// An API key and how to compare it; shared with [`super::query_auth`].
#[derive(Debug)]
pub(crate) struct ApiKey {
    expected: Secret<String>,
    case_sensitive: bool,
}

impl ApiKey {
    pub(crate) fn new(key: &Secret<String>, case_sensitive: bool) -> Self {
        let expected = if case_sensitive {
            key.expose().clone()
        } else {
            key.expose().to_lowercase()
        };
        Self {
            expected: Secret::new(expected),
            case_sensitive,
        }
    }

    pub(crate) fn matches(&self, candidate: &str) -> bool {
        if self.case_sensitive {
            constant_time_eq(self.expected.expose().as_bytes(), candidate.as_bytes())
        } else {
            constant_time_eq(
                self.expected.expose().as_bytes(),
                candidate.to_lowercase().as_bytes(),
            )
        }
    }
}

impl MethodConfig for HeaderAuthConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let header = HeaderName::from_bytes(self.header_name.as_bytes())
            .map_err(|_| {
                errors.push(ctx.error(
                    key,
                    "header_name",
                    format!("`{}` is not a valid header name", self.header_name),
                ))
            })
            .ok();
        if self.api_key.expose().is_empty() {
            errors.push(ctx.error(key, "api_key", "must not be empty"));
        }
        match header {
            Some(header) if errors.is_empty() => Ok(Box::new(HeaderAuth {
                header,
                key: ApiKey::new(&self.api_key, self.case_sensitive),
            })),
            _ => Err(errors),
        }
    }
}

#[async_trait]
impl Validator for HeaderAuth {
    fn name(&self) -> &'static str {
        "header_auth"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        match single_header(req.headers, self.header.as_str()) {
            Some(v) if self.key.matches(v) => Ok(()),
            Some(_) => {
                Err(AuthError::unauthorized("missing or invalid API key")
                    .with_reason("wrong API key"))
            }
            None => Err(AuthError::unauthorized("missing or invalid API key")
                .with_reason("key header absent, repeated or not text")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    async fn check(config: serde_json::Value, headers: &[(&str, &str)]) -> Result<(), AuthError> {
        let v = validator::<HeaderAuthConfig>("header_auth", config);
        let mut r = Req::post("/webhook/hook");
        for (k, val) in headers {
            r = r.header(k, val);
        }
        v.validate(&r.as_auth()).await
    }

    #[tokio::test]
    async fn the_key_in_the_default_header_passes_in_any_case() {
        let cfg = json!({"api_key": "Key-ABC-123"});
        assert!(
            check(cfg.clone(), &[("x-api-key", "Key-ABC-123")])
                .await
                .is_ok()
        );
        assert!(
            check(cfg.clone(), &[("X-API-KEY", "key-abc-123")])
                .await
                .is_ok()
        );
        assert_unauthorized(check(cfg.clone(), &[("x-api-key", "Key-ABC-124")]).await);
        assert_unauthorized(check(cfg.clone(), &[("x-api-key", "Key-ABC-12")]).await);
        assert_unauthorized(check(cfg.clone(), &[]).await);
        assert_unauthorized(check(cfg.clone(), &[("authorization", "Key-ABC-123")]).await);
        assert_unauthorized(
            check(
                cfg,
                &[("x-api-key", "Key-ABC-123"), ("x-api-key", "Key-ABC-123")],
            )
            .await,
        );
    }

    #[tokio::test]
    async fn case_sensitive_keys_and_custom_headers() {
        let cfg = json!({"header_name": "X-Hook-Token", "api_key": "Key-ABC-123", "case_sensitive": true});
        assert!(
            check(cfg.clone(), &[("x-hook-token", "Key-ABC-123")])
                .await
                .is_ok()
        );
        assert_unauthorized(check(cfg.clone(), &[("x-hook-token", "key-abc-123")]).await);
        assert_unauthorized(check(cfg, &[("x-api-key", "Key-ABC-123")]).await);
    }

    #[test]
    fn bad_config_is_reported() {
        let e = config_errors::<HeaderAuthConfig>(
            "header_auth",
            json!({"header_name": "bad header", "api_key": ""}),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].path, "hook.header_auth.header_name");
        assert_eq!(e[1].path, "hook.header_auth.api_key");
    }
}
