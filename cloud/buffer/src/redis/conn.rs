//! One command handle for either deployment: a single Redis node (a [`ConnectionManager`]
//! that reconnects by itself) or a Redis Cluster (the crate's cluster client, which follows
//! `MOVED` / `ASK` during a resharding and refreshes its slot map by itself).
//!
//! Everything the backend sends goes through [`RedisConn`]; the scripts and commands are the
//! same for both, because every key a command or script touches carries its channel's hash
//! tag (or is one global key on its own). Pipelines would have to stay within one slot in a
//! cluster, so the backend sends per-key commands concurrently instead.
//!
//! Pub/Sub: a classic `PUBLISH` (also from a script) reaches the subscribers on every node of
//! a cluster, so the subscriber connects to one node — the single node, or the seeds in turn.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(6);

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisEndpoint {
    /// `redis://…` or `rediss://…`: one primary.
    Single(String),
    /// Seed nodes of a Redis Cluster (`redis://…` or `rediss://…` each); the client learns the
    /// others from them.
    Cluster(Vec<String>),
}

impl RedisEndpoint {
    /// Splits a comma-separated seed list (`redis://h1:p1,redis://h2:p2`); blanks are skipped.
    pub fn cluster_from_list(list: &str) -> Self {
        Self::Cluster(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The nodes a subscriber may connect to, in the order they are tried.
    pub(super) fn subscribe_urls(&self) -> Vec<String> {
        match self {
            Self::Single(u) => vec![u.clone()],
            Self::Cluster(seeds) => seeds.clone(),
        }
    }
}

/// A cheap-to-clone command handle (both variants multiplex over shared connections).
#[derive(Clone)]
pub(super) enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    pub(super) async fn connect(endpoint: &RedisEndpoint) -> RedisResult<Self> {
        match endpoint {
            RedisEndpoint::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Self::Single(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            RedisEndpoint::Cluster(seeds) => {
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(4)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
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
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The smallest count in a `WAITAOF` answer: `[local, replicas]` from one node, or (cluster)
/// one such pair per primary keyed by its address. `None` for an answer of another shape.
pub(super) fn min_local_aof(v: &Value) -> Option<i64> {
    match v {
        Value::Array(items) => match items.first() {
            Some(Value::Int(n)) => Some(*n),
            _ => items.iter().filter_map(min_local_aof).min(),
        },
        Value::Map(pairs) => pairs.iter().filter_map(|(_, v)| min_local_aof(v)).min(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_split_on_commas() {
        assert_eq!(
            RedisEndpoint::cluster_from_list(" redis://a:1, rediss://b:2 ,,"),
            RedisEndpoint::Cluster(vec!["redis://a:1".into(), "rediss://b:2".into()])
        );
    }

    #[test]
    fn waitaof_answers_of_one_node_or_every_primary() {
        let pair = |a, b| Value::Array(vec![Value::Int(a), Value::Int(b)]);
        assert_eq!(min_local_aof(&pair(1, 0)), Some(1));
        let per_node = Value::Map(vec![
            (Value::BulkString(b"a:1".to_vec()), pair(1, 0)),
            (Value::BulkString(b"b:2".to_vec()), pair(0, 0)),
        ]);
        assert_eq!(min_local_aof(&per_node), Some(0));
        assert_eq!(min_local_aof(&Value::Nil), None);
    }
}
