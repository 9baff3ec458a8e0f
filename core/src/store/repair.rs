//! The audit's repairs that write Redis from what PostgreSQL holds: holders Redis lost
//! given back, and issued counters that went back brought past every seq known.

use std::collections::HashMap;

use super::Store;
use super::shards::parse_ranges;
use crate::Error;
use crate::ids::CampaignId;
use crate::issuance::Issuance;
use crate::keys::CampaignKeys;

impl Store {
    /// Gives back to Redis the holders it lost: each user of `rows` (their rows in
    /// PostgreSQL) issued since the campaign was created becomes a holder again in its
    /// bucket, unless Redis holds the user (HSETNX), so that asking again answers their
    /// coupon rather than a second one. Returns how many were given back.
    pub async fn restore_holders(
        &self,
        campaign: &CampaignId,
        rows: &[Issuance],
    ) -> Result<u64, Error> {
        let buckets = self.buckets(campaign).await?;
        let rows = self.rows_of_this_campaign(campaign, rows).await?;
        // One pipeline per hash (a bucket's lives on its own slot), a thousand at a time.
        let mut by_target: HashMap<&CampaignId, Vec<&Issuance>> = HashMap::new();
        for i in rows {
            let target = match &buckets {
                Some(b) => &b[super::shards::bucket_index(&i.user_id, b.len())],
                None => campaign,
            };
            by_target.entry(target).or_default().push(i);
        }
        let mut restored = 0;
        for (target, rows) in by_target {
            let key = CampaignKeys::new(target).holders;
            for chunk in rows.chunks(1_000) {
                let mut pipe = redis::pipe();
                for i in chunk {
                    let record = format!("{}:{}:{}", i.seq, i.issued_at_ms, i.coupon_code);
                    pipe.cmd("HSETNX").arg(&key).arg(&i.user_id).arg(record);
                }
                let set: Vec<i64> = self
                    .call("restore_holders", |mut c| async move {
                        pipe.query_async(&mut c).await
                    })
                    .await?;
                restored += set.iter().sum::<i64>() as u64;
            }
        }
        Ok(restored)
    }

    /// Brings `campaign`'s issued counter (a sharded campaign's: each bucket's, over its
    /// own positions) past the seq of every row of `rows` issued since the campaign was
    /// created (their rows in PostgreSQL), so that none is handed out again: Redis may have
    /// lost the counter's last writes while the issuer that handed those seqs out died
    /// before reporting them (an unsuspend cannot see them), and handing them out again
    /// gives the stock behind them twice. Only ever moves a counter forward, so it is safe
    /// beside issuers. Returns by how many positions the counters moved in all.
    pub async fn raise_counters(
        &self,
        campaign: &CampaignId,
        rows: &[Issuance],
    ) -> Result<u64, Error> {
        let seqs: Vec<u64> = (self.rows_of_this_campaign(campaign, rows).await?)
            .iter()
            .map(|i| i.seq)
            .collect();
        let targets = match self.buckets(campaign).await? {
            None => seqs
                .iter()
                .max()
                .map(|h| (campaign.clone(), *h))
                .into_iter()
                .collect(),
            Some(buckets) => {
                let mut targets = Vec::new();
                for b in buckets {
                    let ranges = parse_ranges(&self.bucket_state(&b).await?.extents);
                    let high = seqs.iter().filter_map(|q| position(&ranges, *q)).max();
                    targets.extend(high.map(|h| (b, h)));
                }
                targets
            }
        };
        let mut raised = 0;
        for (target, to) in targets {
            let mut inv = self.scripts.admin.prepare_invoke();
            inv.key(CampaignKeys::new(&target).meta)
                .arg("raise")
                .arg(to);
            let reply: Vec<String> = self.invoke("admin", inv).await?;
            let by = match reply.as_slice() {
                [s, by] if s == "RAISED" => by.parse::<u64>().ok(),
                [s] if s == "UNKNOWN" => return Err(Error::CampaignNotFound(target.to_string())),
                _ => None,
            };
            raised += by.ok_or_else(|| Error::Protocol(format!("admin raise {reply:?}")))?;
        }
        Ok(raised)
    }

    /// The rows of `rows` that are this campaign's: rows from before it was created belong
    /// to one of the same id forgotten before it; unless Redis lost everything and the
    /// campaign was provisioned again after its suspension: then they are exactly what it
    /// lost.
    async fn rows_of_this_campaign<'a>(
        &self,
        campaign: &CampaignId,
        rows: &'a [Issuance],
    ) -> Result<Vec<&'a Issuance>, Error> {
        let meta = CampaignKeys::new(campaign).meta;
        let (created, suspended): (Option<i64>, Option<i64>) = self
            .call("campaign_times", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(meta)
                    .arg(&["created_ms", "suspended_ms"])
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let lost_with_everything = suspended.zip(created).is_some_and(|(s, c)| s <= c);
        let ours =
            |i: &&Issuance| lost_with_everything || created.is_none_or(|c| i.issued_at_ms >= c);
        Ok(rows.iter().filter(ours).collect())
    }
}

/// Which of a bucket's positions (1-based) seq `q` is, when its extents hold it.
fn position(ranges: &[(u64, u64)], q: u64) -> Option<u64> {
    let mut before = 0;
    for (first, n) in ranges {
        if (*first..first + n).contains(&q) {
            return Some(before + q - first + 1);
        }
        before += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_is_found_at_its_position_in_the_extents() {
        let ranges = [(10, 2), (3, 3)];
        let found: Vec<_> = [10, 11, 3, 5, 6, 9].map(|q| position(&ranges, q)).into();
        assert_eq!(found, [Some(1), Some(2), Some(3), Some(5), None, None]);
    }
}
