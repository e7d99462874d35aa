//! `POST /webhook/{id}`: read, check and store a webhook; answer 200 only once it is durable.
//!
//! Owns the request limits (body size, header count and size, JSON limits), data types, and the
//! mapping of buffer outcomes to HTTP answers. Senders are authenticated by the webhook's
//! [`crate::auth::Authenticator`] once the body is read, before anything about it is judged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};

use super::AppState;
use super::api_error::ApiError;
use super::forms;
use super::json_limits;
use super::schema::BodySchema;
use crate::auth::AuthRequest;
use crate::buffer::{BufferError, NewMessage};
use crate::config::webhooks::DataType;

/// Most request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request headers (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// `POST /webhook/{id}`.
///
/// The request is taken whole: the `HeaderMap` extractor would copy every header.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    accept(&state, &id, peer, &parts.uri, parts.headers, body).await
}

/// `POST /webhook/{namespace}/{id}`: namespaces come from etcd in the original; wcon reads one
/// webhooks.json, so the namespace only has to be a valid name.
pub async fn ingest_namespaced(
    State(state): State<Arc<AppState>>,
    Path((namespace, id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    if crate::config::webhooks::check_webhook_id(&namespace).is_err() {
        return Err(ApiError::not_found(format!(
            "unknown namespace `{namespace}`"
        )));
    }
    let (parts, body) = request.into_parts();
    accept(&state, &id, peer, &parts.uri, parts.headers, body).await
}

async fn accept(
    state: &AppState,
    id: &str,
    peer: SocketAddr,
    uri: &Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let webhooks = state.webhooks();
    let webhook = webhooks
        .resolve(id)
        .ok_or_else(|| ApiError::not_found(format!("unknown webhook `{}`", printable(id))))?;
    state.usage.record(webhook.id.as_str());
    check_header_limits(&headers)?;
    check_content_type(webhook.data_type, &headers)?;
    let source_ip = webhook.auth.client_ip(peer.ip(), &headers);
    if let Some(limit) = &webhook.rate_limit
        && let Err(wait) = limit.check(source_ip)
    {
        tracing::warn!(webhook = %webhook.id, %source_ip, "rate limit exceeded");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{}; retry later", limit.describe()),
        )
        .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64));
    }
    let max_body_bytes = webhook.max_body_bytes.unwrap_or(state.max_body_bytes);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this webhook's limit of {max_body_bytes} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes) {
        return Err(too_large());
    }
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read",
            )
        }
    })?;
    let request = AuthRequest {
        method: &Method::POST,
        uri,
        headers: &headers,
        body: &body,
        peer: peer.ip(),
    };
    if let Err(refused) = webhook.auth.verify(&request).await {
        tracing::warn!(webhook = %webhook.id, method = refused.method(), reason = refused.reason(), peer = %peer.ip(), "webhook refused");
        let mut error = ApiError::new(
            refused.status(),
            refused.code(),
            refused.detail().to_string(),
        );
        for (name, value) in refused.headers() {
            error = error.with_header(name.clone(), value.clone());
        }
        return Err(error);
    }
    let mut headers = flatten_headers(&headers);
    let mut body = body;
    match webhook.data_type {
        DataType::Json => {
            json_limits::check(&body).map_err(|p| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_json",
                    p.to_string(),
                )
            })?;
            // Parsed into a tree only when something needs one, and then only once.
            if webhook.schema.is_some() || webhook.cleanup.apply_to_relay {
                let mut document: serde_json::Value = serde_json::from_slice(&body)
                    .expect("json_limits::check accepted the body as JSON");
                if let Some(schema) = &webhook.schema {
                    check_schema(schema, &document)?;
                }
                if webhook.cleanup.apply_to_relay {
                    webhook.cleanup.clean_json(&mut document);
                    body = serde_json::to_vec(&document)
                        .expect("a JSON value always serialises")
                        .into();
                }
            }
        }
        DataType::Form => forms::check(&headers, &body).await?,
        DataType::Blob | DataType::Raw => {}
    }
    if webhook.cleanup.apply_to_relay {
        webhook.cleanup.clean_headers(&mut headers);
    }
    let channel = webhook.route.channel();
    let body_len = body.len();
    let stored = state
        .buffer
        .enqueue(NewMessage {
            channel: channel.clone(),
            webhook_id: webhook.id.clone(),
            source_ip: Some(source_ip),
            headers,
            body,
        })
        .await
        .map_err(|e| match e {
            BufferError::Full(channel) => {
                tracing::warn!(%channel, webhook = %webhook.id, "channel full, webhook refused");
                ApiError::unavailable(
                    "channel_full",
                    format!("channel `{channel}` is full; retry later"),
                    10,
                )
            }
            other => {
                tracing::error!(webhook = %webhook.id, error = %other, "cannot store webhook");
                ApiError::unavailable(
                    "buffer_unavailable",
                    "the webhook could not be stored; retry later",
                    5,
                )
            }
        })?;
    state.metrics.channel(channel).received(started);
    tracing::info!(webhook = %webhook.id, channel = %channel, message_id = %stored.id, sequence = stored.sequence, bytes = body_len, "webhook accepted");
    Ok(Json(Accepted {
        message: "200 OK",
        message_id: &stored.id,
    })
    .into_response())
}

