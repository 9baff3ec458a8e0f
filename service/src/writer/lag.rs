//! Consumer lag per partition (`stampede_writer_consumer_lag{topic,partition}`), for the
//! partitions this writer owns now: a partition a rebalance moves to another writer loses
//! its series here at once (the rebalance callback) and, should a report race with the
//! rebalance, at the next report (the assignment check).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGaugeVec;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::WriterConsumer;
use super::health::GroupHealth;

const REPORT_EVERY: Duration = Duration::from_secs(2);
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumer's context: forgets the lag of revoked partitions, and reads librdkafka's
/// statistics into the group membership's health.
pub(super) struct WriterContext {
    lag: IntGaugeVec,
    /// Where the consumer's group membership stands.
    pub(super) health: GroupHealth,
}

impl WriterContext {
    pub(super) fn new(lag: IntGaugeVec) -> Self {
        Self {
            lag,
            health: GroupHealth::new(),
        }
    }

    fn revoked(&self, revoked: &TopicPartitionList) {
        for e in revoked.elements() {
            forget(&self.lag, e.topic(), e.partition());
        }
    }
}

impl ClientContext for WriterContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.health.record_stats(statistics);
    }
}

impl ConsumerContext for WriterContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            self.revoked(revoked);
        }
    }
}

fn forget(lag: &IntGaugeVec, topic: &str, partition: i32) {
    // Absent already is fine: the partition may never have been reported.
    let _ = lag.remove_label_values(&[topic, &partition.to_string()]);
}

/// A partition: topic and number.
type Partition = (String, i32);
/// What one report measured: the assigned partitions, and the lag of those it could read.
type Measured = (Vec<Partition>, Vec<(Partition, i64)>);

/// Which partitions have a series, so that those no longer assigned lose theirs.
#[derive(Default)]
pub(super) struct LagBook {
    reported: HashSet<Partition>,
}

impl LagBook {
    /// Publishes `lags` of the partitions in `assigned` and removes the series of every
    /// partition reported before and no longer assigned. An assigned partition without a
    /// lag this time (a watermark query failed) keeps its last value.
    pub(super) fn publish(
        &mut self,
        gauge: &IntGaugeVec,
        assigned: &[Partition],
        lags: &[(Partition, i64)],
    ) {
        let now: HashSet<&Partition> = assigned.iter().collect();
        self.reported.retain(|p| {
            let keep = now.contains(p);
            if !keep {
                forget(gauge, &p.0, p.1);
            }
            keep
        });
        for ((topic, partition), lag) in lags {
            if now.contains(&(topic.clone(), *partition)) {
                gauge
                    .with_label_values(&[topic, &partition.to_string()])
                    .set(*lag);
                self.reported.insert((topic.clone(), *partition));
            }
        }
    }
}

/// Publishes consumer lag per assigned partition every few seconds until `shutdown`.
pub(super) async fn report_lag(
    consumer: Arc<WriterConsumer>,
    gauge: IntGaugeVec,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    let mut book = LagBook::default();
    loop {
        tokio::select! {
            // The next session's consumer reports afresh; none of this one's series stays.
            _ = shutdown.cancelled() => return book.publish(&gauge, &[], &[]),
            _ = tick.tick() => {}
        }
        let (c, stop) = (consumer.clone(), shutdown.clone());
        // Broker queries block; each is bounded, and shutdown stops between them.
        let measured = tokio::task::spawn_blocking(move || measure(&c, &stop)).await;
        if let Ok(Some((assigned, lags))) = measured {
            book.publish(&gauge, &assigned, &lags);
        }
    }
}

