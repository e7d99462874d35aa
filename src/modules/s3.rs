//! The `s3` module: stores each webhook's payload as one object in an S3 bucket.
//!
//! Keys: `bucket` (required), `prefix` ("webhooks"), `filename_pattern`
//! ("webhook_{uuid}.json"; `{uuid}`, `{timestamp}` (UTC, `YYYYMMDDTHHMMSSZ`) and
//! `{message_id}` are replaced), `content_type` ("application/json") and `include_headers`
//! (false; when true the request headers become `x-amz-meta-*` metadata, names and values
//! reduced to what S3 accepts, credentials left out, 2 KB at most as S3 allows). The object
//! key is `<prefix>/YYYY/MM/DD/HH/<file>` (the hour the webhook was received, UTC) and the
//! body is the payload as indented JSON.
//!
//! Connection type `s3`: `aws_access_key_id`, `aws_secret_access_key` (or the `AWS_*`
//! environment), `region` ("us-east-1"), `endpoint_url` (MinIO, moto: path-style addressing).
//! A PUT answered 2xx counts as stored.

use std::sync::Arc;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use url::Url;

use super::aws::{AwsHttp, AwsSettings, is_retryable, request_error, uuid4};
use super::registry::{BuildContext, ModuleSpec};
use super::{Connections, Delivery, Module, ModuleError};
use crate::secret::Secret;

/// Characters S3 keys keep as they are in a URL path: RFC 3986 unreserved ones.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// S3's limit on the user metadata of one object.
const METADATA_LIMIT: usize = 2048;

/// Request headers never copied into metadata: they carry credentials.
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
struct S3Config {
    bucket: String,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_pattern")]
    filename_pattern: String,
    #[serde(default = "default_content_type")]
    content_type: String,
    #[serde(default)]
    include_headers: bool,
}

fn default_prefix() -> String {
    "webhooks".to_owned()
}

fn default_pattern() -> String {
    "webhook_{uuid}.json".to_owned()
}

