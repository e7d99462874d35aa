//! `oauth1`: OAuth 1.0a request signatures (RFC 5849) in `Authorization: OAuth …`.
//!
//! `HMAC-SHA1` (default) recomputes the signature over the signature base string (method, base
//! URI, and every query, form-body and `oauth_*` parameter, sorted); `PLAINTEXT` compares the
//! key itself. The key is `consumer_secret&token_secret`. The request's `oauth_consumer_key` and
//! `oauth_signature_method` must be the configured ones. With `verify_timestamp` (default true)
//! `oauth_timestamp` must be within `timestamp_window` seconds (default 300) of now; with
//! `verify_nonce` (default true) a nonce is accepted once per timestamp window. Nonces are
//! remembered only after the signature checks out, at most `max_nonces` (default 100,000) at
//! once; when that many are live, requests are refused rather than a nonce forgotten.
//! PLAINTEXT requests may omit the timestamp and nonce, as RFC 5849 allows.
//!
//! The base URI is what the sender signed. Behind a proxy that changes scheme, host or path,
//! set `base_url` (wcon addition, e.g. `https://hooks.example.com`); without it the `Host`
//! header is used with the scheme of `X-Forwarded-Proto`, or, when there is none, `https` and
//! `http` are both tried. Parameters are taken from the `Authorization` header only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;
use url::Url;

use super::digest_auth::parse_params;
use super::replay::{ExpiringMap, key};
use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, Validator, authorization_param,
    single_header, unix_now,
};
use crate::config::ConfigError;
use crate::secret::{Secret, constant_time_eq};

const DETAIL: &str = "missing or invalid OAuth signature";

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `"oauth1": {"consumer_key": …, "consumer_secret": …, "token_secret": "", "signature_method": "HMAC-SHA1", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth1Config {
    /// The consumer key senders present.
    pub consumer_key: String,
    /// The consumer secret.
    pub consumer_secret: Secret<String>,
    /// The token secret (default empty).
    #[serde(default)]
    pub token_secret: Secret<String>,
    /// `HMAC-SHA1` (default) or `PLAINTEXT`.
    #[serde(default = "default_signature_method")]
    pub signature_method: String,
    /// Whether `oauth_timestamp` must be recent (default true).
    #[serde(default = "yes")]
    pub verify_timestamp: bool,
    /// How far the timestamp may be from now, in seconds (default 300).
    #[serde(default = "default_timestamp_window")]
    pub timestamp_window: u64,
    /// Whether a nonce is accepted only once (default true).
    #[serde(default = "yes")]
    pub verify_nonce: bool,
    /// The public URL senders sign, when a proxy changes it (wcon addition).
    #[serde(default)]
    pub base_url: Option<Url>,
    /// How many nonces are remembered at once (wcon addition; default 100,000).
    #[serde(default = "default_max_nonces")]
    pub max_nonces: usize,
}

fn default_signature_method() -> String {
    "HMAC-SHA1".into()
}
fn default_timestamp_window() -> u64 {
    300
}
fn default_max_nonces() -> usize {
    100_000
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignatureMethod {
    HmacSha1,
    Plaintext,
}

/// The configured `oauth1` check.
#[derive(Debug)]
pub struct OAuth1 {
    consumer_key: String,
    signing_key: Secret<String>,
    method: SignatureMethod,
    verify_timestamp: bool,
    window: u64,
    verify_nonce: bool,
    base_url: Option<Url>,
    nonces: Mutex<ExpiringMap<()>>,
}

impl MethodConfig for OAuth1Config {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        Ok(Box::new(self.build(ctx, key)?))
    }
}

impl OAuth1Config {
    fn build(self, ctx: &BuildContext<'_>, key: &str) -> Result<OAuth1, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let method = match self.signature_method.as_str() {
            "HMAC-SHA1" => SignatureMethod::HmacSha1,
            "PLAINTEXT" => SignatureMethod::Plaintext,
            other => {
                errors.push(ctx.error(
                    key,
                    "signature_method",
                    format!("`{other}` is not supported; use `HMAC-SHA1` or `PLAINTEXT`"),
                ));
                SignatureMethod::HmacSha1
            }
        };
        if self.consumer_key.is_empty() {
            errors.push(ctx.error(key, "consumer_key", "must not be empty"));
        }
        if self.consumer_secret.expose().is_empty() {
            errors.push(ctx.error(key, "consumer_secret", "must not be empty"));
        }
        ctx.check_range(
            &mut errors,
            key,
            "timestamp_window",
            self.timestamp_window,
            1,
            86_400,
        );
        if self.max_nonces == 0 {
            errors.push(ctx.error(key, "max_nonces", "must be greater than 0"));
        }
        let bad_base = |u: &Url| {
            !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || u.query().is_some()
        };
        if self.base_url.as_ref().is_some_and(bad_base) {
            errors.push(ctx.error(
                key,
                "base_url",
                "must be an http(s) URL with a host and no query, like `https://hooks.example.com`",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let signing_key = format!(
            "{}&{}",
            encode(self.consumer_secret.expose()),
            encode(self.token_secret.expose())
        );
        Ok(OAuth1 {
            consumer_key: self.consumer_key,
            signing_key: Secret::new(signing_key),
            method,
            verify_timestamp: self.verify_timestamp,
            window: self.timestamp_window.max(1),
            verify_nonce: self.verify_nonce,
            base_url: self.base_url,
            nonces: Mutex::new(ExpiringMap::new(self.max_nonces)),
        })
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// The signature base string of RFC 5849 section 3.4.1. `params` are decoded name/value pairs
/// (query, form body and `oauth_*` except `oauth_signature` and `realm`).
pub(crate) fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// `scheme://host[:port]/path`, lowercase scheme and host, default port left out (section 3.4.1.2).
fn base_uri(scheme: &str, authority: &str, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host.to_string(),
        _ => authority,
    };
    format!("{scheme}://{authority}{path}")
}

