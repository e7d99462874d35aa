//! `digest_auth`: HTTP Digest authentication (RFC 7616) with nonces this server issues.
//!
//! A request without valid credentials gets 401 with `WWW-Authenticate: Digest realm=…,
//! qop=…, algorithm=…, nonce=…` (and `stale=true` when the credentials were right but the nonce
//! was not). A nonce is `base64url(issued_at ‖ random ‖ HMAC-SHA256(process key, both))`, so it
//! cannot be forged, expires after `nonce_ttl_seconds` (default 300), and needs no memory until
//! it is used. Each used nonce remembers the nonce counts (`nc`) seen, in a 64-wide window, so a
//! captured request cannot be replayed; at most `max_nonces` (default 10,000) nonces are
//! tracked, and when all are live a new one is refused (the client is re-challenged) rather than
//! forgetting one that could then be replayed. Nonces do not survive a restart: clients get
//! `stale=true` and retry transparently.
//!
//! `algorithm`: `MD5` (default, as the original), `SHA-256`, `MD5-sess`, `SHA-256-sess`;
//! `qop`: `auth` (default) or `auth-int` (the body is part of the digest). The `uri` parameter
//! must be the request target. `userhash` and `username*` are not supported.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use md5::Md5;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::replay::{ExpiringMap, key};
use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, Validator, authorization_param, unix_now,
};
use crate::config::ConfigError;
use crate::secret::{Secret, constant_time_eq};

const DETAIL: &str = "missing or invalid Digest credentials";

/// `"digest_auth": {"username": …, "password": …, "realm": "Webhook API", "algorithm": "MD5", "qop": "auth"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestAuthConfig {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret<String>,
    /// The protection space (default `Webhook API`).
    #[serde(default = "default_realm")]
    pub realm: String,
    /// `MD5` (default), `SHA-256`, `MD5-sess` or `SHA-256-sess`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// `auth` (default) or `auth-int`.
    #[serde(default = "default_qop")]
    pub qop: String,
    /// How long an issued nonce is good for, in seconds (wcon addition; default 300).
    #[serde(default = "default_nonce_ttl_seconds")]
    pub nonce_ttl_seconds: u64,
    /// How many used nonces are tracked at once (wcon addition; default 10,000).
    #[serde(default = "default_max_nonces")]
    pub max_nonces: usize,
}

fn default_realm() -> String {
    "Webhook API".into()
}
fn default_algorithm() -> String {
    "MD5".into()
}
fn default_qop() -> String {
    "auth".into()
}
fn default_nonce_ttl_seconds() -> u64 {
    300
}
fn default_max_nonces() -> usize {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Md5,
    Sha256,
}

impl Hash {
    fn hex(self, parts: &[&[u8]]) -> String {
        let joined = parts.join(&b':');
        match self {
            Self::Md5 => hex::encode(Md5::digest(&joined)),
            Self::Sha256 => hex::encode(Sha256::digest(&joined)),
        }
    }
}

/// Nonce counts seen for one nonce: the highest, and a bitmap of the 64 below it.
#[derive(Debug, Default)]
struct NcWindow {
    max: u32,
    seen: u64,
}

impl NcWindow {
    fn accept(&mut self, nc: u32) -> bool {
        if nc == 0 {
            return false;
        }
        if nc > self.max {
            let shift = nc - self.max;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.max = nc;
            return true;
        }
        let offset = self.max - nc;
        if offset >= 64 || self.seen & (1 << offset) != 0 {
            return false;
        }
        self.seen |= 1 << offset;
        true
    }
}

/// The configured `digest_auth` check.
pub struct DigestAuth {
    username: String,
    password: Secret<String>,
    realm: String,
    algorithm_name: &'static str,
    hash: Hash,
    sess: bool,
    qop: &'static str,
    nonce_ttl: Duration,
    server_key: Secret<[u8; 32]>,
    used: Mutex<ExpiringMap<NcWindow>>,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm_name)
            .field("qop", &self.qop)
            .field("nonce_ttl", &self.nonce_ttl)
            .finish_non_exhaustive()
    }
}

