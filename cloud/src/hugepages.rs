//! Transparent huge pages off for the whole process.
//!
//! mimalloc marks its arenas for huge pages, and the kernel then backs a fresh or purged
//! region with a 2 MiB page at the first touch, zeroing all of it inside that one page fault.
//! With a backlog's index growing (and freed memory purged and faulted in again) those faults
//! came in runs on the worker threads and the store's writer: 20–110 ms in which no webhook was
//! answered. Measured with wrk's corrected latencies, durable ingest's p99 was 22–60 ms with
//! huge pages and 2.1–2.5 ms without, at the same rate (docs/BENCHMARKS.md, "Session 14").
//! The setting (`PR_SET_THP_DISABLE`) holds for the process and its children; the price is
//! more TLB misses on a large index, which did not show in any measurement here.

/// Turns transparent huge pages off for this process; a kernel that refuses only costs the
/// pauses above, so that is a warning.
pub fn disable() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "turning transparent huge pages off failed; expect pauses while the store's index grows");
    }
}