impl OAuth1 {
    fn base_uris(&self, req: &AuthRequest<'_>) -> Vec<String> {
        let path = req.uri.path();
        if let Some(base) = &self.base_url {
            let authority = match base.port() {
                Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
                None => base.host_str().unwrap_or_default().to_string(),
            };
            let prefix = base.path().trim_end_matches('/');
            return vec![base_uri(
                base.scheme(),
                &authority,
                &format!("{prefix}{path}"),
            )];
        }
        let Some(authority) = req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| single_header(req.headers, "host"))
        else {
            return Vec::new();
        };
        let schemes: Vec<&str> = match (
            req.uri.scheme_str(),
            single_header(req.headers, "x-forwarded-proto"),
        ) {
            (Some(s), _) => vec![s],
            (None, Some(p))
                if p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https") =>
            {
                vec![p]
            }
            _ => vec!["https", "http"],
        };
        schemes
            .into_iter()
            .map(|s| base_uri(s, authority, path))
            .collect()
    }

    fn check(&self, req: &AuthRequest<'_>, now: u64) -> Result<(), &'static str> {
        let header =
            authorization_param(req.headers, "OAuth").ok_or("no OAuth Authorization header")?;
        let raw = parse_params(header).ok_or("malformed OAuth parameters")?;
        let mut oauth = Vec::new();
        for (k, v) in &raw {
            let v = percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| "parameter is not UTF-8")?
                .into_owned();
            oauth.push((k.clone(), v));
        }
        let get = |name: &str| {
            oauth
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let consumer_ok = get("oauth_consumer_key")
            .is_some_and(|k| constant_time_eq(self.consumer_key.as_bytes(), k.as_bytes()));
        let expected_method = match self.method {
            SignatureMethod::HmacSha1 => "HMAC-SHA1",
            SignatureMethod::Plaintext => "PLAINTEXT",
        };
        if get("oauth_signature_method") != Some(expected_method) {
            return Err("wrong or missing signature method");
        }
        if get("oauth_version").is_some_and(|v| v != "1.0") {
            return Err("oauth_version is not 1.0");
        }
        let signature = get("oauth_signature").ok_or("no oauth_signature")?;
        let timestamp = get("oauth_timestamp");
        let nonce = get("oauth_nonce");
        let hmac = self.method == SignatureMethod::HmacSha1;
        if self.verify_timestamp && (hmac || timestamp.is_some()) {
            let ts: u64 = timestamp
                .ok_or("no oauth_timestamp")?
                .parse()
                .map_err(|_| "oauth_timestamp is not a number")?;
            if now.abs_diff(ts) > self.window {
                return Err("oauth_timestamp outside the window (stale or replayed)");
            }
        }
        let signature_ok = match self.method {
            SignatureMethod::Plaintext => {
                constant_time_eq(self.signing_key.expose().as_bytes(), signature.as_bytes())
            }
            SignatureMethod::HmacSha1 => {
                let given = STANDARD
                    .decode(signature)
                    .map_err(|_| "oauth_signature is not base64")?;
                let mut params: Vec<(String, String)> = oauth
                    .iter()
                    .filter(|(k, _)| k != "oauth_signature" && k != "realm")
                    .cloned()
                    .collect();
                let query = req.uri.query().unwrap_or("");
                params.extend(
                    form_urlencoded::parse(query.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned())),
                );
                let is_form = single_header(req.headers, "content-type").is_some_and(|ct| {
                    ct.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                });
                if is_form {
                    params.extend(
                        form_urlencoded::parse(req.body)
                            .map(|(k, v)| (k.into_owned(), v.into_owned())),
                    );
                }
                self.base_uris(req).iter().fold(false, |ok, uri| {
                    let base = base_string(req.method.as_str(), uri, &params);
                    let mut m = <Hmac<sha1::Sha1> as hmac::digest::KeyInit>::new_from_slice(
                        self.signing_key.expose().as_bytes(),
                    )
                    .expect("HMAC takes keys of any length");
                    m.update(base.as_bytes());
                    ok | m.verify_slice(&given).is_ok()
                })
            }
        };
        if !(consumer_ok & signature_ok) {
            return Err("wrong consumer key or signature");
        }
        if self.verify_nonce && (hmac || nonce.is_some()) {
            let nonce = nonce.filter(|n| !n.is_empty()).ok_or("no oauth_nonce")?;
            let ts = timestamp.unwrap_or("");
            // Timestamps outside the window are refused above, so a nonce need not be kept longer.
            let instant = Instant::now();
            let expires = instant + Duration::from_secs(2 * self.window + 1);
            let id = key(&[
                nonce.as_bytes(),
                ts.as_bytes(),
                get("oauth_token").unwrap_or("").as_bytes(),
            ]);
            let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
            if nonces.get_mut(&id, instant).is_some() {
                return Err("nonce replayed");
            }
            nonces
                .try_insert(id, (), expires, instant)
                .map_err(|_| "nonce table full; refusing rather than forgetting")?;
        }
        Ok(())
    }
}

