//! Command line: `run`, `crd`, `loadtest`, `rules` and `alerts`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stampede_core::kafka::KafkaSecurity;
use stampede_core::kafka_security::Ca;

use crate::Error;
use crate::run::Config;
use crate::validate::Defaults;

/// Stampede operator.
#[derive(Debug, Parser)]
#[command(name = "stampede-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster.
    Run(RunArgs),
    /// Print the CouponCampaign CRD as YAML (`stampede-operator crd | kubectl apply -f -`).
    Crd,
    /// Run one of a campaign file's load tests with the local k6 against a running service
    /// and print the verdict as the operator records it (exit 1 unless it passed).
    Loadtest(crate::loadtest::local::LoadTestArgs),
    /// Print a campaign file's alert rules as a Prometheus rules file (for Prometheus
    /// without the operator's PrometheusRule).
    Rules(crate::rules::RulesArgs),
    /// Print the alert rules over every campaign (default thresholds) for Grafana alerting
    /// (`--grafana`: dashboards/alerting/stampede-alerts.yaml) or Prometheus (`--prometheus`).
    Alerts(crate::alerts::AlertsArgs),
}

/// `run` flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig file; default: in-cluster config, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long, env = "STAMPEDE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Address of /metrics and /healthz.
    #[arg(
        long,
        env = "STAMPEDE_OPERATOR_LISTEN",
        default_value = "127.0.0.1:9470"
    )]
    pub listen: SocketAddr,
    /// Redis for campaigns without `spec.redis`.
    #[arg(
        long,
        env = "STAMPEDE_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Kafka brokers for campaigns without `spec.kafka.brokers`.
    #[arg(long, env = "STAMPEDE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// PostgreSQL for campaigns without `spec.database`.
    #[arg(
        long,
        env = "STAMPEDE_DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://stampede:stampede@127.0.0.1:5432/stampede"
    )]
    pub database_url: String,
    /// Image of stampede-service for issuers and writers without `spec.issuer.image`.
    #[arg(
        long,
        env = "STAMPEDE_SERVICE_IMAGE",
        default_value = concat!("ghcr.io/stampede-dev/stampede-service:", env!("CARGO_PKG_VERSION"))
    )]
    pub service_image: String,
    /// Image patterns (comma-separated, `*` wildcard) a campaign's `spec.issuer.image` or
    /// `spec.writer.image` may name; others are refused with a condition. Default: the
    /// repository of `--service-image` (any tag or digest).
    #[arg(long, env = "STAMPEDE_ALLOWED_IMAGES", value_delimiter = ',')]
    pub allowed_images: Vec<String>,
    /// Create NetworkPolicies for each campaign: issuers admit the API port from anywhere
    /// and metrics only from `--monitoring-namespace`; writers only metrics from there.
    #[arg(long, env = "STAMPEDE_NETWORK_POLICIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub network_policies: bool,
    /// The namespace Prometheus scrapes from (its `kubernetes.io/metadata.name` label).
    #[arg(
        long,
        env = "STAMPEDE_MONITORING_NAMESPACE",
        default_value = "monitoring"
    )]
    pub monitoring_namespace: String,
    /// Image of the k6 load-test runner Jobs.
    #[arg(long, env = "STAMPEDE_K6_IMAGE", default_value = crate::loadtest::DEFAULT_K6_IMAGE)]
    pub k6_image: String,
    /// Seconds between status refreshes of a campaign (counts, pods).
    #[arg(long, env = "STAMPEDE_OPERATOR_RESYNC_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_secs: u64,
    /// Seconds `deletionPolicy: Delete` waits for PostgreSQL to have every issuance before it
    /// keeps the data and lets go, and a failing cleanup is retried before the finalizer is
    /// released with a Warning.
    #[arg(
        long,
        env = "STAMPEDE_OPERATOR_DRAIN_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub drain_timeout_secs: u64,
}

impl RunArgs {
    /// The run configuration these flags describe (Kafka's SASL and TLS from the
    /// environment only, see [`kafka_security`]).
    pub fn config(self) -> Result<Config, Error> {
        let database_ca_pem = database_ca_pem(&self.database_url)?;
        Ok(Config {
            kubeconfig: self.kubeconfig,
            metrics_listen: self.listen,
            defaults: Defaults {
                redis_url: self.redis_url,
                kafka_brokers: self.kafka_brokers,
                database_url: self.database_url,
                service_image: self.service_image,
                k6_image: self.k6_image,
                allowed_images: self.allowed_images,
                monitoring_namespace: self.network_policies.then_some(self.monitoring_namespace),
                kafka_security: kafka_security()?,
                database_ca_pem,
            },
            resync: Duration::from_secs(self.resync_secs),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
        })
    }
}

/// The default database's CA as PEM text: the file its URL names (`sslrootcert=<file>`),
/// else `STAMPEDE_DATABASE_CA_PEM` (an operator pod has no such file). Pods cannot see the
/// operator's files, so they get it through their connection Secret.
pub fn database_ca_pem(database_url: &str) -> Result<Option<String>, Error> {
    let (_, file) = stampede_core::db::split_root_cert(database_url);
    match file {
        Some(f) => std::fs::read_to_string(&f)
            .map(Some)
            .map_err(|e| Error::Config(format!("--database-url sslrootcert {f}: {e}"))),
        None => Ok(std::env::var(stampede_core::db::CA_PEM_ENV)
            .ok()
            .filter(|p| !p.trim().is_empty())),
    }
}

/// Kafka's SASL and TLS from the operator's environment (`STAMPEDE_KAFKA_SECURITY_PROTOCOL`
/// and the rest, from a Secret; never flags, which `ps` shows), with a CA file read into
/// PEM text: the pods get it through their connection Secret, not a file they cannot see.
pub fn kafka_security() -> Result<Option<KafkaSecurity>, Error> {
    let config = |e: stampede_core::Error| Error::Config(e.to_string());
    let Some(mut s) = KafkaSecurity::from_env().map_err(config)? else {
        return Ok(None);
    };
    if let Some(Ca::File(f)) = &s.ca {
        let pem = std::fs::read_to_string(f)
            .map_err(|e| Error::Config(format!("STAMPEDE_KAFKA_CA_FILE {f}: {e}")))?;
        s.ca = Some(Ca::Pem(pem));
    }
    Ok(Some(s))
}
