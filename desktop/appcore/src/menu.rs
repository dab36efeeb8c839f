//! The tray menu without Tauri: what it lists ([`model`]), the action behind each item id
//! ([`MenuAction`]), and what an action does ([`dispatch`]). Changes to channels, pause and
//! settings happen here, on the [`Core`]; what needs the desktop (window, clipboard,
//! notification, autostart entry, exit) comes back as [`Effect`]s that `shell.rs` applies. A tray
//! menu cannot be clicked without a tray host (headless CI has none), so the tests drive
//! [`model`] and [`dispatch`] against a real engine and cloud instead.

use connect_engine::api::LinkState;
use serde::{Deserialize, Serialize};

use crate::core::{AppSnapshot, Core};
use crate::tray;

/// A view for the UI to show, same shape as the UI store's `View`: the payload of the `navigate`
/// event and of `take_pending_view`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ts_rs::TS)]
#[serde(tag = "name", rename_all = "kebab-case")]
#[ts(rename = "NavigateView")]
pub enum View {
    Overview,
    Inspector {
        key: Option<String>,
        #[serde(rename = "messageId")]
        message_id: Option<String>,
    },
    DeadLetters {
        key: Option<String>,
    },
    /// "New channel" on a signed-in cloud (HOSTED.md §5).
    NewChannel,
}

/// A tray menu action, parsed from the menu item id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MenuAction {
    TogglePause,
    Connect(String),
    Disconnect(String),
    OpenInspector(String),
    ReplayLast(String),
    CopyWebhookUrl(String),
    NewChannel,
    DeadLetters,
    OpenWindow,
    ToggleAutostart,
    Quit,
}

impl MenuAction {
    /// The menu item id of this action.
    pub fn id(&self) -> String {
        match self {
            Self::TogglePause => "pause".into(),
            Self::Connect(k) => format!("ch/connect/{k}"),
            Self::Disconnect(k) => format!("ch/disconnect/{k}"),
            Self::OpenInspector(k) => format!("ch/inspect/{k}"),
            Self::ReplayLast(k) => format!("ch/replay/{k}"),
            Self::CopyWebhookUrl(k) => format!("ch/copy/{k}"),
            Self::NewChannel => "new-channel".into(),
            Self::DeadLetters => "dead-letters".into(),
            Self::OpenWindow => "open".into(),
            Self::ToggleAutostart => "autostart".into(),
            Self::Quit => "quit".into(),
        }
    }

    pub fn parse(id: &str) -> Option<Self> {
        Some(match id {
            "pause" => Self::TogglePause,
            "new-channel" => Self::NewChannel,
            "dead-letters" => Self::DeadLetters,
            "open" => Self::OpenWindow,
            "autostart" => Self::ToggleAutostart,
            "quit" => Self::Quit,
            _ => {
                let rest = id.strip_prefix("ch/")?;
                let (verb, key) = rest.split_once('/')?;
                let key = key.to_owned();
                match verb {
                    "connect" => Self::Connect(key),
                    "disconnect" => Self::Disconnect(key),
                    "inspect" => Self::OpenInspector(key),
                    "replay" => Self::ReplayLast(key),
                    "copy" => Self::CopyWebhookUrl(key),
                    _ => return None,
                }
            }
        })
    }
}

/// One entry of the tray menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MenuItem {
    /// A line of text that cannot be clicked (the status line).
    Status {
        id: String,
        label: String,
    },
    Action {
        action: MenuAction,
        label: String,
    },
    Check {
        action: MenuAction,
        label: String,
        checked: bool,
    },
    Submenu {
        id: String,
        label: String,
        items: Vec<MenuItem>,
    },
    Separator,
}

impl MenuItem {
    fn action(action: MenuAction, label: impl Into<String>) -> Self {
        Self::Action {
            action,
            label: label.into(),
        }
    }
}

/// A channel as the menu lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLine {
    pub key: String,
    pub name: String,
    /// Not disconnected by the user.
    pub enabled: bool,
    pub connected: bool,
}

/// The configured channels, in settings order, with their live state.
pub fn channel_lines(core: &Core, snap: &AppSnapshot) -> Vec<ChannelLine> {
    core.list_channels()
        .into_iter()
        .map(|e| ChannelLine {
            connected: snap
                .channels
                .iter()
                .any(|c| c.key == e.key && c.state == LinkState::Connected),
            key: e.key,
            name: e.channel,
            enabled: e.enabled,
        })
        .collect()
}

/// The menu for the core's current state; `status_line` comes from [`tray::status_line`].
pub fn for_core(core: &Core, snap: &AppSnapshot, status_line: &str) -> Vec<MenuItem> {
    model(
        status_line,
        snap.paused,
        &channel_lines(core, snap),
        tray::totals(&snap.channels).dead_letters,
        core.app_table().autostart,
    )
}

