//! The drift gauges the writer keeps: issuances older than the grace that PostgreSQL lacks
//! (`stampede_unpersisted_issuances`, by seq watermark) and rows beyond what Redis issued
//! (`stampede_audit_excess_rows`), for the campaigns whose rows this process writes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use stampede_core::db;
use stampede_core::ids::CampaignId;
use stampede_core::store::Store;
use tokio_util::sync::CancellationToken;

use crate::metrics::PipelineMetrics;

/// How the drift gauges are kept: how often, how long an issuance may take from Redis to
/// PostgreSQL before it counts as missing, and for which campaigns.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    /// Refresh period.
    pub every: Duration,
    /// An issuance younger than this is in flight, not missing.
    pub grace: Duration,
    /// The campaigns whose rows this process writes to this database (only there can the
    /// gauges be right); `None`: every campaign in the registry.
    pub campaigns: Option<HashSet<String>>,
}

/// A campaign whose counter and watermark did not move and whose last reading was clean
/// is read again only every this many refreshes (rows can still vanish behind our back).
const QUIET_RECHECK: u32 = 12;

/// Keeps `stampede_unpersisted_issuances` and `stampede_audit_excess_rows` current for
/// the configured campaigns until `shutdown`.
///
/// Unpersisted counts only issuances older than the grace: the seqs up to the issued
/// counter as it was `grace` ago (a watermark) that are not in PostgreSQL. So coupons in
/// flight on a healthy pipeline never show, and the gauge stays 0 under steady traffic;
/// a lost or stuck issuance shows once it is older than the grace. Excess counts rows whose
/// seq is beyond what Redis issued (oversold or unknown).
pub async fn report_unpersisted(
    store: Store,
    pool: PgPool,
    metrics: PipelineMetrics,
    config: DriftConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.every);
    let mut drift = Drift {
        watermarks: Watermarks::new(config.grace),
        last: HashMap::new(),
        config,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(campaigns) = store.registry().await else {
            continue;
        };
        for c in campaigns {
            if drift.serves(&c) {
                drift.refresh(&store, &pool, &metrics, &c).await;
            }
        }
    }
}

/// The drift gauges' bookkeeping across refreshes.
struct Drift {
    config: DriftConfig,
    watermarks: Watermarks,
    /// Per campaign, the last reading of PostgreSQL.
    last: HashMap<String, LastRead>,
}

/// What one campaign's last PostgreSQL reading was taken at, and since when it stands.
struct LastRead {
    /// Redis' issued counter then.
    issued: u64,
    /// The watermark then.
    watermark: u64,
    /// Nothing missing and nothing in excess.
    clean: bool,
    /// Refreshes skipped since.
    skipped: u32,
}

impl Drift {
    fn serves(&self, campaign: &str) -> bool {
        self.config
            .campaigns
            .as_ref()
            .is_none_or(|owned| owned.contains(campaign))
    }

    /// Reads one campaign's counter and, if it moved (or is due), its rows.
    async fn refresh(&mut self, store: &Store, pool: &PgPool, m: &PipelineMetrics, c: &str) {
        let Ok(id) = CampaignId::parse(c) else {
            return;
        };
        let Ok(Some(s)) = store.snapshot(&id).await else {
            return;
        };
        let watermark = self.watermarks.observe(c, Instant::now(), s.issued);
        if let Some(last) = self.last.get_mut(c)
            && last.clean
            && (last.issued, last.watermark) == (s.issued, watermark)
            && last.skipped + 1 < QUIET_RECHECK
        {
            last.skipped += 1;
            return;
        }
        // A sharded campaign's buckets hand out seqs from blocks of their own, not
        // 1..=issued in turn: its rows are counted rather than read by seq (while issuing
        // goes on, newer rows can hide older missing ones; once it stops, exact).
        let counts = match store.buckets(&id).await {
            Ok(Some(_)) => db::persisted_count(pool, c)
                .await
                .map(|rows| (rows.min(watermark), rows.saturating_sub(s.issued))),
            _ => db::persisted_around(pool, c, watermark, s.issued).await,
        };
        match counts {
            Ok((settled, beyond)) => {
                let missing = watermark.saturating_sub(settled);
                m.unpersisted.with_label_values(&[c]).set(missing as i64);
                m.excess_rows.with_label_values(&[c]).set(beyond as i64);
                let read = LastRead {
                    issued: s.issued,
                    watermark,
                    clean: missing == 0 && beyond == 0,
                    skipped: 0,
                };
                self.last.insert(c.to_owned(), read);
            }
            Err(e) => tracing::debug!(error = %e, "drift gauges: database read failed"),
        }
    }
}

/// Per campaign, the issued counter as it was at least `grace` ago.
#[derive(Debug)]
struct Watermarks {
    grace: Duration,
    /// Samples (when, issued), oldest first; the first is the newest one older than grace.
    samples: HashMap<String, VecDeque<(Instant, u64)>>,
}

impl Watermarks {
    fn new(grace: Duration) -> Self {
        Self {
            grace,
            samples: HashMap::new(),
        }
    }

    /// Records `issued` at `now` and returns the watermark: the newest sample at least
    /// `grace` old (0 until one is).
    fn observe(&mut self, campaign: &str, now: Instant, issued: u64) -> u64 {
        let samples = self.samples.entry(campaign.to_owned()).or_default();
        samples.push_back((now, issued));
        let settled = |t: Instant| now.duration_since(t) >= self.grace;
        while samples.len() > 1 && settled(samples[1].0) {
            samples.pop_front();
        }
        match samples.front() {
            Some(&(t, n)) if settled(t) => n,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_trails_by_the_grace() {
        let mut w = Watermarks::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.observe("c", at(0), 10), 0, "nothing is settled at first");
        assert_eq!(w.observe("c", at(20), 50), 0);
        assert_eq!(w.observe("c", at(30), 70), 10, "the sample from 30 s ago");
        assert_eq!(
            w.observe("c", at(55), 90),
            50,
            "the newest one at least 30 s old"
        );
        assert_eq!(
            w.observe("c", at(200), 90),
            90,
            "a quiet campaign settles fully"
        );
        assert_eq!(w.observe("other", at(200), 5), 0, "per campaign");
    }
}
