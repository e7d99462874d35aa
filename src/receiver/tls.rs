//! TLS for `wcon serve`: the certificate chain and key (PEM files), a listener that hands axum
//! TLS streams, and reloading both files without dropping a connection.
//!
//! Owns reading and checking the PEM files, the rustls server config (HTTP/2 and HTTP/1.1 by
//! ALPN, so HTTPS and WSS share the port), and the swap to a new certificate: connections already
//! open keep the one they were set up with, new handshakes get the new one. A file that does not
//! load (half written, wrong key) is refused and the current certificate stays in use. It never
//! prints; reloads are logged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
}

/// What was loaded, and the bytes it was loaded from (to tell a real change from a touch).
struct Current {
    acceptor: TlsAcceptor,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// The serving certificate, reloadable.
pub struct ServerTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Current>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
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

/// A server config from a PEM certificate chain and key.
fn server_config(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
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
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl ServerTls {
    /// Loads the certificate chain and key; the error says which file is wrong and how.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        let config = server_config(cert_path, &cert_pem, key_path, &key_pem)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Current {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                cert_pem,
                key_pem,
            }),
        })
    }

    /// Reads both files again. `Ok(true)`: new handshakes now use the new certificate;
    /// `Ok(false)`: the files did not change. On an error the current certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.cert_path)?, read(&self.key_path)?);
        {
            let current = self.current.read().expect("tls lock");
            if current.cert_pem == cert_pem && current.key_pem == key_pem {
                return Ok(false);
            }
        }
        let config = server_config(&self.cert_path, &cert_pem, &self.key_path, &key_pem)?;
        *self.current.write().expect("tls lock") = Current {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_pem,
            key_pem,
        };
        Ok(true)
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
    pub fn paths(&self) -> [&Path; 2] {
        [&self.cert_path, &self.key_path]
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
