//! The session bus, for the test's stand-ins of desktop services.

use anyhow::{Context, Result};
use zbus::Connection;

/// A connection to the session bus that owns `name` and serves `iface` at `path`.
pub async fn serve<I: zbus::object_server::Interface>(
    name: &'static str,
    path: &'static str,
    iface: I,
) -> Result<Connection> {
    zbus::connection::Builder::session()?
        .name(name)?
        .serve_at(path, iface)?
        .build()
        .await
        .with_context(|| format!("owning {name} on the session bus"))
}

/// The process behind bus name `name`, while it is connected.
pub async fn pid_of(conn: &Connection, name: &str) -> Option<u32> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetConnectionUnixProcessID",
            &(name,),
        )
        .await
        .ok()?;
    reply.body().deserialize::<u32>().ok()
}