fn default_content_type() -> String {
    "application/json".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct S3ConnectionConfig {
    #[serde(default)]
    aws_access_key_id: Option<String>,
    #[serde(default)]
    aws_secret_access_key: Option<Secret<String>>,
    #[serde(default)]
    aws_session_token: Option<Secret<String>>,
    #[serde(default, alias = "region_name")]
    region: Option<String>,
    #[serde(default)]
    endpoint_url: Option<Url>,
}

/// See the module docs.
#[derive(Debug)]
pub struct S3 {
    connection: String,
    connections: Arc<Connections>,
    aws: AwsSettings,
    bucket: String,
    /// The prefix's segments, each already percent-encoded.
    prefix: Vec<String>,
    filename_pattern: String,
    content_type: String,
    include_headers: bool,
}

impl S3 {
    /// Builds it from its spec (validates only; connects on the first delivery).
    pub fn build(spec: &ModuleSpec<'_>, ctx: &BuildContext) -> Result<Self, String> {
        let connection = spec.connection_of(&["s3"])?;
        let config: S3Config = spec.config()?;
        let settings: S3ConnectionConfig = connection.settings()?;
        let aws = AwsSettings::resolve(
            &connection.name,
            settings.aws_access_key_id,
            settings.aws_secret_access_key,
            settings.aws_session_token,
            settings.region,
            settings.endpoint_url,
            |name| std::env::var(name).ok(),
        )?;
        check_bucket(&config.bucket)?;
        let mut prefix = Vec::new();
        for segment in config.prefix.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(format!(
                    "module-config.prefix: `{}` has a `{segment}` segment",
                    config.prefix
                ));
            }
            prefix.push(utf8_percent_encode(segment, KEY_ESCAPES).to_string());
        }
        if config.filename_pattern.is_empty() {
            return Err("module-config.filename_pattern: must not be empty".into());
        }
        if http::HeaderValue::from_str(&config.content_type).is_err() {
            return Err("module-config.content_type: not a valid header value".into());
        }
        Ok(Self {
            connection: connection.name.clone(),
            connections: ctx.connections.clone(),
            aws,
            bucket: config.bucket,
            prefix,
            filename_pattern: config.filename_pattern,
            content_type: config.content_type,
            include_headers: config.include_headers,
        })
    }

    /// The object key for `delivery`, percent-encoded for the URL path.
    fn key(&self, delivery: &Delivery) -> String {
        let file = self
            .filename_pattern
            .replace("{uuid}", &uuid4())
            .replace(
                "{timestamp}",
                &delivery.received_at.format("%Y%m%dT%H%M%SZ").to_string(),
            )
            .replace("{message_id}", delivery.message_id.as_str());
        let mut segments = self.prefix.clone();
        segments.push(delivery.received_at.format("%Y/%m/%d/%H").to_string());
        // The file name is one segment: a `/` in it is encoded, never a directory.
        segments.push(utf8_percent_encode(&file, KEY_ESCAPES).to_string());
        segments.join("/")
    }

    /// The URL of an object: path-style on a custom endpoint (or for dotted bucket names),
    /// virtual-hosted on AWS.
    fn object_url(&self, key: &str) -> Result<Url, ModuleError> {
        let text = match &self.aws.endpoint {
            Some(endpoint) => format!(
                "{}/{}/{key}",
                endpoint.as_str().trim_end_matches('/'),
                self.bucket
            ),
            None if self.bucket.contains('.') => format!(
                "https://s3.{}.amazonaws.com/{}/{key}",
                self.aws.region, self.bucket
            ),
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{key}",
                self.bucket, self.aws.region
            ),
        };
        Url::parse(&text).map_err(|e| ModuleError::rejected(format!("s3: bad object URL: {e}")))
    }

    /// `x-amz-meta-*` headers from the request headers.
    fn metadata(&self, delivery: &Delivery) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut size = 0;
        for (name, value) in &delivery.headers {
            if SECRET_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let name: String = name
                .chars()
                .map(|c| match c.to_ascii_lowercase() {
                    c @ ('a'..='z' | '0'..='9' | '-') => c,
                    _ => '-',
                })
                .collect();
            let value: String = value
                .chars()
                .filter(|c| (' '..='~').contains(c))
                .collect::<String>()
                .trim()
                .to_owned();
            if name.is_empty() || size + name.len() + value.len() > METADATA_LIMIT {
                continue;
            }
            size += name.len() + value.len();
            out.push((format!("x-amz-meta-{name}"), value));
        }
        out
    }
}

/// S3's bucket naming rules, loosely: 3–63 lowercase letters, digits, dots and dashes.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "module-config.bucket: `{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, `.` and `-`)"
        ))
    }
}

/// The `<Code>` of an S3 error document.
fn error_code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code)
        .unwrap_or("")
}

#[async_trait]
impl Module for S3 {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let http = self
            .connections
            .client(&self.connection, || async { AwsHttp::new() })
            .await?;
        let key = self.key(delivery);
        let url = self.object_url(&key)?;
        let body = serde_json::to_vec_pretty(&delivery.payload).map_err(ModuleError::rejected)?;
        let mut headers = vec![("content-type".to_owned(), self.content_type.clone())];
        if self.include_headers {
            headers.extend(self.metadata(delivery));
        }
        let signed = self.aws.sign("s3", "PUT", &url, &headers, &body)?;
        let mut request = http.0.put(url);
        for (name, value) in headers.iter().chain(&signed) {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| request_error("s3", &e))?;
        let status = response.status();
        if status.is_success() {
            let _ = response.bytes().await;
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let code = error_code(&text);
        let message = format!(
            "s3: bucket `{}` answered {status}{}{code}",
            self.bucket,
            if code.is_empty() { "" } else { " " }
        );
        if is_retryable(status, code) {
            Err(ModuleError::retryable(message))
        } else {
            Err(ModuleError::rejected(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_and_error_codes() {
        assert!(check_bucket("my-bucket.logs").is_ok());
        for bad in ["ab", "My_Bucket", "-x-bucket", "bucket."] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(error_code(body), "NoSuchBucket");
        assert_eq!(error_code("oops"), "");
    }
}
