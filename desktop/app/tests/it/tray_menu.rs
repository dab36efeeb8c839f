//! Each tray menu item, found by its label in the menu the tray would show, dispatched against a
//! real engine connected to a real cloud: what it changes in the engine, the cloud and the
//! settings, and what it asks of the desktop.

use std::time::Duration;

use anyhow::{Context, Result};
use connect_engine::api::LinkState;
use connect_testkit::secret_service::isolated;
use connect_testkit::wait_for;
use serde_json::json;
use webhook_connect_app::menu::{self, Effect, MenuAction, MenuItem, View};
use webhook_connect_app::{settings, tray};

use crate::harness::{CHANNEL, World, engine_retries_elapse};

/// The menu as the tray shows it now.
fn menu_of(w: &World) -> Vec<MenuItem> {
    let snap = w.core.snapshot();
    let state = tray::aggregate(snap.paused, &snap.channels, false);
    let status = tray::status_line(state, &tray::totals(&snap.channels));
    menu::for_core(&w.core, &snap, &status)
}

/// The action of the item reached through `path` (labels, matched by prefix; a submenu first).
fn find(items: &[MenuItem], path: &[&str]) -> Option<MenuAction> {
    let (first, rest) = path.split_first()?;
    items.iter().find_map(|i| match i {
        MenuItem::Action { action, label } | MenuItem::Check { action, label, .. }
            if rest.is_empty() && label.starts_with(first) =>
        {
            Some(action.clone())
        }
        MenuItem::Submenu { label, items, .. } if label.starts_with(first) => find(items, rest),
        _ => None,
    })
}

fn status_line(items: &[MenuItem]) -> String {
    match items.first() {
        Some(MenuItem::Status { label, .. }) => label.clone(),
        other => panic!("the menu starts with {other:?}"),
    }
}

/// Clicks the item at `path` in the current menu.
async fn click(w: &World, path: &[&str]) -> Result<Vec<Effect>> {
    let items = menu_of(w);
    let action = find(&items, path).with_context(|| format!("no item {path:?} in {items:#?}"))?;
    Ok(menu::dispatch(&w.core, action).await)
}

/// Waits until the channel's status is `state`: for `Paused` and `Disconnected` the engine's
/// channel loop is then parked until the user changes it (the state is set only there).
async fn wait_state(w: &World, state: LinkState) -> Result<()> {
    wait_for(
        Duration::from_secs(20),
        &format!("the channel {state:?}"),
        || {
            let hit = w
                .core
                .snapshot()
                .channels
                .iter()
                .all(|c| c.state == state)
                .then_some(());
            async move { hit }
        },
    )
    .await
}

