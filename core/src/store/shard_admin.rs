//! Provisioning sharded campaigns: buckets placed on distinct primaries of a cluster, the
//! stock split between them, restocks shared out once each, and the campaign-wide changes
//! (pause, close, the gate, forgetting) applied to every bucket.

use redis::Value;
use redis::cluster_routing::Slot;

use super::Store;
use super::shards::MAX_SHARDS;
use crate::Error;
use crate::campaign::{ProvisionOutcome, Window};
use crate::ids::CampaignId;
use crate::keys::CampaignKeys;

/// How a sharded campaign's restock of `before..=after` is shared: bucket `i` of `n` gets
/// one contiguous range of it (`first:count`, empty when its share is nothing).
pub fn share(before: u64, after: u64, n: usize, i: usize) -> String {
    let (stock, n, i) = (after - before, n as u64, i as u64);
    let count = stock / n + u64::from(i < stock % n);
    let first = before + 1 + i * (stock / n) + i.min(stock % n);
    if count == 0 {
        String::new()
    } else {
        format!("{first}:{count}")
    }
}

impl Store {
    /// Creates or brings up to `stock` a campaign of `shards` buckets (1: an ordinary
    /// campaign). A campaign's shard count is fixed when it is created.
    pub async fn ensure_sharded(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
        gated: bool,
        shards: u32,
    ) -> Result<ProvisionOutcome, Error> {
        if shards == 1 {
            // One script call, as before sharding: `ensure.lua` itself refuses a sharded
            // campaign and a smaller stock (the operator provisions on every reconcile).
            return self
                .ensure_campaign_as(campaign, stock, window, gated, "")
                .await;
        }
        let existing = self.check_provision(campaign, stock, shards).await?;
        // How the campaign stands, for the buckets (`lua/ensure.lua`): made now, or known.
        let (buckets, stands) = match existing {
            Some(b) => (b, "known"),
            None => (self.place_buckets(campaign, shards).await?, "afresh"),
        };
        // Buckets first: once the campaign names them, every one exists.
        for (i, b) in buckets.iter().enumerate() {
            let extents = share(0, stock, buckets.len(), i);
            let own = super::shards::range_count(&extents);
            let role = format!("extents={extents}&siblings={}&{stands}=1", buckets.len());
            self.ensure_campaign_as(b, own, window, gated, &role)
                .await?;
        }
        let list: Vec<&str> = buckets.iter().map(CampaignId::as_str).collect();
        let role = format!("buckets={}", list.join(","));
        let outcome = self
            .ensure_campaign_as(campaign, stock, window, gated, &role)
            .await?;
        self.share_restocks(campaign, &buckets).await?;
        Ok(outcome)
    }

