//! The X server's side of the desktop. Closing a window the way a window manager does when its
//! close button is clicked: a `WM_PROTOCOLS`/`WM_DELETE_WINDOW` client message to the toplevel
//! (there is no window manager under Xvfb, and no WebDriver session once the app has replaced
//! itself). Reading the clipboard the way a paste does: `ConvertSelection` to `UTF8_STRING`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt as _, CreateWindowAux, EventMask, MapState,
    WindowClass,
};
use x11rb::rust_connection::RustConnection;

fn atom(conn: &RustConnection, name: &str) -> Result<u32> {
    Ok(conn.intern_atom(false, name.as_bytes())?.reply()?.atom)
}

/// The text on the clipboard (`CLIPBOARD` selection) as its owner hands it to a paste; `None`
/// when nobody owns it or the owner refuses text. Blocks up to 5 s.
pub fn clipboard_text() -> Result<Option<String>> {
    let (conn, screen) = RustConnection::connect(None).context("connecting to $DISPLAY")?;
    let root = conn.setup().roots[screen].root;
    let win = conn.generate_id()?;
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        win,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_ONLY,
        x11rb::COPY_FROM_PARENT,
        &CreateWindowAux::new(),
    )?;
    let (clipboard, utf8, prop) = (
        atom(&conn, "CLIPBOARD")?,
        atom(&conn, "UTF8_STRING")?,
        atom(&conn, "WEBHOOK_CONNECT_TEST_PASTE")?,
    );
    conn.convert_selection(win, clipboard, utf8, prop, x11rb::CURRENT_TIME)?;
    conn.flush()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match conn.poll_for_event()? {
            Some(Event::SelectionNotify(e)) if e.requestor == win => {
                if e.property == x11rb::NONE {
                    return Ok(None);
                }
                let reply = conn
                    .get_property(true, win, prop, AtomEnum::ANY, 0, u32::MAX / 4)?
                    .reply()?;
                return Ok(Some(String::from_utf8(reply.value)?));
            }
            Some(_) => {}
            None if Instant::now() > deadline => bail!("no answer from the clipboard's owner"),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The mapped toplevels of process `pid` (`_NET_WM_PID`): what is on the screen.
fn mapped_windows(conn: &RustConnection, root: u32, pid: u32) -> Result<Vec<u32>> {
    let net_wm_pid = conn.intern_atom(false, b"_NET_WM_PID")?.reply()?.atom;
    let mut out = Vec::new();
    for w in conn.query_tree(root)?.reply()?.children {
        // A window can go away between the listing and these requests (BadWindow): skip it.
        let Ok(owner) = conn
            .get_property(false, w, net_wm_pid, AtomEnum::CARDINAL, 0, 1)?
            .reply()
        else {
            continue;
        };
        if owner.value32().and_then(|mut v| v.next()) == Some(pid)
            && conn
                .get_window_attributes(w)?
                .reply()
                .is_ok_and(|a| a.map_state == MapState::VIEWABLE)
        {
            out.push(w);
        }
    }
    Ok(out)
}

/// How many toplevels of process `pid` are mapped.
pub fn mapped_windows_of(pid: u32) -> Result<usize> {
    let (conn, screen) = RustConnection::connect(None).context("connecting to $DISPLAY")?;
    let root = conn.setup().roots[screen].root;
    Ok(mapped_windows(&conn, root, pid)?.len())
}

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
