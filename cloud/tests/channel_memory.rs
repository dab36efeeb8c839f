//! What an idle channel costs the cloud's heap (issue #14: ≤ 1 KB of memory per idle
//! channel): every heap byte the process holds, counted by a global allocator, for a cloud
//! serving many configured channels (the configuration model, the embedded store and the
//! hub together) and for many self-service channels. Figures are marginal — the difference
//! between two channel counts — so fixed costs (the stores' page caches, the runtime) drop out.
//! RSS figures of the release binary are in docs/BENCHMARKS.md ("Many idle channels").
//!
//! Its own test binary, because the counting allocator is process-wide.

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use connect_cloud::config_source::raw::RawConfig;
use connect_protocol::hosted::{CreateChannelRequest, QuotaPatch, SelfServiceMode};
use connect_testkit::in_process::TestCloud;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes per idle configured channel (configuration entry, store, hub). 3,673 B before
/// the definition was kept as a digest, the auth blocks boxed and the hub's per-channel
/// token state and stop token made compact / lazy (2026-12-06); 1,871 B before the hub
/// shared a channel's name with its map key and equal settings between channels, 1,799 B
/// after (the figure moves by up to ~200 B between runs of the same code). 1,804 B on that
/// code in session 15, 1,410 to 1,598 B (six runs) once the embedded store held a channel's
/// record compactly and its counters lazily. The bound keeps ~20 % over the upper figure, so
/// it does not fail the code before: that cut is bounded exactly in connect-buffer's `memory`
/// test, and this figure's spread leaves no room for both.
const MAX_CONFIGURED: f64 = 1_950.0;
/// Heap bytes per idle self-service channel (its records, store, hub, and the growth of the
/// stores' page caches, which are not yet full at 3,000 channels). 3,048 B before; 2,533 to
/// 2,688 B (three runs) before the hosted index held compact entries and the hub's changes
/// above, 2,371 to 2,374 B after (2026-12-06, session 13). The bound leaves room for the
/// run-to-run spread (~200 B); the hosted index's share is bounded exactly, and fails on the
/// old code, in connect-buffer's `memory` test. 2,381 B on that code in session 15, 1,798 to
/// 1,940 B (eight runs, two modes) with the embedded store's compact channel record and lazy
/// counters (bounded exactly in connect-buffer's `memory` test); the bound (~18 % over the
/// upper figure) still fails the code before.
const MAX_SELF_SERVICE: f64 = 2_300.0;
/// Heap blocks per idle self-service channel, same run. Unlike the bytes, the count hardly
/// moves between runs (the page caches' and maps' growth adds a few large blocks, ~0.3 per
/// channel), so it bounds the cuts that remove a block per channel exactly. 8.31 while the
/// store made every channel a `Notify` at creation and the hub kept a channel's connection
/// list, wake-up and stop token inline (192 B runtime; session 16), 7.33 with both made at
/// the channel's first connection (128 B runtime), 4.49 once the store and the hub share the
/// name and webhook id the index of self-service records holds instead of allocating their own.
const MAX_SELF_SERVICE_BLOCKS: f64 = 4.8;

/// Heap bytes held by the whole process now.
fn live() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Heap blocks held by the whole process now.
fn live_blocks() -> i64 {
    let s = GLOBAL.stats();
    s.allocations as i64 - s.deallocations as i64
}

/// `n` configured channels like the bench's (`acc<i>-ch<j>`, each with its own token).
fn hooks(n: usize) -> serde_json::Value {
    let mut m = serde_json::Map::with_capacity(n);
    for i in 0..n {
        let name = format!("acc{}-ch{}", i / 10, i % 10);
        let def = serde_json::json!({
            "module": "webhook_connect",
            "module-config": {
                "channel": name,
                "channel_token": format!("channels-bench-token-{i:06}-0123456789"),
            }
        });
        m.insert(name, def);
    }
    serde_json::Value::Object(m)
}

