//! Validate: a `CouponCampaign` in, a [`Plan`] (everything reconcile needs, defaults
//! applied, free of Kubernetes types) out. Pure; the API server's schema catches most of
//! this first, but an object stored under an older schema must not get past here.

mod fields;
mod images;
mod plan;
#[cfg(test)]
pub(crate) mod tests;
mod waiting_room;

use std::path::Path;

use kube::ResourceExt;
use stampede_core::campaign::{MAX_STOCK, Window};
use stampede_core::ids::CampaignId;
use stampede_core::kafka::KafkaSecurity;
use stampede_core::store::shards::MAX_SHARDS;

use crate::Error;
use crate::crd::{CouponCampaign, CouponCampaignSpec};
use fields::{endpoint, inner, resources};

pub(crate) use fields::duration_secs;
pub use plan::{AuthKeys, AuthPlan, Defaults, Endpoint, IssuerPlan, Plan, WriterPlan};
pub(crate) use plan::{CAMPAIGN_LABEL, labels};
pub use waiting_room::WaitingRoomPlan;

/// Checks the campaign and applies defaults. Errors name the field.
pub fn validate(cc: &CouponCampaign, defaults: &Defaults) -> Result<Plan, Error> {
    let spec = &cc.spec;
    let Some(namespace) = cc.namespace() else {
        return Err(Error::InvalidSpec("metadata.namespace is missing".into()));
    };
    let campaign = campaign_id(cc, &namespace)?;
    check_bounds(spec)?;
    let window = window(spec)?;
    check_load_tests(spec)?;
    images::check_images(spec, defaults)?;
    let k = &spec.kafka;
    let issuer = issuer(spec, defaults)?;
    let writer = writer(spec, defaults)?;
    let auth = fields::auth(spec)?;
    let waiting_room = waiting_room::waiting_room(spec, &auth)?;
    Ok(Plan {
        campaign,
        name: cc.name_any(),
        namespace,
        stock: spec.stock as u64,
        shards: spec.shards as u32,
        window,
        waiting_room,
        paused: spec.paused,
        partitions: k.partitions,
        replication_factor: k.replication_factor,
        redis: endpoint("spec.redis", spec.redis.as_ref(), &defaults.redis_url)?,
        kafka: endpoint(
            "spec.kafka.brokers",
            k.brokers.as_ref(),
            &defaults.kafka_brokers,
        )?,
        database: endpoint(
            "spec.database",
            spec.database.as_ref(),
            &defaults.database_url,
        )?,
        writer,
        auth,
        issuer,
        alerts: spec.alerts.clone(),
        deletion_policy: spec.deletion_policy,
        load_tests: spec.load_tests.clone(),
        monitoring_namespace: defaults.monitoring_namespace.clone(),
        kafka_security: default_kafka_security(spec, defaults),
        database_ca_pem: default_database_ca(spec, defaults),
    })
}

fn issuer(spec: &CouponCampaignSpec, defaults: &Defaults) -> Result<IssuerPlan, Error> {
    let i = &spec.issuer;
    Ok(IssuerPlan {
        image: issuer_image(spec, defaults),
        min_replicas: i.min_replicas,
        max_replicas: i.max_replicas,
        target_cpu: i.target_cpu_utilization,
        max_in_flight: i.max_in_flight,
        durability: i.durability,
        limits: i.limits.clone(),
        resources: resources(
            "spec.issuer.resources",
            i.resources.as_ref(),
            ("250m", "128Mi"),
            ("2", "512Mi"),
        )?,
    })
}

/// Reads and validates a campaign file (namespace `default` when it names none); the
/// local commands (`loadtest`, `rules`) start here.
pub fn from_file(file: &Path, redis_url: &str) -> Result<Plan, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Config(format!("--file {}: {e}", file.display())))?;
    let mut cc: CouponCampaign = serde_yaml::from_str(&text)
        .map_err(|e| Error::InvalidSpec(format!("--file {}: {e}", file.display())))?;
    let local = cc.namespace().is_none();
    if local {
        cc.metadata.namespace = Some("default".into());
    }
    let defaults = Defaults {
        redis_url: redis_url.to_owned(),
        kafka_brokers: String::new(),
        database_url: String::new(),
        service_image: String::new(),
        k6_image: String::new(),
        // A local load test runs no pods.
        allowed_images: vec!["*".into()],
        monitoring_namespace: None,
        kafka_security: None,
        database_ca_pem: None,
    };
    let mut plan = validate(&cc, &defaults)?;
    if local {
        // A file that names no namespace is a local rehearsal: the campaign is the one
        // `stampede-service campaign create --id <name>` made, under its bare name.
        plan.campaign = CampaignId::parse(&plan.name)
            .map_err(|e| Error::InvalidSpec(format!("metadata.name: {e}")))?;
    }
    Ok(plan)
}

