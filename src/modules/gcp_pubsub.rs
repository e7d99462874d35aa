//! The `gcp_pubsub` module: publishes each webhook's payload to a Google Cloud Pub/Sub topic.
//!
//! Keys: `topic` (required; also accepted at the top level of the webhook). The message data
//! is the payload as JSON; its attributes are the request headers (credentials left out)
//! plus `webhook_id` and `message_id`. A topic that does not exist is created, then the
//! publish is made again. A publish answered 2xx (with a message id) counts as delivered.
//!
//! Connection type `gcp_pubsub`: `project_id` (required), `credentials_path` (a service
//! account JSON key; default `GOOGLE_APPLICATION_CREDENTIALS`). The key signs a JWT that is
//! exchanged for an OAuth2 access token, kept until shortly before it expires. When
//! `PUBSUB_EMULATOR_HOST` is set, the emulator there is used over plain HTTP, without
//! credentials, as Google's client libraries do. Pub/Sub's REST API is used over reqwest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::registry::{BuildContext, ModuleSpec};
use super::{Connections, Delivery, Module, ModuleError};

/// Google's Pub/Sub REST endpoint.
const PUBSUB_URL: &str = "https://pubsub.googleapis.com/v1";

/// The OAuth2 scope that allows publishing and creating topics.
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Request headers never published as attributes: they carry credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PubSubConfig {
    topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PubSubConnectionConfig {
    project_id: String,
    #[serde(default)]
    credentials_path: Option<PathBuf>,
}

/// The fields of a service-account key file that signing needs.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// OAuth2 access tokens from a service-account key, cached until shortly before expiry.
struct TokenSource {
    email: String,
    key: jsonwebtoken::EncodingKey,
    token_uri: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    fn from_file(path: &std::path::Path) -> Result<Self, ModuleError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ModuleError::rejected(format!(
                "gcp_pubsub: cannot read credentials `{}`: {e}",
                path.display()
            ))
        })?;
        let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
            ModuleError::rejected(format!(
                "gcp_pubsub: `{}` is not a service-account key: {}",
                path.display(),
                crate::config::explain_serde_error(&e.to_string())
            ))
        })?;
        Self::new(key)
    }

    fn new(key: ServiceAccountKey) -> Result<Self, ModuleError> {
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|_| {
                ModuleError::rejected(
                    "gcp_pubsub: the service-account private_key is not an RSA PEM key",
                )
            })?;
        Ok(Self {
            email: key.client_email,
            key: encoding,
            token_uri: key.token_uri,
            cached: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    async fn token(&self, http: &reqwest::Client) -> Result<String, ModuleError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = &*cached
            && Instant::now() + TOKEN_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = Claims {
            iss: &self.email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| {
            ModuleError::rejected(format!("gcp_pubsub: cannot sign the token request: {e}"))
        })?;
        let response = http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| request_error("cannot get an access token", &e))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            // `error` and `error_description` name the problem without echoing the key.
            let reason = answer
                .get("error_description")
                .or_else(|| answer.get("error"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message = format!("gcp_pubsub: the token endpoint answered {status} {reason}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                ModuleError::retryable(message.trim_end())
            } else {
                ModuleError::rejected(message.trim_end())
            });
        }
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ModuleError::retryable("gcp_pubsub: no access_token in the token answer")
            })?
            .to_owned();
        let lifetime = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(token)
    }

    async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

/// The client one connection shares: where Pub/Sub is, and how to authenticate.
struct PubSubClient {
    http: reqwest::Client,
    base: String,
    /// `None` for the emulator.
    auth: Option<TokenSource>,
}

impl PubSubClient {
    fn new(credentials_path: Option<PathBuf>) -> Result<Self, ModuleError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                ModuleError::rejected(format!("gcp_pubsub: cannot build a client: {e}"))
            })?;
        if let Some(host) = std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
        {
            return Ok(Self {
                http,
                base: format!("http://{}/v1", host.trim()),
                auth: None,
            });
        }
        let path = credentials_path
            .or_else(|| std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from))
            .ok_or_else(|| {
                ModuleError::rejected(
                    "gcp_pubsub: no credentials; set `credentials_path` on the connection or GOOGLE_APPLICATION_CREDENTIALS (or PUBSUB_EMULATOR_HOST for the emulator)",
                )
            })?;
        Ok(Self {
            http,
            base: PUBSUB_URL.to_owned(),
            auth: Some(TokenSource::from_file(&path)?),
        })
    }

    /// Sends `body` with `method` to `path` (under /v1), authenticated.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<(reqwest::StatusCode, Value), ModuleError> {
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .json(body);
        if let Some(auth) = &self.auth {
            request = request.bearer_auth(auth.token(&self.http).await?);
        }
        let response = request
            .send()
            .await
            .map_err(|e| request_error("request failed", &e))?;
        let status = response.status();
        let answer = response.json().await.unwrap_or(Value::Null);
        if status.as_u16() == 401
            && let Some(auth) = &self.auth
        {
            auth.forget().await;
        }
        Ok((status, answer))
    }
}

/// See the module docs.
pub struct GcpPubSub {
    connection: String,
    connections: Arc<Connections>,
    credentials_path: Option<PathBuf>,
    project: String,
    topic: String,
}

impl std::fmt::Debug for GcpPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpPubSub")
            .field("project", &self.project)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Pub/Sub's resource id rules: 3–255 characters, starting with a letter, of letters,
/// digits and `-_.~+%`, not starting with `goog`.
fn check_topic(topic: &str) -> Result<(), String> {
    let ok = (3..=255).contains(&topic.len())
        && topic.starts_with(|c: char| c.is_ascii_alphabetic())
        && !topic.to_ascii_lowercase().starts_with("goog")
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "module-config.topic: `{topic}` is not a valid topic id (3-255 letters, digits, `-_.~+%`, starting with a letter)"
        ))
    }
}

