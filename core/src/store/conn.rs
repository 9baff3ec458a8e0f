//! One connection type for a single Redis and for a Redis Cluster, chosen by the URL:
//! `redis://[user:password@]host:port[/db]` names one node;
//! `redis+cluster://[user:password@]host:port[,host:port…][?announced=HOST]` names seed
//! nodes of a cluster (the client learns the rest from them, follows MOVED/ASK and refreshes
//! the slot map after a failover). `announced=HOST` is for a cluster reached through
//! address translation (a pod reaching a host's loopback cluster through DNAT): its nodes
//! announce HOST:port, which the client reaches at the seed with the same port. Every key of a campaign shares one hash tag, so each campaign lives
//! in one slot and its scripts run on the primary that owns it.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig, NodeAddress};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

use crate::Error;

/// The URL scheme of a Redis Cluster (`rediss+cluster` for TLS).
pub const CLUSTER_SCHEME: &str = "redis+cluster";

/// How often a cluster call is retried (a redirect, a node down mid-failover).
const RETRIES: u32 = 6;

/// The shortest and longest wait between those retries, in milliseconds.
const RETRY_WAIT_MS: (u64, u64) = (20, 400);

/// Where Redis is: one node or a cluster.
#[derive(Clone)]
pub enum RedisTarget {
    /// A single node (perhaps with replicas that are not addressed).
    Node(redis::Client),
    /// A Redis Cluster, by its seed nodes.
    Cluster(Seeds),
}

/// A cluster's seed nodes, and where to reach the addresses its nodes announce.
#[derive(Clone, Debug, PartialEq)]
pub struct Seeds {
    /// One node URL per seed.
    urls: Vec<String>,
    /// Announced address → where it is reached (from `announced=`).
    reach: HashMap<NodeAddress, NodeAddress>,
}

/// How long connecting and each reply may take.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Connection set-up.
    pub connect: Duration,
    /// One reply.
    pub response: Duration,
}

impl Patience {
    /// The same bound for both.
    pub fn both(limit: Duration) -> Self {
        Self {
            connect: limit,
            response: limit,
        }
    }
}

impl RedisTarget {
    /// Reads a Redis URL; a cluster URL is split into one node URL per seed.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return node_client(url);
        };
        let node_scheme = match scheme {
            "redis+cluster" => "redis",
            "rediss+cluster" => "rediss",
            _ => return node_client(url),
        };
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (hosts, query) = hosts.split_once('?').unwrap_or((hosts, ""));
        let hosts = hosts.split('/').next().unwrap_or_default();
        let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if hosts.is_empty() {
            return Err(Error::InvalidInput(format!(
                "redis url: a {CLUSTER_SCHEME}:// url needs at least one host:port"
            )));
        }
        let urls = hosts
            .iter()
            .map(|h| match userinfo {
                Some(u) => format!("{node_scheme}://{u}@{h}"),
                None => format!("{node_scheme}://{h}"),
            })
            .collect();
        let seeds = Seeds {
            urls,
            reach: announced_map(&hosts, query)?,
        };
        cluster_client(&seeds, RETRIES)?; // refuses a malformed seed now
        Ok(Self::Cluster(seeds))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A connection that connects on first use (and reconnects after failures).
    pub fn lazy(&self, patience: Patience) -> Result<RedisConn, Error> {
        Ok(match self {
            Self::Node(client) => RedisConn::Node(ConnectionManager::new_lazy_with_config(
                client.clone(),
                manager_config(patience),
            )?),
            Self::Cluster(seeds) => RedisConn::Cluster(
                cluster_client(seeds, RETRIES)?
                    .get_pending_async_connection_with_config(cluster_config(patience)),
            ),
        })
    }

    /// A connection, connected now.
    pub async fn connect(&self, patience: Patience) -> Result<RedisConn, Error> {
        self.connect_retrying(patience, RETRIES).await
    }

    /// A connection, connected now, on which a cluster call is never retried elsewhere: a
    /// request cut off by a failover fails instead of running again on the promoted replica
    /// (the replica fence: a WAIT must run where the write it covers ran).
    pub async fn connect_pinned(&self, patience: Patience) -> Result<RedisConn, Error> {
        self.connect_retrying(patience, 0).await
    }

    async fn connect_retrying(&self, patience: Patience, retries: u32) -> Result<RedisConn, Error> {
        Ok(match self {
            Self::Node(client) => RedisConn::Node(
                ConnectionManager::new_with_config(client.clone(), manager_config(patience))
                    .await?,
            ),
            Self::Cluster(seeds) => RedisConn::Cluster(
                cluster_client(seeds, retries)?
                    .get_async_connection_with_config(cluster_config(patience))
                    .await?,
            ),
        })
    }
}

