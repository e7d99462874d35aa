//! `basic_auth`: HTTP Basic authentication (RFC 7617).
//!
//! The `Basic` scheme (any case), strict base64 (standard alphabet, padding required, nothing
//! else), UTF-8 `user:password` split at the first colon; user name and password are both
//! compared in constant time, and both are always compared, so timing does not tell which one
//! was wrong. A refusal carries `WWW-Authenticate: Basic realm="…", charset="UTF-8"`.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use serde::Deserialize;

use super::{AuthError, AuthRequest, BuildContext, MethodConfig, Validator, authorization_param};
use crate::config::ConfigError;
use crate::secret::Secret;

const DETAIL: &str = "missing or invalid Basic credentials";

/// `"basic_auth": {"username": …, "password": …, "realm": "Webhook API"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name.
    pub username: Secret<String>,
    /// The password.
    pub password: Secret<String>,
    /// The realm named in the challenge (wcon addition; default `Webhook API`).
    #[serde(default = "default_realm")]
    pub realm: String,
}

fn default_realm() -> String {
    "Webhook API".into()
}

/// The configured `basic_auth` check.
#[derive(Debug)]
pub struct BasicAuth {
    username: Secret<String>,
    password: Secret<String>,
    challenge: HeaderValue,
}

impl MethodConfig for BasicAuthConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.username.expose().is_empty() || self.username.expose().contains(':') {
            errors.push(ctx.error(
                key,
                "username",
                "must be non-empty and contain no `:` (RFC 7617)",
            ));
        }
        if self.password.expose().is_empty() {
            errors.push(ctx.error(key, "password", "must not be empty"));
        }
        let challenge = HeaderValue::from_str(&format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            self.realm.replace(['"', '\\'], "")
        ));
        let challenge = match challenge {
            Ok(c) => c,
            Err(_) => {
                errors.push(ctx.error(key, "realm", "must be printable text"));
                HeaderValue::from_static("Basic")
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(BasicAuth {
            username: self.username,
            password: self.password,
            challenge,
        }))
    }
}

#[async_trait]
impl Validator for BasicAuth {
    fn name(&self) -> &'static str {
        "basic_auth"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let refuse = |reason: &'static str| {
            AuthError::unauthorized(DETAIL)
                .with_reason(reason)
                .with_header(http::header::WWW_AUTHENTICATE, self.challenge.clone())
        };
        let encoded = authorization_param(req.headers, "Basic")
            .ok_or_else(|| refuse("no Basic Authorization header"))?;
        let decoded = STANDARD
            .decode(encoded)
            .map_err(|_| refuse("credentials are not strict base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| refuse("credentials are not UTF-8"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| refuse("credentials have no `:`"))?;
        // `&` rather than `&&`: compare the password even when the user name is wrong.
        if self.username.matches(user) & self.password.matches(password) {
            Ok(())
        } else {
            Err(refuse("wrong user name or password"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    fn basic() -> Box<dyn Validator> {
        validator::<BasicAuthConfig>(
            "basic_auth",
            json!({"username": "hooks", "password": "pa:ss wörd"}),
        )
    }

    async fn with(header: Option<&str>) -> Result<(), AuthError> {
        let mut r = Req::post("/webhook/hook");
        if let Some(h) = header {
            r = r.header("authorization", h);
        }
        basic().validate(&r.as_auth()).await
    }

    fn encode(s: &str) -> String {
        format!("Basic {}", STANDARD.encode(s))
    }

    #[tokio::test]
    async fn right_credentials_pass() {
        assert!(
            with(Some(&encode("hooks:pa:ss wörd"))).await.is_ok(),
            "the password may hold colons"
        );
        let lower = encode("hooks:pa:ss wörd").replacen("Basic", "basic", 1);
        assert!(with(Some(&lower)).await.is_ok());
    }

    #[tokio::test]
    async fn every_wrong_form_is_refused_with_a_challenge() {
        for bad in [
            None,
            Some(encode("hooks:wrong")),
            Some(encode("hookz:pa:ss wörd")),
            Some(encode("hooks")),
            Some(encode("hooks:pa:ss wörd ")),
            Some(encode(":pa:ss wörd")),
            Some(encode("hooks:pa:ss wörd").trim_end_matches('=').to_string()), // padding dropped
            Some(format!("{}!", encode("hooks:pa:ss wörd"))),
            Some(encode("hooks:pa:ss wörd").replacen("Basic", "Bearer", 1)),
            Some("Basic".to_string()),
        ] {
            let e = assert_unauthorized(with(bad.as_deref()).await);
            assert_eq!(
                e.detail(),
                DETAIL,
                "the detail never says which field was wrong"
            );
            assert_eq!(
                e.headers()[0].1,
                "Basic realm=\"Webhook API\", charset=\"UTF-8\""
            );
        }
    }

    #[tokio::test]
    async fn non_utf8_credentials_are_refused() {
        let raw = [b"hooks:".as_slice(), &[0xff, 0xfe]].concat();
        assert_unauthorized(with(Some(&format!("Basic {}", STANDARD.encode(raw)))).await);
    }

    #[test]
    fn bad_config_is_reported() {
        let e = config_errors::<BasicAuthConfig>(
            "basic_auth",
            json!({"username": "a:b", "password": ""}),
        );
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["hook.basic_auth.username", "hook.basic_auth.password"]
        );
        let e =
            config_errors::<BasicAuthConfig>("basic_auth", json!({"username": "a", "passwd": "x"}));
        assert!(e[0].message.contains("did you mean `password`"), "{e:?}");
    }
}
