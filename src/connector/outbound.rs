//! The connector's outbound connection to `wcon serve`: TLS and proxies, for every transport.
//!
//! Owns the rustls client config (the webpki roots plus the `ca_cert_path` PEM certificates, or
//! no verification at all only when `verify_ssl` is false; the `client_cert_path` /
//! `client_key_path` client certificate presented on every connection), the HTTP client of SSE,
//! long-poll and acks built on it (reqwest honours `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
//! `NO_PROXY`), the WebSocket connection through the same proxies by HTTP `CONNECT`, and a
//! readable explanation of certificate failures (the server's refused here, ours refused by the
//! server). It never prints, and never shows key bytes: errors name the files only.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::config::ConnectorConfig;

/// A WebSocket to the server, direct or through a proxy tunnel.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The CA file could not be read.
    #[error("cannot read the CA certificate `{path}`")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error(
        "the CA certificate `{0}` holds no PEM certificate (-----BEGIN CERTIFICATE-----) that can be trusted"
    )]
    BadCa(String),
    /// The client certificate or its key could not be read.
    #[error("cannot read the client {what} `{path}`; check {flag}")]
    ClientRead {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// The flag and key that name it.
        flag: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client certificate file holds no certificate.
    #[error(
        "the client certificate `{0}` holds no PEM certificate (-----BEGIN CERTIFICATE-----); check --client-cert / client_cert_path"
    )]
    NoClientCert(String),
    /// The client key file holds no private key.
    #[error(
        "the client key `{0}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1); check --client-key / client_key_path"
    )]
    NoClientKey(String),
    /// The key does not belong to the certificate (or rustls cannot use the pair).
    #[error(
        "the client certificate `{cert}` and key `{key}` cannot be used together; give the key the certificate was issued for"
    )]
    ClientPair {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said (never key material).
        #[source]
        source: rustls::Error,
    },
    /// The TLS stack refused the settings.
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// TLS settings shared by every session of a connector.
#[derive(Clone)]
pub struct Outbound {
    /// For the WebSocket (ALPN `http/1.1`: the upgrade needs HTTP/1.1).
    websocket: Arc<ClientConfig>,
    /// For the HTTP transports (ALPN `h2`, `http/1.1`).
    http: Arc<ClientConfig>,
    /// A client certificate is presented.
    client_certificate: bool,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Outbound {
    /// Reads `ca_cert_path` and builds the TLS settings `verify_ssl` asks for.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, OutboundError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(OutboundError::Tls)?;
        let base = if config.verify_ssl {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(path) = &config.ca_cert_path {
                let pem = std::fs::read(path).map_err(|source| OutboundError::Read {
                    path: path.clone(),
                    source,
                })?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|_| OutboundError::BadCa(path.clone()))?;
                let (added, _ignored) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(OutboundError::BadCa(path.clone()));
                }
            }
            with_client_certificate(builder.with_root_certificates(roots), config)?
        } else {
            with_client_certificate(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider()))),
                config,
            )?
        };
        let mut websocket = base.clone();
        websocket.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = base;
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            client_certificate: config.client_cert_path.is_some(),
            websocket: Arc::new(websocket),
            http: Arc::new(http),
        })
    }

    /// `describe` for a failed request of the HTTP transports, and when that names no TLS cause
    /// while a client certificate is presented, a probe handshake to tell whether the server
    /// refuses that certificate. (Under HTTP/2 the server's alert ends the connection before
    /// the request is sent, so the request's error does not carry it.)
    pub async fn explain(&self, error: &reqwest::Error, url: &url::Url) -> String {
        let text = describe(error);
        if error.is_timeout()
            || error.status().is_some()
            || certificate_problem(error).is_some()
            || client_certificate_problem(error).is_some()
        {
            return text;
        }
        self.refused_client_certificate(url).await.unwrap_or(text)
    }

    /// Opens one TLS connection to the server of `url` as the transports do (not through a
    /// proxy: then it answers `None`), sends `GET /health` and reads the answer: `Some` with
    /// what to do if the server refuses the client certificate. Bounded by 5 seconds.
    pub async fn refused_client_certificate(&self, url: &url::Url) -> Option<String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        if !self.client_certificate || !matches!(url.scheme(), "https" | "wss") {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_string(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port().unwrap_or(443);
        let authority = url.host_str()?;
        let as_https: http::Uri = format!("https://{authority}:{port}/").parse().ok()?;
        if hyper_util::client::proxy::matcher::Matcher::from_env()
            .intercept(&as_https)
            .is_some()
        {
            return None;
        }
        let name = ServerName::try_from(host.clone()).ok()?;
        let connector = tokio_rustls::TlsConnector::from(self.websocket.clone());
        let probe = async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await.ok()?;
            let mut tls = match connector.connect(name, tcp).await {
                Ok(tls) => tls,
                Err(e) => return client_certificate_problem(&e),
            };
            let request =
                format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
            if let Err(e) = tls.write_all(request.as_bytes()).await {
                return client_certificate_problem(&e);
            }
            let mut answer = Vec::new();
            match tls.read_to_end(&mut answer).await {
                Err(e) => client_certificate_problem(&e),
                Ok(_) => None,
            }
        };
        tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .ok()
            .flatten()
    }

    /// The HTTP client of SSE, long-poll and acks: these TLS settings, the configured connect
    /// timeout, and the environment's proxies.
    pub fn http_client(&self, config: &ConnectorConfig) -> Result<reqwest::Client, OutboundError> {
        reqwest::Client::builder()
            .use_preconfigured_tls((*self.http).clone())
            .connect_timeout(Duration::from_secs_f64(config.connection_timeout))
            .tcp_nodelay(true)
            .build()
            .map_err(OutboundError::Http)
    }

    /// Opens the WebSocket of `request`, through the proxy the environment names for it
    /// (`HTTPS_PROXY` for wss, `HTTP_PROXY` for ws, `ALL_PROXY`, unless `NO_PROXY` matches).
    pub async fn websocket(&self, request: Request) -> Result<(Socket, Response), WsError> {
        let connector = Some(Connector::Rustls(self.websocket.clone()));
        match proxy_for(request.uri()) {
            None => {
                tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
                    .await
            }
            Some(proxy) => {
                let tcp = tunnel(&proxy, request.uri()).await?;
                tokio_tungstenite::client_async_tls_with_config(request, tcp, None, connector).await
            }
        }
    }
}

