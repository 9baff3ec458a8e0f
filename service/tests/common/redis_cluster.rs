//! The private Redis as a Redis Cluster: primaries with the slots split between them,
//! optionally each with replicas (`CLUSTER REPLICATE`), and the faults a cluster suite
//! needs: which node serves a key, killing and restarting one node.

use std::time::Duration;

use redis::Value;

use super::super::{eventually, free_port};
use super::{RedisServer, fresh_dir, node_conn, node_conn_once, start_fresh, start_node};

/// Slots on a cluster, split evenly between its primaries.
const SLOTS: usize = 16_384;

impl RedisServer {
    /// Starts `primaries` primaries with the slots split between them, each with `replicas`
    /// replicas streaming from it, and waits until every node agrees on the slot map.
    pub async fn start_cluster(primaries: usize, replicas: usize) -> Self {
        let mut server = Self::form(primaries).await;
        if replicas > 0 {
            server.add_replicas(primaries, replicas).await;
        }
        server
    }

    /// Starts `primaries` nodes, gives each an equal range of slots and introduces them.
    async fn form(primaries: usize) -> Self {
        let dir = fresh_dir();
        let mut nodes = Vec::new();
        for _ in 0..primaries {
            nodes.push(start_fresh(&dir, cluster_args).await);
        }
        let server = Self {
            port: nodes[0].port,
            nodes,
            dir,
        };
        for (i, node) in server.nodes.iter().take(primaries).enumerate() {
            let (first, last) = (i * SLOTS / primaries, (i + 1) * SLOTS / primaries - 1);
            let mut c = node_conn(node.port).await;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query_async(&mut c)
                .await
                .unwrap();
        }
        let mut first = node_conn(server.port).await;
        for node in server.nodes.iter().skip(1) {
            meet(&mut first, node).await;
        }
        server.wait_cluster_ok().await;
        server
    }

    /// Waits until every node that runs reports `cluster_state:ok` and the same slot map,
    /// each owner by an address (a node learns its own address from its peers; until then
    /// it reports an empty one, which a client cannot reach).
    pub(super) async fn wait_cluster_ok(&self) {
        let ports: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect();
        eventually("the cluster to be ok", Duration::from_secs(30), || {
            let ports = ports.clone();
            async move {
                let mut maps = Vec::new();
                for port in &ports {
                    let mut c = node_conn_once(*port).await?;
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut c)
                        .await
                        .ok()?;
                    if !info.contains("cluster_state:ok") {
                        return None;
                    }
                    maps.push(slot_map(&mut c).await?);
                }
                let ours = maps[0].iter().all(|(_, _, p)| ports.contains(p));
                (ours && maps.iter().all(|m| *m == maps[0])).then_some(())
            }
        })
        .await;
    }

    /// The port of the primary serving `key` now.
    pub async fn primary_of(&self, key: &str) -> u16 {
        let mut c = node_conn(self.live_port()).await;
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        let map = slot_map(&mut c).await.expect("a slot map");
        map.iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, port)| *port)
            .expect("every slot served")
    }

    /// The ports of the replicas of the primary on `primary`.
    pub async fn replicas_of(&self, primary: u16) -> Vec<u16> {
        let id = node_id(primary).await;
        let mut c = node_conn(primary).await;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .unwrap();
        nodes
            .lines()
            .filter(|l| l.split(' ').nth(3) == Some(id.as_str()))
            .filter_map(|l| l.split(' ').nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
            .collect()
    }

    /// Sends `signal` (e.g. `KILL`, `STOP`, `CONT`) to the node on `port`; after `KILL` the
    /// node counts as stopped.
    pub fn signal_node(&mut self, port: u16, signal: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("our node");
        let child = node.child.as_mut().expect("running");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} on port {port}");
        if signal == "KILL" {
            let _ = child.wait();
            node.child = None;
        }
    }

    /// Starts the stopped node on `port` again, empty; it rejoins the cluster (as the
    /// replica of whoever took its slots over).
    pub async fn restart_node(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("ours");
        assert!(self.nodes[i].child.is_none(), "stopped first");
        let again = start_node(&self.dir, port, self.nodes[i].args.clone()).await;
        self.nodes[i] = again;
        self.wait_cluster_ok().await;
    }

    /// A node that runs.
    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a node runs")
            .port
    }
}

/// A cluster node's arguments (its bus port a free one, at index 5).
pub(super) fn cluster_args(port: u16) -> Vec<String> {
    let conf = format!("nodes-{port}.conf");
    let bus = free_port().to_string();
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &conf,
        "--cluster-port",
        &bus,
        "--cluster-node-timeout",
        "2000",
        "--cluster-require-full-coverage",
        "no",
        "--cluster-replica-validity-factor",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Introduces `node` (by its address and bus port) to the cluster `first` belongs to.
async fn meet(first: &mut redis::aio::MultiplexedConnection, node: &super::Node) {
    let _: () = redis::cmd("CLUSTER")
        .arg("MEET")
        .arg("127.0.0.1")
        .arg(node.port)
        .arg(&node.args[5])
        .query_async(first)
        .await
        .unwrap();
}

/// The cluster node id of the node on `port`.
async fn node_id(port: u16) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut node_conn(port).await)
        .await
        .unwrap()
}