/// The assigned partitions and the lag of each whose watermarks could be read; `None` when
/// the assignment could not be read or shutdown came.
fn measure(c: &WriterConsumer, stop: &CancellationToken) -> Option<Measured> {
    let positions = c.position().ok()?;
    let mut assigned = Vec::new();
    let mut lags = Vec::new();
    for e in positions.elements() {
        if stop.is_cancelled() {
            return None;
        }
        let p = (e.topic().to_owned(), e.partition());
        assigned.push(p.clone());
        let Ok((_, high)) = c.fetch_watermarks(e.topic(), e.partition(), BROKER_TIMEOUT) else {
            continue;
        };
        let pos = match e.offset() {
            Offset::Offset(o) => o,
            _ => match committed(c, e.topic(), e.partition()) {
                Some(o) => o,
                None => continue,
            },
        };
        lags.push((p, (high - pos).max(0)));
    }
    Some((assigned, lags))
}

/// The group's committed offset of a partition this writer has not consumed from yet (0
/// when none was committed); `None` when the broker did not say.
fn committed(c: &WriterConsumer, topic: &str, partition: i32) -> Option<i64> {
    let mut t = TopicPartitionList::new();
    t.add_partition(topic, partition);
    let t = c.committed_offsets(t, BROKER_TIMEOUT).ok()?;
    let o = t.elements().first().and_then(|x| x.offset().to_raw());
    Some(o.filter(|o| *o >= 0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Opts, Registry};

    fn gauge() -> (Registry, IntGaugeVec) {
        let r = Registry::new();
        let g = IntGaugeVec::new(Opts::new("lag", "lag"), &["topic", "partition"]).unwrap();
        r.register(Box::new(g.clone())).unwrap();
        (r, g)
    }

    fn series(r: &Registry) -> Vec<(String, String, i64)> {
        let families = r.gather();
        let Some(family) = families.first() else {
            return Vec::new();
        };
        let mut out: Vec<_> = family
            .get_metric()
            .iter()
            .map(|m| {
                let l = m.get_label();
                let v = m.get_gauge().get_value() as i64;
                (l[1].value().to_owned(), l[0].value().to_owned(), v)
            })
            .collect();
        out.sort();
        out
    }

    fn p(t: &str, n: i32) -> Partition {
        (t.to_owned(), n)
    }

    #[test]
    fn partitions_no_longer_assigned_lose_their_series() {
        let (r, g) = gauge();
        let mut book = LagBook::default();
        let both = [p("stampede.a", 0), p("stampede.a", 1)];
        book.publish(
            &g,
            &both,
            &[(p("stampede.a", 0), 5), (p("stampede.a", 1), 7)],
        );
        assert_eq!(series(&r).len(), 2);
        // A rebalance moved partition 0 away.
        book.publish(&g, &both[1..], &[(p("stampede.a", 1), 3)]);
        assert_eq!(series(&r), [("stampede.a".into(), "1".into(), 3)]);
    }

    #[test]
    fn an_assigned_partition_without_a_fresh_lag_keeps_its_value() {
        let (r, g) = gauge();
        let mut book = LagBook::default();
        let one = [p("stampede.a", 0)];
        book.publish(&g, &one, &[(p("stampede.a", 0), 5)]);
        book.publish(&g, &one, &[]);
        assert_eq!(series(&r), [("stampede.a".into(), "0".into(), 5)]);
        // A lag measured just before a revocation is not published for it.
        book.publish(&g, &[], &[(p("stampede.a", 0), 9)]);
        assert!(series(&r).is_empty());
    }

    #[test]
    fn a_revocation_forgets_the_series_and_a_later_report_does_not_bring_it_back() {
        let (r, g) = gauge();
        let mut book = LagBook::default();
        let both = [p("stampede.a", 0), p("stampede.b", 0)];
        book.publish(
            &g,
            &both,
            &[(p("stampede.a", 0), 1), (p("stampede.b", 0), 2)],
        );
        let ctx = WriterContext::new(g.clone());
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("stampede.b", 0);
        ctx.revoked(&revoked);
        assert_eq!(series(&r), [("stampede.a".into(), "0".into(), 1)]);
        book.publish(&g, &both[..1], &[(p("stampede.a", 0), 1)]);
        assert_eq!(series(&r).len(), 1);
    }
}
