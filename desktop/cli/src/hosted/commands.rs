//! `login`, `logout`, `whoami`, `channels …` and `dead-letters …`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use connect_engine::hosted::HostedClient;
use connect_protocol::hosted::{
    Account, CreateChannelRequest, SignUpRequest, VerifyPreset, VerifySpec, is_valid_account_name,
    is_valid_channel_short_name,
};
use serde_json::json;

use super::creds::{Ctx, State, absolute, save_state};
use super::error::CliError;
use super::{ChannelsCmd, DeadLettersArgs, HostedCmd, LoginArgs, output};

pub async fn run(
    cmd: HostedCmd,
    env: &BTreeMap<String, String>,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    match cmd {
        HostedCmd::Login(a) => login(a, env, out).await,
        HostedCmd::Logout(common) => {
            let ctx = Ctx::resolve(&common, env)?;
            let done = ctx.forget()?;
            if common.json {
                output::json(out, &json!({"cloud_url": ctx.cloud_url, "removed": done}))?;
            } else if done.is_empty() {
                writeln!(out, "not logged in to {}: nothing to remove", ctx.cloud_url)?;
            } else {
                writeln!(out, "logged out of {}: {}", ctx.cloud_url, done.join("; "))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        HostedCmd::Whoami(common) => {
            let ctx = Ctx::resolve(&common, env)?;
            let account = account_of(&ctx.client()?).await?;
            if common.json {
                output::json(out, &account)?;
            } else {
                output::account(out, &ctx.cloud_url, &account)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        HostedCmd::Channels(c) => channels(c, env, out).await,
        HostedCmd::DeadLetters(a) => dead_letters(a, env, out).await,
        HostedCmd::Listen(_) => Err(CliError::Failed("listen runs elsewhere".into())),
    }
}

/// Reads the API key (or a secret) from stdin: one line from a terminal, everything from a pipe.
pub fn read_secret_stdin(what: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if std::io::IsTerminal::is_terminal(&stdin) {
        // Echo off before the prompt: whatever is typed once it shows is not echoed.
        let _echo_off = EchoOff::new(&stdin);
        eprint!("{what} (not shown): ");
        stdin
            .read_line(&mut text)
            .map_err(|e| CliError::Failed(format!("reading stdin: {e}")))?;
        eprintln!();
    } else {
        stdin
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Failed(format!("reading stdin: {e}")))?;
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(CliError::Usage(format!(
            "no {what} on stdin (pipe it in: webhook-connect … < file)"
        )));
    }
    Ok(text.to_owned())
}

/// Turns the terminal's echo off until dropped, so a pasted key does not stay on the screen.
/// Does nothing where the terminal cannot tell its modes.
struct EchoOff<'a> {
    fd: &'a std::io::Stdin,
    saved: Option<rustix::termios::Termios>,
}

impl<'a> EchoOff<'a> {
    fn new(fd: &'a std::io::Stdin) -> Self {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let saved = tcgetattr(fd).ok();
        if let Some(mut t) = saved.clone() {
            t.local_modes.remove(LocalModes::ECHO);
            let _ = tcsetattr(fd, OptionalActions::Now, &t);
        }
        Self { fd, saved }
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, t);
        }
    }
}