/// The slot ranges `(first, last, owner port)` a node reports, ordered by owner port;
/// `None` while an owner's address is still unknown to it.
async fn slot_map(c: &mut redis::aio::MultiplexedConnection) -> Option<Vec<(i64, i64, u16)>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(c)
        .await
        .ok()?;
    let mut map = Vec::new();
    for range in slots {
        let Value::Array(fields) = range else {
            return None;
        };
        let [Value::Int(first), Value::Int(last), Value::Array(owner), ..] = fields.as_slice()
        else {
            return None;
        };
        let [Value::BulkString(ip), Value::Int(port), ..] = owner.as_slice() else {
            return None;
        };
        if ip.is_empty() {
            return None;
        }
        map.push((*first, *last, u16::try_from(*port).ok()?));
    }
    map.sort_by_key(|(first, _, _)| *first);
    Some(map)
}

// Replicas: one CLUSTER REPLICATE each (a repeated one restarts the replication link, so
// polling with it never sees the link up), no diskless-sync delay.
impl RedisServer {
    /// Adds `replicas` replicas to each of the first `primaries` nodes, each attached by one
    /// CLUSTER REPLICATE (sent again only if refused) and waited for until its primary
    /// streams to it; no diskless-sync delay, so a full sync (a replica attached, or a
    /// killed node rejoining) starts at once, and an empty replica loads it from the socket.
    async fn add_replicas(&mut self, primaries: usize, replicas: usize) {
        let server = self;
        let mut first = node_conn(server.port).await;
        for _ in 0..primaries * replicas {
            let node = start_fresh(&server.dir, cluster_args).await;
            meet(&mut first, &node).await;
            server.nodes.push(node);
        }
        server.wait_cluster_ok().await;
        for node in &server.nodes {
            let _: () = redis::cmd("CONFIG")
                .arg(&["SET", "repl-diskless-sync-delay", "0"])
                .arg(&["repl-diskless-load", "on-empty-db"])
                .query_async(&mut node_conn(node.port).await)
                .await
                .unwrap();
        }
        server.link_replicas(primaries).await;
        server.until_streaming(primaries, replicas).await;
    }

    /// Makes every node after the first `primaries` a replica of one of them (by one
    /// CLUSTER REPLICATE each) and waits until every link is up and every primary lists
    /// its replicas.
    async fn link_replicas(&self, primaries: usize) {
        for (i, replica) in self.nodes.iter().skip(primaries).enumerate() {
            let id = node_id(self.nodes[i % primaries].port).await;
            let port = replica.port;
            eventually(
                "CLUSTER REPLICATE accepted",
                Duration::from_secs(30),
                || {
                    let id = id.clone();
                    async move {
                        let mut c = node_conn_once(port).await?;
                        let cmd = redis::cmd("CLUSTER").arg("REPLICATE").arg(&id).clone();
                        cmd.query_async::<()>(&mut c).await.ok()
                    }
                },
            )
            .await;
        }
        for (i, replica) in self.nodes.iter().skip(primaries).enumerate() {
            let (port, primary) = (replica.port, self.nodes[i % primaries].port);
            eventually("a replica linked", Duration::from_secs(30), || async move {
                let mut c = node_conn_once(port).await?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut c)
                    .await
                    .ok()?;
                info.contains("master_link_status:up").then_some(())
            })
            .await;
            // Its primary learns of it by gossip, a moment later.
            eventually("a replica known", Duration::from_secs(30), || async move {
                self.replicas_of(primary)
                    .await
                    .contains(&port)
                    .then_some(())
            })
            .await;
        }
    }

    /// Waits until each primary's replicas acknowledge a write made now (WAIT). A replica
    /// reports its link up before its primary streams to it: after a diskless full sync
    /// that waits for the replica's first acknowledgement, up to a second later, and a
    /// primary killed in between takes every write made since with it.
    async fn until_streaming(&self, primaries: usize, replicas: usize) {
        for i in 0..primaries {
            let port = self.nodes[i].port;
            let slots = (i * SLOTS / primaries) as i64..=((i + 1) * SLOTS / primaries - 1) as i64;
            let key = probe_key(port, slots).await;
            eventually("replicas streaming", Duration::from_secs(30), || {
                let key = key.clone();
                async move {
                    let mut c = node_conn_once(port).await?;
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET").arg(&key).arg(1).ignore();
                    pipe.cmd("WAIT").arg(replicas).arg(100);
                    let (acked,): (usize,) = pipe.query_async(&mut c).await.ok()?;
                    (acked >= replicas).then_some(())
                }
            })
            .await;
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut node_conn(port).await)
                .await
                .unwrap();
        }
    }
}

/// A key whose slot is in `slots` (asked of the node on `port`).
async fn probe_key(port: u16, slots: std::ops::RangeInclusive<i64>) -> String {
    let mut c = node_conn(port).await;
    for n in 0.. {
        let key = format!("stampede-probe-{n}");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if slots.contains(&slot) {
            return key;
        }
    }
    unreachable!()
}
