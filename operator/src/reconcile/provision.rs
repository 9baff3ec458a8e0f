//! The provision stage: resolve the campaign's services, then the topics (first: a
//! campaign must not open without the topic its outbox drains to), then the stock, window
//! and pause in Redis, and read the persisted count. Failures become [`Problem`]s the
//! status reports; only unexpected errors end the reconcile.

use std::sync::Arc;

use stampede_core::Error as Backend;
use stampede_core::campaign::{AdminAction, CampaignSnapshot, ProvisionOutcome};
use stampede_core::kafka::TopicsOutcome;

use crate::Error;
use crate::backends::{Shape, Stock, connections};
use crate::context::Context;
use crate::crd::Reason;
use crate::status::Problem;
use crate::validate::Plan;

/// What provisioning Redis did.
#[derive(Debug, Clone)]
pub(super) struct RedisOutcome {
    /// Created, restocked, window updated or unchanged.
    pub provision: ProvisionOutcome,
    /// Pause or resume applied to match `spec.paused`.
    pub pause_change: Option<AdminAction>,
    /// The campaign afterwards.
    pub snapshot: CampaignSnapshot,
}

/// What the provision stage did.
pub(super) struct Provisioned {
    /// The campaign's Redis, once its stock is in place.
    pub stock: Option<Arc<dyn Stock>>,
    /// The stock.
    pub redis: Result<RedisOutcome, Problem>,
    /// The topics.
    pub kafka: Result<TopicsOutcome, Problem>,
    /// Rows in PostgreSQL, when it could be read.
    pub persisted: Option<i64>,
}

/// Brings Kafka and Redis to the plan.
pub(super) async fn provision(ctx: &Context, plan: &Plan) -> Result<Provisioned, Error> {
    let conns = match connections(&ctx.client, plan).await {
        Ok(c) => c,
        Err(Error::Secret(m)) => {
            let p = Problem::new(Reason::SecretUnavailable, m);
            return Ok(Provisioned {
                stock: None,
                redis: Err(p.clone()),
                kafka: Err(p),
                persisted: None,
            });
        }
        Err(e) => return Err(e),
    };
    let kafka = ctx
        .backends
        .ensure_topics(
            &conns.kafka,
            plan.campaign.as_str(),
            plan.partitions,
            plan.replication_factor,
        )
        .await
        .map_err(|e| Problem::new(Reason::KafkaUnavailable, e.to_string()));
    let (stock, redis) = if kafka.is_err() {
        let p = Problem::new(
            Reason::WaitingForKafka,
            "the campaign topic must exist first",
        );
        (None, Err(p))
    } else {
        match ctx.backends.stock(&conns.redis) {
            Ok(stock) => match provision_redis(stock.as_ref(), plan).await {
                Ok(r) => (Some(stock), Ok(r)),
                Err(p) => (None, Err(p)),
            },
            Err(e) => (
                None,
                Err(Problem::new(Reason::RedisUnavailable, e.to_string())),
            ),
        }
    };
    let persisted = ctx
        .backends
        .persisted(&conns.database, plan.campaign.as_str())
        .await;
    Ok(Provisioned {
        stock,
        redis,
        kafka,
        persisted,
    })
}

/// Brings the campaign in Redis to the plan: stock (restock by the difference, never
/// shrink), window (the spec is the truth; none means unbounded), paused. A campaign with
/// gated load tests is created closed by the gate in the creating call itself: whatever
/// fails before the observe stage judges the gate, nothing is issued meanwhile.
async fn provision_redis(stock: &dyn Stock, plan: &Plan) -> Result<RedisOutcome, Problem> {
    let window = Some(plan.window.unwrap_or_default());
    let gated = plan.load_tests.iter().any(|t| t.gate);
    // Every reconcile: the spec is the truth for the room as for the window.
    let shape = Shape {
        gated,
        shards: plan.shards,
        room: plan.waiting_room.as_ref().map(|w| &w.config),
    };
    let provision = stock
        .ensure_campaign(&plan.campaign, plan.stock, window, shape)
        .await
        .map_err(|e| redis_problem(plan, e))?;
    let mut snapshot = snapshot(stock, plan).await?;
    let pause_change = match (plan.paused, snapshot.paused) {
        (true, false) => Some(AdminAction::Pause),
        (false, true) => Some(AdminAction::Resume),
        _ => None,
    };
    if let Some(action) = pause_change {
        stock
            .admin(&plan.campaign, action)
            .await
            .map_err(|e| redis_problem(plan, e))?;
        snapshot = self::snapshot(stock, plan).await?;
    }
    Ok(RedisOutcome {
        provision,
        pause_change,
        snapshot,
    })
}

async fn snapshot(stock: &dyn Stock, plan: &Plan) -> Result<CampaignSnapshot, Problem> {
    stock
        .snapshot(&plan.campaign)
        .await
        .map_err(|e| redis_problem(plan, e))?
        .ok_or_else(|| {
            Problem::new(
                Reason::RedisUnavailable,
                "campaign vanished from Redis while provisioning",
            )
        })
}

fn redis_problem(plan: &Plan, e: Backend) -> Problem {
    match e {
        Backend::StockDecrease { current, .. } => Problem::new(
            Reason::StockDecreaseRefused,
            format!(
                "Redis already holds {current} coupons for {} but spec.stock is {}; stock never shrinks. Set spec.stock to {current} or more.",
                plan.campaign, plan.stock
            ),
        ),
        // Redis answered, and refused: not a backend away, nothing a retry mends.
        Backend::InvalidInput(why) => Problem::new(Reason::RedisRefused, why),
        other => Problem::new(Reason::RedisUnavailable, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{defaults, from_yaml};

    #[test]
    fn a_refusal_from_redis_is_not_reported_as_redis_away() {
        let cc = from_yaml("metadata: {name: flash, namespace: shop}\nspec: {stock: 10}");
        let plan = crate::validate::validate(&cc, &defaults()).unwrap();
        let refused = Backend::InvalidInput("campaign has 2 shard(s)".into());
        let p = redis_problem(&plan, refused);
        assert_eq!(p.reason, Reason::RedisRefused);
        assert!(!p.reason.is_unavailable(), "not retried as an outage");
        let away = redis_problem(&plan, Backend::RedisTimeout(std::time::Duration::ZERO));
        assert_eq!(away.reason, Reason::RedisUnavailable);
    }
}
