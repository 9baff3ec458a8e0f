//! Whole-campaign reads for the audit and the sold-out cache (holders, outbox users), in
//! slices so Redis is never blocked long, and the audit's repair (requeue to the outbox).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use super::{Store, read_reply};
use crate::Error;
use crate::coupon::HolderRecord;
use crate::ids::CampaignId;
use crate::issuance::Issuance;
use crate::keys::CampaignKeys;

impl Store {
    /// Visits every holder (user id, raw record), read in slices so Redis is never
    /// blocked long.
    async fn scan_holders(
        &self,
        campaign: &CampaignId,
        mut visit: impl FnMut(String, String),
    ) -> Result<(), Error> {
        for target in self.parts(campaign).await? {
            self.scan_holders_of(&target, &mut visit).await?;
        }
        Ok(())
    }

    /// Where a campaign's holders and outbox entries live: the campaign, and a sharded
    /// campaign's buckets.
    async fn parts(&self, campaign: &CampaignId) -> Result<Vec<CampaignId>, Error> {
        let mut parts = self.buckets(campaign).await?.unwrap_or_default();
        parts.push(campaign.clone());
        Ok(parts)
    }

    async fn scan_holders_of(
        &self,
        campaign: &CampaignId,
        visit: &mut impl FnMut(String, String),
    ) -> Result<(), Error> {
        let holders = CampaignKeys::new(campaign).holders;
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = self
                .call("hscan", |mut c| {
                    let mut cmd = redis::cmd("HSCAN");
                    cmd.arg(&holders).arg(cursor).arg("COUNT").arg(5_000);
                    async move { cmd.query_async(&mut c).await }
                })
                .await?;
            for (user, rec) in page {
                visit(user, rec);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Hands the hash of every holder's user id to `insert` (the sold-out short-circuit's
    /// membership test), a slice at a time, so the caller decides how much it keeps.
    pub async fn holder_hashes(
        &self,
        campaign: &CampaignId,
        hasher: &RandomState,
        mut insert: impl FnMut(u64),
    ) -> Result<(), Error> {
        self.scan_holders(campaign, |user, _| insert(hasher.hash_one(user.as_str())))
            .await
    }

    /// Every holder with its record (for the audit).
    pub async fn holders(
        &self,
        campaign: &CampaignId,
    ) -> Result<HashMap<String, HolderRecord>, Error> {
        let mut map = HashMap::new();
        let mut bad = None;
        self.scan_holders(campaign, |user, rec| match HolderRecord::parse(&rec) {
            Ok(r) => {
                map.insert(user, r);
            }
            Err(e) => bad = Some(e),
        })
        .await?;
        bad.map_or(Ok(map), Err)
    }

    /// The user and seq of every entry still in the outbox stream (a sharded campaign's:
    /// in every bucket's).
    pub async fn outbox_seqs(&self, campaign: &CampaignId) -> Result<HashMap<String, u64>, Error> {
        let mut users = HashMap::new();
        for target in self.parts(campaign).await? {
            self.outbox_seqs_of(&target, &mut users).await?;
        }
        Ok(users)
    }

    async fn outbox_seqs_of(
        &self,
        campaign: &CampaignId,
        users: &mut HashMap<String, u64>,
    ) -> Result<(), Error> {
        let key = CampaignKeys::new(campaign).outbox;
        let mut start = "-".to_owned();
        loop {
            let page = self
                .call("xrange", |mut c| {
                    let mut cmd = redis::cmd("XRANGE");
                    cmd.arg(&key).arg(&start).arg("+").arg("COUNT").arg(10_000);
                    async move { cmd.query_async::<redis::Value>(&mut c).await }
                })
                .await?;
            let page = read_reply::range(page)?;
            let Some(last) = page.last().map(|e| e.id.clone()) else {
                return Ok(());
            };
            for e in &page {
                // An entry of no known shape never reaches the database either.
                for i in Issuance::all_from_raw_fields(&e.fields).unwrap_or_default() {
                    users.insert(i.user_id, i.seq);
                }
            }
            start = format!("({last}");
        }
    }

    /// Appends issuances to the outbox again (audit repair); the sink skips duplicates.
    pub async fn requeue(&self, campaign: &CampaignId, items: &[Issuance]) -> Result<(), Error> {
        let key = CampaignKeys::new(campaign).outbox;
        for chunk in items.chunks(1_000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("XADD").arg(&key).arg("*");
                for (k, v) in i.stream_fields() {
                    pipe.arg(k).arg(v);
                }
                pipe.ignore();
            }
            self.call("requeue", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await?;
        }
        Ok(())
    }
}
