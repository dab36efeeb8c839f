//! The cloud's local modules end to end (README "Module mode", CONFIG.md §2.3): a webhook whose
//! module is `save_to_disk` is written by the cloud binary itself — one JSON document per
//! webhook, credentials masked, private modes — and answered 200 only once the file is there;
//! a path that escapes its `base_dir` disables the entry instead of writing anywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use connect_testkit::cloud::Cloud;
use serde_json::{Value, json};

/// Every file in `dir` (none if it does not exist), read as JSON.
fn documents(dir: &Path) -> Vec<(std::path::PathBuf, Value)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut docs: Vec<_> = entries
        .flatten()
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (e.path(), serde_json::from_slice(&bytes).unwrap())
        })
        .collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn save_to_disk_writes_one_private_masked_document_per_webhook_before_answering() {
    let base = tempfile::tempdir().unwrap();
    let base_dir = base.path().to_str().unwrap().to_owned();
    let cloud = Cloud::start_with(
        json!({
            "disk": {"data_type": "json", "module": "save_to_disk",
                     "module-config": {"path": "inbox/orders", "base_dir": base_dir}},
            "escape": {"data_type": "json", "module": "save_to_disk",
                       "module-config": {"path": "../outside", "base_dir": base_dir}},
        }),
        &[],
    )
    .await
    .unwrap();
    let out = base.path().join("inbox/orders");

    let (status, body) = cloud
        .post(
            "disk",
            r#"{"order":42,"password":"hunter2-secret","items":["a","b"]}"#,
        )
        .await
        .unwrap();
    // The answer comes after the write: the file is there when the sender hears 200.
    assert_eq!(status, 200, "{body}");
    let docs = documents(&out);
    assert_eq!(docs.len(), 1, "{docs:?}");
    let (file, doc) = &docs[0];
    assert_eq!(
        doc,
        &json!({"order": 42, "password": "***REDACTED***", "items": ["a", "b"]}),
        "the payload, with credential cleanup on by default for this module"
    );
    assert_eq!(mode(file), 0o600, "file mode");
    assert_eq!(mode(&out), 0o700, "directory mode");
    assert_eq!(mode(&base.path().join("inbox")), 0o700, "directory mode");

    // One document per webhook, never overwritten.
    let (status, _) = cloud.post("disk", r#"{"order":43}"#).await.unwrap();
    assert_eq!(status, 200);
    let docs = documents(&out);
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert!(
        docs.iter().any(|(_, d)| d == &json!({"order": 43})),
        "{docs:?}"
    );

    // An entry whose path leaves base_dir is disabled at load: 503, nothing written outside.
    let (status, body) = cloud.post("escape", r#"{"order":44}"#).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        !base.path().parent().unwrap().join("outside").exists(),
        "written outside base_dir"
    );
    assert!(
        !cloud.proc.stderr_text().contains("hunter2-secret")
            && !cloud.proc.stdout_text().contains("hunter2-secret"),
        "the masked value reached the log"
    );
}