async fn login(
    a: LoginArgs,
    env: &BTreeMap<String, String>,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    if a.common.cloud_url.is_none() {
        return Err(CliError::Usage(
            "login needs --cloud-url URL (or CONNECTOR_CLOUD_URL)".into(),
        ));
    }
    if let Some(n) = a.name.as_ref().filter(|n| !is_valid_account_name(n)) {
        return Err(CliError::Usage(format!(
            "--name {n:?}: an account name is 2-32 of a-z, 0-9 and '-', starting with a letter or digit"
        )));
    }
    let mut ctx = Ctx::resolve(&a.common, env)?;
    ctx.key_file = a.common.key_file.as_deref().map(absolute);
    // Know where the key will go before there is one: a created account's key is shown once.
    if ctx.key_file.is_none() {
        ctx.probe_keyring()?;
    }
    let (key, created) = if a.create_account {
        let created = ctx
            .anonymous()?
            .sign_up(&SignUpRequest {
                name: a.name.clone(),
            })
            .await?;
        (created.api_key.clone(), true)
    } else {
        (read_secret_stdin("API key")?, false)
    };
    let client = HostedClient::new(&ctx.cloud_url, Some(&key), &ctx.http)?;
    let account = account_of(&client).await?;
    let stored = match ctx.store_key(&key) {
        Ok(s) => s,
        Err(e) if created => {
            // The only copy of a new account's key: hand it over rather than lose the account.
            eprintln!(
                "webhook-connect: {e}\nthe new account's API key, shown once (keep it safe):\n{key}"
            );
            return Err(CliError::Failed("the API key could not be stored".into()));
        }
        Err(e) => return Err(e),
    };
    save_state(
        ctx.state_path.as_deref(),
        &State {
            cloud_url: ctx.cloud_url.clone(),
            account: Some(account.name.clone()),
            key_file: ctx.key_file.clone(),
        },
    )?;
    if a.common.json {
        output::json(
            out,
            &json!({"cloud_url": ctx.cloud_url, "created": created, "account": account, "stored_in": stored}),
        )?;
    } else {
        writeln!(
            out,
            "{} {} ({}) on {}; API key stored in {stored}",
            if created {
                "created the account"
            } else {
                "logged in as"
            },
            account.name,
            account.account_id,
            ctx.cloud_url
        )?;
        writeln!(
            out,
            "next: webhook-connect listen --forward-to http://localhost:3000/webhooks"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /api/v1/account`, with a 404 explained: the cloud does not offer self-service.
pub async fn account_of(client: &HostedClient) -> Result<Account, CliError> {
    match client.account().await {
        Err(e) if e.is_not_found() => Err(CliError::Failed(format!(
            "{} does not offer self-service accounts (HTTP 404 on /api/v1/account): ask its operator, or check --cloud-url",
            client.cloud_url()
        ))),
        other => Ok(other?),
    }
}

/// The full channel name of `name`: as is when it has a `.`, else `<account>.<name>`.
async fn full_name(client: &HostedClient, name: &str) -> Result<String, CliError> {
    if name.contains('.') {
        return Ok(name.to_owned());
    }
    let account = account_of(client).await?;
    Ok(format!("{}.{name}", account.name))
}

fn check_short(name: &str) -> Result<(), CliError> {
    if is_valid_channel_short_name(name) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "channel name {name:?}: 1-40 of a-z, 0-9 and '-', starting with a letter or digit"
        )))
    }
}

async fn channels(
    cmd: ChannelsCmd,
    env: &BTreeMap<String, String>,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    match cmd {
        ChannelsCmd::List { common } => {
            let client = Ctx::resolve(&common, env)?.client()?;
            let list = client.channels().await?;
            if common.json {
                output::json(out, &list)?;
            } else {
                output::channels(out, &list.channels)?;
            }
        }
        ChannelsCmd::Create {
            name,
            verify,
            secret_stdin: _,
            verify_header,
            description,
            common,
        } => {
            let preset = match verify.as_deref() {
                None => None,
                Some(p) => Some(VerifyPreset::parse(p).ok_or_else(|| {
                    let all: Vec<&str> = VerifyPreset::ALL.iter().map(|p| p.as_str()).collect();
                    CliError::Usage(format!("--verify {p:?}: one of {}", all.join(", ")))
                })?),
            };
            let client = Ctx::resolve(&common, env)?.client()?;
            let short = match name.split_once('.') {
                None => name.clone(),
                Some((account, short)) => {
                    let me = account_of(&client).await?;
                    if account != me.name {
                        return Err(CliError::Usage(format!(
                            "{name:?} belongs to account {account:?}; you are {:?}",
                            me.name
                        )));
                    }
                    short.to_owned()
                }
            };
            check_short(&short)?;
            let verify = match preset {
                None => None,
                Some(preset) => Some(VerifySpec {
                    preset,
                    secret: read_secret_stdin("signing secret")?,
                    header: verify_header,
                }),
            };
            let created = client
                .create_channel(&CreateChannelRequest {
                    name: short,
                    verify,
                    description,
                    ..Default::default()
                })
                .await?;
            if common.json {
                output::json(out, &created)?;
            } else {
                writeln!(out, "created {}", created.channel)?;
                writeln!(out, "  webhook URL    {}", created.webhook_url)?;
                writeln!(
                    out,
                    "  channel token  {}  (shown once; connectors may use your API key instead)",
                    created.channel_token
                )?;
                if let Some(v) = &created.settings.verify {
                    writeln!(out, "  verify         {}", v.preset.as_str())?;
                }
            }
        }
        ChannelsCmd::Delete { name, common } => {
            let client = Ctx::resolve(&common, env)?.client()?;
            let full = full_name(&client, &name).await?;
            let deleted = client.delete_channel(&full).await?;
            if common.json {
                output::json(out, &deleted)?;
            } else {
                writeln!(
                    out,
                    "deleted {} ({} queued webhook{} discarded)",
                    deleted.deleted,
                    deleted.messages_discarded,
                    if deleted.messages_discarded == 1 {
                        ""
                    } else {
                        "s"
                    }
                )?;
            }
        }
        ChannelsCmd::RotateToken {
            name,
            grace_seconds,
            common,
        } => {
            let client = Ctx::resolve(&common, env)?.client()?;
            let full = full_name(&client, &name).await?;
            let r = client.rotate_token(&full, grace_seconds).await?;
            if common.json {
                output::json(out, &r)?;
            } else {
                writeln!(out, "new token for {}: {}", r.channel, r.new_token)?;
                writeln!(
                    out,
                    "  the old token works until {}",
                    r.old_token_expires_at
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn dead_letters(
    a: DeadLettersArgs,
    env: &BTreeMap<String, String>,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    if !(1..=1000).contains(&a.limit) {
        return Err(CliError::Usage("--limit: 1 to 1000".into()));
    }
    let client = Ctx::resolve(&a.common, env)?.client()?;
    let full = full_name(&client, &a.name).await?;
    let json = a.common.json;
    if let Some(id) = &a.replay {
        let r = client.replay_dead_letter(&full, id).await?;
        if json {
            output::json(out, &r)?;
        } else {
            writeln!(out, "{}: {} {}", r.channel, r.message_id, r.status)?;
        }
    } else if a.replay_all {
        let r = client.replay_all_dead_letters(&full, None).await?;
        if json {
            output::json(out, &r)?;
        } else {
            writeln!(
                out,
                "{}: {} replayed, {} left{}",
                r.channel,
                r.replayed,
                r.remaining,
                r.stopped
                    .as_deref()
                    .map(|s| format!(" (stopped: {s})"))
                    .unwrap_or_default()
            )?;
        }
    } else if let Some(id) = &a.delete {
        let r = client.delete_dead_letter(&full, id).await?;
        if json {
            output::json(out, &r)?;
        } else {
            writeln!(out, "{}: {} {}", r.channel, r.message_id, r.status)?;
        }
    } else if a.purge {
        let r = client.purge_dead_letters(&full).await?;
        if json {
            output::json(out, &r)?;
        } else {
            writeln!(out, "{}: {} dead letters deleted", r.channel, r.deleted)?;
        }
    } else {
        let list = client.dead_letters(&full, a.limit, false).await?;
        if json {
            output::json(out, &list)?;
        } else {
            output::dead_letters(out, &list.channel, list.total, &list.messages)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
