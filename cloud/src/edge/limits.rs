//! The request-head limits of the edge, shared by HTTP/1 (hyper refuses, `head_errors`
//! reshapes) and HTTP/2 (`crate::http::h2_limits` applies them above h2).

/// hyper's read buffer for a request head (its default, set explicitly so that the answer can
/// name it): a head that does not fit is refused.
pub const HEAD_BUFFER_BYTES: usize = 8192 + 4096 * 100;
/// hyper refuses a URI longer than this (`MAX_URI_LEN`, not configurable).
pub const MAX_URI_BYTES: usize = 65_534;
/// The largest header list h2 accepts (`SETTINGS_MAX_HEADER_LIST_SIZE`: names, values and 32
/// bytes per field): room for a 1 MiB header, so that one is answered in the documented shape
/// by `crate::http::h2_limits`. Larger lists get h2's own `431`.
pub const H2_MAX_HEADER_LIST_BYTES: u32 = 2 * 1024 * 1024;

/// hyper's cap on header fields over HTTP/1: twice the documented limit, at least 200, so
/// that up to there the ingress pipeline answers with the exact count.
pub fn hyper_max_headers(max_headers: usize) -> usize {
    max_headers.saturating_mul(2).max(200)
}
