//! TLS for `wcon serve`: the certificate chain and key (PEM files), the optional CA bundle of
//! connectors' client certificates, a listener that hands axum TLS streams, and reloading the
//! files without dropping a connection.
//!
//! Owns reading and checking the PEM files, the rustls server config (HTTP/2 and HTTP/1.1 by
//! ALPN, so HTTPS and WSS share the port), client certificates (with `--tls-client-ca` the
//! handshake asks for one but does not require it, since webhook senders have none; one that does
//! not chain to the CA fails the handshake), the verified certificate of each connection as a
//! request extension ([`PeerCertificate`]), and the swap to new files: connections already open
//! keep the config they were set up with, new handshakes get the new one. A file that does not
//! load (half written, wrong key) is refused and the current config stays in use. It never
//! prints; reloads are logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::serve::IncomingStream;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("`{0}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key.
    #[error("`{0}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("the certificate `{cert}` and key `{key}` cannot be used together")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The client CA file holds no usable CA certificate.
    #[error(
        "`{0}` holds no PEM CA certificate (-----BEGIN CERTIFICATE-----) to verify client certificates with"
    )]
    NoClientCa(PathBuf),
    /// rustls refused the client CA bundle.
    #[error("the client CA `{path}` cannot be used to verify client certificates")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// What was loaded, and the bytes it was loaded from (to tell a real change from a touch).
struct Current {
    acceptor: TlsAcceptor,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

/// The serving certificate (and the CA of client certificates), reloadable.
pub struct ServerTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    client_ca_path: Option<PathBuf>,
    current: RwLock<Current>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("client_ca_path", &self.client_ca_path)
            .finish_non_exhaustive()
    }
}

/// An error and its causes on one line, for a log field.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The verifier of client certificates signed by the CAs of a PEM bundle; a client without a
/// certificate is let through (the channel decides whether it needs one).
fn client_verifier(
    path: &Path,
    pem: &[u8],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoClientCa(path.to_path_buf()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoClientCa(path.to_path_buf()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|source| TlsError::ClientCa {
            path: path.to_path_buf(),
            source,
        })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config from a PEM certificate chain and key, and the CA bundle of client
/// certificates when there is one.
fn server_config(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    client_ca: Option<(&Path, &[u8])>,
) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(cert_path.to_path_buf()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| TlsError::NoKey(key_path.to_path_buf()))?;
    let config_error = |source| TlsError::Config {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((path, pem)) => builder.with_client_cert_verifier(client_verifier(path, pem)?),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Reads and checks every file into a new config.
fn read_files(
    cert_path: &Path,
    key_path: &Path,
    client_ca_path: Option<&Path>,
) -> Result<Current, TlsError> {
    let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
    let client_ca_pem = client_ca_path.map(read).transpose()?;
    let client_ca = client_ca_path.zip(client_ca_pem.as_deref());
    let config = server_config(cert_path, &cert_pem, key_path, &key_pem, client_ca)?;
    Ok(Current {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_pem,
        key_pem,
        client_ca_pem,
    })
}

impl ServerTls {
    /// Loads the certificate chain and key; the error says which file is wrong and how.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Self::load_with_client_ca(cert_path, key_path, None)
    }

    /// Loads the certificate chain and key, and the CA bundle that client certificates must
    /// chain to (`--tls-client-ca`); the error says which file is wrong and how.
    pub fn load_with_client_ca(
        cert_path: &Path,
        key_path: &Path,
        client_ca_path: Option<&Path>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(read_files(cert_path, key_path, client_ca_path)?),
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            client_ca_path: client_ca_path.map(Path::to_path_buf),
        })
    }

    /// Reads the files again. `Ok(true)`: new handshakes now use the new certificate (and client
    /// CA); `Ok(false)`: the files did not change. On an error the current config stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.cert_path)?, read(&self.key_path)?);
        let client_ca_pem = self.client_ca_path.as_deref().map(read).transpose()?;
        {
            let current = self.current.read().expect("tls lock");
            if current.cert_pem == cert_pem
                && current.key_pem == key_pem
                && current.client_ca_pem == client_ca_pem
            {
                return Ok(false);
            }
        }
        let next = read_files(
            &self.cert_path,
            &self.key_path,
            self.client_ca_path.as_deref(),
        )?;
        *self.current.write().expect("tls lock") = next;
        Ok(true)
    }

    /// True when connections may present a client certificate (`--tls-client-ca` is set).
    pub fn verifies_client_certificates(&self) -> bool {
        self.client_ca_path.is_some()
    }

    /// Reloads and logs the outcome (for the file watcher and SIGHUP).
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(true) => {
                tracing::info!(cert = %self.cert_path.display(), "tls certificate reloaded")
            }
            Ok(false) => {
                tracing::debug!(cert = %self.cert_path.display(), "tls certificate unchanged")
            }
            Err(e) => tracing::warn!(
                error = %chain(&e),
                "tls certificate not reloaded; the current one stays in use"
            ),
        }
    }

    /// The files, for the watcher.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert_path.as_path(), self.key_path.as_path()];
        paths.extend(self.client_ca_path.as_deref());
        paths
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.current.read().expect("tls lock").acceptor.clone()
    }
}

