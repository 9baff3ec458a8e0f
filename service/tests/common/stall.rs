//! A TCP proxy that plays a server whose node vanished mid-conversation: it passes bytes
//! both ways until a client sends a request containing a chosen needle, then that
//! connection goes silent for good (nothing forwarded either way, nothing closed, no
//! reset), as when the peer's node loses power. Other connections pass untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Listens on a free loopback port and forwards to `upstream`; aborted on drop (every
/// connection through it with it).
pub struct StallingProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    stalled: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl StallingProxy {
    /// Starts one in front of `upstream` that silences the first connection whose client
    /// sends `needle` (the request is not forwarded).
    pub async fn start(upstream: SocketAddr, needle: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicUsize::new(0));
        let count = stalled.clone();
        let accept = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                tasks.spawn(pipe(client, upstream, needle, count.clone()));
            }
        });
        Self {
            addr,
            stalled,
            accept,
        }
    }

    /// Connections silenced so far (at most one).
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Waits (polling, up to `limit`) until a connection was silenced.
    pub async fn until_stalled(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while self.stalled() == 0 && start.elapsed() < limit {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.stalled() > 0
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, needle: &[u8], stalled: Arc<AtomicUsize>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let seen = buf[..n].windows(needle.len()).any(|w| w == needle);
            if seen
                && stalled
                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return true;
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                return false;
            }
        }
    };
    let silenced = tokio::select! {
        s = up => s,
        _ = down => false,
    };
    if silenced {
        // Keeps both sockets open and unread until the proxy is dropped.
        std::future::pending::<()>().await;
    }
}