fn check_project(project: &str) -> Result<(), String> {
    let ok = !project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("project_id: `{project}` is not a valid project id"))
    }
}

/// A request that got no answer: connect errors and timeouts are retryable.
fn request_error(what: &str, e: &reqwest::Error) -> ModuleError {
    super::http_request_error(&format!("gcp_pubsub: {what}"), e)
}

/// The `error.message` of a Google API error answer.
fn api_message(answer: &Value) -> &str {
    answer
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl GcpPubSub {
    /// Builds it from its spec (validates only; connects on the first delivery).
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["gcp_pubsub"])?;
        let config: PubSubConfig = spec.config()?;
        let settings: PubSubConnectionConfig = connection.settings()?;
        check_topic(&config.topic)?;
        check_project(&settings.project_id)
            .map_err(|e| format!("connection `{}`.{e}", connection.name))?;
        Ok(Self {
            connection: connection.name.clone(),
            connections: ctx.connections.clone(),
            credentials_path: settings.credentials_path,
            project: settings.project_id,
            topic: config.topic,
        })
    }

    fn message(delivery: &Delivery) -> Value {
        let mut attributes = Map::new();
        for (name, value) in &delivery.headers {
            // Pub/Sub's limits: keys up to 256 bytes (not starting with `goog`), values up
            // to 1024 bytes, 100 attributes.
            if SECRET_HEADERS.contains(&name.as_str())
                || name.len() > 256
                || value.len() > 1024
                || name.starts_with("goog")
                || attributes.len() >= 98
            {
                continue;
            }
            attributes.insert(name.clone(), Value::String(value.clone()));
        }
        attributes.insert("webhook_id".into(), json!(delivery.webhook_id.as_str()));
        attributes.insert("message_id".into(), json!(delivery.message_id.as_str()));
        let data = base64::engine::general_purpose::STANDARD.encode(delivery.payload_json());
        json!({"messages": [{"data": data, "attributes": attributes}]})
    }

    fn failure(&self, what: &str, status: reqwest::StatusCode, answer: &Value) -> ModuleError {
        let message = format!(
            "gcp_pubsub: {what} `{}`: {status} {}",
            self.topic,
            api_message(answer)
        );
        if status.is_server_error() || matches!(status.as_u16(), 401 | 408 | 429) {
            ModuleError::retryable(message.trim_end())
        } else {
            ModuleError::rejected(message.trim_end())
        }
    }
}

#[async_trait]
impl Module for GcpPubSub {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let credentials_path = self.credentials_path.clone();
        let client = self
            .connections
            .client(&self.connection, || async {
                PubSubClient::new(credentials_path)
            })
            .await?;
        let topic_path = format!("projects/{}/topics/{}", self.project, self.topic);
        let message = Self::message(delivery);
        let publish = format!("{topic_path}:publish");
        let (mut status, mut answer) = client
            .call(reqwest::Method::POST, &publish, &message)
            .await?;
        if status.as_u16() == 404 {
            let (created, created_answer) = client
                .call(reqwest::Method::PUT, &topic_path, &json!({}))
                .await?;
            // 409: someone else created it meanwhile.
            if !created.is_success() && created.as_u16() != 409 {
                return Err(self.failure("cannot create topic", created, &created_answer));
            }
            (status, answer) = client
                .call(reqwest::Method::POST, &publish, &message)
                .await?;
        }
        if !status.is_success() {
            return Err(self.failure("cannot publish to", status, &answer));
        }
        match answer.pointer("/messageIds/0") {
            Some(_) => Ok(()),
            None => Err(ModuleError::retryable(format!(
                "gcp_pubsub: publish to `{}` returned no message id",
                self.topic
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::{RSA_PRIVATE, RSA_PUBLIC};
    use axum::extract::{Form, State};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn topic_and_project_ids() {
        assert!(check_topic("orders-v1.events").is_ok());
        for bad in ["ab", "1topic", "goog-x", "a/b/c", "with space"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        assert!(check_project("my-project-123").is_ok());
        assert!(check_project("a/b").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_retryable() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = PubSubClient {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}/v1"),
            auth: None,
        };
        let err = client
            .call(
                reqwest::Method::POST,
                "projects/p/topics/t:publish",
                &json!({}),
            )
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[tokio::test]
    async fn service_account_tokens_are_signed_and_cached() {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/token",
                axum::routing::post(
                    |State(calls): State<Arc<AtomicUsize>>,
                     Form(form): Form<HashMap<String, String>>| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer");
                        let key = jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
                        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                        validation.validate_aud = false;
                        let claims = jsonwebtoken::decode::<Value>(&form["assertion"], &key, &validation)
                            .unwrap()
                            .claims;
                        assert_eq!(claims["iss"], "relay@project.iam.gserviceaccount.com");
                        assert_eq!(claims["scope"], SCOPE);
                        assert!(claims["aud"].as_str().unwrap().ends_with("/token"));
                        axum::Json(json!({"access_token": "ya29.test", "expires_in": 3599, "token_type": "Bearer"}))
                    },
                ),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let source = TokenSource::new(ServiceAccountKey {
            client_email: "relay@project.iam.gserviceaccount.com".into(),
            private_key: RSA_PRIVATE.into(),
            token_uri: format!("http://{addr}/token"),
        })
        .unwrap();
        let http = reqwest::Client::new();
        assert_eq!(source.token(&http).await.unwrap(), "ya29.test");
        assert_eq!(source.token(&http).await.unwrap(), "ya29.test");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the token is cached");
        source.forget().await;
        source.token(&http).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
