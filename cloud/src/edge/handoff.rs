//! Taking an HTTP/1.1 connection off hyper after a response head, for streams that live for
//! hours and carry little: an idle SSE connector.
//!
//! hyper keeps a read buffer and a head buffer (8 KiB each, not configurable) and its
//! connection state for as long as a response body streams, which is most of what an idle SSE
//! connector costs. A handler that wants the socket instead arms the request's [`Handoff`]
//! and answers with `Connection: close` and a body that ends at once. The edge's
//! [`HeadGuard`](super::head_errors::HeadGuard) then passes hyper's response head to the
//! socket, drops the rest of hyper's output (the chunked body's terminator), ignores hyper's
//! shutdown, and when hyper lets go of the connection hands the socket — with the
//! connection's permit, so it still counts against the connection cap — to the handler's
//! task, which writes the body's chunks itself.
//!
//! Only for HTTP/1.1 requests on connections the edge serves (the handler checks the version;
//! without a `Handoff` extension — HTTP/2, in-process test servers — it keeps streaming
//! through hyper).

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// A socket taken off hyper after its response head was written.
pub struct Detached {
    pub stream: TcpStream,
    /// The connection cap's permit (`None` where the edge runs without one).
    pub permit: Option<OwnedSemaphorePermit>,
}

/// One per connection, in every request's extensions: where an armed handler wants the
/// socket delivered.
#[derive(Clone, Default)]
pub struct Handoff(Arc<Mutex<Option<oneshot::Sender<Detached>>>>);

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("armed", &self.armed())
            .finish()
    }
}

impl Handoff {
    /// Arms the handoff: after the next response head, the socket goes to the receiver. The
    /// response must close the connection and end its body at once.
    pub fn arm(&self) -> oneshot::Receiver<Detached> {
        let (tx, rx) = oneshot::channel();
        *self.0.lock() = Some(tx);
        rx
    }

    pub(crate) fn armed(&self) -> bool {
        self.0.lock().is_some()
    }

    pub(crate) fn take(&self) -> Option<oneshot::Sender<Detached>> {
        self.0.lock().take()
    }
}

/// Where a response head ends in `buf` (after its blank line), if `buf` starts one.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    if !buf.starts_with(b"HTTP/1.1 ") {
        return None;
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_after_its_blank_line() {
        let out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(head_end(out), Some(out.len() - 5));
        assert_eq!(head_end(b"0\r\n\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nx: y\r\n"), None);
    }

    #[test]
    fn arming_gives_one_receiver_and_taking_disarms() {
        let h = Handoff::default();
        assert!(!h.armed());
        let _rx = h.arm();
        assert!(h.armed());
        assert!(h.take().is_some());
        assert!(!h.armed());
    }
}
