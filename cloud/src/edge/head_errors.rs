//! hyper's own answers to request heads it cannot parse, in the documented shape.
//!
//! hyper answers a request head it refuses (more header fields than it takes, a head larger
//! than its read buffer, a URI over 65,534 bytes, a line it cannot parse) itself, before any
//! service sees the request, with a bare `431` / `414` / `400` and an empty body, and then
//! closes the connection; there is no hook for that answer. [`HeadGuard`] sits between hyper
//! and the socket and replaces it on its way out with the §1.4 JSON error, the security headers
//! and the protocol version header (`Too many headers…` / `Headers too large…` are 400 as in
//! §2.3 step 3).
//!
//! Telling hyper's answer from ours: every answer the router produces carries
//! `X-Content-Type-Options` (the security-headers layer); hyper's automatic answers have only
//! `content-length: 0` and `date`. Only a write that starts with such a head is replaced; the
//! cloud's bodies (JSON, SSE chunks, WebSocket frames, metrics text) never start with
//! `HTTP/1.1 `.
//!
//! After the replaced answer the socket is closed gracefully: our side is shut down and what
//! the client still sends is read and dropped for a short while, so that the client reads the
//! answer instead of a reset (a client sending a 1 MB header is still writing when hyper gives
//! up).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use connect_protocol::error::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::handoff::{self, Detached, Handoff};

pub use super::limits::{HEAD_BUFFER_BYTES, MAX_URI_BYTES, hyper_max_headers};
/// How long a replaced answer's connection keeps draining what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// The most a replaced answer's connection drains before it closes.
const LINGER_BYTES: u64 = 4 * 1024 * 1024;

/// The limits the answers name.
#[derive(Debug, Clone)]
pub struct HeadLimits {
    /// hyper's cap on header fields.
    pub hyper_max_headers: usize,
    /// The documented (configured) limits of §2.3 step 3.
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// The socket as hyper sees it: passes everything through, except hyper's automatic error
/// answers, which it replaces (module docs). Holds the connection's permit, so that a
/// lingering close still counts against the connection cap.
pub struct HeadGuard {
    inner: Option<TcpStream>,
    limits: Arc<HeadLimits>,
    /// Bytes read since the last write: at least the size of the head being read.
    read_since_write: u64,
    /// The replacement answer still to be written, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    replaced: bool,
    permit: Option<OwnedSemaphorePermit>,
    /// Armed by a handler that takes the socket after its response head (`edge::handoff`).
    handoff: Handoff,
    detach: Detach,
}

/// Where a handoff stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detach {
    /// Not started: everything passes through.
    Off,
    /// The armed response's head is being written; this many bytes of it are left.
    Head { left: usize },
    /// The head is out: hyper's further output is dropped, its shutdown ignored, and the
    /// socket goes to the handler's task when hyper lets go of it.
    Done,
}

impl HeadGuard {
    pub fn new(
        inner: TcpStream,
        limits: Arc<HeadLimits>,
        permit: OwnedSemaphorePermit,
        handoff: Handoff,
    ) -> Self {
        Self {
            inner: Some(inner),
            limits,
            read_since_write: 0,
            pending: Vec::new(),
            pending_at: 0,
            replaced: false,
            permit: Some(permit),
            handoff,
            detach: Detach::Off,
        }
    }

    /// The write path of a handoff (`first`: the first non-empty buffer hyper writes,
    /// `total`: all it writes); `None` when no handoff is armed or under way.
    fn poll_detach(
        &mut self,
        cx: &mut Context<'_>,
        first: &[u8],
        total: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        let left = match self.detach {
            Detach::Done => return Some(Poll::Ready(Ok(total))),
            Detach::Head { left } => left,
            Detach::Off => {
                if !self.handoff.armed() {
                    return None;
                }
                handoff::head_end(first)?
            }
        };
        self.detach = Detach::Head { left };
        let Some(inner) = self.inner.as_mut() else {
            return Some(Poll::Ready(Err(gone())));
        };
        let n = match Pin::new(inner).poll_write(cx, &first[..left.min(first.len())]) {
            Poll::Ready(Ok(n)) => n,
            other => return Some(other),
        };
        self.detach = match left.saturating_sub(n) {
            0 => Detach::Done,
            left => Detach::Head { left },
        };
        Some(Poll::Ready(Ok(n)))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection already closed")
}

impl HeadGuard {
    /// Writes what is left of the replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = self.inner.as_mut().ok_or_else(gone)?;
        while self.pending_at < self.pending.len() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.pending[self.pending_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_at += n;
        }
        Poll::Ready(Ok(()))
    }

