//! `hmac`: an HMAC of the raw body in a header, in the plain form of the original or in the
//! exact form GitHub, Stripe or Shopify send.
//!
//! `format` picks the scheme (nothing is guessed from the request, so a sender cannot choose a
//! weaker one):
//!
//! | `format` | default `header` | signature |
//! |---|---|---|
//! | `plain` (default) | `X-HMAC-Signature` | HMAC(`secret`, body) with `algorithm` (`sha256`, `sha1`, `sha512`), `encoding` `hex` (any case, default) or `base64`; an `<algorithm>=` prefix is allowed |
//! | `github` | `X-Hub-Signature-256` (`X-Hub-Signature` for `sha1`) | `sha256=` + hex HMAC of the body; the prefix is required |
//! | `stripe` | `Stripe-Signature` | `t=<unix time>,v1=<hex>[,v1=…]`: HMAC-SHA256 of `"{t}.{body}"`, any `v1` may match, and `t` must be within `tolerance_seconds` (default 300, as Stripe's libraries) of now, which bounds replays |
//! | `shopify` | `X-Shopify-Hmac-Sha256` | base64 HMAC-SHA256 of the body |
//!
//! Signatures are decoded and compared in constant time. The signature header must appear once.

use std::fmt;

use ::hmac::Mac;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, Validator, single_header, unix_now,
};
use crate::config::ConfigError;
use crate::secret::Secret;

const DETAIL: &str = "missing or invalid signature";

/// `"hmac": {"secret": …, "header": …, "algorithm": "sha256", "format": "plain", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// The shared secret (Stripe's `whsec_…`, GitHub's webhook secret, Shopify's app secret).
    pub secret: Secret<String>,
    /// The header carrying the signature (default depends on `format`, see the module docs).
    #[serde(default)]
    pub header: Option<String>,
    /// The hash (default `sha256`; `github` also takes `sha1`, `stripe` and `shopify` only `sha256`).
    #[serde(default)]
    pub algorithm: Option<HmacAlgorithm>,
    /// How the signature is written, for `plain` (default `hex`).
    #[serde(default)]
    pub encoding: Option<SignatureEncoding>,
    /// The sender's scheme (wcon addition; default `plain`, the original's).
    #[serde(default)]
    pub format: HmacFormat,
    /// For `stripe`: how far `t` may be from now, in seconds (wcon addition; default 300).
    #[serde(default = "default_tolerance_seconds")]
    pub tolerance_seconds: u64,
}

fn default_tolerance_seconds() -> u64 {
    300
}

/// The hash of the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// SHA-1 (GitHub's legacy `X-Hub-Signature`).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl fmt::Display for HmacAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        })
    }
}

/// How a `plain` signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Hexadecimal, any case.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The sender's signature scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacFormat {
    /// The original's: the signature of the body, optionally prefixed `<algorithm>=`.
    #[default]
    Plain,
    /// GitHub's `X-Hub-Signature-256: sha256=<hex>`.
    Github,
    /// Stripe's `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// Shopify's `X-Shopify-Hmac-Sha256: <base64>`.
    Shopify,
}

/// The configured `hmac` check.
#[derive(Debug)]
pub struct Hmac {
    secret: Secret<String>,
    header: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    format: HmacFormat,
    tolerance_seconds: u64,
}

