//! The connector's outbound connection to `wcon serve`: TLS and proxies, for every transport.
//!
//! Owns the rustls client config (the webpki roots plus the `ca_cert_path` PEM certificates, or
//! no verification at all only when `verify_ssl` is false), the HTTP client of SSE, long-poll
//! and acks built on it (reqwest honours `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
//! `NO_PROXY`), the WebSocket connection through the same proxies by HTTP `CONNECT`, and a
//! readable explanation of certificate failures. It never prints.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
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
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
                .with_no_client_auth()
        };
        let mut websocket = base.clone();
        websocket.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = base;
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            websocket: Arc::new(websocket),
            http: Arc::new(http),
        })
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
