//! A TCP proxy on 127.0.0.1 that forwards to one upstream and can cut every live connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    /// Cancelled to cut the connections open now; replaced by a fresh token each time.
    cut: Arc<Mutex<CancellationToken>>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (c, n, s) = (cut.clone(), cuts.clone(), stop.clone());
        tokio::spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let (client, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let token = c.lock().unwrap().clone();
                let n = n.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = token.cancelled() => { n.fetch_add(1, Ordering::Relaxed); }
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                    // Dropping both sockets here is the cut: no goodbye on either side.
                });
            }
        });
        Self {
            addr,
            cut,
            cuts,
            stop,
        }
    }

    /// Cuts every connection open now.
    pub fn cut_all(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut_all();
    }
}
