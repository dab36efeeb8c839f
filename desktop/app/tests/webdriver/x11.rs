//! Closing a window the way a window manager does when its close button is clicked: a
//! `WM_PROTOCOLS`/`WM_DELETE_WINDOW` client message to the toplevel (there is no window manager
//! under Xvfb, and no WebDriver session once the app has replaced itself).

use anyhow::{Context, Result};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt as _, EventMask, MapState,
};
use x11rb::rust_connection::RustConnection;

/// Asks every mapped toplevel of process `pid` (`_NET_WM_PID`) to close; returns how many.
pub fn close_windows_of(pid: u32) -> Result<usize> {
    let (conn, screen) = RustConnection::connect(None).context("connecting to $DISPLAY")?;
    let root = conn.setup().roots[screen].root;
    let atom =
        |name: &str| -> Result<u32> { Ok(conn.intern_atom(false, name.as_bytes())?.reply()?.atom) };
    let (net_wm_pid, protocols, delete) = (
        atom("_NET_WM_PID")?,
        atom("WM_PROTOCOLS")?,
        atom("WM_DELETE_WINDOW")?,
    );
    let mut closed = 0;
    for w in conn.query_tree(root)?.reply()?.children {
        // A window can go away between the listing and these requests (BadWindow): skip it.
        let Ok(owner) = conn
            .get_property(false, w, net_wm_pid, AtomEnum::CARDINAL, 0, 1)?
            .reply()
        else {
            continue;
        };
        if owner.value32().and_then(|mut v| v.next()) != Some(pid)
            || !conn
                .get_window_attributes(w)?
                .reply()
                .is_ok_and(|a| a.map_state == MapState::VIEWABLE)
        {
            continue;
        }
        let event =
            ClientMessageEvent::new(32, w, protocols, [delete, x11rb::CURRENT_TIME, 0, 0, 0]);
        conn.send_event(false, w, EventMask::NO_EVENT, event)?;
        closed += 1;
    }
    conn.flush()?;
    Ok(closed)
}
