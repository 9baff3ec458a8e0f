//! A TCP proxy whose upstream a test can move, as a Service address or a Sentinel-managed
//! endpoint moves to the promoted replica in a failover: moving it drops every connection
//! through it, so clients reconnect and land on the new upstream.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Listens on a free loopback port; aborted on drop.
pub struct SwitchProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    upstream: Arc<watch::Sender<SocketAddr>>,
    accept: JoinHandle<()>,
}

impl SwitchProxy {
    /// Starts one forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(watch::channel(upstream).0);
        let tx = upstream.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pipe(client, tx.subscribe()));
            }
        });
        Self {
            addr,
            upstream,
            accept,
        }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Sends new connections to `upstream` and drops the open ones.
    pub fn point_at(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(mut client: TcpStream, mut upstream: watch::Receiver<SocketAddr>) {
    let to = *upstream.borrow_and_update();
    let Ok(mut server) = TcpStream::connect(to).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = upstream.changed() => {}
    }
}