/// Watches the directories of the certificate and key (which also catches the atomic renames
/// and symlink swaps of mounted secrets) and reloads after a change. Dropping it stops watching.
pub struct CertWatcher {
    _watcher: notify::RecommendedWatcher,
    _task: AbortOnDrop,
}

impl std::fmt::Debug for CertWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertWatcher").finish_non_exhaustive()
    }
}

impl CertWatcher {
    /// Starts watching; the error is the watcher's (e.g. no inotify instances left).
    pub fn start(tls: Arc<ServerTls>) -> notify::Result<Self> {
        use notify::Watcher as _;
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        let mut dirs: Vec<PathBuf> = tls
            .paths()
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        }
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Writers touch a file several times (truncate, write, rename): let them finish.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                tls.reload_and_log();
            }
        });
        Ok(Self {
            _watcher: watcher,
            _task: AbortOnDrop(task),
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A listener whose connections are TLS streams. Handshakes run in their own tasks, so a slow
/// or silent client never holds up the others.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _acceptor: AbortOnDrop,
}

impl TlsListener {
    /// Accepts TCP connections on `tcp` and completes their handshakes with `tls`.
    pub fn new(tcp: TcpListener, tls: Arc<ServerTls>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                // Frames and answers are small writes: no Nagle delay.
                let _ = stream.set_nodelay(true);
                let acceptor = tls.acceptor();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let _ = tx.send((tls_stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(remote = %peer, error = %e, "tls handshake failed")
                        }
                        Err(_) => tracing::debug!(remote = %peer, "tls handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            _acceptor: AbortOnDrop(task),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The names of a verified client certificate: its subject's common names, then its DNS
/// subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    names: Arc<[String]>,
}

impl ClientCertificate {
    /// The names of a DER end-entity certificate (none when it cannot be parsed; rustls has
    /// already checked its chain and signature).
    pub fn from_der(der: &[u8]) -> Self {
        use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
        let mut names = Vec::new();
        if let Ok((_, cert)) = X509Certificate::from_der(der) {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_string),
            );
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        names.push((*dns).to_string());
                    }
                }
            }
        }
        Self {
            names: names.into(),
        }
    }

    /// Common names, then DNS names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True when one of its names (CN or DNS SAN, DNS names without regard to case) is listed.
    pub fn matches_any(&self, allowed: &[String]) -> bool {
        self.names
            .iter()
            .any(|name| allowed.iter().any(|a| a.eq_ignore_ascii_case(name)))
    }
}

impl std::fmt::Display for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.names.is_empty() {
            return f.write_str("a certificate without CN or DNS name");
        }
        let shown: Vec<String> = self
            .names
            .iter()
            .take(4)
            .map(|n| n.chars().take(64).filter(|c| !c.is_control()).collect())
            .collect();
        write!(f, "{}", shown.join(", "))
    }
}

/// The client certificate of the connection a request came on, verified against
/// `--tls-client-ca` during the handshake; `None` on plain HTTP and when none was presented.
/// An extractor that never fails.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<ClientCertificate>);

