//! Every parser that reads raw request data at the edge, reachable from outside the crate for
//! the fuzz targets (`cloud/fuzz/`, docs/BENCHMARKS.md "Fuzzing"). Each is the function the
//! handlers call, not a copy:
//! - query strings: [`decode_query_value`] (percent-decoding), [`query_token`] (`?token=` on
//!   the connector endpoints), [`parse_ack_query`] (`POST /connect/ack`),
//!   [`parse_poll_query`] (long-poll);
//! - headers: [`bearer_token`] (connector, admin and `/metrics` credentials),
//!   [`reload_token`] (the reload API), [`check_header_limits`] (§2.3 step 3);
//! - webhook bodies, identifiers and the webhook authentication methods live in
//!   `connect_protocol::json`, `connect_protocol::ids` and `connect_config` (public there).

pub use super::auth::{
    MalformedEscape, bearer_token, decode_query_value, query_token, reload_token,
};
pub use super::connect::ack::{AckQuery, parse_ack_query};
pub use super::connect::poll::{PollParams, parse_poll_query};
pub use super::ingress::check_header_limits;