impl MethodConfig for DigestAuthConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        Ok(Box::new(self.build(ctx, key)?))
    }
}

impl DigestAuthConfig {
    fn build(self, ctx: &BuildContext<'_>, key: &str) -> Result<DigestAuth, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let (algorithm_name, hash, sess) = match self.algorithm.to_ascii_uppercase().as_str() {
            "MD5" => ("MD5", Hash::Md5, false),
            "MD5-SESS" => ("MD5-sess", Hash::Md5, true),
            "SHA-256" => ("SHA-256", Hash::Sha256, false),
            "SHA-256-SESS" => ("SHA-256-sess", Hash::Sha256, true),
            other => {
                errors.push(ctx.error(
                    key,
                    "algorithm",
                    format!(
                        "unknown algorithm `{other}`; use MD5, SHA-256, MD5-sess or SHA-256-sess"
                    ),
                ));
                ("MD5", Hash::Md5, false)
            }
        };
        let qop = match self.qop.as_str() {
            "auth" => "auth",
            "auth-int" => "auth-int",
            other => {
                errors.push(ctx.error(
                    key,
                    "qop",
                    format!("unknown qop `{other}`; use `auth` or `auth-int`"),
                ));
                "auth"
            }
        };
        let quotable = |s: &str| {
            !s.is_empty() && !s.contains(['"', '\\']) && s.chars().all(|c| !c.is_control())
        };
        if !quotable(&self.username) || self.username.contains(':') {
            errors.push(ctx.error(
                key,
                "username",
                "must be non-empty text without `\"`, `\\` or `:`",
            ));
        }
        if self.password.expose().is_empty() {
            errors.push(ctx.error(key, "password", "must not be empty"));
        }
        if !quotable(&self.realm) {
            errors.push(ctx.error(key, "realm", "must be non-empty text without `\"` or `\\`"));
        }
        ctx.check_range(
            &mut errors,
            key,
            "nonce_ttl_seconds",
            self.nonce_ttl_seconds,
            1,
            86_400,
        );
        if self.max_nonces == 0 {
            errors.push(ctx.error(key, "max_nonces", "must be greater than 0"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(DigestAuth {
            username: self.username,
            password: self.password,
            realm: self.realm,
            algorithm_name,
            hash,
            sess,
            qop,
            nonce_ttl: Duration::from_secs(self.nonce_ttl_seconds),
            server_key: Secret::new(rand::random()),
            used: Mutex::new(ExpiringMap::new(self.max_nonces)),
        })
    }
}

/// Why a request failed, and whether its credentials were right (then the challenge says `stale`).
struct Failure {
    reason: &'static str,
    stale: bool,
}

fn fail(reason: &'static str) -> Failure {
    Failure {
        reason,
        stale: false,
    }
}

impl DigestAuth {
    fn nonce_mac(&self, issued_and_random: &[u8]) -> [u8; 16] {
        let mut m =
            <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(self.server_key.expose())
                .expect("HMAC takes 32-byte keys");
        m.update(issued_and_random);
        let full = m.finalize().into_bytes();
        full[..16].try_into().expect("a SHA-256 MAC has 32 bytes")
    }

    fn issue_nonce(&self, now: u64) -> String {
        let mut raw = [0u8; 40];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..24].copy_from_slice(&rand::random::<[u8; 16]>());
        let mac = self.nonce_mac(&raw[..24]);
        raw[24..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The nonce's issue time, when this process issued it.
    fn nonce_issued_at(&self, nonce: &str) -> Option<u64> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != 40 || !constant_time_eq(&self.nonce_mac(&raw[..24]), &raw[24..]) {
            return None;
        }
        Some(u64::from_be_bytes(raw[..8].try_into().ok()?))
    }

    fn challenge(&self, stale: bool, now: u64) -> HeaderValue {
        let mut v = format!(
            "Digest realm=\"{}\", qop=\"{}\", algorithm={}, nonce=\"{}\"",
            self.realm,
            self.qop,
            self.algorithm_name,
            self.issue_nonce(now)
        );
        if stale {
            v.push_str(", stale=true");
        }
        HeaderValue::from_str(&v).expect("realm was checked to be header text at load")
    }

    fn expected_response(
        &self,
        p: &HashMap<String, String>,
        method: &str,
        body: &[u8],
    ) -> Option<String> {
        let (nonce, cnonce, nc, uri) = (
            p.get("nonce")?,
            p.get("cnonce")?,
            p.get("nc")?,
            p.get("uri")?,
        );
        let h = self.hash;
        let mut ha1 = h.hex(&[
            self.username.as_bytes(),
            self.realm.as_bytes(),
            self.password.expose().as_bytes(),
        ]);
        if self.sess {
            ha1 = h.hex(&[ha1.as_bytes(), nonce.as_bytes(), cnonce.as_bytes()]);
        }
        let ha2 = if self.qop == "auth-int" {
            h.hex(&[method.as_bytes(), uri.as_bytes(), h.hex(&[body]).as_bytes()])
        } else {
            h.hex(&[method.as_bytes(), uri.as_bytes()])
        };
        Some(h.hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            self.qop.as_bytes(),
            ha2.as_bytes(),
        ]))
    }