/// The operator's database CA, for a campaign that uses the operator's database.
/// The operator's Kafka credentials and CA, for the operator's brokers only: a campaign
/// that names brokers of its own would otherwise receive them in its pods, and the
/// operator would present them there (SASL PLAIN sends the password as it is).
fn default_kafka_security(spec: &CouponCampaignSpec, defaults: &Defaults) -> Option<KafkaSecurity> {
    spec.kafka
        .brokers
        .is_none()
        .then(|| defaults.kafka_security.clone())
        .flatten()
}

fn default_database_ca(spec: &CouponCampaignSpec, defaults: &Defaults) -> Option<String> {
    spec.database
        .is_none()
        .then(|| defaults.database_ca_pem.clone())
        .flatten()
}

fn window(spec: &CouponCampaignSpec) -> Result<Option<Window>, Error> {
    let Some(w) = &spec.window else {
        return Ok(None);
    };
    Window::from_rfc3339(w.opens_at.as_deref(), w.closes_at.as_deref())
        .map(Some)
        .map_err(|e| Error::InvalidSpec(format!("spec.window: {}", inner(e))))
}

/// Partitions, replicas and batch bounds.
/// The longest campaign name: `<name>-issuer` and `<name>-writer` name Services, which
/// must be DNS labels of at most 63 characters (the CRD's rule on `metadata.name` says the
/// same).
pub const MAX_NAME: usize = 56;

/// Whether `name` can name a campaign's children: a DNS label (RFC 1035: a letter first,
/// then letters, digits and dashes, not ending with a dash) of at most [`MAX_NAME`].
pub fn name_fits(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=MAX_NAME).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The campaign's id in Redis, Kafka and PostgreSQL: `<namespace>.<name>`, so same-named
/// campaigns of two namespaces never meet. A campaign an earlier operator provisioned under
/// its bare name (its status has stock or topics but no `campaignId`) keeps that id: its
/// data stays where it is (docs/upgrading.md).
fn campaign_id(cc: &CouponCampaign, namespace: &str) -> Result<CampaignId, Error> {
    let name = cc.name_any();
    if !name_fits(&name) {
        return Err(Error::InvalidSpec(format!(
            "metadata.name {name:?} must be a DNS label of at most {MAX_NAME} characters \
             (a-z, 0-9 and '-', starting with a letter and ending with a letter or digit): \
             it names the campaign's Services ('{name}-issuer') and labels"
        )));
    }
    // A name starting "lt-" would, after its namespace, read as a shadow's "<ns>.lt-…".
    let bare = CampaignId::parse(&name)
        .ok()
        .filter(|c| !c.is_load_test_shadow() && !name.starts_with("lt-"))
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "metadata.name {name:?} must not start with 'lt-': with its namespace it \
                 would name a load-test shadow campaign ('<namespace>.lt-…')"
            ))
        })?;
    let legacy = cc.status.as_ref().is_some_and(|s| match &s.campaign_id {
        Some(id) => id == bare.as_str(),
        None => s.stock.is_some() || s.kafka.is_some(),
    });
    if legacy {
        return Ok(bare);
    }
    let id = CampaignId::namespaced(namespace, &name).map_err(|_| {
        Error::InvalidSpec(format!(
            "metadata.name {name:?}: with its namespace {namespace:?} it makes a campaign id \
             longer than 128 characters (namespace + '.' + name)"
        ))
    })?;
    // Created again under the name of one deleted before, it may have been given the id's
    // next free form (reconcile's `spec::fresh_id`), pinned in its status.
    let pinned = cc.status.as_ref().and_then(|s| s.campaign_id.as_deref());
    Ok((1..=MAX_AGAIN)
        .filter_map(|n| again(&id, n))
        .find(|again| pinned == Some(again.as_str()))
        .unwrap_or(id))
}