impl PeerCertificate {
    /// The verified certificate of a TLS connection, if the client presented one.
    pub fn of(stream: &TlsStream<TcpStream>) -> Self {
        let (_, connection) = stream.get_ref();
        Self(
            connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| ClientCertificate::from_der(cert.as_ref())),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificate {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<PeerCertificate>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The make-service of a [`TlsListener`]: each connection gets `service` with its peer address
/// (for `ConnectInfo<SocketAddr>`) and its [`PeerCertificate`] as request extensions.
#[derive(Debug, Clone)]
pub struct WithPeer<S>(pub S);

impl<S: Clone> tower::Service<IncomingStream<'_, TlsListener>> for WithPeer<S> {
    type Response = PeerService<S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: IncomingStream<'_, TlsListener>) -> Self::Future {
        std::future::ready(Ok(PeerService {
            inner: self.0.clone(),
            remote: *incoming.remote_addr(),
            certificate: PeerCertificate::of(incoming.io()),
        }))
    }
}

/// One TLS connection's service: sets the peer's address and certificate on every request.
#[derive(Debug, Clone)]
pub struct PeerService<S> {
    inner: S,
    remote: SocketAddr,
    certificate: PeerCertificate,
}

impl<S, B> tower::Service<http::Request<B>> for PeerService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.remote));
        request.extensions_mut().insert(self.certificate.clone());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn served_by(tls: &ServerTls) -> Arc<ServerConfig> {
        tls.acceptor().config().clone()
    }

    #[test]
    fn reload_swaps_only_for_a_new_valid_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (cert, key) = pair("one.test");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let tls = ServerTls::load(&cert_path, &key_path).unwrap();
        let first = served_by(&tls);
        assert_eq!(first.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);

        // Unchanged files: nothing to do (a touch is not a reload).
        assert!(!tls.reload().unwrap());
        assert!(Arc::ptr_eq(&first, &served_by(&tls)));

        // A key that does not belong to the certificate is refused; the old pair stays.
        let (other_cert, other_key) = pair("two.test");
        std::fs::write(&key_path, &other_key).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::Config { .. })));
        assert!(Arc::ptr_eq(&first, &served_by(&tls)));
        std::fs::write(&key_path, "not a key").unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::NoKey(_))));

        // The new pair complete: swapped.
        std::fs::write(&cert_path, &other_cert).unwrap();
        std::fs::write(&key_path, &other_key).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&first, &served_by(&tls)));
    }

    #[test]
    fn client_certificate_names_are_the_cn_and_dns_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["b.example.com".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "connector-a");
        let cert = params.self_signed(&key).unwrap();
        let c = ClientCertificate::from_der(cert.der());
        assert_eq!(c.names(), ["connector-a", "b.example.com"]);
        assert!(c.matches_any(&["B.Example.com".into()]));
        assert!(c.matches_any(&["x".into(), "connector-a".into()]));
        assert!(!c.matches_any(&["connector-b".into()]));
        assert_eq!(c.to_string(), "connector-a, b.example.com");
        let garbage = ClientCertificate::from_der(b"not a certificate");
        assert!(garbage.names().is_empty() && !garbage.matches_any(&["".into()]));
    }

    #[test]
    fn a_client_ca_is_loaded_checked_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path, ca_path) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("ca.pem"),
        );
        let (cert, key) = pair("one.test");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        // A file without a certificate is not a CA bundle.
        std::fs::write(&ca_path, &key).unwrap();
        let err =
            ServerTls::load_with_client_ca(&cert_path, &key_path, Some(&ca_path)).unwrap_err();
        assert!(
            matches!(err, TlsError::NoClientCa(_)) && err.to_string().contains("ca.pem"),
            "{err}"
        );
        let (ca, _) = pair("ca.test");
        std::fs::write(&ca_path, &ca).unwrap();
        let tls = ServerTls::load_with_client_ca(&cert_path, &key_path, Some(&ca_path)).unwrap();
        assert!(tls.verifies_client_certificates());
        assert_eq!(tls.paths().len(), 3);
        let first = served_by(&tls);
        assert!(!tls.reload().unwrap());
        // A new CA bundle is a change; a broken one is refused and the old one stays.
        std::fs::write(&ca_path, "garbage").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&first, &served_by(&tls)));
        let (other_ca, _) = pair("ca2.test");
        std::fs::write(&ca_path, other_ca).unwrap();
        assert!(tls.reload().unwrap());
        // Without a client CA, no client certificate is asked for.
        let plain = ServerTls::load(&cert_path, &key_path).unwrap();
        assert!(!plain.verifies_client_certificates());
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let missing = ServerTls::load(&cert_path, &key_path).unwrap_err();
        assert!(missing.to_string().contains("cert.pem"), "{missing}");
        std::fs::write(&cert_path, "-----BEGIN NOTHING-----").unwrap();
        std::fs::write(&key_path, pair("x.test").1).unwrap();
        let empty = ServerTls::load(&cert_path, &key_path).unwrap_err();
        assert!(matches!(empty, TlsError::NoCertificate(_)), "{empty}");
    }
}
