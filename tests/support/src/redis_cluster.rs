//! A real Redis Cluster: three `redis-server --cluster-enabled yes` primaries on free ports
//! (each also listens on its port + 10000, the cluster bus), joined with
//! `redis-cli --cluster create … --cluster-yes`, plus moving one slot from its owner to
//! another primary while clients keep writing (`CLUSTER SETSLOT … IMPORTING/MIGRATING`,
//! `MIGRATE`, `CLUSTER SETSLOT … NODE`), the way `redis-cli --cluster reshard` does it.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::redis::{ping, spawn};
use crate::{ChildProcess, find_program, free_port, wait_ready, wait_until};

/// The cluster bus listens on port + 10000, so a node's port must stay at or below this.
const MAX_NODE_PORT: u16 = 55_535;
/// How long the cluster may take to agree, before [`crate::timing`]'s scale.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Node {
    port: u16,
    /// The TLS port, on a cluster started with [`RedisCluster::start_tls`].
    tls_port: Option<u16>,
    _dir: TempDir,
    process: ChildProcess,
}

/// Three primaries without replicas, every slot assigned. Children die with the value.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts three primaries, creates the cluster and waits until every node reports
    /// `cluster_state:ok`.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with extra `redis-server` arguments for every node
    /// (`["--appendonly", "yes"]`).
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        Self::start_nodes(extra, None).await
    }

    /// Like [`start`](Self::start), each node also serving TLS on its own port with the
    /// certificate of `pki` (clients need not present one), the cluster bus over TLS too
    /// (`tls-cluster yes`, so nodes announce their TLS ports to TLS clients). The plain ports
    /// stay open for the kit's own `redis-cli` calls; [`tls_urls`](Self::tls_urls) are what
    /// a client under test gets.
    pub async fn start_tls(pki: &crate::TestPki) -> Result<Self> {
        Self::start_nodes(&[], Some(pki)).await
    }

    async fn start_nodes(extra: &[&str], tls: Option<&crate::TestPki>) -> Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("testkit-redis-cluster-")
                .tempdir()
                .context("creating a cluster node dir")?;
            let port = cluster_port();
            let conf = dir.path().join("nodes.conf");
            let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
            args.extend([
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                conf.to_string_lossy().into_owned(),
                "--cluster-node-timeout".to_owned(),
                "5000".to_owned(),
            ]);
            // With `tls-cluster yes` the bus listens on the TLS port + 10000.
            let tls_port = tls.map(|_| cluster_port());
            if let (Some(pki), Some(tls_port)) = (tls, tls_port) {
                let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
                args.extend([
                    "--tls-port".to_owned(),
                    tls_port.to_string(),
                    "--tls-cert-file".to_owned(),
                    path(&pki.server_cert),
                    "--tls-key-file".to_owned(),
                    path(&pki.server_key),
                    "--tls-ca-cert-file".to_owned(),
                    path(&pki.ca),
                    // The bus always asks the connecting node for a client certificate.
                    "--tls-client-cert-file".to_owned(),
                    path(&pki.client_cert),
                    "--tls-client-key-file".to_owned(),
                    path(&pki.client_key),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                    "--tls-cluster".to_owned(),
                    "yes".to_owned(),
                ]);
            }
            let mut process = spawn(port, &dir, &args)?;
            wait_ready(&mut process, || ping(port)).await?;
            nodes.push(Node {
                port,
                tls_port,
                _dir: dir,
                process,
            });
        }
        let cluster = Self { nodes };
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port)),
        );
        create.push("--cluster-yes".to_owned());
        let out = cli_raw(&create)?;
        ensure!(
            out.contains("All 16384 slots covered"),
            "redis-cli --cluster create:\n{out}"
        );
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:<port>` of every primary (the seed list).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The seeds comma-separated, as `WEBHOOK_CONNECT_REDIS_CLUSTER_URLS` takes them.
    pub fn urls(&self) -> String {
        self.seeds().join(",")
    }

    /// `rediss://127.0.0.1:<tls port>` of every primary, comma-separated (a cluster started
    /// with [`start_tls`](Self::start_tls); empty otherwise).
    pub fn tls_urls(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.tls_port.map(|p| format!("rediss://127.0.0.1:{p}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis-cli -p <port> <args…>` against one node; the reply text, trimmed.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String> {
        let mut all = vec!["-p".to_owned(), port.to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Ok(cli_raw(&all)?.trim().to_owned())
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> Result<u16> {
        self.cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])?
            .parse()
            .context("CLUSTER KEYSLOT answer")
    }

    /// The port of the primary owning `slot`.
    pub fn owner(&self, slot: u16) -> Result<u16> {
        for n in &self.nodes {
            let id = self.node_id(n.port)?;
            let nodes = self.cli(n.port, &["CLUSTER", "NODES"])?;
            let mine = nodes
                .lines()
                .find(|l| l.starts_with(&id))
                .context("own line in CLUSTER NODES")?;
            if mine
                .split_whitespace()
                .skip(8)
                .any(|range| covers(range, slot))
            {
                return Ok(n.port);
            }
        }
        bail!("no node owns slot {slot}")
    }

    /// Moves `slot` to the primary on `to`, key batch by key batch, while clients may keep
    /// using it: keys already moved answer `ASK` on the source during the move, and every
    /// key answers `MOVED` there afterwards. `batch` keys move per `MIGRATE`; `pause` runs
    /// between batches (lets writers in).
    pub async fn migrate_slot(
        &self,
        slot: u16,
        to: u16,
        batch: usize,
        pause: Duration,
    ) -> Result<usize> {
        let from = self.owner(slot)?;
        ensure!(from != to, "slot {slot} already lives on {to}");
        let from_id = self.node_id(from)?;
        let to_id = self.node_id(to)?;
        let s = slot.to_string();
        self.ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])?;
        self.ok(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])?;
        let mut moved = 0;
        loop {
            let n = batch.max(1).to_string();
            let keys = self.cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, &n])?;
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            let out = self.cli(from, &args)?;
            ensure!(out == "OK" || out == "NOKEY", "MIGRATE answered {out}");
            moved += keys.len();
            tokio::time::sleep(pause).await;
        }
        // The new owner first, then the old one, then the rest (as redis-cli does).
        self.ok(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])?;
        self.ok(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])?;
        for n in &self.nodes {
            if n.port != to && n.port != from {
                self.ok(n.port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])?;
            }
        }
        Ok(moved)
    }

    /// SIGKILL every node.
    pub fn kill9(&mut self) {
        for n in &mut self.nodes {
            n.process.kill9();
        }
    }

    fn node_id(&self, port: u16) -> Result<String> {
        self.cli(port, &["CLUSTER", "MYID"])
    }

    fn ok(&self, port: u16, args: &[&str]) -> Result<()> {
        let out = self.cli(port, args)?;
        ensure!(out == "OK", "{args:?} on {port} answered {out}");
        Ok(())
    }

    async fn wait_ok(&self) -> Result<()> {
        wait_until(
            crate::timing::scaled(READY_TIMEOUT),
            "cluster_state:ok on every node",
            || async {
                self.nodes.iter().all(|n| {
                    self.cli(n.port, &["CLUSTER", "INFO"])
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                })
            },
        )
        .await
    }
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.ports())
            .finish()
    }
}

/// Does a `CLUSTER NODES` slot field (`0-5460`, `42`, `[93->-id]`) cover `slot`?
fn covers(range: &str, slot: u16) -> bool {
    if range.starts_with('[') {
        return false;
    }
    match range.split_once('-') {
        Some((a, b)) => {
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        }
        None => range.parse::<u16>() == Ok(slot),
    }
}

/// A free port whose cluster-bus port (+ 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p <= MAX_NODE_PORT && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

fn cli_raw(args: &[String]) -> Result<String> {
    let program = find_program("redis-cli", "redis-tools")?;
    let out = Command::new(program)
        .args(args)
        .output()
        .context("running redis-cli")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "redis-cli {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn slot_fields_of_cluster_nodes() {
        assert!(covers("0-5460", 0));
        assert!(covers("0-5460", 5460));
        assert!(!covers("0-5460", 5461));
        assert!(covers("42", 42));
        assert!(!covers("[42->-abc]", 42));
    }
}