/// The whole menu: status line, pause/resume all, one submenu per channel (connect/disconnect,
/// inspector, replay last event, copy webhook URL), new channel, dead letters, open window,
/// start at login, quit.
pub fn model(
    status_line: &str,
    paused: bool,
    channels: &[ChannelLine],
    dead_letters: u64,
    autostart: bool,
) -> Vec<MenuItem> {
    let mut items = vec![
        MenuItem::Status {
            id: "status".into(),
            label: status_line.to_owned(),
        },
        MenuItem::Separator,
        MenuItem::action(
            MenuAction::TogglePause,
            if paused { "Resume all" } else { "Pause all" },
        ),
        MenuItem::Separator,
    ];
    for c in channels {
        let key = &c.key;
        let toggle = if c.enabled {
            MenuItem::action(MenuAction::Disconnect(key.clone()), "Disconnect")
        } else {
            MenuItem::action(MenuAction::Connect(key.clone()), "Connect")
        };
        items.push(MenuItem::Submenu {
            id: format!("sub/{key}"),
            label: format!("{}{}", c.name, if c.connected { " ●" } else { "" }),
            items: vec![
                toggle,
                MenuItem::action(MenuAction::OpenInspector(key.clone()), "Open inspector"),
                MenuItem::action(MenuAction::ReplayLast(key.clone()), "Replay last event"),
                MenuItem::action(MenuAction::CopyWebhookUrl(key.clone()), "Copy webhook URL"),
            ],
        });
    }
    if !channels.is_empty() {
        items.push(MenuItem::Separator);
    }
    items.extend([
        MenuItem::action(MenuAction::NewChannel, "New channel…"),
        MenuItem::action(
            MenuAction::DeadLetters,
            format!("Dead letters ({dead_letters})…"),
        ),
        MenuItem::action(MenuAction::OpenWindow, "Open Webhook Connect"),
        MenuItem::Check {
            action: MenuAction::ToggleAutostart,
            label: "Start at login".into(),
            checked: autostart,
        },
        MenuItem::Separator,
        MenuItem::action(MenuAction::Quit, "Quit"),
    ]);
    items
}

/// What the desktop must do after an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Rebuild the tray now (icon, tooltip, menu) and push a snapshot to the window.
    Refresh,
    /// Show the window (creating its webview when it was closed) on this view.
    ShowWindow(View),
    CopyToClipboard(String),
    Notify {
        title: String,
        body: String,
    },
    /// Create or remove the OS autostart entry.
    SetAutostart(bool),
    /// Leave the app (the engine has been shut down).
    Exit,
}

fn notify_error(e: String) -> Effect {
    Effect::Notify {
        title: "Webhook Connect".into(),
        body: e,
    }
}

/// Runs one menu action against the core and says what the desktop must do next.
pub async fn dispatch(core: &Core, action: MenuAction) -> Vec<Effect> {
    match action {
        MenuAction::TogglePause => {
            core.set_paused(!core.paused());
            vec![Effect::Refresh]
        }
        MenuAction::Connect(k) | MenuAction::Disconnect(k)
            if !core.list_channels().iter().any(|c| c.key == k) =>
        {
            vec![notify_error(format!("unknown channel {k:?}"))]
        }
        MenuAction::Connect(k) => set_enabled(core, &k, true),
        MenuAction::Disconnect(k) => set_enabled(core, &k, false),
        MenuAction::OpenInspector(k) => vec![Effect::ShowWindow(View::Inspector {
            key: Some(k),
            message_id: None,
        })],
        MenuAction::ReplayLast(k) => {
            let (title, body) = match core.replay_last(&k).await {
                Ok(d) => (
                    "Replayed".to_owned(),
                    format!(
                        "{} → {}",
                        d.summary.replay_of.unwrap_or_default(),
                        d.summary
                            .response_status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "no answer".into())
                    ),
                ),
                Err(e) => ("Replay failed".to_owned(), e.to_string()),
            };
            vec![Effect::Notify { title, body }]
        }
        MenuAction::CopyWebhookUrl(k) => match core.webhook_url_of(&k) {
            Ok(url) => vec![Effect::CopyToClipboard(url)],
            Err(e) => vec![notify_error(e.to_string())],
        },
        MenuAction::DeadLetters => {
            // The channel with the most dead letters (at the cloud when known, else ours).
            let key = core
                .snapshot()
                .channels
                .iter()
                .max_by_key(|c| {
                    c.queue
                        .as_ref()
                        .map(|q| q.dead_letters)
                        .unwrap_or(c.counters.dead_lettered)
                })
                .map(|c| c.key.clone());
            vec![Effect::ShowWindow(View::DeadLetters { key })]
        }
        MenuAction::NewChannel => vec![Effect::ShowWindow(View::NewChannel)],
        MenuAction::OpenWindow => vec![Effect::ShowWindow(View::Overview)],
        MenuAction::ToggleAutostart => {
            let mut s = core.settings();
            s.autostart = !s.autostart;
            match core.save_settings(s) {
                Ok(saved) => vec![Effect::SetAutostart(saved.autostart), Effect::Refresh],
                Err(e) => vec![notify_error(e.to_string()), Effect::Refresh],
            }
        }
        MenuAction::Quit => {
            core.shutdown().await;
            vec![Effect::Exit]
        }
    }
}

