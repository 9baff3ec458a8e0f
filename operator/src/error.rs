//! The operator's errors, each with a stable metric label.

/// Everything reconcile and the operator process can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be carried out; waits for a change.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A child's name is taken by an object that is not the campaign's; retried with
    /// backoff until it is free.
    #[error("name taken: {0}")]
    NameTaken(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Redis, Kafka or PostgreSQL, through the service library.
    #[error(transparent)]
    Backend(#[from] stampede_core::Error),
    /// A Secret a campaign names is missing or unusable.
    #[error("secret {0}")]
    Secret(String),
    /// Provisioning did not complete; status says why, retried with backoff.
    #[error("not provisioned yet: {0}")]
    Incomplete(String),
    /// Deleting under `deletionPolicy: Delete` waits until PostgreSQL has every issuance.
    #[error(
        "waiting before deleting the campaign's data: {pending} issuances still in the outbox, {unwritten} not yet in PostgreSQL"
    )]
    OutboxNotDrained {
        /// Entries still in the outbox stream.
        pending: u64,
        /// Issued coupons PostgreSQL has no row of yet (all of them when it cannot be asked).
        unwritten: u64,
    },
    /// A local load test (`stampede-operator loadtest`) did not pass.
    #[error("load test {name}: {verdict}: {reason}")]
    LoadTestFailed {
        /// The test.
        name: String,
        /// ThresholdsFailed or Error.
        verdict: String,
        /// Which thresholds, or what broke.
        reason: String,
    },
    /// The finalizer helper failed to add or remove the finalizer.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Configuration (kubeconfig, CRD missing).
    #[error("{0}")]
    Config(String),
    /// Sockets and files.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, stable label for metrics (`stampede_operator_reconcile_failures_total`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "invalid_spec",
            Self::NameTaken(_) => "name_taken",
            Self::Kube(_) => "kube_api",
            Self::Backend(e) => e.metric_label(),
            Self::Secret(_) => "secret",
            Self::Incomplete(_) => "incomplete",
            Self::OutboxNotDrained { .. } => "outbox_not_drained",
            Self::LoadTestFailed { .. } => "load_test_failed",
            Self::Finalizer(_) => "finalizer",
            Self::Config(_) => "config",
            Self::Io(_) => "io",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            other => Self::Finalizer(other.to_string()),
        }
    }
}
