//! The test kit's own Secret Service: a secret stored through it is in gnome-keyring (read back
//! by `secret-tool`), the daemons go with it, and `isolated` runs a body inside a fresh session.

use std::time::Duration;

use anyhow::{Result, ensure};
use connect_testkit::secret_service::{Session, isolated};
use connect_testkit::{SecretService, ensure_no_survivors, processes_with_env};

#[test]
fn a_secret_service_keeps_secrets_and_leaves_nothing_running() -> Result<()> {
    let ss = SecretService::start()?;
    let s = ss.session().clone();
    ensure!(s.lookup("channel:http://h/c")?.is_none());
    s.store("channel:http://h/c", "tok-1")?;
    s.store("admin:http://h", "adm-1")?;
    ensure!(s.lookup("channel:http://h/c")?.as_deref() == Some("tok-1"));
    ensure!(s.accounts()? == vec!["admin:http://h", "channel:http://h/c"]);
    s.clear("admin:http://h")?;
    ensure!(s.accounts()? == vec!["channel:http://h/c"]);
    let daemons = processes_with_env("DBUS_SESSION_BUS_ADDRESS", s.address());
    ensure!(daemons.len() == 2, "the bus and the keyring: {daemons:?}");
    drop(ss);
    ensure_no_survivors(
        "DBUS_SESSION_BUS_ADDRESS",
        s.address(),
        Duration::from_secs(5),
    )?;
    // Another session starts from an empty keyring: nothing is shared between tests.
    let other = SecretService::start()?;
    ensure!(other.session().address() != s.address());
    ensure!(other.session().accounts()?.is_empty());
    other.shutdown()
}

#[test]
fn isolated_runs_the_test_again_inside_its_own_session() -> Result<()> {
    isolated(|session| async move {
        // This process was started in the session: its bus is the session's.
        ensure!(Session::current().is_some());
        ensure!(std::env::var("DBUS_SESSION_BUS_ADDRESS")? == session.address());
        session.store("api-key:http://h", "k")?;
        ensure!(session.lookup("api-key:http://h")?.as_deref() == Some("k"));
        Ok(())
    })
}
