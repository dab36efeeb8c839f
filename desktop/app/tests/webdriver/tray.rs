//! The tray as a desktop shell sees it. A `StatusNotifierWatcher` on the session bus (what KDE's
//! system tray or GNOME's AppIndicator extension provide) that libayatana-appindicator, in the
//! app and in the light image, registers its item with; the item's menu is then read and clicked
//! over `com.canonical.dbusmenu`, exactly as the shell does when a user opens the menu and
//! clicks an entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use zbus::Connection;
use zbus::zvariant::{OwnedValue, Value};

const WATCHER_NAME: &str = "org.kde.StatusNotifierWatcher";
const WATCHER_PATH: &str = "/StatusNotifierWatcher";
const ITEM_IFACE: &str = "org.kde.StatusNotifierItem";
const MENU_IFACE: &str = "com.canonical.dbusmenu";

/// One registration: the item's connection and object path.
#[derive(Clone, Debug)]
pub struct Item {
    pub sender: String,
    pub path: String,
}

struct Watcher {
    items: Arc<Mutex<Vec<Item>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    async fn register_status_notifier_item(
        &self,
        service: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        // libappindicator passes its object path; other implementations pass a bus name and
        // serve the item at the specification's path.
        let item = if service.starts_with('/') {
            Item {
                sender,
                path: service,
            }
        } else {
            Item {
                sender: service,
                path: "/StatusNotifierItem".into(),
            }
        };
        self.items.lock().push(item);
    }

    async fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    async fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items
            .lock()
            .iter()
            .map(|i| format!("{}{}", i.sender, i.path))
            .collect()
    }

    #[zbus(property)]
    async fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    async fn protocol_version(&self) -> i32 {
        0
    }
}

/// A menu entry as dbusmenu describes it.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
    pub separator: bool,
    /// `Some(checked)` for a check item.
    pub toggle: Option<bool>,
    pub children: Vec<Node>,
}

impl Node {
    /// The first entry, depth first, whose label satisfies `pred`.
    pub fn find(&self, pred: &dyn Fn(&str) -> bool) -> Option<&Node> {
        if pred(&self.label) && !self.separator {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(pred))
    }

    /// The id of the first entry labelled `label`, depth first.
    pub fn id_of(&self, label: &str) -> Result<i32> {
        self.find(&|l| l == label)
            .map(|n| n.id)
            .with_context(|| format!("no {label} in {:?}", self.labels()))
    }

    /// Every label, submenus as `name > a | b`, for assertions and failure messages.
    pub fn labels(&self) -> Vec<String> {
        self.children
            .iter()
            .map(|c| {
                if c.separator {
                    "---".to_owned()
                } else if c.children.is_empty() {
                    match c.toggle {
                        Some(on) => format!("{} [{}]", c.label, if on { "x" } else { " " }),
                        None => c.label.clone(),
                    }
                } else {
                    format!("{} > {}", c.label, c.labels().join(" | "))
                }
            })
            .collect()
    }
}

pub struct Tray {
    conn: Connection,
    items: Arc<Mutex<Vec<Item>>>,
}

impl Tray {
    /// Owns the watcher's name on the session bus (`DBUS_SESSION_BUS_ADDRESS`).
    pub async fn start() -> Result<Self> {
        let items = Arc::new(Mutex::new(Vec::new()));
        let conn = crate::bus::serve(
            WATCHER_NAME,
            WATCHER_PATH,
            Watcher {
                items: items.clone(),
            },
        )
        .await?;
        Ok(Self { conn, items })
    }

    /// How many registrations the watcher has had so far.
    pub fn registrations(&self) -> usize {
        self.items.lock().len()
    }

