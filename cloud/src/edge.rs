//! Bounds at the edge, before any HTTP: the file-descriptor limit raised to its hard limit at
//! start, a cap on open connections (a socket beyond it is closed at once, never queued, so
//! the process cannot run out of descriptors), and a deadline for a connection's first byte,
//! which starts before hyper tells HTTP/1 from HTTP/2 (its own header-read timeout starts only
//! after that, so a socket that never sent a byte used to stay open for good).

pub mod handoff;
pub mod head_errors;
pub mod limits;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept beyond the connection cap for the store's files, outbound connections
/// (Redis, etcd, Vault) and the listener.
pub const FD_RESERVE: u64 = 256;
/// The smallest derived cap.
const MIN_CAP: u64 = 16;

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.maximum != lim.current {
        let wanted = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => lim = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "raising the open-files limit failed"),
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

/// The connection cap: the setting, or (0) what the descriptor limit leaves after
/// [`FD_RESERVE`].
pub fn connection_cap(setting: usize, nofile: u64) -> usize {
    if setting > 0 {
        return setting;
    }
    let derived = nofile.saturating_sub(FD_RESERVE).max(MIN_CAP);
    usize::try_from(derived)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// Admits connections up to the cap.
pub struct Gate {
    permits: Arc<Semaphore>,
    cap: usize,
    /// Set while sockets are being refused (one warning per episode, not per socket).
    refusing: AtomicBool,
    refused: AtomicU64,
}

impl Gate {
    pub fn new(cap: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            refusing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    /// A permit held for the connection's life, or `None`: close the socket now.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                if self.refusing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        refused = self.refused.load(Ordering::Relaxed),
                        "accepting connections again"
                    );
                }
                Some(p)
            }
            Err(_) => {
                let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.refusing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        cap = self.cap,
                        refused = n,
                        "open connections at WEBHOOK_CONNECT_MAX_HTTP_CONNECTIONS: closing new sockets at once"
                    );
                }
                None
            }
        }
    }
}

/// Waits up to `deadline` for the connection's first byte (without consuming it); false:
/// nothing came (or the peer went away), close it.
pub async fn first_byte(stream: &TcpStream, deadline: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(deadline, stream.peek(&mut b)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_setting_or_what_the_descriptor_limit_leaves() {
        assert_eq!(connection_cap(500, 1024), 500);
        assert_eq!(connection_cap(0, 20_000), 20_000 - 256);
        assert_eq!(connection_cap(0, 100), 16);
        assert!(connection_cap(0, u64::MAX) <= Semaphore::MAX_PERMITS);
    }

    #[tokio::test]
    async fn sockets_beyond_the_cap_are_refused_until_a_permit_is_back() {
        let g = Gate::new(2);
        let a = g.admit().expect("first");
        let _b = g.admit().expect("second");
        assert!(g.admit().is_none());
        drop(a);
        assert!(g.admit().is_some());
        assert_eq!(g.refused.load(Ordering::Relaxed), 1);
    }
}
