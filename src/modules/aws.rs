//! What the `s3` and `aws_sqs` modules share: credentials, regions, endpoints, request signing
//! (AWS Signature Version 4, by the official `aws-sigv4` crate) and the HTTP client.
//!
//! Credentials come from the connection (`aws_access_key_id`, `aws_secret_access_key`,
//! optionally `aws_session_token`), else from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`. The region comes from the connection, else `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, else "us-east-1"; the endpoint from `endpoint_url`, else
//! `AWS_ENDPOINT_URL`, else AWS itself. Nothing here ever puts a secret in an error text.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use url::Url;

use super::ModuleError;
use crate::secret::Secret;

/// How long one request to AWS may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The region used when neither the connection nor the environment names one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// Who signs, where.
#[derive(Clone)]
pub(crate) struct AwsSettings {
    access_key_id: String,
    secret_access_key: Secret<String>,
    session_token: Option<Secret<String>>,
    /// The region requests are signed for.
    pub region: String,
    /// A custom endpoint (MinIO, moto, LocalStack): path-style addressing is used then.
    pub endpoint: Option<Url>,
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

impl AwsSettings {
    /// Combines a connection's keys with the environment (read through `env`).
    pub fn resolve(
        connection: &str,
        access_key_id: Option<String>,
        secret_access_key: Option<Secret<String>>,
        session_token: Option<Secret<String>>,
        region: Option<String>,
        endpoint: Option<Url>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let from_connection = access_key_id.is_some() || secret_access_key.is_some();
        let (access_key_id, secret_access_key, session_token) = if from_connection {
            (access_key_id, secret_access_key, session_token)
        } else {
            (
                non_empty(env("AWS_ACCESS_KEY_ID")),
                non_empty(env("AWS_SECRET_ACCESS_KEY")).map(Secret::new),
                non_empty(env("AWS_SESSION_TOKEN")).map(Secret::new),
            )
        };
        let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key)
        else {
            return Err(format!(
                "connection `{connection}` needs both `aws_access_key_id` and `aws_secret_access_key` (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment)"
            ));
        };
        let region = non_empty(region)
            .or_else(|| non_empty(env("AWS_REGION")))
            .or_else(|| non_empty(env("AWS_DEFAULT_REGION")))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = match endpoint {
            Some(url) => Some(url),
            None => match non_empty(env("AWS_ENDPOINT_URL")) {
                Some(text) => Some(
                    Url::parse(&text)
                        .map_err(|e| format!("AWS_ENDPOINT_URL `{text}` is not a URL: {e}"))?,
                ),
                None => None,
            },
        };
        if let Some(url) = &endpoint
            && (!matches!(url.scheme(), "http" | "https") || url.host_str().is_none())
        {
            return Err(format!(
                "connection `{connection}`.endpoint_url: `{url}` is not an http(s) URL"
            ));
        }
        Ok(Self {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            endpoint,
        })
    }

    /// The headers that sign a request (`authorization`, `x-amz-date`, and for S3
    /// `x-amz-content-sha256`). `headers` are the ones that will be sent and must be signed.
    pub fn sign(
        &self,
        service: &str,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, ModuleError> {
        self.sign_at(SystemTime::now(), service, method, url, headers, body)
    }

    fn sign_at(
        &self,
        time: SystemTime,
        service: &str,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, ModuleError> {
        let identity = Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().clone(),
            self.session_token.as_ref().map(|t| t.expose().clone()),
            None,
            "wcon-connection",
        )
        .into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            // S3 signs the path as sent (already encoded once) and wants the payload hash.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| ModuleError::rejected(format!("{service}: cannot sign: {e}")))?
            .into();
        let request = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| ModuleError::rejected(format!("{service}: cannot sign: {e}")))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| ModuleError::rejected(format!("{service}: cannot sign: {e}")))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

/// The HTTP client one AWS connection shares between its modules.
#[derive(Debug, Clone)]
pub(crate) struct AwsHttp(pub reqwest::Client);

impl AwsHttp {
    /// A client with AWS-friendly timeouts; redirects are not followed (S3 answers a wrong
    /// region with 301, which must be reported, not chased unsigned).
    pub fn new() -> Result<Self, ModuleError> {
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Self)
            .map_err(|e| ModuleError::rejected(format!("cannot build an HTTP client: {e}")))
    }
}

/// A failed request (no answer), without its URL: connect errors and timeouts are retryable.
pub(crate) fn request_error(module: &str, e: &reqwest::Error) -> ModuleError {
    super::http_request_error(module, e)
}

/// Whether an AWS answer is worth retrying: throttling and server errors are.
pub(crate) fn is_retryable(status: reqwest::StatusCode, code: &str) -> bool {
    const RETRYABLE_CODES: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KmsThrottled",
    ];
    status.is_server_error()
        || matches!(status.as_u16(), 408 | 429)
        || RETRYABLE_CODES.iter().any(|c| code.ends_with(c))
}

/// A v4 UUID from the thread's random generator.
pub(crate) fn uuid4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn credentials_come_from_the_connection_or_the_environment() {
        let s = AwsSettings::resolve(
            "c",
            Some("AKID".into()),
            Some(Secret::new("sk".into())),
            None,
            None,
            None,
            env(&[("AWS_REGION", "eu-west-3")]),
        )
        .unwrap();
        assert_eq!(
            (s.access_key_id.as_str(), s.region.as_str()),
            ("AKID", "eu-west-3")
        );

        let s = AwsSettings::resolve(
            "c",
            None,
            None,
            None,
            Some("ap-south-1".into()),
            None,
            env(&[
                ("AWS_ACCESS_KEY_ID", "ENVKEY"),
                ("AWS_SECRET_ACCESS_KEY", "envsecret"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ]),
        )
        .unwrap();
        assert_eq!(s.access_key_id, "ENVKEY");
        assert_eq!(s.region, "ap-south-1");
        assert_eq!(s.endpoint.unwrap().port(), Some(9000));
        assert!(
            !format!(
                "{:?}",
                AwsSettings::resolve(
                    "c",
                    None,
                    None,
                    None,
                    None,
                    None,
                    env(&[
                        ("AWS_ACCESS_KEY_ID", "K"),
                        ("AWS_SECRET_ACCESS_KEY", "hunter2")
                    ])
                )
                .unwrap()
            )
            .contains("hunter2")
        );

        let err = AwsSettings::resolve("c", Some("AKID".into()), None, None, None, None, env(&[]))
            .unwrap_err();
        assert!(err.contains("aws_secret_access_key"), "{err}");
    }

    #[test]
    fn s3_requests_are_signed_as_aws_documents() {
        // "Example: GET Object" of the S3 SigV4 documentation (header-based authentication).
        let aws = AwsSettings::resolve(
            "c",
            Some("AKIAIOSFODNN7EXAMPLE".into()),
            Some(Secret::new(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            )),
            None,
            Some("us-east-1".into()),
            None,
            env(&[]),
        )
        .unwrap();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let headers = [("range".to_owned(), "bytes=0-9".to_owned())];
        let signed = aws.sign_at(time, "s3", "GET", &url, &headers, b"").unwrap();
        let authorization = &signed.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }
}
