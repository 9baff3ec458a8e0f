//! The in-process relay on a thread of its own, with its own single-threaded runtime: its
//! bursts of work (decoding a batch of hundreds of entries, producing them) no longer run
//! on the tokio workers that answer users. Measured: the relay-on issue path went from
//! 0.72–0.77 to 0.76–0.95 of the relay-off one (docs/benchmarks.md).

use stampede_core::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RelayConfig, run};
use crate::metrics::PipelineMetrics;

/// Starts the relay on a thread named `relay` with its own single-threaded runtime; the
/// handle yields what [`run`] returns.
pub fn spawn_on_own_thread(
    config: RelayConfig,
    metrics: PipelineMetrics,
    shutdown: CancellationToken,
) -> JoinHandle<Result<(), Error>> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match runtime {
                Ok(rt) => {
                    let result = rt.block_on(run(config, metrics, shutdown));
                    // A metadata probe may still be on the blocking pool: do not wait on it.
                    rt.shutdown_timeout(std::time::Duration::from_secs(2));
                    result
                }
                Err(e) => Err(Error::Io(e)),
            };
            let _ = done.send(result);
        });
    tokio::spawn(async move {
        started.map_err(Error::Io)?;
        outcome.await.unwrap_or_else(|_| {
            Err(Error::Kafka(
                "the relay thread ended without a result".into(),
            ))
        })
    })
}
