//! The file watcher (CONFIG.md §6.2), in process: what it sees right after start-up, and that
//! its own reads of the files are not changes.

use std::sync::Arc;
use std::time::Duration;

use connect_buffer::SystemClock;
use connect_buffer::embedded::EmbeddedBuffer;
use connect_cloud::app::AppState;
use connect_cloud::settings::Settings;
use serde_json::json;

fn log_hook() -> serde_json::Value {
    json!({"module": "log"})
}

/// A cloud whose sources are started (first read done, watcher spawned) on this runtime.
async fn started(dir: &std::path::Path, poll_seconds: f64) -> AppState {
    let hooks = dir.join("webhooks.json");
    std::fs::write(&hooks, json!({"first": log_hook()}).to_string()).expect("write webhooks.json");
    let mut settings = Settings::for_tests(dir.join("data"), hooks);
    settings.connections_config_file = dir.join("connections.json");
    settings.config_file_watching_enabled = true;
    settings.source.config_reload_debounce_seconds = 0.2;
    settings.source.config_poll_seconds = poll_seconds;
    let buffer =
        EmbeddedBuffer::open(&dir.join("data"), Arc::new(SystemClock)).expect("embedded buffer");
    let st = AppState::new(settings, Arc::new(buffer));
    st.start_sources().await.expect("start the sources");
    st
}

fn has(st: &AppState, id: &str) -> bool {
    st.config()
        .is_some_and(|c| c.webhooks.entry(None, id).is_some())
}

/// A change made as soon as start-up returned — before the watcher task has run once, which
/// this single-threaded runtime guarantees — is picked up by its event. The watches used to be
/// registered by the task itself when it first ran, after this change: only the safety poll
/// (30 s by default; CI's e2e `reload` test waited 15 s and failed) would have seen it.
#[tokio::test(flavor = "current_thread")]
async fn a_change_right_after_start_up_is_seen_by_its_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let st = started(dir.path(), 0.0).await;
    assert!(has(&st, "first"));
    let tmp = dir.path().join("webhooks.json.tmp");
    std::fs::write(
        &tmp,
        json!({"first": log_hook(), "second": log_hook()}).to_string(),
    )
    .expect("write the new version");
    std::fs::rename(&tmp, dir.path().join("webhooks.json")).expect("rename it over webhooks.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !has(&st, "second") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was not applied within 5 s (debounce 0.2 s, no safety poll)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opening and reading the files is not a change. notify reports opens, and the watcher's own
/// reads after a debounce window were events that made it read the files again after the next
/// window, and so on for as long as the process ran, once anything had stirred the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_reads_do_not_keep_the_watcher_reading() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _st = started(dir.path(), 0.0).await;
    // Opens of the configuration file, counted from outside.
    let (tx, rx) = std::sync::mpsc::channel();
    let file = dir.path().join("webhooks.json");
    let mut counter = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && matches!(
                ev.kind,
                notify::EventKind::Access(notify::event::AccessKind::Open(_))
            )
            && ev.paths.contains(&file)
        {
            let _ = tx.send(());
        }
    })
    .expect("a watcher to count opens");
    notify::Watcher::watch(
        &mut counter,
        dir.path(),
        notify::RecursiveMode::NonRecursive,
    )
    .expect("watch the directory");
    // Something else in the directory: one event, one look at the files.
    std::fs::write(dir.path().join("unrelated.txt"), b"x").expect("write another file");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let first_look = rx.try_iter().count();
    assert!(
        first_look > 0,
        "the event was not followed by a look at the files"
    );
    // Then nothing changes, for several debounce windows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let opens = rx.try_iter().count();
    assert_eq!(
        opens, 0,
        "the watcher kept opening the unchanged file: {opens} times in 1.5 s (debounce 0.2 s)"
    );
}
