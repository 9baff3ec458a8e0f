//! An in-memory [`Backends`] for unit tests: campaigns and topics in maps, with switches
//! that make Redis or Kafka unreachable. It keeps the rules reconcile relies on (stock
//! and partitions never shrink, admin on a missing campaign fails, a gated campaign is
//! created closed by the gate, and the gate's flag and the manual close are separate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use stampede_core::Error as Backend;
use stampede_core::campaign::{
    AdminAction, CampaignSnapshot, ProvisionOutcome, RoomCounts, Window,
};
use stampede_core::ids::CampaignId;
use stampede_core::issuance::{dead_letter_topic, topic};
use stampede_core::kafka::TopicsOutcome;
use stampede_core::waiting_room::WaitingRoomConfig;

use super::{Backends, Shape, Stock};
use crate::Error;

/// What the fake holds; tests read and set it directly.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Campaigns by id (the snapshot's `now_ms` is set when read).
    pub campaigns: HashMap<String, CampaignSnapshot>,
    /// Partitions of each campaign topic, by campaign id.
    pub topics: HashMap<String, i32>,
    /// Every Redis call fails as a timeout.
    pub redis_down: bool,
    /// Every Kafka call fails.
    pub kafka_down: bool,
    /// The persisted count PostgreSQL reports.
    pub persisted: Option<i64>,
    /// Campaign ids PostgreSQL holds rows of from before any campaign made here.
    pub rows_before: Vec<String>,
    /// Campaign ids PostgreSQL cannot be asked about.
    pub rows_unreadable: Vec<String>,
    /// Admin actions applied, in order.
    pub admin: Vec<(String, AdminAction)>,
    /// Waiting rooms, by campaign id.
    pub rooms: HashMap<String, WaitingRoomConfig>,
}

/// The fake; clones share one [`State`].
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeBackends(Arc<Mutex<State>>);

impl FakeBackends {
    /// The shared state.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn redis(&self) -> Result<MutexGuard<'_, State>, Backend> {
        let s = self.state();
        if s.redis_down {
            return Err(Backend::RedisTimeout(Duration::from_secs(2)));
        }
        Ok(s)
    }
}

impl Backends for FakeBackends {
    fn stock(&self, _url: &str) -> Result<Arc<dyn Stock>, Error> {
        Ok(Arc::new(self.clone()))
    }

    fn ensure_topics<'a>(
        &'a self,
        _brokers: &'a str,
        campaign: &'a str,
        partitions: i32,
        _replication_factor: i32,
    ) -> BoxFuture<'a, Result<TopicsOutcome, Backend>> {
        let mut s = self.state();
        let result = if s.kafka_down {
            Err(Backend::Kafka("broker transport failure".into()))
        } else {
            let before = s.topics.get(campaign).copied().unwrap_or(0);
            let now = before.max(partitions);
            s.topics.insert(campaign.to_owned(), now);
            Ok(TopicsOutcome {
                topic: topic(campaign),
                dead_letter_topic: dead_letter_topic(campaign),
                partitions_before: before,
                partitions: now,
                decrease_refused: partitions < before,
            })
        };
        async move { result }.boxed()
    }

    fn delete_topics<'a>(
        &'a self,
        _brokers: &'a str,
        campaign: &'a str,
    ) -> BoxFuture<'a, Result<(), Backend>> {
        self.state().topics.remove(campaign);
        async { Ok(()) }.boxed()
    }

    fn persisted<'a>(&'a self, _url: &'a str, _campaign: &'a str) -> BoxFuture<'a, Option<i64>> {
        let n = self.state().persisted;
        async move { n }.boxed()
    }

    fn rows_before<'a>(
        &'a self,
        _url: &'a str,
        campaign: &'a str,
        _before_ms: i64,
    ) -> BoxFuture<'a, Option<bool>> {
        let s = self.state();
        let found = s.rows_before.iter().any(|c| c == campaign);
        let unreadable = s.rows_unreadable.iter().any(|c| c == campaign);
        async move { (!unreadable).then_some(found) }.boxed()
    }
}

