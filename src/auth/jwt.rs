//! `jwt`: a JSON Web Token in `Authorization: Bearer …`, checked locally; also the JWT check
//! that [`super::oauth2`] uses for `jwt_secret`.
//!
//! `algorithm` is one of HS256/384/512 (`secret` is the shared secret), RS256/384/512 or
//! PS256/384/512 (`secret` is the RSA public key, PEM), ES256/384 (`secret` is the EC public key,
//! PEM). The token's `alg` must be exactly the configured one, so `none` and algorithm confusion
//! (an RS256 public key used as an HS256 secret) are refused; a PEM key configured with an HS
//! algorithm is refused at load for the same reason, and so is an HMAC secret shorter than 16
//! characters (a short one is guessed offline from any single token). `exp` is required and checked when
//! `verify_exp` (default true), `nbf` is checked when present, both with `leeway_seconds` of
//! clock skew (default 30). `issuer` and `audience`, when set, are required and must match.
//! ES512 is not offered: the JWT library does not implement it.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{AuthError, AuthRequest, BuildContext, MethodConfig, Validator, authorization_param};
use crate::config::ConfigError;
use crate::secret::Secret;

const DETAIL: &str = "missing or invalid bearer token";

/// `"jwt": {"secret": …, "algorithm": "HS256", "issuer": …, "audience": …, "verify_exp": true}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The HMAC secret, or the PEM public key for RS/PS/ES algorithms.
    pub secret: Secret<String>,
    /// The one accepted algorithm (default `HS256`).
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The accepted `aud` value(s); the token must name one of them.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// Whether `exp` is required and checked (default true).
    #[serde(default = "yes")]
    pub verify_exp: bool,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (wcon addition; default 30).
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

fn default_algorithm() -> String {
    "HS256".into()
}

/// The largest clock skew accepted (an hour is already generous).
pub(crate) const MAX_LEEWAY_SECONDS: u64 = 3_600;

fn default_leeway_seconds() -> u64 {
    30
}

fn yes() -> bool {
    true
}

/// Parses an algorithm name; `none` and unknown names are refused with a sentence.
pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    const OFFERED: &str =
        "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384";
    match name.to_ascii_uppercase().as_str() {
        "NONE" => Err("`none` is never accepted: unsigned tokens prove nothing".into()),
        "ES512" => Err(format!("`ES512` is not supported; use one of {OFFERED}")),
        "EDDSA" => Err(format!("`EdDSA` is not offered; use one of {OFFERED}")),
        upper => upper
            .parse()
            .map_err(|_| format!("unknown algorithm `{name}`; use one of {OFFERED}")),
    }
}

/// What a token must satisfy besides its signature.
pub(crate) struct JwtRules<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Vec<String>,
    pub verify_exp: bool,
    pub leeway_seconds: u64,
}

/// A key and the rules a token must meet.
#[derive(Debug)]
pub(crate) struct JwtVerifier {
    key: Secret<DecodingKey>,
    validation: Validation,
}

impl JwtVerifier {
    /// `algorithms` must all be of one family, the family of `secret`.
    pub(crate) fn new(
        secret: &str,
        algorithms: &[Algorithm],
        rules: JwtRules<'_>,
    ) -> Result<Self, String> {
        let family = algorithms.first().ok_or("no algorithm to accept")?.family();
        if algorithms.iter().any(|a| a.family() != family) {
            return Err("algorithms of different families would let one key be used as another (algorithm confusion)".into());
        }
        let is_pem = secret.trim_start().starts_with("-----BEGIN");
        let key = match family {
            AlgorithmFamily::Hmac if is_pem => {
                return Err("this looks like a PEM key, but the algorithm is HMAC: anyone holding the public key could sign tokens; use RS256, PS256 or ES256".into());
            }
            AlgorithmFamily::Hmac if secret.len() < 16 => {
                return Err("an HMAC secret must be at least 16 characters".into());
            }
            AlgorithmFamily::Hmac => DecodingKey::from_secret(secret.as_bytes()),
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(secret.as_bytes())
                .map_err(|e| format!("not an RSA public key in PEM: {e}"))?,
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(secret.as_bytes())
                .map_err(|e| format!("not an EC public key in PEM: {e}"))?,
            AlgorithmFamily::Ed => return Err("EdDSA is not offered".into()),
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.leeway = rules.leeway_seconds.min(MAX_LEEWAY_SECONDS);
        validation.validate_exp = rules.verify_exp;
        validation.validate_nbf = true;
        let mut required = Vec::new();
        if rules.verify_exp {
            required.push("exp");
        }
        if let Some(iss) = rules.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if rules.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&rules.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key: Secret::new(key),
            validation,
        })
    }

    /// The token's claims when its signature and claims are good; otherwise why not (for logs).
    pub(crate) fn verify(&self, token: &str) -> Result<Value, String> {
        jsonwebtoken::decode::<Value>(token, self.key.expose(), &self.validation)
            .map(|t| t.claims)
            .map_err(|e| e.to_string())
    }
}