#[async_trait]
impl Validator for OAuth1 {
    fn name(&self) -> &'static str {
        "oauth1"
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
    use serde_json::{Value, json};

    #[test]
    fn rfc_5849_base_string_example() {
        // RFC 5849 section 3.4.1.1: the query `b5=%3D%253D&a3=a&c%40=&a2=r%20b`, the form body
        // `c2&a3=2+q`, and the oauth_* parameters of the example request.
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(b"b5=%3D%253D&a3=a&c%40=&a2=r%20b")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        params.extend(
            form_urlencoded::parse(b"c2&a3=2+q").map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
        for (k, v) in [
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
        ] {
            params.push((k.into(), v.into()));
        }
        let got = base_string(
            "POST",
            &base_uri("HTTP", "Example.com:80", "/request"),
            &params,
        );
        assert_eq!(
            got,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        );
        assert_eq!(
            base_uri("https", "www.example.net:8080", "/x"),
            "https://www.example.net:8080/x"
        );
        assert_eq!(
            base_uri("https", "example.net:443", "/"),
            "https://example.net/"
        );
    }

    fn oauth(extra: Value) -> OAuth1 {
        let mut cfg = json!({"consumer_key": "dpf43f3p2l4k3l03", "consumer_secret": "kd94hf93k423kf44", "token_secret": "pfkkdhi9sl3r4s00"});
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<OAuth1Config>(cfg)
            .unwrap()
            .build(&ctx(), "oauth1")
            .unwrap()
    }

    /// A client signing like RFC 5849 section 3.4.2: HMAC-SHA1 over the base string, key
    /// `enc(consumer_secret)&enc(token_secret)`, base64, percent-encoded in the header.
    fn signed(
        uri: &str,
        host: &str,
        scheme: &str,
        body: &str,
        ts: u64,
        nonce: &str,
        secret: &str,
    ) -> Req {
        let mut oauth = vec![
            (
                "oauth_consumer_key".to_string(),
                "dpf43f3p2l4k3l03".to_string(),
            ),
            ("oauth_token".into(), "nnch734d00sl2jdk".into()),
            ("oauth_signature_method".into(), "HMAC-SHA1".into()),
            ("oauth_timestamp".into(), ts.to_string()),
            ("oauth_nonce".into(), nonce.into()),
            ("oauth_version".into(), "1.0".into()),
        ];
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut params = oauth.clone();
        params.extend(
            form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
        params.extend(
            form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
        let base = base_string("POST", &format!("{scheme}://{host}{path}"), &params);
        let mut m =
            Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&pfkkdhi9sl3r4s00").as_bytes())
                .unwrap();
        m.update(base.as_bytes());
        oauth.push((
            "oauth_signature".into(),
            STANDARD.encode(m.finalize().into_bytes()),
        ));
        let header = oauth
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", encode(v)))
            .collect::<Vec<_>>()
            .join(", ");
        Req::post(uri)
            .header("host", host)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                &format!("OAuth realm=\"Photos\", {header}"),
            )
            .body(body)
    }

    #[test]
    fn hmac_sha1_signatures_pass_once() {
        let o = oauth(json!({}));
        let now = unix_now();
        let r = signed(
            "/webhook/hook?size=original&file=vacation%20photo.jpg",
            "hooks.example.com",
            "https",
            "a=1&b=%2B",
            now,
            "n-1",
            "kd94hf93k423kf44",
        );
        assert_eq!(o.check(&r.as_auth(), now), Ok(()));
        assert_eq!(o.check(&r.as_auth(), now), Err("nonce replayed"));
        let http = signed(
            "/webhook/hook",
            "localhost:8080",
            "http",
            "",
            now,
            "n-2",
            "kd94hf93k423kf44",
        );
        assert_eq!(
            o.check(&http.as_auth(), now),
            Ok(()),
            "without base_url, http is tried too"
        );
    }

    #[test]
    fn every_tampering_fails() {
        let o = oauth(json!({}));
        let now = unix_now();
        let sign = |nonce: &str| {
            signed(
                "/webhook/hook?x=1",
                "hooks.example.com",
                "https",
                "a=1",
                now,
                nonce,
                "kd94hf93k423kf44",
            )
        };
        let mut body = sign("t1");
        body.body = b"a=2".to_vec();
        assert!(o.check(&body.as_auth(), now).is_err());
        let mut query = sign("t2");
        query.uri = "/webhook/hook?x=2".parse().unwrap();
        assert!(o.check(&query.as_auth(), now).is_err());
        let mut method = sign("t3");
        method.method = http::Method::PUT;
        assert!(o.check(&method.as_auth(), now).is_err());
        let wrong_secret = signed(
            "/webhook/hook",
            "hooks.example.com",
            "https",
            "",
            now,
            "t4",
            "wrong-secret",
        );
        assert_eq!(
            o.check(&wrong_secret.as_auth(), now),
            Err("wrong consumer key or signature")
        );
        let old = signed(
            "/webhook/hook",
            "hooks.example.com",
            "https",
            "",
            now - 301,
            "t5",
            "kd94hf93k423kf44",
        );
        assert_eq!(
            o.check(&old.as_auth(), now),
            Err("oauth_timestamp outside the window (stale or replayed)")
        );
        let future = signed(
            "/webhook/hook",
            "hooks.example.com",
            "https",
            "",
            now + 301,
            "t6",
            "kd94hf93k423kf44",
        );
        assert!(o.check(&future.as_auth(), now).is_err());
        let mut consumer = sign("t7");
        let h = consumer.headers["authorization"]
            .to_str()
            .unwrap()
            .replace("dpf43f3p2l4k3l03", "dpf43f3p2l4k3l04");
        consumer.headers.insert("authorization", h.parse().unwrap());
        assert!(o.check(&consumer.as_auth(), now).is_err());
        let mut method_name = sign("t8");
        let h = method_name.headers["authorization"]
            .to_str()
            .unwrap()
            .replace("HMAC-SHA1", "PLAINTEXT");
        method_name
            .headers
            .insert("authorization", h.parse().unwrap());
        assert_eq!(
            o.check(&method_name.as_auth(), now),
            Err("wrong or missing signature method")
        );
        assert!(o.check(&Req::post("/webhook/hook").as_auth(), now).is_err());
        // A failed request does not use up its nonce: the real one still passes.
        assert_eq!(o.check(&sign("t1").as_auth(), now), Ok(()));
    }

    #[test]
    fn base_url_and_forwarded_proto_pin_the_signed_url() {
        let now = unix_now();
        let o = oauth(json!({"base_url": "https://public.example.com/prefix"}));
        let r = signed(
            "/webhook/hook",
            "internal:9000",
            "https",
            "",
            now,
            "b1",
            "kd94hf93k423kf44",
        );
        assert!(
            o.check(&r.as_auth(), now).is_err(),
            "signed for the internal host"
        );
        let mut ok = signed(
            "/prefix/webhook/hook",
            "public.example.com",
            "https",
            "",
            now,
            "b2",
            "kd94hf93k423kf44",
        );
        ok.uri = "/webhook/hook".parse().unwrap();
        assert_eq!(o.check(&ok.as_auth(), now), Ok(()));
        let o = oauth(json!({}));
        let http = signed(
            "/webhook/hook",
            "hooks.example.com",
            "http",
            "",
            now,
            "b3",
            "kd94hf93k423kf44",
        )
        .header("x-forwarded-proto", "https");
        assert!(
            o.check(&http.as_auth(), now).is_err(),
            "the proxy says https, the sender signed http"
        );
    }

    #[test]
    fn plaintext_compares_the_key() {
        let o = oauth(json!({"signature_method": "PLAINTEXT"}));
        let now = unix_now();
        let req = |sig: &str, extra: &str| {
            Req::post("/webhook/hook").header(
                "authorization",
                &format!("OAuth oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_signature_method=\"PLAINTEXT\", oauth_signature=\"{sig}\"{extra}"),
            )
        };
        assert_eq!(
            o.check(
                &req("kd94hf93k423kf44%26pfkkdhi9sl3r4s00", "").as_auth(),
                now
            ),
            Ok(())
        );
        assert!(
            o.check(&req("kd94hf93k423kf44%26wrong", "").as_auth(), now)
                .is_err()
        );
        let with_nonce = format!(", oauth_timestamp=\"{now}\", oauth_nonce=\"p1\"");
        assert_eq!(
            o.check(
                &req("kd94hf93k423kf44%26pfkkdhi9sl3r4s00", &with_nonce).as_auth(),
                now
            ),
            Ok(())
        );
        assert_eq!(
            o.check(
                &req("kd94hf93k423kf44%26pfkkdhi9sl3r4s00", &with_nonce).as_auth(),
                now
            ),
            Err("nonce replayed")
        );
    }

    #[test]
    fn a_full_nonce_table_refuses_instead_of_forgetting() {
        let o = oauth(json!({"max_nonces": 1}));
        let now = unix_now();
        let r1 = signed(
            "/webhook/hook",
            "h.example",
            "https",
            "",
            now,
            "f1",
            "kd94hf93k423kf44",
        );
        let r2 = signed(
            "/webhook/hook",
            "h.example",
            "https",
            "",
            now,
            "f2",
            "kd94hf93k423kf44",
        );
        assert_eq!(o.check(&r1.as_auth(), now), Ok(()));
        assert!(o.check(&r2.as_auth(), now).is_err());
        assert_eq!(o.check(&r1.as_auth(), now), Err("nonce replayed"));
    }

    #[tokio::test]
    async fn failures_are_401_without_hints() {
        let v = validator::<OAuth1Config>(
            "oauth1",
            json!({"consumer_key": "k", "consumer_secret": "s"}),
        );
        let e = assert_unauthorized(v.validate(&Req::post("/").as_auth()).await);
        assert_eq!(e.detail(), DETAIL);
        let e = config_errors::<OAuth1Config>(
            "oauth1",
            json!({"consumer_key": "k", "consumer_secret": "s", "signature_method": "RSA-SHA1"}),
        );
        assert_eq!(e[0].path, "hook.oauth1.signature_method");
        // A huge window would overflow the clock arithmetic of nonce expiry.
        let e = config_errors::<OAuth1Config>(
            "oauth1",
            json!({"consumer_key": "k", "consumer_secret": "s", "timestamp_window": u64::MAX}),
        );
        assert_eq!(e[0].path, "hook.oauth1.timestamp_window");
    }
}