    /// Refuses what provisioning `campaign` with `stock` in `shards` buckets would refuse:
    /// a count outside 1..=MAX_SHARDS, above `stock` or other than the one it was created
    /// with, and a stock below its own. Reads only, so callers ask before they make
    /// anything else (its topics); the scripts still refuse atomically. Returns its buckets.
    pub async fn check_provision(
        &self,
        campaign: &CampaignId,
        stock: u64,
        shards: u32,
    ) -> Result<Option<Vec<CampaignId>>, Error> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(Error::InvalidInput(format!(
                "shards must be 1..={MAX_SHARDS} (was {shards})"
            )));
        }
        // One round trip: the bucket list, the stock and whether the campaign exists at all
        // (a meta holding only the flags of a campaign Redis lost counts as existing).
        let meta = CampaignKeys::new(campaign).meta;
        let ((list, total), exists): ((Option<String>, Option<u64>), bool) = self
            .call("check_provision", |mut c| async move {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(&meta)
                    .arg("buckets")
                    .arg("total")
                    .cmd("EXISTS")
                    .arg(&meta)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let existing = list.as_deref().map(CampaignId::parse_buckets).transpose()?;
        let have = match &existing {
            Some(b) => Some(b.len() as u32),
            None if shards > 1 && exists => Some(1),
            None => None,
        };
        if let Some(have) = have.filter(|&h| h != shards) {
            return Err(Error::InvalidInput(format!(
                "campaign {campaign} has {have} shard(s); shards cannot change once created \
                 (asked for {shards})"
            )));
        }
        if shards > 1 && stock < u64::from(shards) {
            return Err(Error::InvalidInput(format!(
                "stock ({stock}) must be at least the number of shards ({shards})"
            )));
        }
        match total {
            Some(current) if current > stock => Err(Error::StockDecrease {
                campaign: campaign.to_string(),
                current,
                requested: stock,
            }),
            _ => Ok(existing),
        }
    }

    /// Shares out every restock the campaign recorded (`restock:<after>` = before) and not
    /// yet finished, each bucket's part once (transfer `r<after>`), then drops the record.
    pub(super) async fn share_restocks(
        &self,
        campaign: &CampaignId,
        buckets: &[CampaignId],
    ) -> Result<(), Error> {
        let meta = CampaignKeys::new(campaign).meta;
        let fields: Vec<(String, String)> = self
            .call("restocks", |mut c| {
                let meta = meta.clone();
                async move { redis::cmd("HGETALL").arg(meta).query_async(&mut c).await }
            })
            .await?;
        for (field, before) in fields {
            let Some(after) = field.strip_prefix("restock:") else {
                continue;
            };
            let (Ok(after_n), Ok(before_n)) = (after.parse::<u64>(), before.parse::<u64>()) else {
                continue;
            };
            for (i, b) in buckets.iter().enumerate() {
                let part = share(before_n, after_n, buckets.len(), i);
                if !part.is_empty() {
                    self.transfer_give(b, "restock", &format!("r{after}"), &part)
                        .await?;
                }
            }
            let meta = meta.clone();
            self.call("restocks", |mut c| async move {
                redis::cmd("HDEL")
                    .arg(meta)
                    .arg(field)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// Names `shards` buckets; on a cluster each on the next primary in turn (a bucket's
    /// number is searched until its slot is served there).
    async fn place_buckets(
        &self,
        campaign: &CampaignId,
        shards: u32,
    ) -> Result<Vec<CampaignId>, Error> {
        if !self.is_cluster() {
            return Ok((0..shards).map(|n| campaign.bucket(n)).collect());
        }
        let owners = self.slot_owners().await?;
        let primaries = owners.iter().max().map_or(1, |m| m + 1);
        let mut buckets = Vec::new();
        let mut n = 0u32;
        for i in 0..shards as usize {
            let want = i % primaries;
            let b = loop {
                let b = campaign.bucket(n);
                n += 1;
                let slot = Slot::for_key(CampaignKeys::new(&b).meta);
                let at = (0..16_384u16).find(|s| Slot::new(*s) == Some(slot));
                if at.is_some_and(|s| owners[s as usize] == want) || n > 100_000 {
                    break b;
                }
            };
            buckets.push(b);
        }
        Ok(buckets)
    }

    /// For every slot, the index of the primary serving it (primaries in order of their
    /// first slot).
    async fn slot_owners(&self) -> Result<Vec<usize>, Error> {
        let slots: Vec<Value> = self
            .call("cluster_slots", |mut c| async move {
                redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await
            })
            .await?;
        let mut ranges = Vec::new();
        for range in slots {
            if let Value::Array(f) = range
                && let [Value::Int(first), Value::Int(last), Value::Array(owner), ..] = &f[..]
                && let [Value::BulkString(ip), Value::Int(port), ..] = &owner[..]
            {
                ranges.push((*first, *last, (ip.clone(), *port)));
            }
        }
        ranges.sort_by_key(|r| r.0);
        let mut primaries: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut owners = vec![0; 16_384];
        for (first, last, owner) in ranges {
            let index = match primaries.iter().position(|p| *p == owner) {
                Some(i) => i,
                None => {
                    primaries.push(owner);
                    primaries.len() - 1
                }
            };
            for s in first.max(0)..=last.min(16_383) {
                owners[s as usize] = index;
            }
        }
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_a_range_into_contiguous_disjoint_parts() {
        let parts: Vec<String> = (0..3).map(|i| share(0, 10, 3, i)).collect();
        assert_eq!(parts, ["1:4", "5:3", "8:3"]);
        let parts: Vec<String> = (0..3).map(|i| share(10, 12, 3, i)).collect();
        assert_eq!(parts, ["11:1", "12:1", ""]);
    }
}