/// The cloud's record of `id`: still queued and never leased to anyone. A lease (delivery)
/// at any moment since it was posted would show as `delivery_count` > 0, so this covers the
/// whole period instead of sampling the target after a fixed quiet time.
async fn never_leased(w: &World, id: &str) -> Result<()> {
    let peek = w
        .cloud
        .admin_get(&format!("/channels/{CHANNEL}/messages?state=all"))
        .await?;
    let m = peek["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["message_id"] == id)
        .with_context(|| format!("{id} is not queued: {peek}"))?;
    anyhow::ensure!(
        m["state"] == "ready" && m["delivery_count"] == 0,
        "{id} was delivered: {m}"
    );
    Ok(())
}

/// The target's request for `id` is its first delivery (`x-webhook-delivery-count: 1`).
fn first_delivery_of(w: &World, id: &str) -> Result<()> {
    let reqs = w.target.requests();
    let r = reqs
        .iter()
        .find(|r| r.header("x-webhook-message-id") == Some(id))
        .with_context(|| format!("{id} not at the target"))?;
    anyhow::ensure!(
        r.header("x-webhook-delivery-count") == Some("1"),
        "{id}: {:?}",
        r.header("x-webhook-delivery-count")
    );
    Ok(())
}

#[test]
fn pause_all_and_disconnect_change_what_the_engine_forwards() -> Result<()> {
    isolated(|_| async {
        let w = World::start().await?;
        let items = menu_of(&w);
        assert_eq!(status_line(&items), "Connected · 1/1 channels connected");
        assert!(find(&items, &["Resume all"]).is_none());

        assert_eq!(click(&w, &["Pause all"]).await?, [Effect::Refresh]);
        assert!(w.core.paused());
        let items = menu_of(&w);
        assert!(status_line(&items).starts_with("Paused"), "{items:?}");
        assert!(find(&items, &["Pause all"]).is_none());
        // Paused: the link closes and the channel loop waits for "Resume all"; the webhook waits
        // in the cloud, never leased until the resume.
        w.cloud
            .wait_clients(0, "the paused channel's link to close")
            .await?;
        wait_state(&w, LinkState::Paused).await?;
        let first = w.cloud.post(&json!({"n": 1})).await?;
        // Two of the engine's own retry delays pass before the check: a paused channel that
        // reconnected on its own after a delay would have leased the webhook by then.
        engine_retries_elapse(2).await?;
        never_leased(&w, &first).await?;
        assert_eq!(w.target.count(), 0, "forwarded while paused");

        assert_eq!(click(&w, &["Resume all"]).await?, [Effect::Refresh]);
        assert!(!w.core.paused());
        w.target.wait_for_count(1, Duration::from_secs(15)).await?;
        first_delivery_of(&w, &first)?;

        // Per channel: disconnect closes the connection and is kept in settings.toml.
        assert!(find(&menu_of(&w), &[CHANNEL, "Connect"]).is_none());
        assert_eq!(
            click(&w, &[CHANNEL, "Disconnect"]).await?,
            [Effect::Refresh]
        );
        w.cloud.wait_clients(0, "the channel to disconnect").await?;
        let file = std::fs::read_to_string(w.dir.path().join(settings::FILE_NAME))?;
        assert!(file.contains("enabled = false"), "{file}");
        wait_state(&w, LinkState::Disconnected).await?;
        let second = w.cloud.post(&json!({"n": 2})).await?;
        engine_retries_elapse(2).await?;
        never_leased(&w, &second).await?;
        assert_eq!(w.target.count(), 1, "forwarded while disconnected");
        let items = menu_of(&w);
        assert_eq!(status_line(&items), "Disconnected · 0/1 channels connected");
        assert!(find(&items, &[CHANNEL, "Disconnect"]).is_none());

        assert_eq!(click(&w, &[CHANNEL, "Connect"]).await?, [Effect::Refresh]);
        w.cloud.wait_clients(1, "the channel to reconnect").await?;
        w.target.wait_for_count(2, Duration::from_secs(15)).await?;
        first_delivery_of(&w, &second)?;
        assert!(w.core.list_channels()[0].enabled);
        w.core.shutdown().await;
        Ok(())
    })
}

#[test]
fn channel_items_replay_the_last_event_copy_the_url_and_open_views() -> Result<()> {
    isolated(|_| async {
        let w = World::start().await?;
        assert_eq!(
            click(&w, &[CHANNEL, "Replay last event"]).await?,
            [Effect::Notify {
                title: "Replay failed".into(),
                body: "no event to replay yet".into()
            }]
        );

        let id = w.cloud.post(&json!({"hello": "tray"})).await?;
        w.target.wait_for_count(1, Duration::from_secs(15)).await?;
        let effects = click(&w, &[CHANNEL, "Replay last event"]).await?;
        assert_eq!(
            effects,
            [Effect::Notify {
                title: "Replayed".into(),
                body: format!("{id} → 200")
            }]
        );
        let reqs = w.target.wait_for_count(2, Duration::from_secs(15)).await?;
        assert_eq!(reqs[1].body_text(), r#"{"hello":"tray"}"#);
        // A replay is not itself replayed next time: the original is.
        click(&w, &[CHANNEL, "Replay last event"]).await?;
        let reqs = w.target.wait_for_count(3, Duration::from_secs(15)).await?;
        assert_eq!(reqs[2].body_text(), r#"{"hello":"tray"}"#);

        assert_eq!(
            click(&w, &[CHANNEL, "Copy webhook URL"]).await?,
            [Effect::CopyToClipboard(format!(
                "{}/webhook/{CHANNEL}",
                w.cloud.base
            ))]
        );
        assert_eq!(
            click(&w, &[CHANNEL, "Open inspector"]).await?,
            [Effect::ShowWindow(View::Inspector {
                key: Some(w.key.clone()),
                message_id: None
            })]
        );
        assert_eq!(
            click(&w, &["Open Webhook Connect"]).await?,
            [Effect::ShowWindow(View::Overview)]
        );
        // An item for a channel removed meanwhile (menus are rebuilt once a second) says so.
        w.core
            .remove_channel(&w.key, false)
            .await
            .map_err(anyhow::Error::msg)?;
        let stale = menu::dispatch(&w.core, MenuAction::CopyWebhookUrl(w.key.clone())).await;
        assert!(
            matches!(&stale[..], [Effect::Notify { body, .. }] if body.contains("unknown channel")),
            "{stale:?}"
        );
        let stale = menu::dispatch(&w.core, MenuAction::Disconnect(w.key.clone())).await;
        assert!(
            matches!(&stale[..], [Effect::Notify { body, .. }] if body.contains("unknown channel")),
            "{stale:?}"
        );
        w.core.shutdown().await;
        Ok(())
    })
}

#[test]
fn dead_letters_item_counts_them_and_opens_their_channel() -> Result<()> {
    isolated(|_| async {
        let w = World::start().await?;
        assert!(find(&menu_of(&w), &["Dead letters (0)…"]).is_some());
        // 404: the target refuses, the cloud dead-letters the message.
        w.target.set_status(404);
        let dead = w.cloud.post(&json!({"will": "fail"})).await?;
        w.target.wait_for_count(1, Duration::from_secs(15)).await?;
        wait_for(
            Duration::from_secs(15),
            "the menu to count the dead letter",
            || async { find(&menu_of(&w), &["Dead letters (1)…"]) },
        )
        .await?;
        assert_eq!(
            click(&w, &["Dead letters"]).await?,
            [Effect::ShowWindow(View::DeadLetters {
                key: Some(w.key.clone())
            })]
        );
        let list = w
            .core
            .list_dead_letters(&w.key, 10, 0)
            .await
            .map_err(anyhow::Error::msg)?;
        let listed = serde_json::to_string(&list)?;
        assert!(listed.contains(&dead), "{listed}");
        w.core.shutdown().await;
        Ok(())
    })
}

#[test]
fn start_at_login_is_saved_and_quit_stops_forwarding() -> Result<()> {
    isolated(|_| async {
        let w = World::start().await?;
        let checked = |items: &[MenuItem]| {
            items.iter().find_map(|i| match i {
                MenuItem::Check { label, checked, .. } if label == "Start at login" => {
                    Some(*checked)
                }
                _ => None,
            })
        };
        assert_eq!(checked(&menu_of(&w)), Some(false));
        assert_eq!(
            click(&w, &["Start at login"]).await?,
            [Effect::SetAutostart(true), Effect::Refresh]
        );
        assert_eq!(checked(&menu_of(&w)), Some(true));
        let loaded = settings::load(&w.dir.path().join(settings::FILE_NAME), w.store.as_ref())?;
        assert!(loaded.file.app.autostart);
        assert_eq!(
            click(&w, &["Start at login"]).await?,
            [Effect::SetAutostart(false), Effect::Refresh]
        );
        assert_eq!(checked(&menu_of(&w)), Some(false));

        assert_eq!(click(&w, &["Quit"]).await?, [Effect::Exit]);
        w.cloud
            .wait_clients(0, "the engine to close its connection")
            .await?;
        // Quit returned after the engine shut down: nothing is left that could lease it later.
        let after = w.cloud.post(&json!({"after": "quit"})).await?;
        never_leased(&w, &after).await?;
        assert_eq!(w.target.count(), 0, "forwarded after quit");
        Ok(())
    })
}
