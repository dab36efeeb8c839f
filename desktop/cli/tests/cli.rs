//! The `webhook-connect` binary's exit codes.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_webhook-connect"))
}

#[test]
fn bogus_protocol_exits_64() {
    let out = Command::new(bin())
        .args([
            "--protocol",
            "bogus",
            "--cloud-url",
            "http://127.0.0.1:9",
            "--channel",
            "c",
            "--token",
            "t",
            "--target-url",
            "http://127.0.0.1:9",
        ])
        .env_remove("CONNECTOR_CONFIG_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid protocol"));
}

#[test]
fn bogus_protocol_alone_exits_64() {
    let out = Command::new(bin())
        .args(["--protocol", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn missing_module_config_exits_64_naming_the_file() {
    let out = Command::new(bin())
        .args([
            "--cloud-url",
            "http://127.0.0.1:9",
            "--channel",
            "c",
            "--token",
            "t",
            "--webhooks-config",
            "/nonexistent/webhooks-config.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/webhooks-config.json") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_gracefully_with_0() {
    let port = connect_testkit::free_port();
    let cloud = format!("http://127.0.0.1:{port}");
    let mut p = connect_testkit::ChildProcess::spawn(
        bin(),
        &[
            "--cloud-url",
            &cloud,
            "--channel",
            "c",
            "--target-url",
            "http://127.0.0.1:9",
        ],
        &[("CONNECTOR_TOKEN", "t"), ("CONNECTOR_LOG_FORMAT", "json")],
        "webhook-connect",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !p.stderr_text().contains("webhook-connect started") {
        assert!(p.is_running(), "exited early: {}", p.stderr_text());
        assert!(
            std::time::Instant::now() < deadline,
            "no start-up log: {}",
            p.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        p.terminate(std::time::Duration::from_secs(15)),
        Some(0),
        "{}",
        p.stderr_text()
    );
    // JSON logs: every line parses as an object.
    assert!(
        p.stderr_text()
            .lines()
            .all(|l| l.trim_start().starts_with('{')),
        "{}",
        p.stderr_text()
    );
}