    /// The newest live item registered from process `pid` after the first `after`
    /// registrations (a process that replaced itself registers anew).
    pub async fn item_of(&self, pid: u32, after: usize, timeout: Duration) -> Result<Item> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let items: Vec<Item> = self
                .items
                .lock()
                .iter()
                .skip(after)
                .rev()
                .cloned()
                .collect();
            for item in items {
                if crate::bus::pid_of(&self.conn, &item.sender).await == Some(pid) {
                    return Ok(item);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no tray item from pid {pid} within {timeout:?} (registered: {:?})",
                    self.items.lock()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn menu_path(&self, item: &Item) -> Result<String> {
        let reply = self
            .conn
            .call_method(
                Some(item.sender.as_str()),
                item.path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(ITEM_IFACE, "Menu"),
            )
            .await
            .context("the item's Menu property")?;
        let v: OwnedValue = reply.body().deserialize()?;
        match &*v {
            Value::ObjectPath(p) => Ok(p.to_string()),
            other => bail!("Menu is {other:?}, not an object path"),
        }
    }

    /// The item's whole menu.
    pub async fn menu(&self, item: &Item) -> Result<Node> {
        let path = self.menu_path(item).await?;
        let reply = self
            .conn
            .call_method(
                Some(item.sender.as_str()),
                path.as_str(),
                Some(MENU_IFACE),
                "GetLayout",
                &(0i32, -1i32, Vec::<String>::new()),
            )
            .await
            .context("dbusmenu GetLayout")?;
        let (_revision, (id, props, children)): (u32, RawNode) = reply.body().deserialize()?;
        build(id, props, &children)
    }

    /// Clicks entry `id`, as the shell does.
    pub async fn click(&self, item: &Item, id: i32) -> Result<()> {
        let path = self.menu_path(item).await?;
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        self.conn
            .call_method(
                Some(item.sender.as_str()),
                path.as_str(),
                Some(MENU_IFACE),
                "Event",
                &(id, "clicked", Value::from(0i32), now),
            )
            .await
            .context("dbusmenu Event clicked")?;
        Ok(())
    }

    /// Waits until the menu satisfies `pred` (menus are rebuilt once a second at most).
    pub async fn wait_menu(
        &self,
        item: &Item,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Node) -> bool,
    ) -> Result<Node> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let menu = self.menu(item).await;
            if let Ok(m) = &menu
                && pred(m)
            {
                return Ok(m.clone());
            }
            if tokio::time::Instant::now() > deadline {
                let seen = menu.map(|m| m.labels().join(" / "));
                bail!("tray menu: {what} within {timeout:?}; last seen: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// One `(ia{sv}av)` layout node: id, properties, children (variants of the same structure).
type RawNode = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);

fn node(v: &Value<'_>) -> Result<Node> {
    let v = match v {
        Value::Value(inner) => inner.as_ref(),
        v => v,
    };
    let Value::Structure(s) = v else {
        bail!("layout node is {v:?}");
    };
    let [Value::I32(id), Value::Dict(props), Value::Array(children)] = s.fields() else {
        bail!("layout node fields are {:?}", s.fields());
    };
    let children: Vec<OwnedValue> = children
        .iter()
        .map(|c| c.try_to_owned())
        .collect::<Result<_, _>>()?;
    build(*id, props.try_clone()?.try_into()?, &children)
}

fn build(id: i32, props: HashMap<String, OwnedValue>, children: &[OwnedValue]) -> Result<Node> {
    let text = |k: &str| match props.get(k).map(|v| &**v) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let toggle = match (text("toggle-type").as_deref(), props.get("toggle-state")) {
        (Some("checkmark" | "radio"), Some(v)) => Some(matches!(&**v, Value::I32(1))),
        _ => None,
    };
    Ok(Node {
        id,
        // GTK mnemonics: a literal underscore is doubled, a lone one marks the access key.
        label: text("label")
            .unwrap_or_default()
            .replace("__", "\u{0}")
            .replace('_', "")
            .replace('\u{0}', "_"),
        enabled: !matches!(props.get("enabled").map(|v| &**v), Some(Value::Bool(false))),
        separator: text("type").as_deref() == Some("separator"),
        toggle,
        children: children.iter().map(|c| node(c)).collect::<Result<_>>()?,
    })
}
