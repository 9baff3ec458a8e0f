//! The shared state of every reconcile: the API client, defaults, the backends seam, the
//! event recorder, metrics, timings and the per-campaign failure counts behind backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::backends::Backends;
use crate::kubeapi::MANAGER;
use crate::metrics::Metrics;
use crate::validate::Defaults;

/// Shared state of every reconcile.
pub(crate) struct Context {
    /// API client.
    pub client: Client,
    /// Defaults for what campaigns leave out.
    pub defaults: Defaults,
    /// Redis, Kafka and PostgreSQL.
    pub backends: Arc<dyn Backends>,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Metrics,
    /// How often a healthy campaign's status is refreshed.
    pub resync: Duration,
    /// How long `deletionPolicy: Delete` waits for PostgreSQL to have every issuance.
    pub drain_timeout: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

/// How often and how patiently the controller works.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    /// Status refresh interval of a healthy campaign.
    pub resync: Duration,
    /// How long `deletionPolicy: Delete` waits for PostgreSQL to have every issuance.
    pub drain_timeout: Duration,
}

impl Context {
    /// A context over `client` and `backends`.
    pub fn new(
        client: Client,
        defaults: Defaults,
        backends: Arc<dyn Backends>,
        metrics: Metrics,
        timings: Timings,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            backends,
            metrics,
            resync: timings.resync,
            drain_timeout: timings.drain_timeout,
            failures: Mutex::default(),
        }
    }

    /// Consecutive failures per campaign (`namespace/name`).
    pub fn failures(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}