/// Finishes a client config: with the `client_cert_path` / `client_key_path` pair when set.
fn with_client_certificate(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    config: &ConnectorConfig,
) -> Result<ClientConfig, OutboundError> {
    let (Some(cert_path), Some(key_path)) = (&config.client_cert_path, &config.client_key_path)
    else {
        return Ok(builder.with_no_client_auth());
    };
    let read = |what, path: &String, flag| {
        std::fs::read(path).map_err(|source| OutboundError::ClientRead {
            what,
            path: path.clone(),
            flag,
            source,
        })
    };
    let cert_pem = read("certificate", cert_path, "--client-cert / client_cert_path")?;
    let key_pem = read("key", key_path, "--client-key / client_key_path")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| OutboundError::NoClientCert(cert_path.clone()))?;
    if chain.is_empty() {
        return Err(OutboundError::NoClientCert(cert_path.clone()));
    }
    // The parse error is dropped: it is about the key file's content.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| OutboundError::NoClientKey(key_path.clone()))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|source| OutboundError::ClientPair {
            cert: cert_path.clone(),
            key: key_path.clone(),
            source,
        })
}

/// The proxy for a ws:// or wss:// URI: the one for the same http:// or https:// URI.
fn proxy_for(uri: &http::Uri) -> Option<hyper_util::client::proxy::matcher::Intercept> {
    let scheme = match uri.scheme_str() {
        Some("wss") => "https",
        _ => "http",
    };
    let as_http: http::Uri = format!("{scheme}://{}/", uri.authority()?).parse().ok()?;
    hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&as_http)
}