/// The configured `jwt` check.
#[derive(Debug)]
pub struct Jwt {
    verifier: JwtVerifier,
}

impl MethodConfig for JwtConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        ctx.check_range(
            &mut errors,
            key,
            "leeway_seconds",
            self.leeway_seconds,
            0,
            MAX_LEEWAY_SECONDS,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        let algorithm =
            parse_algorithm(&self.algorithm).map_err(|e| vec![ctx.error(key, "algorithm", e)])?;
        let rules = JwtRules {
            issuer: self.issuer.as_deref(),
            audience: self
                .audience
                .as_ref()
                .map(OneOrMany::to_vec)
                .unwrap_or_default(),
            verify_exp: self.verify_exp,
            leeway_seconds: self.leeway_seconds,
        };
        let verifier = JwtVerifier::new(self.secret.expose(), &[algorithm], rules)
            .map_err(|e| vec![ctx.error(key, "secret", e)])?;
        Ok(Box::new(Jwt { verifier }))
    }
}

#[async_trait]
impl Validator for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let refuse = |reason: String| {
            AuthError::unauthorized(DETAIL)
                .with_reason(reason)
                .with_header(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                )
        };
        let token = authorization_param(req.headers, "Bearer")
            .ok_or_else(|| refuse("no Bearer Authorization header".into()))?;
        self.verifier.verify(token).map(drop).map_err(refuse)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::test_support::*;
    use super::super::unix_now;
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    // Test-only keys, generated with openssl for these tests.
    pub const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    pub const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC256_PRIVATE: &str = include_str!("testdata/ec256_private.pem");
    const EC256_PUBLIC: &str = include_str!("testdata/ec256_public.pem");
    const EC384_PRIVATE: &str = include_str!("testdata/ec384_private.pem");
    const EC384_PUBLIC: &str = include_str!("testdata/ec384_public.pem");
    pub const SECRET: &str = "a-shared-secret-of-32-characters";

    pub fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(alg), claims, key).unwrap()
    }

    pub fn hs(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            claims,
        )
    }

    fn claims() -> Value {
        json!({"sub": "sender", "exp": unix_now() + 600})
    }

    async fn check(config: Value, token: &str) -> Result<(), AuthError> {
        let v = validator::<JwtConfig>("jwt", config);
        v.validate(
            &Req::post("/webhook/hook")
                .header("authorization", &format!("Bearer {token}"))
                .as_auth(),
        )
        .await
    }

    #[tokio::test]
    async fn hs256_tokens_pass_and_every_tampering_fails() {
        let cfg = json!({"secret": SECRET});
        let token = hs(&claims());
        assert!(check(cfg.clone(), &token).await.is_ok());
        let other = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another-secret-of-32-characters!"),
            &claims(),
        );
        assert_unauthorized(check(cfg.clone(), &other).await);
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "exp": unix_now() + 600}).to_string());
        assert_unauthorized(check(cfg.clone(), &format!("{head}.{forged_payload}.{sig}")).await);
        assert_unauthorized(check(cfg.clone(), "not.a.jwt").await);
        let v = validator::<JwtConfig>("jwt", cfg.clone());
        let e = assert_unauthorized(v.validate(&Req::post("/").as_auth()).await);
        assert_eq!(e.headers()[0].1, "Bearer");
        assert_unauthorized(
            v.validate(
                &Req::post("/")
                    .header("authorization", &format!("Basic {token}"))
                    .as_auth(),
            )
            .await,
        );
    }

    #[tokio::test]
    async fn other_hmac_sizes_are_a_wrong_algorithm() {
        let cfg = json!({"secret": SECRET});
        let hs512 = sign(
            Algorithm::HS512,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            &claims(),
        );
        let e = assert_unauthorized(check(cfg, &hs512).await);
        assert!(
            e.reason().to_lowercase().contains("algorithm"),
            "{}",
            e.reason()
        );
        assert!(
            check(json!({"secret": SECRET, "algorithm": "HS512"}), &hs512)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        assert_unauthorized(check(json!({"secret": SECRET}), &format!("{head}.{body}.")).await);
        let e = config_errors::<JwtConfig>("jwt", json!({"secret": SECRET, "algorithm": "none"}));
        assert_eq!(e[0].path, "hook.jwt.algorithm");
    }

    #[tokio::test]
    async fn algorithm_confusion_is_refused() {
        // The classic attack: sign HS256 with the server's RSA public key as the HMAC secret.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            &claims(),
        );
        assert_unauthorized(
            check(json!({"secret": RSA_PUBLIC, "algorithm": "RS256"}), &forged).await,
        );
        // And the operator mistake that enables it is refused at load.
        let e =
            config_errors::<JwtConfig>("jwt", json!({"secret": RSA_PUBLIC, "algorithm": "HS256"}));
        assert!(e[0].message.contains("PEM"), "{e:?}");
    }

    #[tokio::test]
    async fn rsa_pss_and_ec_public_keys() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let cfg = json!({"secret": RSA_PUBLIC, "algorithm": format!("{alg:?}")});
            assert!(
                check(cfg.clone(), &sign(alg, &rsa, &claims()))
                    .await
                    .is_ok(),
                "{alg:?}"
            );
            let other = if alg == Algorithm::RS256 {
                Algorithm::PS256
            } else {
                Algorithm::RS256
            };
            assert_unauthorized(check(cfg, &sign(other, &rsa, &claims())).await);
        }
        let ec256 = EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap();
        let cfg = json!({"secret": EC256_PUBLIC, "algorithm": "ES256"});
        assert!(
            check(cfg.clone(), &sign(Algorithm::ES256, &ec256, &claims()))
                .await
                .is_ok()
        );
        let ec384 = EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap();
        assert_unauthorized(check(cfg, &sign(Algorithm::ES384, &ec384, &claims())).await);
        let cfg = json!({"secret": EC384_PUBLIC, "algorithm": "ES384"});
        assert!(
            check(cfg, &sign(Algorithm::ES384, &ec384, &claims()))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn expiry_with_leeway() {
        let cfg = json!({"secret": SECRET, "leeway_seconds": 30});
        let now = unix_now();
        assert!(
            check(cfg.clone(), &hs(&json!({"exp": now - 10})))
                .await
                .is_ok(),
            "within the leeway"
        );
        let e = assert_unauthorized(check(cfg.clone(), &hs(&json!({"exp": now - 60}))).await);
        assert!(e.reason().contains("xpired"), "{}", e.reason());
        assert_unauthorized(check(cfg.clone(), &hs(&json!({"sub": "no exp"}))).await);
        assert_unauthorized(
            check(
                cfg.clone(),
                &hs(&json!({"exp": now + 600, "nbf": now + 300})),
            )
            .await,
        );
        let lax = json!({"secret": SECRET, "verify_exp": false});
        assert!(check(lax, &hs(&json!({"exp": now - 6000}))).await.is_ok());
    }

    #[tokio::test]
    async fn issuer_and_audience() {
        let cfg = json!({"secret": SECRET, "issuer": "https://idp.example", "audience": ["wcon", "hooks"]});
        let exp = unix_now() + 600;
        assert!(
            check(
                cfg.clone(),
                &hs(&json!({"exp": exp, "iss": "https://idp.example", "aud": "hooks"}))
            )
            .await
            .is_ok()
        );
        assert!(
            check(
                cfg.clone(),
                &hs(&json!({"exp": exp, "iss": "https://idp.example", "aud": ["x", "wcon"]}))
            )
            .await
            .is_ok()
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &hs(&json!({"exp": exp, "iss": "https://evil.example", "aud": "wcon"})),
            )
            .await,
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &hs(&json!({"exp": exp, "iss": "https://idp.example", "aud": "other"})),
            )
            .await,
        );
        assert_unauthorized(check(cfg.clone(), &hs(&json!({"exp": exp, "aud": "wcon"}))).await);
        assert_unauthorized(
            check(cfg, &hs(&json!({"exp": exp, "iss": "https://idp.example"}))).await,
        );
        // Without a configured audience, a token's `aud` is not held against it.
        assert!(
            check(
                json!({"secret": SECRET}),
                &hs(&json!({"exp": exp, "aud": "anything"}))
            )
            .await
            .is_ok()
        );
    }

    #[test]
    fn bad_keys_and_algorithms_are_reported() {
        for (cfg, path) in [
            (
                json!({"secret": "short", "algorithm": "HS256"}),
                "hook.jwt.secret",
            ),
            (
                json!({"secret": "not a pem", "algorithm": "RS256"}),
                "hook.jwt.secret",
            ),
            (
                json!({"secret": RSA_PUBLIC, "algorithm": "ES256"}),
                "hook.jwt.secret",
            ),
            (
                json!({"secret": EC256_PUBLIC, "algorithm": "ES512"}),
                "hook.jwt.algorithm",
            ),
            (
                json!({"secret": SECRET, "algorithm": "HS999"}),
                "hook.jwt.algorithm",
            ),
            (
                json!({"secret": SECRET, "leeway_seconds": 3601}),
                "hook.jwt.leeway_seconds",
            ),
        ] {
            let e = config_errors::<JwtConfig>("jwt", cfg.clone());
            assert_eq!(e[0].path, path, "{cfg}: {e:?}");
        }
    }
}
