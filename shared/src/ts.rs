//! TypeScript declarations for the desktop UI, generated from the types of this crate.
//!
//! `ui/src/generated/protocol.ts` is the committed output; the test `ts_bindings_are_fresh`
//! fails when it drifts (run with `UPDATE_TS_BINDINGS=1` to rewrite it).

use ts_rs::TS;

use crate::{admin, error, frames, hosted, ids, message};

macro_rules! decls {
    ($($t:ty),* $(,)?) => {
        vec![$(<$t as TS>::decl()),*]
    };
}

/// The whole generated module.
pub fn bindings() -> String {
    let decls: Vec<String> = decls![
        ids::Protocol,
        message::MessageState,
        message::DeadLetterReason,
        message::WebhookType,
        message::WireMessage,
        frames::Connected,
        frames::Heartbeat,
        frames::FrameErrorCode,
        frames::ServerFrame,
        frames::ClientFrame,
        frames::SseError,
        frames::PollResponse,
        frames::AckResponse,
        frames::AckStatus,
        frames::StatusResponse,
        frames::IngressAccepted,
        error::ErrorBody,
        error::ErrorCode,
        admin::ChannelState,
        admin::ChannelStats,
        admin::ChannelInfo,
        admin::TokenInfo,
        admin::TokenSource,
        admin::ChannelConfigView,
        admin::ChannelDetailStats,
        admin::ConfigError,
        admin::ChannelDetail,
        admin::ConnectionState,
        admin::TokenGeneration,
        admin::ConnectionInfo,
        admin::WebhookStatsResponse,
        admin::PendingCount,
        admin::OverviewChannel,
        admin::OverviewHealth,
        admin::Overview,
        admin::AdminHealth,
        admin::MessageView,
        admin::DeadLetterList,
        admin::MessageList,
        admin::RotateTokenRequest,
        admin::RotateTokenResponse,
        admin::DisconnectResponse,
        admin::DeadLetterActionResponse,
        admin::BulkReplayResponse,
        admin::PurgeResponse,
        admin::HealthComponents,
        admin::Health,
        hosted::SelfServiceMode,
        hosted::Quota,
        hosted::QuotaPatch,
        hosted::Account,
        hosted::AccountCreated,
        hosted::CreateAccountRequest,
        hosted::SignUpRequest,
        hosted::UpdateAccountRequest,
        hosted::AccountList,
        hosted::KeyRotated,
        hosted::AccountDeleted,
        hosted::VerifyPreset,
        hosted::VerifySpec,
        hosted::VerifyView,
        hosted::CreateChannelRequest,
        hosted::UpdateChannelRequest,
        hosted::HostedChannelSettings,
        hosted::ChannelCreated,
        hosted::HostedChannelStats,
        hosted::HostedChannel,
        hosted::HostedChannelList,
        hosted::HostedChannelDetail,
        hosted::ChannelDeleted,
    ];
    let mut out = String::from(
        "// Generated from the Rust crate connect-protocol (shared/src/ts.rs). Do not edit.\n\
         // Regenerate: UPDATE_TS_BINDINGS=1 cargo test -p connect-protocol ts_bindings_are_fresh\n\n",
    );
    out.push_str("export type Timestamp = string;\n\n");
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
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ui/src/generated/protocol.ts");
        let fresh = super::bindings();
        if std::env::var_os("UPDATE_TS_BINDINGS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/generated/protocol.ts is stale: run UPDATE_TS_BINDINGS=1 cargo test -p connect-protocol ts_bindings_are_fresh"
        );
    }
}