/// The answer to an accepted webhook: `{"message":"200 OK","message_id":…}`.
#[derive(serde::Serialize)]
struct Accepted<'a> {
    message: &'static str,
    message_id: &'a crate::protocol::MessageId,
}

fn check_schema(schema: &BodySchema, document: &serde_json::Value) -> Result<(), ApiError> {
    schema.check(document).map_err(|failures| {
        let detail = match failures.as_slice() {
            [one] => format!(
                "the body does not match the webhook's JSON Schema at `{}`: {}",
                one.path, one.message
            ),
            many => format!(
                "the body does not match the webhook's JSON Schema in {} places",
                many.len()
            ),
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_mismatch", detail)
            .with_errors(serde_json::to_value(&failures).expect("failures serialise"))
    })
}

fn printable(id: &str) -> String {
    id.chars().take(64).filter(|c| !c.is_control()).collect()
}

fn check_header_limits(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            format!("the request has more than {MAX_HEADERS} headers"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A JSON webhook refuses bodies declared as forms or binary; other types take anything.
fn check_content_type(data_type: DataType, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = media == "application/json"
        || media.ends_with("+json")
        || media == "text/json"
        || media == "text/plain";
    let is_form = media == "application/x-www-form-urlencoded" || media == "multipart/form-data";
    let refused = match data_type {
        DataType::Json => !is_json,
        DataType::Form => !is_form,
        DataType::Blob | DataType::Raw => false,
    };
    if refused {
        let expected = match data_type {
            DataType::Json => "JSON (`application/json`)",
            _ => "a form (`application/x-www-form-urlencoded` or `multipart/form-data`)",
        };
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("this webhook takes {expected}, not `{media}`"),
        ));
    }
    Ok(())
}

/// Header names lowercased; repeated names joined with `, `.
pub fn flatten_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined() {
        let mut h = HeaderMap::new();
        h.append("X-A", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.append("Content-Type", "application/json".parse().unwrap());
        let flat = flatten_headers(&h);
        assert_eq!(flat["x-a"], "1, 2");
        assert_eq!(flat["content-type"], "application/json");
    }

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            h
        };
        assert!(
            check_content_type(DataType::Json, &with("application/json; charset=utf-8")).is_ok()
        );
        assert!(check_content_type(DataType::Json, &with("application/vnd.api+json")).is_ok());
        assert!(check_content_type(DataType::Json, &HeaderMap::new()).is_ok());
        assert_eq!(
            check_content_type(DataType::Json, &with("multipart/form-data"))
                .unwrap_err()
                .status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert!(
            check_content_type(DataType::Form, &with("application/x-www-form-urlencoded")).is_ok()
        );
        assert!(check_content_type(DataType::Blob, &with("application/octet-stream")).is_ok());
    }
}