    fn check(&self, req: &AuthRequest<'_>, now: u64) -> Result<(), Failure> {
        let header = authorization_param(req.headers, "Digest")
            .ok_or(fail("no Digest Authorization header"))?;
        let p = parse_params(header).ok_or(fail("malformed Digest parameters"))?;
        let username_ok = p
            .get("username")
            .is_some_and(|u| constant_time_eq(self.username.as_bytes(), u.as_bytes()));
        if p.contains_key("username*")
            || p.get("userhash")
                .is_some_and(|u| u.eq_ignore_ascii_case("true"))
        {
            return Err(fail("username* and userhash are not supported"));
        }
        if p.get("realm") != Some(&self.realm) {
            return Err(fail("wrong realm"));
        }
        let algorithm = p.get("algorithm").map(String::as_str).unwrap_or("MD5");
        if !algorithm.eq_ignore_ascii_case(self.algorithm_name) {
            return Err(fail("wrong algorithm"));
        }
        if p.get("qop").map(String::as_str) != Some(self.qop) {
            return Err(fail("wrong or missing qop"));
        }
        let nc = p
            .get("nc")
            .filter(|nc| nc.len() == 8)
            .and_then(|nc| u32::from_str_radix(nc, 16).ok())
            .ok_or(fail("bad nc"))?;
        if p.get("cnonce").is_none_or(|c| c.is_empty()) {
            return Err(fail("missing cnonce"));
        }
        let target = req
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        if p.get("uri")
            .is_none_or(|u| u != target && *u != req.uri.to_string())
        {
            return Err(fail("uri does not match the request"));
        }
        let expected = self
            .expected_response(&p, req.method.as_str(), req.body)
            .ok_or(fail("missing parameters"))?;
        let response = p
            .get("response")
            .map(|r| r.to_ascii_lowercase())
            .unwrap_or_default();
        // `&` rather than `&&`: the response is compared even when the user name is wrong.
        if !(username_ok & constant_time_eq(expected.as_bytes(), response.as_bytes())) {
            return Err(fail("wrong user name or password"));
        }
        // The credentials are right from here on: a nonce problem only asks for a retry.
        let stale = |reason| Failure {
            reason,
            stale: true,
        };
        let nonce = &p["nonce"];
        let issued = self
            .nonce_issued_at(nonce)
            .ok_or(stale("nonce not issued by this process"))?;
        let age = now
            .checked_sub(issued)
            .ok_or(stale("nonce from the future"))?;
        if age > self.nonce_ttl.as_secs() {
            return Err(stale("nonce expired"));
        }
        let instant = Instant::now();
        let expires = instant + (self.nonce_ttl - Duration::from_secs(age));
        let id = key(&[nonce.as_bytes()]);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        match used.get_mut(&id, instant) {
            Some(window) => {
                if window.accept(nc) {
                    Ok(())
                } else {
                    Err(stale("nonce count replayed"))
                }
            }
            None => {
                let mut window = NcWindow::default();
                window.accept(nc);
                used.try_insert(id, window, expires, instant)
                    .map_err(|_| stale("too many live nonces; re-challenged"))
            }
        }
    }
}

