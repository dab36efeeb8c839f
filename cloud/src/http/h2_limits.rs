//! Request-head limits for HTTP/2, in the documented shape (issue #13, finding 4).
//!
//! Over HTTP/1 hyper refuses an oversized head itself and `edge::head_errors` reshapes its
//! answer. Over HTTP/2 the refusal would happen inside the h2 layer (a bare `431` and a reset
//! stream, below anything the edge can see), so the edge lets h2 take header lists up to
//! `edge::limits::H2_MAX_HEADER_LIST_BYTES` and this layer applies the same limits HTTP/1 has, with the
//! exact figures: more header fields than hyper takes over HTTP/1, a head larger than its
//! HTTP/1 read buffer. Below those limits the ingress pipeline's own checks (§2.3 step 3)
//! answer as over HTTP/1. (A URI over 65,534 bytes cannot reach a router over HTTP/2: the
//! `http` crate refuses to parse it and h2 resets the stream as malformed.)

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use connect_protocol::error::ErrorCode;

use crate::edge::limits::{HEAD_BUFFER_BYTES, hyper_max_headers};
use crate::http::error::ApiError;

/// The answer to an HTTP/2 request past the HTTP/1 limits: the documented error, with the
/// protocol version header (applied by [`super::shape::Shaped`] to HTTP/2 requests only).
pub fn refusal(req: &Request, max_headers: usize, max_header_bytes: usize) -> Option<Response> {
    let e = limits(req, max_headers, max_header_bytes).err()?;
    let mut res = e.into_response();
    let (k, v) = crate::http::connect::common::version_header();
    res.headers_mut().insert(k, v);
    Some(res)
}

/// The HTTP/1 limits, applied to an HTTP/2 request's head.
fn limits(req: &Request, max_headers: usize, max_header_bytes: usize) -> Result<(), ApiError> {
    let headers = req.headers();
    let n = headers.len();
    if n > hyper_max_headers(max_headers) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidHeaders,
            format!("Too many headers: {n} (max: {max_headers})"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > HEAD_BUFFER_BYTES {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidHeaders,
            format!("Headers too large: {bytes} bytes (max: {max_header_bytes})"),
        ));
    }
    Ok(())
}