fn set_enabled(core: &Core, key: &str, enabled: bool) -> Vec<Effect> {
    match core.set_channel_enabled(key, enabled) {
        Ok(()) => vec![Effect::Refresh],
        Err(e) => vec![notify_error(e.to_string()), Effect::Refresh],
    }
}

/// Every action id in `items`, submenus included, in menu order.
pub fn action_ids(items: &[MenuItem]) -> Vec<String> {
    let mut out = Vec::new();
    for i in items {
        match i {
            MenuItem::Action { action, .. } | MenuItem::Check { action, .. } => {
                out.push(action.id());
            }
            MenuItem::Submenu { items, .. } => out.extend(action_ids(items)),
            MenuItem::Status { .. } | MenuItem::Separator => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_ids_round_trip() {
        for a in [
            MenuAction::TogglePause,
            MenuAction::Connect("ch-1".into()),
            MenuAction::Disconnect("ch-1".into()),
            MenuAction::OpenInspector("ch-x/y".into()),
            MenuAction::ReplayLast("k".into()),
            MenuAction::CopyWebhookUrl("k".into()),
            MenuAction::NewChannel,
            MenuAction::DeadLetters,
            MenuAction::OpenWindow,
            MenuAction::ToggleAutostart,
            MenuAction::Quit,
        ] {
            assert_eq!(MenuAction::parse(&a.id()), Some(a));
        }
        assert_eq!(MenuAction::parse("ch/unknown/k"), None);
        assert_eq!(MenuAction::parse("status"), None);
    }

    fn line(key: &str, enabled: bool, connected: bool) -> ChannelLine {
        ChannelLine {
            key: key.into(),
            name: format!("name-{key}"),
            enabled,
            connected,
        }
    }

    fn labels(items: &[MenuItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                MenuItem::Status { label, .. } => format!("[{label}]"),
                MenuItem::Action { label, .. } => label.clone(),
                MenuItem::Check { label, checked, .. } => {
                    format!("{label} {}", if *checked { "[x]" } else { "[ ]" })
                }
                MenuItem::Submenu { label, items, .. } => {
                    format!("{label} > {}", labels(items).join(" | "))
                }
                MenuItem::Separator => "---".into(),
            })
            .collect()
    }

    #[test]
    fn the_menu_lists_status_pause_channels_dead_letters_window_login_and_quit() {
        let items = model(
            "Connected · 1/2 channels connected",
            false,
            &[line("a", true, true), line("b", false, false)],
            3,
            true,
        );
        assert_eq!(
            labels(&items),
            [
                "[Connected · 1/2 channels connected]",
                "---",
                "Pause all",
                "---",
                "name-a ● > Disconnect | Open inspector | Replay last event | Copy webhook URL",
                "name-b > Connect | Open inspector | Replay last event | Copy webhook URL",
                "---",
                "New channel…",
                "Dead letters (3)…",
                "Open Webhook Connect",
                "Start at login [x]",
                "---",
                "Quit",
            ]
        );
        let paused = model("Paused", true, &[], 0, false);
        assert_eq!(
            labels(&paused),
            [
                "[Paused]",
                "---",
                "Resume all",
                "---",
                "New channel…",
                "Dead letters (0)…",
                "Open Webhook Connect",
                "Start at login [ ]",
                "---",
                "Quit",
            ]
        );
        // Every clickable item parses back to its action; the status line is not clickable.
        for id in action_ids(&items) {
            assert!(MenuAction::parse(&id).is_some(), "{id}");
        }
        assert_eq!(action_ids(&items).len(), 1 + 2 * 4 + 5);
    }

    #[test]
    fn views_serialise_like_the_ui_store() {
        assert_eq!(
            serde_json::to_value(View::Inspector {
                key: Some("k".into()),
                message_id: None
            })
            .unwrap(),
            serde_json::json!({"name": "inspector", "key": "k", "messageId": null})
        );
        assert_eq!(
            serde_json::to_value(View::DeadLetters { key: None }).unwrap(),
            serde_json::json!({"name": "dead-letters", "key": null})
        );
        assert_eq!(
            serde_json::to_value(View::NewChannel).unwrap(),
            serde_json::json!({"name": "new-channel"})
        );
    }
}