impl MethodConfig for HmacConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.secret.expose().is_empty() {
            errors.push(ctx.error(key, "secret", "must not be empty"));
        }
        let algorithm = self.algorithm.unwrap_or(HmacAlgorithm::Sha256);
        let allowed: &[HmacAlgorithm] = match self.format {
            HmacFormat::Plain => &[
                HmacAlgorithm::Sha1,
                HmacAlgorithm::Sha256,
                HmacAlgorithm::Sha512,
            ],
            HmacFormat::Github => &[HmacAlgorithm::Sha1, HmacAlgorithm::Sha256],
            HmacFormat::Stripe | HmacFormat::Shopify => &[HmacAlgorithm::Sha256],
        };
        if !allowed.contains(&algorithm) {
            errors.push(ctx.error(
                key,
                "algorithm",
                format!("`{algorithm}` is not what this `format` signs with; use `sha256`"),
            ));
        }
        let encoding = match (self.format, self.encoding) {
            (HmacFormat::Plain, e) => e.unwrap_or(SignatureEncoding::Hex),
            (HmacFormat::Shopify, None) => SignatureEncoding::Base64,
            (_, None) => SignatureEncoding::Hex,
            (_, Some(_)) => {
                errors.push(ctx.error(
                    key,
                    "encoding",
                    "is fixed by `format`; set it only with `\"format\": \"plain\"`",
                ));
                SignatureEncoding::Hex
            }
        };
        let header = self.header.unwrap_or_else(|| {
            match (self.format, algorithm) {
                (HmacFormat::Plain, _) => "X-HMAC-Signature",
                (HmacFormat::Github, HmacAlgorithm::Sha1) => "X-Hub-Signature",
                (HmacFormat::Github, _) => "X-Hub-Signature-256",
                (HmacFormat::Stripe, _) => "Stripe-Signature",
                (HmacFormat::Shopify, _) => "X-Shopify-Hmac-Sha256",
            }
            .to_string()
        });
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.push(ctx.error(
                key,
                "header",
                format!("`{header}` is not a valid header name"),
            ));
        }
        if self.format == HmacFormat::Stripe && self.tolerance_seconds == 0 {
            errors.push(ctx.error(key, "tolerance_seconds", "must be greater than 0"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(Hmac {
            secret: self.secret,
            header,
            algorithm,
            encoding,
            format: self.format,
            tolerance_seconds: self.tolerance_seconds,
        }))
    }
}