/// A TCP connection to the target of `uri`, tunnelled through an HTTP proxy with `CONNECT`.
async fn tunnel(
    proxy: &hyper_util::client::proxy::matcher::Intercept,
    uri: &http::Uri,
) -> Result<TcpStream, WsError> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::connect::proxy::Tunnel;
    use tower::Service as _;

    let failed = |detail: String| WsError::Io(std::io::Error::other(detail));
    if proxy.uri().scheme_str() != Some("http") {
        return Err(failed(format!(
            "the proxy `{}` is not an http:// proxy; the WebSocket transport tunnels through http:// proxies only (or use `--protocol sse`)",
            redacted(proxy.uri())
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| failed("the server URL has no host".into()))?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let target: http::Uri = format!("http://{host}:{port}/")
        .parse()
        .map_err(|e| failed(format!("the server address cannot be tunnelled: {e}")))?;
    let mut tunnel = Tunnel::new(proxy.uri().clone(), HttpConnector::new());
    if let Some(auth) = proxy.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    std::future::poll_fn(|cx| tunnel.poll_ready(cx))
        .await
        .map_err(|e| failed(format!("proxy `{}`: {e}", redacted(proxy.uri()))))?;
    let io = tunnel
        .call(target)
        .await
        .map_err(|e| failed(format!("proxy `{}`: {e}", redacted(proxy.uri()))))?;
    let tcp = io.into_inner();
    // Acks are small frames: disable Nagle so they are not held back waiting for ACKs.
    tcp.set_nodelay(true).map_err(WsError::Io)?;
    Ok(tcp)
}

/// A proxy URI without its credentials, for messages.
fn redacted(uri: &http::Uri) -> String {
    match uri.authority() {
        Some(a) => {
            let host_port = a.as_str().rsplit('@').next().unwrap_or_default();
            format!("{}://{host_port}", uri.scheme_str().unwrap_or("http"))
        }
        None => "?".into(),
    }
}

/// A connection error for a person: what to do when the server's certificate was refused, else
/// the error and its causes on one line.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(problem) = certificate_problem(error) {
        return problem;
    }
    if let Some(problem) = client_certificate_problem(error) {
        return problem;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// If `error` (or one of its causes) is a refused server certificate, what to do about it.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error(e) {
            return Some(format!(
                "the server's TLS certificate is not trusted ({why:?}); pass `--ca-cert FILE` with the CA that signed it, or `--insecure` to skip verification (unsafe)"
            ));
        }
        next = e.source();
    }
    None
}

/// If `error` (or one of its causes) is the server refusing our client certificate (a TLS
/// alert about it), what to do about it.
pub fn client_certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::AlertDescription as A;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        // HTTP/2 keeps only the text of a connection's error: recognise rustls's own words.
        let alert = rustls_error(e).cloned().or_else(|| {
            let text = e.to_string();
            [
                A::CertificateRequired,
                A::BadCertificate,
                A::UnsupportedCertificate,
                A::CertificateRevoked,
                A::CertificateExpired,
                A::CertificateUnknown,
                A::UnknownCA,
                A::AccessDenied,
                A::DecryptError,
            ]
            .into_iter()
            .map(rustls::Error::AlertReceived)
            .find(|alert| text.contains(&alert.to_string()))
        });
        match alert.as_ref() {
            Some(rustls::Error::AlertReceived(A::CertificateRequired)) => {
                return Some(
                    "the server requires a TLS client certificate; give --client-cert and --client-key (client_cert_path, client_key_path)".into(),
                );
            }
            Some(rustls::Error::AlertReceived(
                why @ (A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::DecryptError),
            )) => {
                return Some(format!(
                    "the server refused our TLS client certificate (alert {why:?}); --client-cert must be issued by the CA the server trusts for clients (its --tls-client-ca) and be valid now"
                ));
            }
            _ => {}
        }
        next = e.source();
    }
    None
}

/// The rustls error in `e`, looking inside `io::Error`s (whose `source` skips the error they
/// wrap, and which TLS streams nest).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