    /// `Some(len)`: `buf` was hyper's automatic answer, taken (as written) and replaced.
    fn replace(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<usize> {
        if self.replaced {
            return None;
        }
        let (status, head_len) = automatic_answer(buf)?;
        let date = header_line(&buf[..head_len], b"date");
        self.pending = answer(status, self.read_since_write, &self.limits, date);
        self.pending_at = 0;
        self.replaced = true;
        // Errors and a full socket surface at the flush that follows.
        let _ = self.poll_pending(cx);
        Some(head_len)
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        ready!(Pin::new(inner).poll_read(cx, buf))?;
        let n = buf.filled().len().saturating_sub(before);
        this.read_since_write = this.read_since_write.saturating_add(n as u64);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(done) = this.poll_detach(cx, buf, buf.len()) {
            return done;
        }
        if let Some(n) = this.replace(cx, buf) {
            return Poll::Ready(Ok(n));
        }
        this.read_since_write = 0;
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // hyper puts a head in one slice, the first.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        let total = bufs.iter().map(|b| b.len()).sum();
        if let Some(done) = this.poll_detach(cx, first, total) {
            return done;
        }
        if !first.is_empty()
            && let Some(n) = this.replace(cx, first)
        {
            return Poll::Ready(Ok(n));
        }
        this.read_since_write = 0;
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.detach == Detach::Done {
            // The socket stays open for the handler's task.
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_pending(cx))?;
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_shutdown(cx)
    }
}

impl Drop for HeadGuard {
    fn drop(&mut self) {
        if self.detach == Detach::Done
            && let (Some(stream), Some(to)) = (self.inner.take(), self.handoff.take())
        {
            // A handler gone meanwhile drops the socket, which closes it.
            let _ = to.send(Detached {
                stream,
                permit: self.permit.take(),
            });
            return;
        }
        if !self.replaced {
            return;
        }
        let (Some(stream), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let permit = self.permit.take();
        let pending = std::mem::take(&mut self.pending);
        let at = self.pending_at;
        rt.spawn(linger_close(stream, pending, at, permit));
    }
}

/// The graceful close after a replaced answer: the rest of the answer, our end shut down,
/// then what the client still sends is dropped (bounded in time and bytes).
async fn linger_close(
    mut stream: TcpStream,
    pending: Vec<u8>,
    at: usize,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let _ = tokio::time::timeout(LINGER, async {
        if stream
            .write_all(&pending[at.min(pending.len())..])
            .await
            .is_err()
        {
            return;
        }
        // Already shut down by hyper: fine, drain all the same.
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 8192];
        let mut drained = 0u64;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n as u64,
            }
        }
    })
    .await;
}

/// `(status, head length)` when `buf` starts with an answer hyper wrote by itself: an error
/// status line and a complete head without the security headers every routed answer carries.
pub fn automatic_answer(buf: &[u8]) -> Option<(u16, usize)> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..head_len];
    let routed = header_line(head, b"x-content-type-options").is_some();
    let empty = header_line(head, b"content-length").is_some_and(|v| v == b"0");
    (!routed && empty).then_some((status, head_len))
}

/// The value of header `name` (lower case) in a response head.
fn header_line<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// The replacement for hyper's answer `status`, after `read` bytes of the refused head.
pub fn answer(status: u16, read: u64, limits: &HeadLimits, date: Option<&[u8]>) -> Vec<u8> {
    let (status, code, detail) = match status {
        431 if read >= HEAD_BUFFER_BYTES as u64 => (
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHeaders,
            format!(
                "Headers too large: more than {HEAD_BUFFER_BYTES} bytes (max: {})",
                limits.max_header_bytes
            ),
        ),
        431 => (
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHeaders,
            format!(
                "Too many headers: more than {} (max: {})",
                limits.hyper_max_headers, limits.max_headers
            ),
        ),
        414 => (
            StatusCode::URI_TOO_LONG,
            ErrorCode::InvalidRequest,
            format!("URI too long: more than {MAX_URI_BYTES} bytes"),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "Malformed request".to_owned(),
        ),
    };
    let body = serde_json::to_vec(&ErrorBody::new(code, detail))
        .unwrap_or_else(|_| br#"{"detail":"Bad Request"}"#.to_vec());
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(d) = date.and_then(|d| HeaderValue::from_bytes(d).ok()) {
        h.insert(header::DATE, d);
    }
    crate::http::shape::add_response_headers(&mut h);
    let (k, v) = crate::http::connect::common::version_header();
    h.insert(k, v);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
    .into_bytes();
    for (k, v) in &h {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\r\n";

    #[test]
    fn only_hyper_s_bare_error_heads_are_recognised() {
        assert_eq!(automatic_answer(HYPER_431), Some((431, HYPER_431.len())));
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-content-type-options: nosniff\r\n\r\n";
        assert_eq!(automatic_answer(routed), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(automatic_answer(with_body), None);
        assert_eq!(automatic_answer(b"{\"detail\":\"HTTP/1.1 431\"}"), None);
        assert_eq!(automatic_answer(b"HTTP/1.1 43"), None);
    }

    #[test]
    fn the_answer_keeps_hyper_s_date_and_names_the_limits() {
        let limits = HeadLimits {
            hyper_max_headers: 200,
            max_headers: 100,
            max_header_bytes: 8192,
        };
        let a = answer(431, 10, &limits, Some(b"Sun, 06 Dec 2026 10:00:00 GMT"));
        let text = String::from_utf8(a).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(
            text.contains("date: Sun, 06 Dec 2026 10:00:00 GMT\r\n"),
            "{text}"
        );
        assert!(text.ends_with(
            r#"{"detail":"Too many headers: more than 200 (max: 100)","code":"invalid_headers"}"#
        ));
    }
}