/// How many times a campaign id can be taken again (`<id>.2` … `<id>.99`) after
/// campaigns of it were deleted with their rows kept.
pub const MAX_AGAIN: u32 = 99;

/// The id a campaign created for the `n`th time (2 or more) under `id` gets, when rows of
/// the earlier ones are in PostgreSQL: `<id>.<n>` (names hold no dot, so it is no other
/// campaign's id, and no load-test shadow's: those end `.lt-<test>`).
pub fn again(id: &CampaignId, n: u32) -> Option<CampaignId> {
    (n >= 2)
        .then(|| CampaignId::parse(&format!("{id}.{n}")).ok())
        .flatten()
}

fn check_bounds(spec: &CouponCampaignSpec) -> Result<(), Error> {
    let (k, i, w) = (&spec.kafka, &spec.issuer, &spec.writer);
    let problem = if spec.stock < 1 {
        format!("spec.stock must be at least 1, got {}", spec.stock)
    } else if spec.stock as u64 > MAX_STOCK {
        format!("spec.stock must be at most {MAX_STOCK}, got {}", spec.stock)
    } else if !(1..=MAX_SHARDS as i32).contains(&spec.shards) {
        format!("spec.shards must be 1..={MAX_SHARDS}, got {}", spec.shards)
    } else if spec.stock < i64::from(spec.shards) {
        format!(
            "spec.stock ({}) must be at least spec.shards ({})",
            spec.stock, spec.shards
        )
    } else if k.partitions < 1 {
        format!(
            "spec.kafka.partitions must be at least 1, got {}",
            k.partitions
        )
    } else if k.replication_factor < 1 {
        format!(
            "spec.kafka.replicationFactor must be at least 1, got {}",
            k.replication_factor
        )
    } else if i.min_replicas < 1 || i.min_replicas > i.max_replicas {
        format!(
            "spec.issuer.minReplicas ({}) must be at least 1 and not exceed spec.issuer.maxReplicas ({})",
            i.min_replicas, i.max_replicas
        )
    } else if !(1..=100).contains(&i.target_cpu_utilization) {
        format!(
            "spec.issuer.targetCPUUtilization must be 1..=100, got {}",
            i.target_cpu_utilization
        )
    } else if w.replicas < 1 || w.batch_rows < 1 || w.batch_linger_ms < 0 {
        "spec.writer: replicas and batchRows must be at least 1, batchLingerMs at least 0".into()
    } else {
        return Ok(());
    };
    Err(Error::InvalidSpec(problem))
}

/// Unique names, parallelism and durations of the load tests.
fn check_load_tests(spec: &CouponCampaignSpec) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::new();
    for t in &spec.load_tests {
        if !seen.insert(t.name.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "spec.loadTests: the name {:?} is used twice",
                t.name
            )));
        }
        if t.parallelism < 1 {
            return Err(Error::InvalidSpec(format!(
                "spec.loadTests[{}].parallelism must be at least 1",
                t.name
            )));
        }
        let room = spec.waiting_room.as_ref().is_some_and(|w| w.enabled);
        if t.profile.needs_waiting_room() && !room {
            return Err(Error::InvalidSpec(format!(
                "spec.loadTests[{}].profile {} needs spec.waitingRoom (enabled)",
                t.name,
                t.profile.as_str()
            )));
        }
        if let Some(d) = &t.duration
            && duration_secs(d).is_none()
        {
            return Err(Error::InvalidSpec(format!(
                "spec.loadTests[{}].duration {d:?} is not a duration like 90s, 10m or 1h",
                t.name
            )));
        }
    }
    Ok(())
}

fn issuer_image(spec: &CouponCampaignSpec, defaults: &Defaults) -> String {
    spec.issuer
        .image
        .clone()
        .unwrap_or_else(|| defaults.service_image.clone())
}

fn writer(spec: &CouponCampaignSpec, defaults: &Defaults) -> Result<WriterPlan, Error> {
    let w = &spec.writer;
    Ok(WriterPlan {
        image: w
            .image
            .clone()
            .unwrap_or_else(|| issuer_image(spec, defaults)),
        replicas: w.replicas,
        batch_rows: w.batch_rows,
        batch_linger_ms: w.batch_linger_ms,
        resources: resources(
            "spec.writer.resources",
            w.resources.as_ref(),
            ("100m", "128Mi"),
            ("1", "512Mi"),
        )?,
    })
}
