//! Unit tests of [`Core`](super::Core): where the keyring is the subject, against the real
//! Secret Service of the test's own session (`connect_testkit::secret_service::isolated`);
//! elsewhere with the in-memory keyring.

use connect_testkit::secret_service::isolated;

use super::*;
use crate::secrets::{KeyringStore, MemoryStore};

fn input(token: Option<&str>) -> ChannelInput {
    ChannelInput {
        key: None,
        // Nothing listens on port 9: the channel just keeps reconnecting.
        cloud_url: "http://127.0.0.1:9/".into(),
        channel: "team-alpha".into(),
        protocol: "websocket".into(),
        default_target: Some("http://127.0.0.1:9/hook".into()),
        targets: BTreeMap::new(),
        token: token.map(str::to_owned),
        admin_token: Some("adm".into()),
    }
}

fn core(dir: &tempfile::TempDir) -> (Core, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let c = Core::start(dir.path().join(settings::FILE_NAME), store.clone()).unwrap();
    (c, store)
}

#[test]
fn webhook_url_uses_the_target_id_or_the_channel() {
    assert_eq!(
        webhook_url("https://relay.example.com/", "alpha", &[]),
        "https://relay.example.com/webhook/alpha"
    );
    assert_eq!(
        webhook_url("https://relay.example.com/base", "alpha", &["github"]),
        "https://relay.example.com/base/webhook/github"
    );
}

#[test]
fn saving_a_channel_keeps_tokens_in_the_keyring_only() -> anyhow::Result<()> {
    isolated(|keyring| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyringStore::new();
        let c = Core::start(dir.path().join(settings::FILE_NAME), store.clone()).unwrap();
        assert!(c.save_channel(input(None)).is_err(), "token required");
        let saved = c.save_channel(input(Some("tok-secret"))).unwrap();
        assert!(saved.has_token && saved.has_admin_token);
        assert_eq!(saved.cloud_url, "http://127.0.0.1:9");
        assert_eq!(saved.webhook_url, "http://127.0.0.1:9/webhook/team-alpha");
        // In gnome-keyring, read back by another program (secret-tool).
        assert_eq!(
            keyring
                .lookup("channel:http://127.0.0.1:9/team-alpha")?
                .as_deref(),
            Some("tok-secret")
        );
        assert_eq!(
            keyring.lookup("admin:http://127.0.0.1:9")?.as_deref(),
            Some("adm")
        );
        assert_eq!(store.unavailable(), None);
        let text = std::fs::read_to_string(dir.path().join(settings::FILE_NAME)).unwrap();
        assert!(
            !text.contains("tok-secret") && !text.contains("adm"),
            "{text}"
        );
        // The UI's view of the channel carries no token either.
        let json = serde_json::to_string(&c.list_channels()).unwrap();
        assert!(!json.contains("tok-secret"), "{json}");
        assert_eq!(c.snapshot().channels[0].key, saved.key);

        // Editing without a token keeps it, and renaming moves it.
        let mut edit = input(None);
        edit.key = Some(saved.key.clone());
        edit.channel = "team-beta".into();
        edit.admin_token = Some(String::new());
        let edited = c.save_channel(edit).unwrap();
        assert!(edited.has_token && !edited.has_admin_token);
        assert_eq!(
            keyring.accounts()?,
            vec!["channel:http://127.0.0.1:9/team-beta".to_owned()]
        );
        assert_eq!(c.list_channels().len(), 1);

        c.set_channel_enabled(&saved.key, false).unwrap();
        assert!(!c.list_channels()[0].enabled);
        c.remove_channel(&saved.key, false).await.unwrap();
        assert!(c.list_channels().is_empty());
        assert!(keyring.accounts()?.is_empty());
        c.shutdown().await;
        Ok(())
    })
}

#[tokio::test]
async fn settings_survive_a_restart_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = core(&dir);
    let mut bad = input(Some("t"));
    bad.channel = "../x".into();
    assert!(c.save_channel(bad).is_err());
    let mut bad = input(Some("t"));
    bad.protocol = "carrier-pigeon".into();
    assert!(c.save_channel(bad).is_err());
    let mut bad = input(Some("t"));
    bad.default_target = None;
    assert!(c.save_channel(bad).is_err(), "a target is required");
    assert!(
        store.accounts().is_empty(),
        "nothing stored for refused input"
    );
    let saved = c.save_channel(input(Some("t"))).unwrap();
    let s = c
        .save_settings(AppSettings {
            autostart: false,
            start_minimized: false,
            notifications: NotificationLevel::All,
            history_size: 50,
            light_mode: false,
            no_tray: NoTray::Quit,
        })
        .unwrap();
    c.shutdown().await;
    let c2 = Core::start(dir.path().join(settings::FILE_NAME), store.clone()).unwrap();
    assert_eq!(c2.settings(), s);
    assert_eq!(c2.list_channels()[0].key, saved.key);
    assert_eq!(c2.snapshot().channels.len(), 1);
    c2.shutdown().await;
}

#[tokio::test]
async fn a_channel_without_a_stored_token_shows_disconnected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(settings::FILE_NAME),
        "[[channels]]\nkey = \"k1\"\nchannel = \"c\"\ncloud_url = \"http://127.0.0.1:9\"\n\
         [channels.default_target]\nurl = \"http://127.0.0.1:9/x\"\n",
    )
    .unwrap();
    let (c, _) = core(&dir);
    let snap = c.snapshot();
    assert_eq!(snap.channels[0].state, LinkState::Disconnected);
    assert!(snap.channels[0].last_error.is_some());
    assert!(!c.list_channels()[0].has_token);
    assert!(c.list_events("k1").unwrap().is_empty());
    assert!(c.list_dead_letters("k1", 10, 0).await.is_err());
    c.shutdown().await;
}

/// A cloud URL that is not http(s)://host is the user's input to fix (`invalid_input`, the
/// engine's wording), not a keyring failure.
#[test]
fn an_invalid_cloud_url_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = core(&dir);
    for url in ["ftp://relay.example.com", "not a url", "http://"] {
        let e = c
            .save_channel(ChannelInput {
                cloud_url: url.into(),
                ..input(Some("tok"))
            })
            .unwrap_err();
        assert_eq!(e.code(), "invalid_input", "{url}: {e}");
        assert!(
            e.to_string()
                .contains("must be http(s)://host[:port][/base]"),
            "{url}: {e}"
        );
    }
    assert!(c.list_channels().is_empty());
    assert!(store.accounts().is_empty(), "nothing stored");
}
