//! Letting go of a Kafka client without blocking the runtime: its close (a consumer leaving
//! its group, a producer purging what it still queues) may wait on a broker, or, for a
//! client librdkafka has wedged, never finish.

use std::time::Duration;

/// How long a caller waits for a client to close.
pub(crate) const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Drops `client` on a thread of its own named `name`, waited for no longer than
/// [`CLOSE_LIMIT`]: a broker that does not answer must not keep a stopping role alive, and
/// a plain thread, unlike the runtime's blocking pool, does not hold up the process exit. A
/// close that never finishes leaves its thread behind.
pub(crate) async fn drop_on_own_thread<T: Send + 'static>(client: T, name: &str) {
    let (done, closed) = tokio::sync::oneshot::channel();
    let closing = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            drop(client);
            let _ = done.send(());
        });
    if let Err(e) = closing {
        tracing::warn!(error = %e, "cannot start the closing thread; leaving kafka as is");
        return;
    }
    if tokio::time::timeout(CLOSE_LIMIT, closed).await.is_err() {
        tracing::warn!(limit = ?CLOSE_LIMIT, name, "kafka client did not close in time");
    }
}
