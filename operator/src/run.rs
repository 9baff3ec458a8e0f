//! The operator process: the controller, its metrics/health endpoint, graceful shutdown.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;
use crate::backends::RealBackends;
use crate::context::{Context, Timings};
use crate::crd::CouponCampaign;
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::validate::Defaults;
use stampede_core::endpoint::serve_metrics_text;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kubeconfig to use; default: in-cluster or `$KUBECONFIG`/`~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Where /metrics and /healthz listen.
    pub metrics_listen: SocketAddr,
    /// Defaults for campaigns.
    pub defaults: Defaults,
    /// Status refresh interval of a healthy campaign.
    pub resync: Duration,
    /// How long `deletionPolicy: Delete` waits for PostgreSQL to have every issuance.
    pub drain_timeout: Duration,
}

/// A client for the configured cluster.
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, Error> {
    let Some(path) = kubeconfig else {
        return Ok(Client::try_default().await?);
    };
    let kc = Kubeconfig::read_from(path)
        .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(Client::try_from(config)?)
}

/// Runs the controller until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let listener = TcpListener::bind(config.metrics_listen).await?;
    run_on(config, listener, shutdown).await
}

/// [`run`] with /metrics and /healthz served on an already bound `listener`.
pub async fn run_on(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = client(config.kubeconfig.as_ref()).await?;
    let campaigns = Api::<CouponCampaign>::all(client.clone());
    crd_installed(&campaigns).await?;
    info!(metrics = %listener.local_addr()?, "operator starting");
    let metrics = Metrics::new();
    let render = {
        let m = metrics.clone();
        move || m.render()
    };
    let server = tokio::spawn(serve_metrics_text(listener, render, shutdown.clone()));
    let timings = Timings {
        resync: config.resync,
        drain_timeout: config.drain_timeout,
    };
    let d = &config.defaults;
    let backends = Arc::new(RealBackends::new(
        d.kafka_security.clone(),
        &d.kafka_brokers,
    ));
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.defaults,
        backends,
        metrics,
        timings,
    ));
    let (reader, writer) = reflector::store();
    // Status writes do not wake the controller: only spec (generation), finalizer and
    // deletion changes do. Resyncs and owned Deployments cover the rest.
    let changes = watcher(campaigns, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=stampede-operator");
    Controller::for_stream(changes, reader)
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<Job>::all(client), owned)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "controller");
            }
        })
        .await;
    shutdown.cancel();
    server
        .await
        .map_err(|e| Error::Config(format!("metrics server task: {e}")))??;
    info!("operator stopped");
    Ok(())
}

/// Fails at start, clearly, when the CRD is missing.
async fn crd_installed(campaigns: &Api<CouponCampaign>) -> Result<(), Error> {
    campaigns
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot list {}: {e} (is the CRD installed? `stampede-operator crd | kubectl apply -f -`)",
                CouponCampaign::plural(&()),
            ))
        })?;
    Ok(())
}

fn spec_or_lifecycle(cc: &CouponCampaign) -> Option<u64> {
    let m = cc.meta();
    let mut h = DefaultHasher::new();
    (m.generation, &m.finalizers, m.deletion_timestamp.is_some()).hash(&mut h);
    Some(h.finish())
}
