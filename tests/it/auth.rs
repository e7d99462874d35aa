//! Sender authentication through the real receiver: signed webhooks pass and are relayed,
//! everything else is refused before it is stored.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_webhooks_pass_and_forged_ones_are_refused_without_being_stored() {
    let dir = temp_dir();
    let mut webhooks = relay("github", "c", serde_json::json!({}));
    webhooks["github"]["hmac"] =
        serde_json::json!({"secret": "{$WCON_IT_GH_SECRET}", "format": "github"});
    webhooks["stripe"] = relay("stripe", "c", serde_json::json!({}))["stripe"].clone();
    webhooks["stripe"]["hmac"] =
        serde_json::json!({"secret": "whsec_abcdefghijklmnop", "format": "stripe"});
    webhooks["stripe"]["ip_whitelist"] = serde_json::json!(["127.0.0.0/8", "::1"]);
    let serve = Wcon::serve(
        &webhooks,
        dir.path(),
        &[("WCON_IT_GH_SECRET", "gh-secret-0123456789")],
    );
    let client = reqwest::Client::new();
    let body = b"{\"action\":\"opened\"}".to_vec();

    let good = github_signature("gh-secret-0123456789", &body);
    let (s, text) = post(
        &client,
        &serve.url("/webhook/github"),
        body.clone(),
        &[("x-hub-signature-256", good.clone())],
    )
    .await;
    assert_eq!(s, 200, "{text}");
    for forged in [
        github_signature("wrong-secret", &body),
        String::new(),
        "sha256=00".into(),
    ] {
        let (s, text) = post(
            &client,
            &serve.url("/webhook/github"),
            body.clone(),
            &[("x-hub-signature-256", forged)],
        )
        .await;
        assert_eq!(s, 401, "{text}");
        assert!(!text.contains("gh-secret"), "{text}");
    }
    let tampered = b"{\"action\":\"closed\"}".to_vec();
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/github"),
            tampered,
            &[("x-hub-signature-256", good)]
        )
        .await
        .0,
        401
    );

    let now = chrono::Utc::now().timestamp();
    let stripe_ok = stripe_signature("whsec_abcdefghijklmnop", now, &body);
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/stripe"),
            body.clone(),
            &[("stripe-signature", stripe_ok)]
        )
        .await
        .0,
        200
    );
    let replayed = stripe_signature("whsec_abcdefghijklmnop", now - 3600, &body);
    assert_eq!(
        post(
            &client,
            &serve.url("/webhook/stripe"),
            body.clone(),
            &[("stripe-signature", replayed)]
        )
        .await
        .0,
        401
    );

    // Exactly the two authentic webhooks were stored, and they reach the app intact.
    let sink = Sink::start().await;
    let _tunnel = Wcon::tunnel("c", serve.addr.unwrap(), &sink.target(), &[]);
    sink.wait_until(Duration::from_secs(20), "2 deliveries", |s| s.count() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.count(), 2);
    assert!(sink.all().iter().all(|r| r.body == body));
}
