//! A TCP proxy a test controls, in front of a backend the reconcile needs (Redis): it
//! passes bytes both ways until the client sends a request containing a chosen needle,
//! then holds that request unanswered until the test releases it. While it is held, the
//! reconcile that sent it is known to be in flight.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy saw of the held request.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// When the first request containing the needle arrived (and was held).
    pub since: Option<Instant>,
    /// The bytes held, not forwarded (yet).
    pub request: Vec<u8>,
    /// Set by [`HoldingProxy::release`].
    pub released: bool,
}

struct Shared {
    upstream: SocketAddr,
    needle: Vec<u8>,
    held: Mutex<Held>,
    release: watch::Sender<bool>,
}

/// Listens on a free loopback port and forwards to `upstream`; aborted on drop.
pub struct HoldingProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl HoldingProxy {
    /// Starts one in front of `upstream` that holds the first request containing `needle`.
    pub async fn start(upstream: SocketAddr, needle: &[u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            needle: needle.to_vec(),
            held: Mutex::new(Held::default()),
            release: watch::channel(false).0,
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pipe(client, s.clone()));
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// What is held now.
    pub fn held(&self) -> Held {
        self.shared.held.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until a request is held, returning it; `None` if none was.
    pub async fn until_held(&self, limit: Duration) -> Option<Held> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let held = self.held();
            if held.since.is_some() {
                return Some(held);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Forwards what is held and passes everything from now on.
    pub fn release(&self) {
        self.shared.held.lock().unwrap().released = true;
        self.shared.release.send_replace(true);
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.release();
        self.accept.abort();
    }
}

/// One client connection: server → client copied as is, client → server through the hold.
async fn pipe(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let back = tokio::spawn(copy_back(sr, cw));
    forward(cr, sw, &shared).await;
    let _ = back.await;
}

/// Server → client. Replies to a client that went away are read and dropped, so the server
/// is never blocked on a dead client.
async fn copy_back(mut sr: OwnedReadHalf, mut cw: OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut client_alive = true;
    while let Ok(n) = sr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        client_alive = client_alive && cw.write_all(&buf[..n]).await.is_ok();
    }
}

/// Client → server: a chunk containing the needle (before release) is held until release,
/// then forwarded, even if the client has gone by then (as a request already in the
/// server's socket buffer would still run after the client crashed).
async fn forward(mut cr: OwnedReadHalf, mut sw: OwnedWriteHalf, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut release = shared.release.subscribe();
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if hold(shared, chunk) {
            let _ = release.wait_for(|r| *r).await;
        }
        if sw.write_all(chunk).await.is_err() {
            return;
        }
    }
    // The client is gone: keep the server side open until released, so a held request
    // forwarded late is read by the server before it sees the connection close.
    let _ = release.wait_for(|r| *r).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Records `chunk` as held when it carries the needle and nothing was released yet.
fn hold(shared: &Shared, chunk: &[u8]) -> bool {
    let mut held = shared.held.lock().unwrap();
    let found = chunk
        .windows(shared.needle.len())
        .any(|w| w == shared.needle.as_slice());
    if held.released || !found {
        return false;
    }
    held.since.get_or_insert_with(Instant::now);
    held.request.extend_from_slice(chunk);
    true
}