/// HMAC of the concatenated `parts`.
fn mac(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + ::hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = <M as ::hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<::hmac::Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<::hmac::Hmac<sha2::Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<::hmac::Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Signs `body` the way the sender of `format` does, with SHA-256 and the default header:
/// returns the header name and its value (`now` is Stripe's `t`). `wcon send` uses it to make
/// test webhooks that the receiver accepts.
pub fn sign(format: HmacFormat, secret: &str, body: &[u8], now: u64) -> (&'static str, String) {
    let key = secret.as_bytes();
    match format {
        HmacFormat::Plain => (
            "X-HMAC-Signature",
            hex::encode(mac(HmacAlgorithm::Sha256, key, &[body])),
        ),
        HmacFormat::Github => (
            "X-Hub-Signature-256",
            format!(
                "sha256={}",
                hex::encode(mac(HmacAlgorithm::Sha256, key, &[body]))
            ),
        ),
        HmacFormat::Stripe => {
            let t = now.to_string();
            let sig = mac(HmacAlgorithm::Sha256, key, &[t.as_bytes(), b".", body]);
            ("Stripe-Signature", format!("t={t},v1={}", hex::encode(sig)))
        }
        HmacFormat::Shopify => (
            "X-Shopify-Hmac-Sha256",
            STANDARD.encode(mac(HmacAlgorithm::Sha256, key, &[body])),
        ),
    }
}

fn same(expected: &[u8], got: &[u8]) -> bool {
    expected.ct_eq(got).into()
}

impl Hmac {
    fn check(&self, req: &AuthRequest<'_>, now: u64) -> Result<(), &'static str> {
        let value = single_header(req.headers, &self.header)
            .ok_or("signature header absent, repeated or not text")?
            .trim();
        let key = self.secret.expose().as_bytes();
        match self.format {
            HmacFormat::Plain | HmacFormat::Github => {
                let prefix = format!("{}=", self.algorithm);
                let sig = match value.get(..prefix.len()) {
                    Some(p) if p.eq_ignore_ascii_case(&prefix) => &value[prefix.len()..],
                    _ if self.format == HmacFormat::Github => {
                        return Err("signature lacks its algorithm prefix");
                    }
                    _ => value,
                };
                let got = self
                    .decode(sig)
                    .ok_or("signature is not valid hex/base64")?;
                let expected = mac(self.algorithm, key, &[req.body]);
                if same(&expected, &got) {
                    Ok(())
                } else {
                    Err("signature does not match the body")
                }
            }
            HmacFormat::Shopify => {
                let got = self.decode(value).ok_or("signature is not valid base64")?;
                if same(&mac(self.algorithm, key, &[req.body]), &got) {
                    Ok(())
                } else {
                    Err("signature does not match the body")
                }
            }
            HmacFormat::Stripe => {
                let mut timestamp = None;
                let mut candidates = Vec::new();
                for item in value.split(',') {
                    let Some((k, v)) = item.trim().split_once('=') else {
                        return Err("malformed Stripe-Signature");
                    };
                    match k {
                        "t" if timestamp.is_none() => timestamp = Some(v),
                        "t" => return Err("repeated `t` in Stripe-Signature"),
                        "v1" => candidates.push(v),
                        _ => {} // v0 (test-mode legacy) and future schemes are not accepted
                    }
                }
                let t = timestamp.ok_or("no `t` in Stripe-Signature")?;
                let t_num: u64 = t.parse().map_err(|_| "`t` is not a Unix time")?;
                if now.abs_diff(t_num) > self.tolerance_seconds {
                    return Err("timestamp outside the tolerance (stale or replayed)");
                }
                let expected = mac(self.algorithm, key, &[t.as_bytes(), b".", req.body]);
                let matched = candidates
                    .iter()
                    .filter_map(|c| hex::decode(c).ok())
                    .fold(false, |acc, c| acc | same(&expected, &c));
                if matched {
                    Ok(())
                } else {
                    Err("no v1 signature matches")
                }
            }
        }
    }

    fn decode(&self, sig: &str) -> Option<Vec<u8>> {
        match self.encoding {
            SignatureEncoding::Hex => hex::decode(sig).ok(),
            SignatureEncoding::Base64 => STANDARD.decode(sig).ok(),
        }
    }
}

#[async_trait]
impl Validator for Hmac {
    fn name(&self) -> &'static str {
        "hmac"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        self.check(req, unix_now())
            .map_err(|reason| AuthError::unauthorized(DETAIL).with_reason(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded","amount":4200}"#;

    async fn check(
        config: serde_json::Value,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), AuthError> {
        let v = validator::<HmacConfig>("hmac", config);
        let mut r = Req::post("/webhook/hook").body(body);
        for (k, val) in headers {
            r = r.header(k, val);
        }
        v.validate(&r.as_auth()).await
    }

    /// The documented algorithms, written out independently of `mac`.
    fn hmac_sha256(key: &str, msg: &[u8]) -> Vec<u8> {
        let mut m = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }

    #[tokio::test]
    async fn what_sign_makes_is_accepted_for_every_format() {
        for (format, name) in [
            (HmacFormat::Plain, "plain"),
            (HmacFormat::Github, "github"),
            (HmacFormat::Stripe, "stripe"),
            (HmacFormat::Shopify, "shopify"),
        ] {
            let (header, value) = sign(format, "s3cret", BODY, unix_now());
            let config = json!({"secret": "s3cret", "format": name});
            check(config.clone(), &[(header, value.as_str())], BODY)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let (_, wrong) = sign(format, "other", BODY, unix_now());
            assert!(
                check(config, &[(header, wrong.as_str())], BODY)
                    .await
                    .is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn known_answer_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let got = mac(
            HmacAlgorithm::Sha256,
            b"Jefe",
            &[b"what do ya ", b"want for nothing?"],
        );
        assert_eq!(
            hex::encode(got),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let got = mac(
            HmacAlgorithm::Sha1,
            b"Jefe",
            &[b"what do ya want for nothing?"],
        );
        assert_eq!(hex::encode(got), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"); // RFC 2202 case 2
    }

    #[tokio::test]
    async fn plain_hex_any_case_with_or_without_prefix() {
        for alg in ["sha1", "sha256", "sha512"] {
            let cfg = json!({"secret": "plain-secret", "algorithm": alg});
            let a: HmacAlgorithm = serde_json::from_value(json!(alg)).unwrap();
            let sig = hex::encode(mac(a, b"plain-secret", &[BODY]));
            assert!(
                check(cfg.clone(), &[("x-hmac-signature", &sig)], BODY)
                    .await
                    .is_ok(),
                "{alg}"
            );
            assert!(
                check(
                    cfg.clone(),
                    &[("x-hmac-signature", &sig.to_uppercase())],
                    BODY
                )
                .await
                .is_ok(),
                "{alg}"
            );
            assert!(
                check(
                    cfg.clone(),
                    &[("x-hmac-signature", &format!("{alg}={sig}"))],
                    BODY
                )
                .await
                .is_ok(),
                "{alg}"
            );
            assert_unauthorized(
                check(
                    cfg.clone(),
                    &[("x-hmac-signature", &format!("md5={sig}"))],
                    BODY,
                )
                .await,
            );
            assert_unauthorized(
                check(
                    cfg.clone(),
                    &[("x-hmac-signature", &sig)],
                    b"{\"tampered\":1}",
                )
                .await,
            );
            assert_unauthorized(
                check(
                    cfg.clone(),
                    &[("x-hmac-signature", &sig[..sig.len() - 2])],
                    BODY,
                )
                .await,
            );
            assert_unauthorized(check(cfg, &[], BODY).await);
        }
    }

    #[tokio::test]
    async fn plain_wrong_secret_wrong_algorithm_and_base64() {
        let cfg = json!({"secret": "plain-secret"});
        let wrong_key = hex::encode(hmac_sha256("other-secret", BODY));
        assert_unauthorized(check(cfg.clone(), &[("x-hmac-signature", &wrong_key)], BODY).await);
        let sha1 = hex::encode(mac(HmacAlgorithm::Sha1, b"plain-secret", &[BODY]));
        assert_unauthorized(check(cfg.clone(), &[("x-hmac-signature", &sha1)], BODY).await);
        let good = hex::encode(hmac_sha256("plain-secret", BODY));
        assert_unauthorized(
            check(
                cfg,
                &[("x-hmac-signature", &good), ("x-hmac-signature", &good)],
                BODY,
            )
            .await,
        );
        let b64 = json!({"secret": "plain-secret", "encoding": "base64", "header": "X-Sig"});
        let sig = STANDARD.encode(hmac_sha256("plain-secret", BODY));
        assert!(check(b64.clone(), &[("x-sig", &sig)], BODY).await.is_ok());
        assert_unauthorized(
            check(
                b64,
                &[("x-sig", &hex::encode(hmac_sha256("plain-secret", BODY)))],
                BODY,
            )
            .await,
        );
    }

    #[tokio::test]
    async fn github_signatures_as_github_sends_them() {
        // GitHub: X-Hub-Signature-256: "sha256=" + hex(HMAC-SHA256(secret, body)).
        let secret = "It's a Secret to Everybody";
        let body = b"Hello, World!";
        let sig = format!("sha256={}", hex::encode(hmac_sha256(secret, body)));
        // The example in GitHub's "Validating webhook deliveries" documentation.
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let cfg = json!({"secret": secret, "format": "github"});
        assert!(
            check(cfg.clone(), &[("x-hub-signature-256", &sig)], body)
                .await
                .is_ok()
        );
        assert_unauthorized(check(cfg.clone(), &[("x-hub-signature-256", &sig[7..])], body).await);
        assert_unauthorized(check(cfg.clone(), &[("x-hub-signature", &sig)], body).await);
        assert_unauthorized(check(cfg, &[("x-hub-signature-256", &sig)], b"Hello, World?").await);
        let legacy = json!({"secret": secret, "format": "github", "algorithm": "sha1"});
        let sha1 = format!(
            "sha1={}",
            hex::encode(mac(HmacAlgorithm::Sha1, secret.as_bytes(), &[body]))
        );
        assert!(
            check(legacy, &[("x-hub-signature", &sha1)], body)
                .await
                .is_ok()
        );
    }

    fn stripe_header(secret: &str, t: u64, body: &[u8]) -> String {
        let signed = [t.to_string().as_bytes(), b".", body].concat();
        format!("t={t},v1={}", hex::encode(hmac_sha256(secret, &signed)))
    }

    #[tokio::test]
    async fn stripe_signatures_within_the_tolerance() {
        let secret = "whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH";
        let cfg = json!({"secret": secret, "format": "stripe"});
        let now = unix_now();
        let good = stripe_header(secret, now, BODY);
        assert!(
            check(cfg.clone(), &[("stripe-signature", &good)], BODY)
                .await
                .is_ok()
        );
        // Stripe sends several v1 during secret rotation, and a v0 in test mode.
        let rotated = format!(
            "t={now},v1={},{},v0=abcd",
            "00".repeat(32),
            good.split_once(',').unwrap().1
        );
        assert!(
            check(cfg.clone(), &[("stripe-signature", &rotated)], BODY)
                .await
                .is_ok()
        );
        let old = stripe_header(secret, now - 301, BODY);
        let e = assert_unauthorized(check(cfg.clone(), &[("stripe-signature", &old)], BODY).await);
        assert!(e.reason().contains("tolerance"));
        assert!(
            check(
                cfg.clone(),
                &[("stripe-signature", &stripe_header(secret, now - 250, BODY))],
                BODY
            )
            .await
            .is_ok()
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &[("stripe-signature", &stripe_header(secret, now + 400, BODY))],
                BODY,
            )
            .await,
        );
        // The timestamp is signed: moving it forward breaks the signature.
        let moved = good.replacen(&format!("t={now}"), &format!("t={}", now + 1), 1);
        assert_unauthorized(check(cfg.clone(), &[("stripe-signature", &moved)], BODY).await);
        assert_unauthorized(check(cfg.clone(), &[("stripe-signature", &good)], b"{}").await);
        assert_unauthorized(
            check(
                cfg.clone(),
                &[("stripe-signature", &stripe_header("whsec_other", now, BODY))],
                BODY,
            )
            .await,
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &[("stripe-signature", &good.replacen("v1=", "v0=", 1))],
                BODY,
            )
            .await,
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &[(
                    "stripe-signature",
                    &format!("t={now},t={now},{}", &good[good.find("v1").unwrap()..]),
                )],
                BODY,
            )
            .await,
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &[(
                    "stripe-signature",
                    &format!("t=soon,{}", &good[good.find("v1").unwrap()..]),
                )],
                BODY,
            )
            .await,
        );
        assert_unauthorized(check(cfg, &[], BODY).await);
        let narrow = json!({"secret": secret, "format": "stripe", "tolerance_seconds": 10});
        assert_unauthorized(
            check(
                narrow,
                &[("stripe-signature", &stripe_header(secret, now - 60, BODY))],
                BODY,
            )
            .await,
        );
    }

    #[tokio::test]
    async fn shopify_signatures_as_shopify_sends_them() {
        // Shopify: X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(app secret, raw body)).
        let secret = "shpss_0123456789abcdef";
        let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
        let sig = STANDARD.encode(hmac_sha256(secret, body));
        let cfg = json!({"secret": secret, "format": "shopify"});
        assert!(
            check(cfg.clone(), &[("x-shopify-hmac-sha256", &sig)], body)
                .await
                .is_ok()
        );
        assert_unauthorized(
            check(
                cfg.clone(),
                &[(
                    "x-shopify-hmac-sha256",
                    &hex::encode(hmac_sha256(secret, body)),
                )],
                body,
            )
            .await,
        );
        assert_unauthorized(
            check(cfg.clone(), &[("x-shopify-hmac-sha256", &sig)], &body[1..]).await,
        );
        assert_unauthorized(
            check(
                cfg,
                &[(
                    "x-shopify-hmac-sha256",
                    &STANDARD.encode(hmac_sha256("shpss_other", body)),
                )],
                body,
            )
            .await,
        );
    }

    #[test]
    fn inconsistent_config_is_reported() {
        let e = config_errors::<HmacConfig>(
            "hmac",
            json!({"secret": "s", "format": "stripe", "algorithm": "sha1", "encoding": "base64"}),
        );
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["hook.hmac.algorithm", "hook.hmac.encoding"]);
        let e = config_errors::<HmacConfig>("hmac", json!({"secret": "s", "format": "gitlab"}));
        assert_eq!(e[0].path, "hook.hmac.format");
        let e = config_errors::<HmacConfig>("hmac", json!({"secret": "", "header": "bad header"}));
        assert_eq!(e.len(), 2);
    }
}
