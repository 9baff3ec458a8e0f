//! The crate's error type.

/// Everything that can go wrong in the service library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule; the message names the field.
    #[error("{0}")]
    InvalidInput(String),
    /// The campaign does not exist in Redis.
    #[error("campaign {0} not found")]
    CampaignNotFound(String),
    /// The campaign exists but has no waiting room (or it is turned off).
    #[error("campaign {0} has no waiting room")]
    NoWaitingRoom(String),
    /// A provisioning request would shrink stock.
    #[error(
        "stock of campaign {campaign} is {current}; it can grow but never shrink (asked for {requested})"
    )]
    StockDecrease {
        /// The campaign.
        campaign: String,
        /// Stock in Redis now.
        current: u64,
        /// Stock asked for.
        requested: u64,
    },
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the configured timeout.
    #[error("redis did not answer within {0:?}")]
    RedisTimeout(std::time::Duration),
    /// The replicas did not acknowledge an issuance in time (`--durability replica`).
    #[error("not replicated: {0}")]
    NotReplicated(String),
    /// Redis answered something this code does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// Kafka refused or failed an operation.
    #[error("kafka: {0}")]
    Kafka(String),
    /// PostgreSQL refused or failed an operation.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A database write given up before PostgreSQL answered (a time limit, shutdown).
    #[error("database write given up: {0}")]
    DatabaseGaveUp(String),
    /// The audit found oversold, duplicated, mismatched or missing issuances.
    #[error("audit of campaign {0} is not clean")]
    AuditFailed(String),
    /// Binding or serving the HTTP listener failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::CampaignNotFound(_) => "campaign_not_found",
            Error::NoWaitingRoom(_) => "no_waiting_room",
            Error::StockDecrease { .. } => "stock_decrease",
            Error::Redis(_) => "redis",
            Error::RedisTimeout(_) => "redis_timeout",
            Error::NotReplicated(_) => "not_replicated",
            Error::Protocol(_) => "protocol",
            Error::Kafka(_) => "kafka",
            Error::Database(_) => "database",
            Error::DatabaseGaveUp(_) => "database_gave_up",
            Error::AuditFailed(_) => "audit_failed",
            Error::Io(_) => "io",
        }
    }

    /// The same failure, for another caller of a call that failed (a batch's): what it
    /// carries where it can be copied, its message otherwise.
    pub fn for_another_caller(&self) -> Self {
        match self {
            Error::Redis(e) => Error::Redis(e.clone()),
            Error::RedisTimeout(d) => Error::RedisTimeout(*d),
            Error::NotReplicated(s) => Error::NotReplicated(s.clone()),
            Error::CampaignNotFound(s) => Error::CampaignNotFound(s.clone()),
            other => Error::Protocol(other.to_string()),
        }
    }

    /// True when the backend (Redis) is unreachable or too slow, as opposed to bad input.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Redis(_) | Error::RedisTimeout(_) | Error::NotReplicated(_)
        )
    }
}