/// `announced=HOST` of a cluster URL's query: every seed `h:p` is where `HOST:p` is reached.
fn announced_map(hosts: &[&str], query: &str) -> Result<HashMap<NodeAddress, NodeAddress>, Error> {
    let mut reach = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let announced = match pair.split_once('=') {
            Some(("announced", host)) if !host.is_empty() => host,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "redis url: unknown cluster parameter {:?} (known: announced=HOST)",
                    pair.split('=').next().unwrap_or_default()
                )));
            }
        };
        for h in hosts {
            let seed: NodeAddress = h
                .parse()
                .map_err(|_| Error::InvalidInput(format!("redis url: {h:?} is not host:port")))?;
            reach.insert(NodeAddress::new(announced, seed.port()), seed);
        }
    }
    Ok(reach)
}

/// Sockets to Redis send at once (`TCP_NODELAY`): a command written while an earlier
/// one's answer is due would otherwise wait for that answer's acknowledgement (Nagle),
/// and every command here is one write.
fn no_delay() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// A client of the single Redis at `url`.
fn node_client(url: &str) -> Result<RedisTarget, Error> {
    let info = url.into_connection_info()?.set_tcp_settings(no_delay());
    Ok(RedisTarget::Node(redis::Client::open(info)?))
}

/// A cluster client on `seeds`. The `redis` crate retries what a failover or a slot move
/// answers (connection refused, TRYAGAIN, CLUSTERDOWN) after 1.28 s and up to 16 times by
/// default, far beyond any call's timeout here: short waits let a call find the promoted
/// replica within it.
fn cluster_client(seeds: &Seeds, retries: u32) -> Result<ClusterClient, Error> {
    let mut builder = ClusterClient::builder(seeds.urls.clone()).tcp_settings(no_delay());
    if !seeds.reach.is_empty() {
        builder = builder.node_address_map(seeds.reach.clone());
    }
    Ok(builder
        .retries(retries)
        .min_retry_wait(RETRY_WAIT_MS.0)
        .max_retry_wait(RETRY_WAIT_MS.1)
        .build()?)
}

fn manager_config(p: Patience) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(p.connect))
        .set_response_timeout(Some(p.response))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

fn cluster_config(p: Patience) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(p.connect)
        .set_response_timeout(p.response)
}

/// A multiplexed connection to one node or to a whole cluster; cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    /// To a single node.
    Node(ConnectionManager),
    /// To a cluster: commands go to the primary owning their keys' slot.
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Runs `pipe` (not a transaction) on the primary that holds `key`, in order on one
    /// connection, and returns every reply: WAIT after a write must follow it there. A
    /// cluster client whose connection to that primary is down sends it to any other node,
    /// so `pipe` starts with a command on `key`: its MOVED there fails the pipeline, and a
    /// keyless command after it (INFO, WAIT) never answers for a stranger.
    pub async fn pipeline_on_primary_of(
        &mut self,
        key: &str,
        pipe: &Pipeline,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipe, 0, pipe.len()).await,
            Self::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                c.route_pipeline(
                    pipe.clone(),
                    0,
                    pipe.len(),
                    SingleNodeRoutingInfo::SpecificNode(route),
                )
                .await
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_cluster_url_from_a_node_url() {
        assert!(
            !RedisTarget::parse("redis://127.0.0.1:6379")
                .unwrap()
                .is_cluster()
        );
        let t = RedisTarget::parse("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert!(t.is_cluster());
        assert!(
            RedisTarget::parse("redis+cluster://127.0.0.1:7000")
                .unwrap()
                .is_cluster()
        );
    }

    #[test]
    fn a_cluster_url_without_hosts_is_refused_without_its_password() {
        let err = RedisTarget::parse("redis+cluster://u:secret@")
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("host:port"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(RedisTarget::parse("redis+cluster://127.0.0.1:notaport").is_err());
    }

    #[test]
    fn announced_addresses_are_reached_at_the_seed_with_their_port() {
        let t = RedisTarget::parse(
            "redis+cluster://u:p@10.244.0.1:7000,10.244.0.1:7001?announced=127.0.0.1",
        )
        .unwrap();
        let RedisTarget::Cluster(seeds) = t else {
            panic!("a cluster url")
        };
        assert_eq!(
            seeds.urls,
            ["redis://u:p@10.244.0.1:7000", "redis://u:p@10.244.0.1:7001"]
        );
        assert_eq!(
            seeds.reach.get(&NodeAddress::new("127.0.0.1", 7001)),
            Some(&NodeAddress::new("10.244.0.1", 7001))
        );
        assert_eq!(seeds.reach.len(), 2);
        let err = RedisTarget::parse("redis+cluster://h:7000?annonced=x")
            .err()
            .unwrap();
        assert!(err.to_string().contains("annonced"), "{err}");
    }
}
