//! TypeScript declarations of the desktop app's IPC types, generated from this crate.
//!
//! `ui/src/generated/app.ts` is the committed output, next to the engine's `engine.ts` and the
//! protocol's `protocol.ts`; the test `ts_bindings_are_fresh` fails when it drifts (run with
//! `UPDATE_TS_BINDINGS=1` to rewrite it).

use ts_rs::TS;

use crate::accounts::{
    AccountView, CreateAccountInput, NewChannelInput, RemoteChannel, SignInInput,
};
use crate::core::{AppSettings, AppSnapshot, ChannelInput, SavedChannel};
use crate::error::CommandError;
use crate::launch::NoTray;
use crate::menu::View;
use crate::settings::NotificationLevel;

macro_rules! decls {
    ($($t:ty),* $(,)?) => {
        vec![$(<$t as TS>::decl()),*]
    };
}

/// `(type, field)`: fields that have a serde default, optional in TypeScript.
const OPTIONAL: &[(&str, &str)] = &[
    ("AppSettings", "light_mode"),
    ("AppSettings", "no_tray"),
    ("AppSnapshot", "notices"),
];

/// `ui/src/generated/app.ts`.
pub fn bindings() -> String {
    let decls: Vec<String> = decls![
        SavedChannel,
        ChannelInput,
        NotificationLevel,
        NoTray,
        AppSettings,
        AppSnapshot,
        View,
        CommandError,
        AccountView,
        SignInInput,
        CreateAccountInput,
        NewChannelInput,
        RemoteChannel,
    ]
    .into_iter()
    .map(|d| {
        // Fields with a serde default may be left out by the UI (and by an older backend);
        // ts-rs marks only `Option`s optional.
        let mut d = d;
        for (ty, field) in OPTIONAL {
            if d.starts_with(&format!("type {ty} ")) {
                d = d.replace(&format!("\n{field}: "), &format!("\n{field}?: "));
            }
        }
        d
    })
    .collect();
    let mut out = String::from(
        "// Generated from the Rust crate connect-appcore (desktop/appcore/src/ts.rs). Do not edit.\n\
         // Regenerate: UPDATE_TS_BINDINGS=1 cargo test -p connect-appcore ts_bindings_are_fresh\n\n\
         import type { ChannelStatus, TargetSettings, Transport } from \"./engine\";\n\
         import type { HostedChannelStats, VerifySpec } from \"./protocol\";\n\n\
         /** A channel's `protocol`: one transport, or `auto` (the engine's `TransportChoice`). */\n\
         export type Protocol = \"auto\" | Transport;\n\n",
    );
    for d in decls {
        out.push_str("export ");
        // JSON numbers reach the UI as `number`; ts-rs maps 64-bit integers to `bigint`.
        out.push_str(&d.trim().replace("bigint", "number"));
        out.push_str("\n\n");
    }
    out.trim_end().to_owned() + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn ts_bindings_are_fresh() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/generated/app.ts");
        let fresh = super::bindings();
        if std::env::var_os("UPDATE_TS_BINDINGS").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &fresh).expect("write");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/generated/app.ts is stale: run UPDATE_TS_BINDINGS=1 cargo test -p connect-appcore ts_bindings_are_fresh"
        );
    }
}