/// Heap bytes the configuration manager keeps per configured entry for as long as it is in
/// force (its unresolved definition, to re-resolve after a Vault refresh and to apply etcd
/// key events; `config_source::manager::Applied::raw`): its compact text, 211 B measured
/// (2026-12-06). Kept as a parsed `Value` before (~0.8 KB of RSS per entry in the release
/// bench; this test was not run against that code).
const MAX_RAW_ENTRY: f64 = 300.0;

#[test]
fn a_configured_entrys_kept_source_definition_is_small() {
    let n = 20_000;
    let doc = hooks(n);
    let before = live();
    let raw = RawConfig::webhooks_from_doc(&doc).unwrap();
    let per = (live() - before) as f64 / n as f64;
    drop(raw);
    eprintln!("heap per kept source definition: {per:.0} B");
    assert!(
        per <= MAX_RAW_ENTRY,
        "{per:.0} B per kept source definition"
    );
}

/// Heap a cloud holds once started with `n` configured channels (the document it is given is
/// consumed by the start).
async fn configured_cloud(n: usize) -> i64 {
    let before = live();
    let cloud = TestCloud::start(hooks(n)).await.unwrap();
    let held = live() - before;
    cloud.stop().await;
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_configured_channel_costs_a_bounded_heap() {
    let (small, large) = (5_000, 25_000);
    let a = configured_cloud(small).await;
    let b = configured_cloud(large).await;
    let per = (b - a) as f64 / (large - small) as f64;
    eprintln!("heap per idle configured channel: {per:.0} B");
    assert!(
        per <= MAX_CONFIGURED,
        "{per:.0} B per idle configured channel"
    );
}

/// Creates ten self-service channels for each of `accounts` accounts through the hosted
/// service (channels `c0`–`c9` of accounts `acc0`…); the first `warm` accounts' channels are
/// created unmeasured, and the heap bytes and blocks per channel of the rest are returned.
async fn self_service_heap_per_channel(accounts: usize, warm: usize) -> (f64, f64) {
    let cloud = TestCloud::builder(hooks(1))
        .self_service(SelfServiceMode::Keys)
        .start()
        .await
        .unwrap();
    let hosted = cloud.state().hosted().clone();
    let quota = QuotaPatch {
        max_channels: Some(10),
        ..QuotaPatch::default()
    };
    let mut records = Vec::new();
    for i in 0..accounts {
        let created = hosted
            .create_account(&format!("acc{i}"), Some(&quota))
            .await
            .unwrap();
        let a = hosted
            .authenticate_key(Some(&created.api_key))
            .await
            .unwrap();
        records.push(a);
    }
    let create = async |accounts: &[_]| {
        let before = (live(), live_blocks());
        for a in accounts {
            for j in 0..10 {
                let req = CreateChannelRequest {
                    name: format!("c{j}"),
                    ..CreateChannelRequest::default()
                };
                hosted.create_channel(a, &req).await.unwrap();
            }
        }
        (live() - before.0, live_blocks() - before.1)
    };
    create(&records[..warm]).await;
    let (bytes, blocks) = create(&records[warm..]).await;
    cloud.stop().await;
    let n = (accounts - warm) as f64 * 10.0;
    (bytes as f64 / n, blocks as f64 / n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_self_service_channel_costs_a_bounded_heap() {
    // The first 1,000 channels fill the stores' page caches; the next 2,000 are measured.
    let (per, blocks) = self_service_heap_per_channel(300, 100).await;
    eprintln!("heap per idle self-service channel: {per:.0} B ({blocks:.2} blocks)");
    assert!(
        per <= MAX_SELF_SERVICE,
        "{per:.0} B per idle self-service channel"
    );
    assert!(
        blocks <= MAX_SELF_SERVICE_BLOCKS,
        "{blocks:.2} heap blocks per idle self-service channel"
    );
}

/// Heap blocks per idle self-service channel once the stores' page caches are full (they are
/// capped: 4 MiB + 1 MiB), over one whole doubling of the channel maps (14,400 -> 28,600
/// channels; a map's growth is paid at its doubling, so a shorter span over- or
/// under-counts it). Bytes are printed beside it: this is the figure to read against the
/// issue's ≤ 1 KB per idle channel. Slow (~3-4 min, debug build), so run by hand.
const MAX_STEADY_BLOCKS: f64 = 4.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 28,600 self-service channels; run by hand (docs/BENCHMARKS.md)"]
async fn an_idle_self_service_channel_beyond_the_page_caches() {
    let (per, blocks) = self_service_heap_per_channel(2_860, 1_440).await;
    eprintln!(
        "heap per idle self-service channel, page caches full: {per:.0} B ({blocks:.2} blocks)"
    );
    assert!(
        blocks <= MAX_STEADY_BLOCKS,
        "{blocks:.2} heap blocks per idle self-service channel"
    );
}

/// Heap bytes a created and then deleted self-service channel may leave behind (page-cache
/// growth of the stores and the allocator's rounding; nothing per channel): 1 B measured.
/// 182 B while the deleted channels' metric series stayed (with the store's notifier and
/// due-work entries already dropped), more before (2026-12-06).
const MAX_CHURN: f64 = 16.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_create_delete_churn_leaves_no_heap_behind() {
    let cloud = TestCloud::builder(hooks(1))
        .self_service(SelfServiceMode::Keys)
        .start()
        .await
        .unwrap();
    let hosted = cloud.state().hosted().clone();
    let quota = QuotaPatch {
        max_channels: Some(10),
        ..QuotaPatch::default()
    };
    let created = hosted.create_account("churn", Some(&quota)).await.unwrap();
    let a = hosted
        .authenticate_key(Some(&created.api_key))
        .await
        .unwrap();
    // Every name is used once: a leak keyed by name cannot hide behind reuse.
    let churn = async |from: usize, to: usize| {
        let before = live();
        for i in from..to {
            let req = CreateChannelRequest {
                name: format!("c{i}"),
                ..CreateChannelRequest::default()
            };
            let c = hosted.create_channel(&a, &req).await.unwrap();
            hosted.delete_channel(&a, &c.channel).await.unwrap();
        }
        live() - before
    };
    // The first 1,000 fill the stores' page caches and size the maps; 4,000 are measured.
    churn(0, 1_000).await;
    let per = churn(1_000, 5_000).await as f64 / 4_000.0;
    eprintln!("heap left per created and deleted self-service channel: {per:.0} B");
    cloud.stop().await;
    assert!(per <= MAX_CHURN, "{per:.0} B per deleted channel");
}

/// Heap bytes per channel that putting a configuration in force holds at its peak beyond what
/// it keeps (transients: lists of every record, name sets, registrations built up front).
/// Freed, they still stay resident in the release binary (the allocator keeps the pages of an
/// idle process), so this is resident memory per channel after a start. A restart with
/// self-service channels: 508 B while start-up listed every channel record and built hash
/// sets of the self-service names, 41 B once it walked the store record by record
/// (2026-12-07).
///
/// The bounds of these three tests sit at about half the old code's figure, not just above
/// today's: the peak includes the registrations queued for the store's writer, and on a loaded
/// machine more of them queue (CI measured 388 B for the first start where a quiet machine
/// gives 171–180 B).
const MAX_RESTART_TRANSIENT: f64 = 250.0;
/// The same for opening the embedded store on restart: 880 B while it read every channel into
/// a list, then into a map of the channels themselves (~560 B inline each) before moving each
/// into its shared handle; 79 B once each channel goes from the store's row to its handle
/// (2026-12-07).
const MAX_OPEN_TRANSIENT: f64 = 400.0;
/// The same for a first start with configured channels: 1,243 B while every channel's spec
/// (settings included) and every registration were built up front, 171 B with borrowed specs
/// and registrations built as they are sent (2026-12-07). What is left is the borrowed spec
/// map and the registrations in flight.
const MAX_FIRST_START_TRANSIENT: f64 = 600.0;

/// The highest heap figure seen while `work` runs (a thread samples the allocator's counters
/// until it is done), less the figure after it, in bytes.
async fn transient_peak<F: std::future::Future<Output = ()>>(work: F) -> i64 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(live()));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(live(), Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    };
    work.await;
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    peak.load(Ordering::Relaxed).max(live()) - live()
}

/// An `AppState` on the embedded store in `dir` with self-service on, its configuration
/// read from `dir/webhooks.json`.
fn hosted_state(dir: &std::path::Path) -> connect_cloud::AppState {
    use connect_buffer::embedded::EmbeddedBuffer;
    let mut settings =
        connect_cloud::Settings::for_tests(dir.join("data"), dir.join("webhooks.json"));
    settings.hosted.self_service = SelfServiceMode::Keys;
    settings.hosted.public_url = Some("http://self-service.invalid".into());
    let buffer = EmbeddedBuffer::open(
        &dir.join("data"),
        std::sync::Arc::new(connect_buffer::SystemClock),
    )
    .unwrap();
    connect_cloud::AppState::new(settings, std::sync::Arc::new(buffer))
}

fn read_hooks(dir: &std::path::Path) -> connect_config::WebhookSet {
    connect_cloud::app::read_webhooks(&dir.join("webhooks.json"), &connect_config::ProcessEnv)
        .unwrap()
}

/// A restart with 5,000 self-service channels: what opening the store and putting the
/// configuration in force hold beyond what they keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_holds_little_beyond_its_self_service_channels() {
    let n = 5_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::to_vec(&hooks(1)).unwrap(),
    )
    .unwrap();
    {
        let state = hosted_state(dir.path());
        state.apply_config(read_hooks(dir.path())).await.unwrap();
        let hosted = state.hosted().clone();
        let quota = QuotaPatch {
            max_channels: Some(10),
            ..QuotaPatch::default()
        };
        for i in 0..n / 10 {
            let created = hosted
                .create_account(&format!("acc{i}"), Some(&quota))
                .await
                .unwrap();
            let a = hosted
                .authenticate_key(Some(&created.api_key))
                .await
                .unwrap();
            for j in 0..10 {
                let req = CreateChannelRequest {
                    name: format!("c{j}"),
                    ..CreateChannelRequest::default()
                };
                hosted.create_channel(&a, &req).await.unwrap();
            }
        }
        state.buffer().close().await.unwrap();
    }
    let base = live();
    let mut state = None;
    let open_held = transient_peak(async {
        state = Some(hosted_state(dir.path()));
    })
    .await;
    let state = state.unwrap();
    let open_per = open_held as f64 / n as f64;
    eprintln!(
        "opening the store: transient {open_per:.0} B per channel, kept {:.0} B",
        (live() - base) as f64 / n as f64
    );
    assert!(
        open_per <= MAX_OPEN_TRANSIENT,
        "{open_per:.0} B per channel held at the store's open beyond what it keeps"
    );
    let hooks = read_hooks(dir.path());
    let held = transient_peak(async {
        state.apply_config(hooks).await.unwrap();
    })
    .await;
    assert_eq!(state.hub().channel_names().len(), n + 1);
    let per = held as f64 / n as f64;
    eprintln!("start-up transient per self-service channel (restart): {per:.0} B");
    state.buffer().close().await.unwrap();
    assert!(
        per <= MAX_RESTART_TRANSIENT,
        "{per:.0} B per channel held at the start's peak beyond what it keeps"
    );
}

/// A first start with 20,000 configured channels: what registering them holds beyond what
/// is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_holds_little_beyond_its_configured_channels() {
    let n = 20_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::to_vec(&hooks(n)).unwrap(),
    )
    .unwrap();
    let state = hosted_state(dir.path());
    let hooks = read_hooks(dir.path());
    let held = transient_peak(async {
        state.apply_config(hooks).await.unwrap();
    })
    .await;
    assert_eq!(state.hub().channel_names().len(), n);
    let per = held as f64 / n as f64;
    eprintln!("start-up transient per configured channel (first start): {per:.0} B");
    state.buffer().close().await.unwrap();
    assert!(
        per <= MAX_FIRST_START_TRANSIENT,
        "{per:.0} B per channel held at the start's peak beyond what it keeps"
    );
}
