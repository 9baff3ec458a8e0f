//! The metrics endpoint every role without the public API serves (relay, writer, operator):
//! `/metrics`, `/healthz` and `/readyz` on a listener of its own.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Serves /metrics (the text `render` returns), /healthz and /readyz until `shutdown`.
pub async fn serve_metrics_text<F>(
    listener: TcpListener,
    render: F,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