/// `k=v, k="quoted \"v\"", …` into a map with lowercase keys; `None` on a syntax error or a
/// repeated key.
pub(crate) fn parse_params(s: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| *c == ' ' || *c == ',' || *c == '\t')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return None;
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if out.insert(name, value).is_some() {
            return None;
        }
    }
}

#[async_trait]
impl Validator for DigestAuth {
    fn name(&self) -> &'static str {
        "digest_auth"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let now = unix_now();
        self.check(req, now).map_err(|f| {
            AuthError::unauthorized(DETAIL)
                .with_reason(f.reason)
                .with_header(http::header::WWW_AUTHENTICATE, self.challenge(f.stale, now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::{Value, json};

    fn digest(extra: Value) -> DigestAuth {
        let mut cfg = json!({"username": "Mufasa", "password": "Circle of Life"});
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<DigestAuthConfig>(cfg)
            .unwrap()
            .build(&ctx(), "digest_auth")
            .unwrap()
    }

    fn h(alg: &str, s: &str) -> String {
        if alg.starts_with("SHA-256") {
            hex::encode(Sha256::digest(s))
        } else {
            hex::encode(Md5::digest(s))
        }
    }

    /// What a client computes (RFC 7616 section 3.4.1), written out independently of the server.
    #[allow(clippy::too_many_arguments)]
    fn response(
        alg: &str,
        user: &str,
        realm: &str,
        pass: &str,
        method: &str,
        uri: &str,
        nonce: &str,
        nc: &str,
        cnonce: &str,
        qop: &str,
        body: &str,
    ) -> String {
        let mut ha1 = h(alg, &format!("{user}:{realm}:{pass}"));
        if alg.ends_with("-sess") {
            ha1 = h(alg, &format!("{ha1}:{nonce}:{cnonce}"));
        }
        let ha2 = if qop == "auth-int" {
            h(alg, &format!("{method}:{uri}:{}", h(alg, body)))
        } else {
            h(alg, &format!("{method}:{uri}"))
        };
        h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
    }

    #[test]
    fn rfc_7616_example() {
        // RFC 7616 section 3.9.1.
        let args = (
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "auth",
        );
        let r = |alg| {
            response(
                alg, args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7, args.8, "",
            )
        };
        assert_eq!(r("MD5"), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            r("SHA-256"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // The server's own computation agrees.
        let d = digest(json!({"realm": "http-auth@example.org", "algorithm": "SHA-256"}));
        let p: HashMap<String, String> = [
            ("nonce", args.5),
            ("nc", args.6),
            ("cnonce", args.7),
            ("uri", args.4),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(d.expected_response(&p, "GET", b"").unwrap(), r("SHA-256"));
    }

    fn nonce_of(e: &AuthError) -> (String, bool) {
        let v = e.headers()[0].1.to_str().unwrap();
        let p = parse_params(v.strip_prefix("Digest ").unwrap()).unwrap();
        (
            p["nonce"].clone(),
            p.get("stale").is_some_and(|s| s == "true"),
        )
    }

    struct Client {
        alg: &'static str,
        qop: &'static str,
        pass: &'static str,
        uri: &'static str,
    }

    impl Default for Client {
        fn default() -> Self {
            Self {
                alg: "MD5",
                qop: "auth",
                pass: "Circle of Life",
                uri: "/webhook/hook?x=1",
            }
        }
    }

    impl Client {
        fn request(&self, nonce: &str, nc: u32, body: &str) -> Req {
            let nc = format!("{nc:08x}");
            let r = response(
                self.alg,
                "Mufasa",
                "Webhook API",
                self.pass,
                "POST",
                self.uri,
                nonce,
                &nc,
                "0a4f113b",
                self.qop,
                body,
            );
            let header = format!(
                "Digest username=\"Mufasa\", realm=\"Webhook API\", nonce=\"{nonce}\", uri=\"{}\", algorithm={}, qop={}, nc={nc}, cnonce=\"0a4f113b\", response=\"{r}\"",
                self.uri, self.alg, self.qop
            );
            Req::post("/webhook/hook?x=1")
                .header("authorization", &header)
                .body(body)
        }
    }

    async fn challenge(d: &DigestAuth) -> String {
        let e = assert_unauthorized(d.validate(&Req::post("/webhook/hook?x=1").as_auth()).await);
        let v = e.headers()[0].1.to_str().unwrap().to_string();
        assert!(v.starts_with("Digest realm=\"Webhook API\", qop=\""), "{v}");
        let (nonce, stale) = nonce_of(&e);
        assert!(!stale);
        nonce
    }

    #[tokio::test]
    async fn the_challenge_round_trip_passes_once_per_nonce_count() {
        let d = digest(json!({}));
        let nonce = challenge(&d).await;
        let c = Client::default();
        assert!(
            d.validate(&c.request(&nonce, 1, "{}").as_auth())
                .await
                .is_ok()
        );
        let e = assert_unauthorized(d.validate(&c.request(&nonce, 1, "{}").as_auth()).await);
        assert_eq!(e.reason(), "nonce count replayed");
        assert!(
            nonce_of(&e).1,
            "a replay of right credentials is answered stale=true with a fresh nonce"
        );
        assert_ne!(nonce_of(&e).0, nonce);
        assert!(
            d.validate(&c.request(&nonce, 3, "{}").as_auth())
                .await
                .is_ok()
        );
        assert!(
            d.validate(&c.request(&nonce, 2, "{}").as_auth())
                .await
                .is_ok(),
            "out of order within the window"
        );
        assert_unauthorized(d.validate(&c.request(&nonce, 2, "{}").as_auth()).await);
        assert_unauthorized(d.validate(&c.request(&nonce, 0, "{}").as_auth()).await);
        assert!(
            d.validate(&c.request(&nonce, 200, "{}").as_auth())
                .await
                .is_ok()
        );
        assert_unauthorized(d.validate(&c.request(&nonce, 100, "{}").as_auth()).await); // fell out of the window
    }

    #[tokio::test]
    async fn wrong_credentials_and_forged_nonces_are_refused() {
        let d = digest(json!({}));
        let nonce = challenge(&d).await;
        let e = assert_unauthorized(
            d.validate(
                &Client {
                    pass: "Circle of Lies",
                    ..Client::default()
                }
                .request(&nonce, 1, "")
                .as_auth(),
            )
            .await,
        );
        assert!(!nonce_of(&e).1, "wrong credentials are never stale");
        assert_unauthorized(
            d.validate(
                &Client {
                    uri: "/webhook/other",
                    ..Client::default()
                }
                .request(&nonce, 1, "")
                .as_auth(),
            )
            .await,
        );
        assert_unauthorized(
            d.validate(
                &Client {
                    alg: "SHA-256",
                    ..Client::default()
                }
                .request(&nonce, 1, "")
                .as_auth(),
            )
            .await,
        );
        // A nonce this server did not issue (or issued by a previous process): re-challenged.
        let forged = URL_SAFE_NO_PAD.encode([7u8; 40]);
        let e = assert_unauthorized(
            d.validate(&Client::default().request(&forged, 1, "").as_auth())
                .await,
        );
        assert_eq!(e.reason(), "nonce not issued by this process");
        let other = digest(json!({}));
        let theirs = challenge(&other).await;
        assert_unauthorized(
            d.validate(&Client::default().request(&theirs, 1, "").as_auth())
                .await,
        );
        let basic = Req::post("/webhook/hook?x=1")
            .header("authorization", "Basic TXVmYXNhOkNpcmNsZSBvZiBMaWZl");
        assert_unauthorized(d.validate(&basic.as_auth()).await);
    }

    #[tokio::test]
    async fn an_expired_nonce_is_stale() {
        let d = digest(json!({"nonce_ttl_seconds": 60}));
        let now = unix_now();
        let nonce = d.issue_nonce(now - 61);
        let r = Client::default().request(&nonce, 1, "");
        let f = d.check(&r.as_auth(), now).err().unwrap();
        assert_eq!((f.reason, f.stale), ("nonce expired", true));
        let fresh = d.issue_nonce(now - 59);
        assert!(
            d.check(&Client::default().request(&fresh, 1, "").as_auth(), now)
                .is_ok()
        );
        let future = d.issue_nonce(now + 5);
        assert!(
            d.check(&Client::default().request(&future, 1, "").as_auth(), now)
                .is_err()
        );
    }

    #[tokio::test]
    async fn sha256_sess_and_auth_int() {
        let d = digest(json!({"algorithm": "SHA-256", "qop": "auth-int"}));
        let nonce = challenge(&d).await;
        let c = Client {
            alg: "SHA-256",
            qop: "auth-int",
            ..Client::default()
        };
        assert!(
            d.validate(&c.request(&nonce, 1, "{\"a\":1}").as_auth())
                .await
                .is_ok()
        );
        let mut tampered = c.request(&nonce, 2, "{\"a\":1}");
        tampered.body = b"{\"a\":2}".to_vec();
        assert_unauthorized(d.validate(&tampered.as_auth()).await);
        let d = digest(json!({"algorithm": "MD5-sess"}));
        let nonce = challenge(&d).await;
        assert!(
            d.validate(
                &Client {
                    alg: "MD5-sess",
                    ..Client::default()
                }
                .request(&nonce, 1, "")
                .as_auth()
            )
            .await
            .is_ok()
        );
    }

    #[tokio::test]
    async fn a_full_nonce_table_refuses_new_nonces_but_keeps_old_ones() {
        let d = digest(json!({"max_nonces": 1}));
        let (n1, n2) = (challenge(&d).await, challenge(&d).await);
        let c = Client::default();
        assert!(d.validate(&c.request(&n1, 1, "").as_auth()).await.is_ok());
        let e = assert_unauthorized(d.validate(&c.request(&n2, 1, "").as_auth()).await);
        assert!(nonce_of(&e).1);
        assert_unauthorized(d.validate(&c.request(&n1, 1, "").as_auth()).await);
        assert!(d.validate(&c.request(&n1, 2, "").as_auth()).await.is_ok());
    }

    #[test]
    fn parameters_parse_like_rfc_7616_says() {
        let p =
            parse_params(r#"username="Mu\"fasa", realm="a, b", nc=00000001 , qop=auth"#).unwrap();
        assert_eq!(
            (
                p["username"].as_str(),
                p["realm"].as_str(),
                p["nc"].as_str(),
                p["qop"].as_str()
            ),
            ("Mu\"fasa", "a, b", "00000001", "auth")
        );
        assert!(parse_params(r#"a="unterminated"#).is_none());
        assert!(parse_params("a=1, a=2").is_none());
        assert!(parse_params("=1").is_none());
    }

    #[test]
    fn bad_config_is_reported() {
        let e = config_errors::<DigestAuthConfig>(
            "digest_auth",
            json!({"username": "u", "password": "p", "algorithm": "SHA-1", "qop": "x"}),
        );
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["hook.digest_auth.algorithm", "hook.digest_auth.qop"]
        );
        let e = config_errors::<DigestAuthConfig>(
            "digest_auth",
            json!({"username": "u", "password": "p", "nonce_ttl_seconds": 0}),
        );
        assert_eq!(e[0].path, "hook.digest_auth.nonce_ttl_seconds");
    }
}
