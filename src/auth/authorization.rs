//! `authorization`: the `Authorization` header must match a configured string.
//!
//! `"authorization": "Bearer <token>"` demands the `Bearer` scheme (any case, as RFC 9110 says)
//! followed by exactly that token; any other string must equal the whole header value. Both are
//! compared in constant time. A repeated `Authorization` header is refused. It owns this check
//! only; JWT bearer tokens are [`super::jwt`].

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, Validator, authorization_param,
    single_header,
};
use crate::config::ConfigError;
use crate::secret::{Secret, constant_time_eq};

const DETAIL: &str = "missing or invalid Authorization header";

/// `"authorization": "<value>"` (a string, as in the original).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct AuthorizationConfig(pub Secret<String>);

/// The configured `authorization` check.
#[derive(Debug)]
pub struct Authorization {
    expected: Expected,
}

#[derive(Debug)]
enum Expected {
    /// `Bearer <token>`: the token after the scheme.
    Bearer(Secret<String>),
    /// The whole header value.
    Exact(Secret<String>),
}

impl MethodConfig for AuthorizationConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let value = self.0.expose().trim();
        if value.is_empty() {
            return Err(vec![ctx.error(key, "", "must not be empty")]);
        }
        if value.eq_ignore_ascii_case("bearer") {
            return Err(vec![ctx.error(key, "", "`Bearer` needs a token after it")]);
        }
        let expected = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Expected::Bearer(Secret::new(token.trim().to_string()))
            }
            _ => Expected::Exact(Secret::new(value.to_string())),
        };
        Ok(Box::new(Authorization { expected }))
    }
}

#[async_trait]
impl Validator for Authorization {
    fn name(&self) -> &'static str {
        "authorization"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let ok = match &self.expected {
            Expected::Bearer(token) => {
                authorization_param(req.headers, "Bearer").is_some_and(|got| token.matches(got))
            }
            Expected::Exact(value) => single_header(req.headers, "authorization")
                .is_some_and(|got| constant_time_eq(value.expose().as_bytes(), got.as_bytes())),
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::unauthorized(DETAIL))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    async fn check(config: &str, headers: &[&str]) -> Result<(), AuthError> {
        let v = validator::<AuthorizationConfig>("authorization", json!(config));
        let mut r = Req::post("/webhook/hook");
        for h in headers {
            r = r.header("authorization", h);
        }
        v.validate(&r.as_auth()).await
    }

    #[tokio::test]
    async fn bearer_tokens_match_exactly() {
        assert!(
            check("Bearer tok_live_123", &["Bearer tok_live_123"])
                .await
                .is_ok()
        );
        assert!(
            check("Bearer tok_live_123", &["bearer tok_live_123"])
                .await
                .is_ok(),
            "the scheme is case-insensitive"
        );
        assert_unauthorized(check("Bearer tok_live_123", &["Bearer tok_live_124"]).await);
        assert_unauthorized(check("Bearer tok_live_123", &["Bearer tok_live_1234"]).await);
        assert_unauthorized(check("Bearer tok_live_123", &["Bearer TOK_LIVE_123"]).await);
        assert_unauthorized(check("Bearer tok_live_123", &["Basic tok_live_123"]).await);
        assert_unauthorized(check("Bearer tok_live_123", &["tok_live_123"]).await);
        assert_unauthorized(check("Bearer tok_live_123", &[]).await);
        assert_unauthorized(
            check(
                "Bearer tok_live_123",
                &["Bearer tok_live_123", "Bearer tok_live_123"],
            )
            .await,
        );
    }

    #[tokio::test]
    async fn other_values_must_equal_the_whole_header() {
        assert!(check("Token abc:def", &["Token abc:def"]).await.is_ok());
        assert_unauthorized(check("Token abc:def", &["token abc:def"]).await);
        assert_unauthorized(check("Token abc:def", &["Token abc:de"]).await);
        assert_unauthorized(check("Token abc:def", &[]).await);
    }

    #[test]
    fn empty_values_are_refused_at_load() {
        assert_eq!(
            config_errors::<AuthorizationConfig>("authorization", json!(""))[0].path,
            "hook.authorization"
        );
        assert!(
            config_errors::<AuthorizationConfig>("authorization", json!("Bearer  "))[0]
                .message
                .contains("token")
        );
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let v = validator::<AuthorizationConfig>("authorization", json!("Bearer tok_live_123"));
        assert!(!format!("{v:?}").contains("tok_live"));
    }
}
