//! Integration tests of `connect-buffer`: the behavioural suite against the embedded
//! backend, plus what only the embedded backend has (lock file, format version, I/O
//! failures, throughput); and the same suite against the Redis backend on a real
//! `redis-server` (`redis`), plus what only it has (replicas, outages, write confirmation);
//! and the suite again on a real three-primary Redis Cluster (`cluster`), with a slot moving
//! under live writes.

mod cluster;
mod embedded;
mod log;
mod recycle;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use connect_buffer::embedded::EmbeddedBuffer;
use connect_buffer::suite::Harness;
use connect_buffer::{Buffer, ManualClock};
use connect_protocol::time::Timestamp;
use tempfile::TempDir;

/// A fresh data directory per case; `open` re-opens the same directory.
pub struct EmbeddedHarness {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
}

impl Default for EmbeddedHarness {
    fn default() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            clock: Arc::new(ManualClock::new(Timestamp::from_micros(
                1_770_000_000_000_000,
            ))),
        }
    }
}

impl EmbeddedHarness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open_embedded(&self) -> EmbeddedBuffer {
        EmbeddedBuffer::open(&self.dir.path().join("data"), self.clock.clone()).expect("open")
    }
}

#[async_trait]
impl Harness for EmbeddedHarness {
    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    async fn open(&self) -> Arc<dyn Buffer> {
        Arc::new(self.open_embedded())
    }
}

mod suite {
    use super::EmbeddedHarness;

    connect_buffer::buffer_suite!(EmbeddedHarness::new());
}