/// `verify_ssl: false` / `--insecure` (and the MQTT module's `tls_insecure`): any certificate is
/// accepted, but handshake signatures are still checked, so the connection is at least
/// consistent with the certificate presented.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_are_not_shown() {
        let uri: http::Uri = "http://user:pass@proxy.example:3128".parse().unwrap();
        assert_eq!(redacted(&uri), "http://proxy.example:3128");
    }

    #[test]
    fn certificate_errors_are_explained() {
        let e = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let text = certificate_problem(&e).unwrap();
        assert!(
            text.contains("UnknownIssuer") && text.contains("--ca-cert"),
            "{text}"
        );
        assert!(certificate_problem(&std::io::Error::other("refused")).is_none());
        let e = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        let text = describe(&e);
        assert!(
            text.contains("refused our TLS client certificate") && text.contains("UnknownCA"),
            "{text}"
        );
    }

    fn config_with(extra: serde_json::Value) -> ConnectorConfig {
        let mut layer = serde_json::json!({"cloud_url": "https://127.0.0.1:1", "channel": "c", "token": "t0123456789", "default_target": {"url": "http://127.0.0.1:9"}});
        layer
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ConnectorConfig::from_layers("t", &[layer.as_object().unwrap().clone()]).unwrap()
    }

    #[test]
    fn client_certificate_files_are_checked_and_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["connector-a".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let (cert_path, key_path, other_path) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("o.pem"),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&other_path, other_key.serialize_pem()).unwrap();
        let paths = |c: &std::path::Path, k: &std::path::Path| {
            config_with(serde_json::json!({"client_cert_path": c, "client_key_path": k}))
        };
        let ok = Outbound::from_config(&paths(&cert_path, &key_path)).unwrap();
        assert!(ok.http.client_auth_cert_resolver.has_certs());
        let none = Outbound::from_config(&config_with(serde_json::json!({}))).unwrap();
        assert!(!none.http.client_auth_cert_resolver.has_certs());
        // Also with --insecure.
        let mut insecure = paths(&cert_path, &key_path);
        insecure.verify_ssl = false;
        let insecure = Outbound::from_config(&insecure).unwrap();
        assert!(insecure.websocket.client_auth_cert_resolver.has_certs());

        let secret = other_key.serialize_pem();
        let body = secret.lines().nth(1).unwrap().to_string();
        let errors = [
            Outbound::from_config(&paths(&cert_path, &other_path)).unwrap_err(),
            Outbound::from_config(&paths(&cert_path, &dir.path().join("missing.pem"))).unwrap_err(),
            Outbound::from_config(&paths(&other_path, &key_path)).unwrap_err(),
            Outbound::from_config(&paths(&cert_path, &cert_path)).unwrap_err(),
        ];
        let texts: Vec<String> = errors.iter().map(|e| describe(e)).collect();
        assert!(
            texts[0].contains("cannot be used together") && texts[0].contains("o.pem"),
            "{}",
            texts[0]
        );
        assert!(
            texts[1].contains("cannot read the client key") && texts[1].contains("--client-key"),
            "{}",
            texts[1]
        );
        assert!(
            texts[2].contains("holds no PEM certificate") && texts[2].contains("--client-cert"),
            "{}",
            texts[2]
        );
        assert!(
            texts[3].contains("holds no PEM private key"),
            "{}",
            texts[3]
        );
        for (text, e) in texts.iter().zip(&errors) {
            assert!(
                !text.contains(&body) && !format!("{e:?}").contains(&body),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn an_http_client_explains_an_untrusted_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let tls = Arc::new(crate::receiver::tls::ServerTls::load(&cert_path, &key_path).unwrap());
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = crate::receiver::tls::TlsListener::new(tcp, tls).unwrap();
        tokio::spawn(axum::serve(listener, axum::Router::new()).into_future());
        let config = ConnectorConfig::from_layers(
            "t",
            &[serde_json::json!({"cloud_url": format!("https://{addr}"), "channel": "c", "token": "t0123456789", "default_target": {"url": "http://127.0.0.1:9"}})
                .as_object()
                .unwrap()
                .clone()],
        )
        .unwrap();
        let client = Outbound::from_config(&config)
            .unwrap()
            .http_client(&config)
            .unwrap();
        let e = client
            .get(format!("https://{addr}/"))
            .send()
            .await
            .unwrap_err();
        let text = describe(&e);
        assert!(
            text.contains("not trusted") && text.contains("UnknownIssuer"),
            "{text}: {e:?}"
        );
    }
}