impl FakeBackends {
    fn ensure(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
        gated: bool,
    ) -> Result<ProvisionOutcome, Backend> {
        let mut s = self.redis()?;
        let Some(c) = s.campaigns.get_mut(campaign.as_str()) else {
            let snap = CampaignSnapshot {
                total: stock,
                issued: 0,
                window: window.unwrap_or_default(),
                paused: false,
                closed: false,
                gate_closed: gated,
                now_ms: 0,
                outbox_len: 0,
                suspension: None,
                acked_high: 0,
                room: None,
            };
            s.campaigns.insert(campaign.to_string(), snap);
            return Ok(ProvisionOutcome::Created { total: stock });
        };
        let window_changed = window.is_some_and(|w| w != c.window);
        if let Some(w) = window {
            c.window = w;
        }
        let before = c.total;
        Ok(match stock {
            s if s < before => {
                return Err(Backend::StockDecrease {
                    campaign: campaign.to_string(),
                    current: before,
                    requested: s,
                });
            }
            s if s > before => {
                c.total = s;
                ProvisionOutcome::Restocked {
                    before,
                    after: s,
                    window_changed,
                }
            }
            _ if window_changed => ProvisionOutcome::WindowUpdated { total: before },
            _ => ProvisionOutcome::Unchanged { total: before },
        })
    }

    fn apply(&self, campaign: &CampaignId, action: AdminAction) -> Result<u64, Backend> {
        let mut s = self.redis()?;
        s.admin.push((campaign.to_string(), action));
        let c = s
            .campaigns
            .get_mut(campaign.as_str())
            .ok_or_else(|| Backend::CampaignNotFound(campaign.to_string()))?;
        match action {
            AdminAction::Restock(n) => c.total += n,
            AdminAction::Pause => c.paused = true,
            AdminAction::Resume => c.paused = false,
            AdminAction::Close => c.closed = true,
            AdminAction::Reopen => c.closed = false,
            AdminAction::GateClose => c.gate_closed = true,
            AdminAction::GateOpen => c.gate_closed = false,
            AdminAction::Unsuspend => c.suspension = None,
        }
        Ok(c.total)
    }
}

impl Stock for FakeBackends {
    fn ensure_campaign<'a>(
        &'a self,
        campaign: &'a CampaignId,
        stock: u64,
        window: Option<Window>,
        shape: Shape<'a>,
    ) -> BoxFuture<'a, Result<ProvisionOutcome, Backend>> {
        let r = self.ensure(campaign, stock, window, shape.gated);
        let r = r.and_then(|outcome| {
            let mut s = self.redis()?;
            match shape.room {
                Some(room) => {
                    s.rooms.insert(campaign.to_string(), *room);
                }
                None => {
                    if let Some(r) = s.rooms.get_mut(campaign.as_str()) {
                        r.enabled = false;
                    }
                }
            }
            Ok(outcome)
        });
        async move { r }.boxed()
    }

    fn snapshot<'a>(
        &'a self,
        campaign: &'a CampaignId,
    ) -> BoxFuture<'a, Result<Option<CampaignSnapshot>, Backend>> {
        let r = self.redis().map(|s| {
            let room = s.rooms.get(campaign.as_str()).filter(|r| r.enabled);
            s.campaigns.get(campaign.as_str()).cloned().map(|mut c| {
                c.now_ms = stampede_core::clock::now_ms();
                c.room = room.map(|_| RoomCounts::default());
                c
            })
        });
        async move { r }.boxed()
    }

    fn admin<'a>(
        &'a self,
        campaign: &'a CampaignId,
        action: AdminAction,
    ) -> BoxFuture<'a, Result<u64, Backend>> {
        let r = self.apply(campaign, action);
        async move { r }.boxed()
    }

    fn forget<'a>(&'a self, campaign: &'a CampaignId) -> BoxFuture<'a, Result<u64, Backend>> {
        let r = self.redis().map(|mut s| {
            s.rooms.remove(campaign.as_str());
            u64::from(s.campaigns.remove(campaign.as_str()).is_some())
        });
        async move { r }.boxed()
    }
}
