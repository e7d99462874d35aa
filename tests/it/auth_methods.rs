//! Every sender authentication method through the real receiver: a request signed the way a
//! real client signs passes; each way to get it wrong is refused with 401 (403 for addresses)
//! and nothing is stored. Local servers stand in for reCAPTCHA and OAuth2 introspection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::post as route_post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use md5::Digest as _;
use serde_json::{Value, json};

use crate::support::*;

const BODY: &[u8] = br#"{"event":"ping"}"#;

/// A local JSON endpoint answering `answer`; returns its URL and a call counter.
async fn json_endpoint(answer: Value) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/",
        route_post(move |form: String| {
            let counter = counter.clone();
            let answer = answer.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let ok = form.contains("good-token");
                let mut answer = answer;
                if !ok {
                    answer = json!({"active": false, "success": false});
                }
                axum::Json(answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

fn with_auth(id: &str, key: &str, value: Value) -> Value {
    let mut entry = relay(id, "c", json!({}))[id].clone();
    entry[key] = value;
    entry
}

async fn status(client: &reqwest::Client, url: String, headers: &[(&str, String)]) -> u16 {
    post(client, &url, BODY.to_vec(), headers).await.0
}

fn md5_hex(s: &str) -> String {
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

fn pct(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// An OAuth 1.0a HMAC-SHA1 `Authorization` header for POST `url` (RFC 5849 §3.4).
fn oauth1_header(url: &str, nonce: &str, timestamp: i64, consumer_secret: &str) -> String {
    let mut params = [
        ("oauth_consumer_key", "ck-1".to_string()),
        ("oauth_nonce", nonce.to_string()),
        ("oauth_signature_method", "HMAC-SHA1".to_string()),
        ("oauth_timestamp", timestamp.to_string()),
        ("oauth_version", "1.0".to_string()),
    ];
    params.sort();
    let normalized: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    let base = format!("POST&{}&{}", pct(url), pct(&normalized.join("&")));
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(format!("{}&", pct(consumer_secret)).as_bytes())
            .unwrap();
    mac.update(base.as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    let mut fields: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", pct(v)))
        .collect();
    fields.push(format!("oauth_signature=\"{}\"", pct(&signature)));
    format!("OAuth {}", fields.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_admits_the_right_sender_and_refuses_the_rest() {
    let (recaptcha_url, _) =
        json_endpoint(json!({"success": true, "score": 0.9, "action": "submit"})).await;
    let (introspect_url, introspections) =
        json_endpoint(json!({"active": true, "scope": "webhooks:write other"})).await;
    let jwt_secret = "jwt-secret-0123456789abcdef0123456789";
    let mut webhooks = json!({});
    webhooks["authz"] = with_auth("authz", "authorization", json!("Bearer tok-0123456789"));
    webhooks["basic"] = with_auth(
        "basic",
        "basic_auth",
        json!({"username": "hook", "password": "pa:ss-word"}),
    );
    webhooks["jwt"] = with_auth(
        "jwt",
        "jwt",
        json!({"secret": jwt_secret, "algorithm": "HS256", "issuer": "billing", "audience": "wcon"}),
    );
    webhooks["shopify"] = with_auth(
        "shopify",
        "hmac",
        json!({"secret": "shpss_0123456789", "format": "shopify"}),
    );
    webhooks["ips"] = with_auth("ips", "ip_whitelist", json!(["10.0.0.0/8"]));
    webhooks["proxied"] = with_auth("proxied", "ip_whitelist", json!(["10.0.0.0/8"]));
    webhooks["proxied"]["trusted_proxies"] = json!(["127.0.0.0/8"]);
    webhooks["captcha"] = with_auth(
        "captcha",
        "recaptcha",
        json!({"secret_key": "captcha-secret", "version": "v3", "min_score": 0.5, "verify_url": recaptcha_url}),
    );
    webhooks["digest"] = with_auth(
        "digest",
        "digest_auth",
        json!({"username": "hook", "password": "digest-pass", "realm": "Webhook API"}),
    );
    webhooks["oauth1"] = with_auth(
        "oauth1",
        "oauth1",
        json!({"consumer_key": "ck-1", "consumer_secret": "cs-secret"}),
    );
    webhooks["oauth2"] = with_auth(
        "oauth2",
        "oauth2",
        json!({"introspection_endpoint": introspect_url, "client_id": "wcon", "client_secret": "cs", "required_scope": ["webhooks:write"]}),
    );
    webhooks["query"] = with_auth(
        "query",
        "query_auth",
        json!({"parameter_name": "api_key", "api_key": "qk-0123456789"}),
    );
    webhooks["header"] = with_auth(
        "header",
        "header_auth",
        json!({"header_name": "X-API-Key", "api_key": "hk-0123456789"}),
    );
    let serve = Wcon::serve(&webhooks, temp_dir().path(), &[]);
    let client = reqwest::Client::new();
    let url = |id: &str| serve.url(&format!("/webhook/{id}"));
    let mut accepted = 0;

    // authorization
    assert_eq!(
        status(
            &client,
            url("authz"),
            &[("authorization", "Bearer tok-0123456789".into())]
        )
        .await,
        200
    );
    accepted += 1;
    for bad in ["Bearer tok-0123456788", "tok-0123456789", ""] {
        assert_eq!(
            status(&client, url("authz"), &[("authorization", bad.into())]).await,
            401,
            "{bad}"
        );
    }
    assert_eq!(status(&client, url("authz"), &[]).await, 401);

    // basic_auth: RFC 7617, strict base64, a colon inside the password
    let basic = |u: &str, p: &str| format!("Basic {}", B64.encode(format!("{u}:{p}")));
    assert_eq!(
        status(
            &client,
            url("basic"),
            &[("authorization", basic("hook", "pa:ss-word"))]
        )
        .await,
        200
    );
    accepted += 1;
    for bad in [
        basic("hook", "pa:ss-worD"),
        basic("Hook", "pa:ss-word"),
        "Basic aG9vaw=!=".into(),
        "Bearer x".into(),
    ] {
        assert_eq!(
            status(&client, url("basic"), &[("authorization", bad.clone())]).await,
            401,
            "{bad}"
        );
    }

    // jwt: HS256 with issuer and audience; expired, wrong issuer, `none` and a wrong key refused
    let now = chrono::Utc::now().timestamp();
    let token = |claims: Value, key: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let good = token(
        json!({"iss": "billing", "aud": "wcon", "exp": now + 300}),
        jwt_secret,
    );
    assert_eq!(
        status(
            &client,
            url("jwt"),
            &[("authorization", format!("Bearer {good}"))]
        )
        .await,
        200
    );
    accepted += 1;
    let unsigned = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#)
            .trim_end_matches('='),
        B64.encode(r#"{"iss":"billing","aud":"wcon"}"#)
            .trim_end_matches('=')
    );
    for bad in [
        token(
            json!({"iss": "billing", "aud": "wcon", "exp": now - 3600}),
            jwt_secret,
        ),
        token(
            json!({"iss": "other", "aud": "wcon", "exp": now + 300}),
            jwt_secret,
        ),
        token(
            json!({"iss": "billing", "aud": "wcon", "exp": now + 300}),
            "another-secret-0123456789abcdef01",
        ),
        unsigned,
    ] {
        assert_eq!(
            status(
                &client,
                url("jwt"),
                &[("authorization", format!("Bearer {bad}"))]
            )
            .await,
            401,
            "{bad}"
        );
    }

    // hmac, Shopify's form: base64 HMAC-SHA256 of the raw body
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"shpss_0123456789").unwrap();
    mac.update(BODY);
    let shopify = B64.encode(mac.finalize().into_bytes());
    assert_eq!(
        status(
            &client,
            url("shopify"),
            &[("x-shopify-hmac-sha256", shopify.clone())]
        )
        .await,
        200
    );
    accepted += 1;
    assert_eq!(
        status(
            &client,
            url("shopify"),
            &[(
                "x-shopify-hmac-sha256",
                shopify.replace('A', "B").replace('a', "b")
            )]
        )
        .await,
        401
    );
    assert_eq!(status(&client, url("shopify"), &[]).await, 401);

    // ip_whitelist with CIDR: 127.0.0.1 is outside 10/8; X-Forwarded-For is believed only from a trusted proxy
    assert_eq!(status(&client, url("ips"), &[]).await, 403);
    assert_eq!(
        status(
            &client,
            url("ips"),
            &[("x-forwarded-for", "10.1.2.3".into())]
        )
        .await,
        403,
        "spoofed from an untrusted peer"
    );
    assert_eq!(
        status(
            &client,
            url("proxied"),
            &[("x-forwarded-for", "10.1.2.3".into())]
        )
        .await,
        200
    );
    accepted += 1;
    assert_eq!(
        status(
            &client,
            url("proxied"),
            &[("x-forwarded-for", "11.0.0.1".into())]
        )
        .await,
        403
    );

    // recaptcha v3 against a local siteverify
    assert_eq!(
        status(
            &client,
            url("captcha"),
            &[("x-recaptcha-token", "good-token".into())]
        )
        .await,
        200
    );
    accepted += 1;
    assert_eq!(
        status(
            &client,
            url("captcha"),
            &[("x-recaptcha-token", "bad".into())]
        )
        .await,
        401
    );
    assert_eq!(status(&client, url("captcha"), &[]).await, 401);

    // digest_auth (RFC 7616): challenge, answer, and a replayed nonce count refused
    let challenge = client
        .post(url("digest"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let digest = |nc: &str, pass: &str| {
        let ha1 = md5_hex(&format!("hook:Webhook API:{pass}"));
        let ha2 = md5_hex("POST:/webhook/digest");
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
        format!(
            "Digest username=\"hook\", realm=\"Webhook API\", nonce=\"{nonce}\", uri=\"/webhook/digest\", qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
        )
    };
    assert_eq!(
        status(
            &client,
            url("digest"),
            &[("authorization", digest("00000001", "digest-pass"))]
        )
        .await,
        200,
        "{www}"
    );
    accepted += 1;
    assert_eq!(
        status(
            &client,
            url("digest"),
            &[("authorization", digest("00000001", "digest-pass"))]
        )
        .await,
        401,
        "replayed nc"
    );
    assert_eq!(
        status(
            &client,
            url("digest"),
            &[("authorization", digest("00000002", "wrong"))]
        )
        .await,
        401
    );

    // oauth1 HMAC-SHA1: good, replayed nonce, stale timestamp, wrong secret
    let oauth_url = url("oauth1");
    assert_eq!(
        status(
            &client,
            oauth_url.clone(),
            &[(
                "authorization",
                oauth1_header(&oauth_url, "n-1", now, "cs-secret")
            )]
        )
        .await,
        200
    );
    accepted += 1;
    for (nonce, ts, secret) in [
        ("n-1", now, "cs-secret"),
        ("n-2", now - 3600, "cs-secret"),
        ("n-3", now, "wrong"),
    ] {
        assert_eq!(
            status(
                &client,
                oauth_url.clone(),
                &[(
                    "authorization",
                    oauth1_header(&oauth_url, nonce, ts, secret)
                )]
            )
            .await,
            401,
            "{nonce}"
        );
    }

    // oauth2 introspection with a required scope; answers are cached
    assert_eq!(
        status(
            &client,
            url("oauth2"),
            &[("authorization", "Bearer good-token".into())]
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &client,
            url("oauth2"),
            &[("authorization", "Bearer good-token".into())]
        )
        .await,
        200
    );
    accepted += 2;
    assert_eq!(
        introspections.load(Ordering::SeqCst),
        1,
        "the second request used the cached answer"
    );
    assert_eq!(
        status(
            &client,
            url("oauth2"),
            &[("authorization", "Bearer revoked".into())]
        )
        .await,
        401
    );

    // query_auth, parameter pollution refused; header_auth
    assert_eq!(
        status(
            &client,
            format!("{}?api_key=qk-0123456789", url("query")),
            &[]
        )
        .await,
        200
    );
    accepted += 1;
    assert_eq!(
        status(&client, format!("{}?api_key=nope", url("query")), &[]).await,
        401
    );
    assert_eq!(
        status(
            &client,
            format!(
                "{}?api_key=qk-0123456789&api_key=qk-0123456789",
                url("query")
            ),
            &[]
        )
        .await,
        401
    );
    assert_eq!(
        status(
            &client,
            url("header"),
            &[("x-api-key", "hk-0123456789".into())]
        )
        .await,
        200
    );
    accepted += 1;
    assert_eq!(
        status(
            &client,
            url("header"),
            &[("x-api-key", "hk-012345678".into())]
        )
        .await,
        401
    );

    // Exactly the admitted requests were stored.
    let stats = admin_get(&serve, "/channels/c").await;
    assert_eq!(stats["stats"]["messages_queued"], accepted, "{stats}");
}
