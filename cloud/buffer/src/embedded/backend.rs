//! [`Buffer`] for [`EmbeddedBuffer`]: each operation runs on one channel's index under its
//! lock; message records are read from the log outside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use connect_protocol::message::StoredMessage;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::channel::Chan;
use super::log::Loc;
use super::writer::OnCommit;
use super::{EmbeddedBuffer, MAX_STORED_MESSAGE_BYTES, codec, done_signal, orphan_due, wait};
use crate::hosted::{AccountRecord, Created, HostedChannelRecord};
use crate::{
    AckOutcome, Buffer, BufferError, BufferHealth, BufferStats, BulkReplay, ChannelRecord,
    ChannelRegistration, Leased, MessageRecord, NackOutcome, PeekFilter, Registered, ReplayOutcome,
    Result, SweepReport, TokenState,
};

#[async_trait]
impl Buffer for EmbeddedBuffer {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    fn health(&self) -> BufferHealth {
        if self.closed.load(Ordering::Acquire) {
            return BufferHealth {
                ok: false,
                readable: false,
                reason: Some("buffer closed".into()),
            };
        }
        match self.shared.failure.lock().clone() {
            // Reads come from the log's files, which a failed write does not touch.
            Some(e) => BufferHealth {
                ok: false,
                readable: true,
                reason: Some(format!("buffer store write failed: {e}")),
            },
            None => BufferHealth {
                ok: true,
                readable: true,
                reason: None,
            },
        }
    }

    fn notifier(&self, channel: &str) -> Arc<Notify> {
        // A live channel hands out its own; the map holds only notifiers asked for before
        // their channel exists (taken by it when it is created, under the same lock).
        let map = self.channels.read();
        match map.get(channel) {
            Some(c) => c.lock().notifier(),
            None => self.notifiers.get(channel),
        }
    }

    fn shared_name(&self, channel: &str) -> Option<Arc<str>> {
        let map = self.channels.read();
        map.get_key_value(channel).map(|(k, _)| k.clone())
    }

    async fn register_channel(&self, reg: ChannelRegistration) -> Result<Registered> {
        self.ensure_open()?;
        let now = self.clock.now();
        // A self-service channel's name and webhook id are already held by the index of
        // self-service records: shared, not allocated again (issue #14).
        let shared = self.hosted.shared_strings(&reg.name);
        let (then, rx) = done_signal(true);
        let (registered, rejected) = {
            let mut map = self.channels.write();
            let existing = map.get(reg.name.as_str()).cloned();
            let (chan, registered) = match existing {
                Some(chan) => {
                    let registered = chan.lock().register(reg, now, &self.env);
                    (chan, registered)
                }
                None => {
                    let notify = self.notifiers.take(&reg.name);
                    let id = self.shared.next_channel_id.fetch_add(1, Ordering::SeqCst);
                    let mut c = Chan::create(reg, id, now, notify, &self.env);
                    if let Some((name, webhook_id)) = &shared {
                        c.record.share(name, webhook_id);
                    }
                    let name = c.record.name.clone();
                    let registered = Registered {
                        record: c.record.to_record(),
                        configured_token_changed: false,
                        created: true,
                    };
                    let chan = Arc::new(Mutex::new(c));
                    map.insert(name, chan.clone());
                    (chan, registered)
                }
            };
            let mut c = chan.lock();
            let rejected = c
                .take_job(&chan, true, then)
                .and_then(|job| self.send(job).err());
            (registered, rejected)
        };
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
        }
        if let Some(rx) = rx {
            wait(rx).await?;
        }
        Ok(registered)
    }

    async fn orphan_channel(&self, name: &str) -> Result<()> {
        let now = self.clock.now();
        self.with_chan(name, true, |c| c.orphan(now)).await
    }

    async fn delete_channel(&self, name: &str) -> Result<u64> {
        self.remove_channel(name, |_| true)
            .await?
            .ok_or(BufferError::ChannelNotFound)
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelRecord>> {
        self.ensure_open()?;
        let chan = self.channels.read().get(name).cloned();
        Ok(chan.map(|c| c.lock().record.to_record()))
    }

    async fn channels(&self) -> Result<Vec<ChannelRecord>> {
        self.ensure_open()?;
        let chans: Vec<_> = self.channels.read().values().cloned().collect();
        let mut records: Vec<ChannelRecord> =
            chans.iter().map(|c| c.lock().record.to_record()).collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    async fn visit_channels(&self, visit: &mut (dyn FnMut(ChannelRecord) + Send)) -> Result<()> {
        self.ensure_open()?;
        // The handles (8 B each), not the records; each record is cloned, handed over and
        // dropped before the next, so the allocator reuses one record's memory throughout.
        let chans: Vec<_> = self.channels.read().values().cloned().collect();
        for c in chans {
            let rec = c.lock().record.to_record();
            visit(rec);
        }
        Ok(())
    }

    async fn enqueue(&self, mut message: StoredMessage) -> Result<(String, u64)> {
        let chan = self.chan(&message.channel)?;
        let chan_id = chan.lock().id;
        // Encode outside the lock; the sequence is patched in under it.
        let record = codec::message_record(chan_id, 0, &message);
        if record.len() > MAX_STORED_MESSAGE_BYTES {
            return Err(BufferError::TooLarge);
        }
        // The record holds the body now: one copy less per request while it waits.
        message.body = None;
        let (tx, rx) = oneshot::channel();
        let rejected = {
            let mut c = chan.lock();
            if c.deleted {
                return Err(BufferError::ChannelNotFound);
            }
            let seq = c.reserve(&mut message, record)?;
            let id = message.message_id;
            let then: OnCommit = Box::new(move |r: Result<&[Loc], String>| {
                let _ = tx.send(r.map(|_| (id, seq)).map_err(BufferError::Unavailable));
            });
            c.take_job(&chan, true, Some(then))
                .and_then(|job| self.send(job).err())
        };
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
        }
        rx.await
            .unwrap_or_else(|_| Err(BufferError::Unavailable("buffer writer stopped".into())))
    }

    async fn lease_within(
        &self,
        channel: &str,
        connection: &str,
        max: usize,
        max_bytes: u64,
    ) -> Result<Vec<Leased>> {
        let now = self.clock.now();
        let picked = self
            .with_chan(channel, false, |c| c.lease(connection, max, max_bytes, now))
            .await?;
        let mut out = Vec::with_capacity(picked.len());
        for p in picked {
            match self.read_message(channel, p.loc) {
                Ok(m) => out.push(Leased {
                    message: Arc::new(m),
                    delivery_count: p.delivery_count,
                }),
                // Left leased: the ack timeout returns it, and max_delivery_attempts ends it.
                Err(e) => {
                    tracing::error!(channel, error = %e, "a leased message could not be read")
                }
            }
        }
        Ok(out)
    }

    async fn ack(&self, channel: &str, message_id: &str, connection: &str) -> Result<AckOutcome> {
        self.with_chan(channel, false, |c| c.ack(message_id, connection))
            .await
    }

    async fn nack(
        &self,
        channel: &str,
        message_id: &str,
        connection: &str,
        retry: bool,
        error: Option<String>,
    ) -> Result<NackOutcome> {
        let now = self.clock.now();
        self.with_chan(channel, false, |c| {
            c.nack(message_id, connection, retry, error, now)
        })
        .await
    }

    async fn extend(&self, channel: &str, message_id: &str, connection: &str) -> Result<bool> {
        let now = self.clock.now();
        self.with_chan(channel, false, |c| c.extend(message_id, connection, now))
            .await
    }

    async fn release(&self, channel: &str, connection: &str) -> Result<Vec<String>> {
        self.with_chan(channel, false, |c| {
            let ids = c.release(connection);
            if !ids.is_empty() {
                c.wake();
            }
            ids
        })
        .await
    }

    async fn sweep(&self, orphan_retention: Option<std::time::Duration>) -> Result<SweepReport> {
        self.ensure_open()?;
        let now = self.clock.now();
        let everything =
            self.swept_retention.lock().replace(orphan_retention) != Some(orphan_retention);
        let names: Vec<String> = if everything {
            self.channels.read().keys().map(|k| k.to_string()).collect()
        } else {
            self.due.take_due(now.micros())
        };
        self.sweep_visits
            .fetch_add(names.len() as u64, Ordering::Relaxed);
        let mut report = SweepReport::default();
        let mut doomed = Vec::new();
        let mut names = names.into_iter();
        while let Some(name) = names.next() {
            let r = self
                .with_chan(&name, false, |c| {
                    if c.sweep(now, &mut report) {
                        c.wake();
                    }
                    let doomed = orphan_due(c, orphan_retention, now);
                    if doomed {
                        // Deleted below; should that not happen, whatever it does next
                        // files it again.
                        c.unschedule();
                    } else {
                        c.reschedule(now, orphan_retention);
                    }
                    doomed
                })
                .await;
            match r {
                Ok(true) => doomed.push(name),
                Ok(false) | Err(BufferError::ChannelNotFound) => {}
                Err(e) => {
                    // The ones not visited stay due for the next sweep.
                    let map = self.channels.read();
                    for rest in names {
                        if let Some(c) = map.get(rest.as_str()) {
                            let id = c.lock().id;
                            self.due.schedule(now.micros(), id, &rest);
                        }
                    }
                    return Err(e);
                }
            }
        }
        for name in doomed {
            let removed = self
                .remove_channel(&name, |c| orphan_due(c, orphan_retention, now))
                .await?;
            if removed.is_some() {
                report.channels_deleted.push(name);
            }
        }
        self.compact_head().await?;
        Ok(report)
    }

    async fn dead_letters(&self, channel: &str, limit: usize) -> Result<(Vec<MessageRecord>, u64)> {
        let (views, total) = self.chan(channel)?.lock().dead_letters(limit);
        let records = views
            .into_iter()
            .map(|v| self.complete(channel, v))
            .collect::<Result<_>>()?;
        Ok((records, total))
    }

    async fn dead_letter(&self, channel: &str, message_id: &str) -> Result<Option<MessageRecord>> {
        let view = self.chan(channel)?.lock().dead_letter_view(message_id);
        view.map(|v| self.complete(channel, v)).transpose()
    }

    async fn replay(&self, channel: &str, message_id: &str) -> Result<ReplayOutcome> {
        let now = self.clock.now();
        let chan = self.chan(channel)?;
        let (chan_id, candidate) = {
            let c = chan.lock();
            (c.id, c.replay_candidate(message_id))
        };
        let Some((seq, loc)) = candidate else {
            return Ok(ReplayOutcome::NotFound);
        };
        let record = self.replay_record(channel, chan_id, seq, loc, now);
        self.with_chan(channel, true, |c| {
            let outcome = c.replay_seq(seq, record);
            if outcome == ReplayOutcome::Replayed {
                c.wake();
            }
            outcome
        })
        .await
    }

    async fn replay_all(&self, channel: &str, limit: Option<u64>) -> Result<BulkReplay> {
        let now = self.clock.now();
        let chan = self.chan(channel)?;
        let (chan_id, candidates) = {
            let c = chan.lock();
            (c.id, c.replay_candidates(limit))
        };
        let prepared = candidates
            .into_iter()
            .map(|(seq, loc)| (seq, self.replay_record(channel, chan_id, seq, loc, now)))
            .collect();
        self.with_chan(channel, true, |c| {
            let outcome = c.replay_all(prepared);
            if outcome.replayed > 0 {
                c.wake();
            }
            outcome
        })
        .await
    }

    async fn delete_dead_letter(&self, channel: &str, message_id: &str) -> Result<bool> {
        self.with_chan(channel, true, |c| c.delete_dead_letter(message_id))
            .await
    }

    async fn purge_dead_letters(&self, channel: &str) -> Result<u64> {
        self.with_chan(channel, true, Chan::purge_dead_letters)
            .await
    }

    async fn peek(
        &self,
        channel: &str,
        filter: PeekFilter,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let views = self.chan(channel)?.lock().peek(filter, limit);
        views
            .into_iter()
            .map(|v| self.complete(channel, v))
            .collect()
    }

    async fn stats(&self, channel: &str) -> Result<BufferStats> {
        Ok(self.chan(channel)?.lock().stats())
    }

    async fn rotate_token(
        &self,
        channel: &str,
        new_digest: String,
        grace_seconds: u64,
    ) -> Result<TokenState> {
        let now = self.clock.now();
        self.with_chan(channel, true, |c| {
            c.rotate_token(new_digest, grace_seconds, now)
        })
        .await
    }

    async fn add_connection(&self, channel: &str, connection: &str, max: u64) -> Result<bool> {
        self.chan(channel)?;
        let mut conns = self.connections.lock();
        let set = conns.entry(channel.to_owned()).or_default();
        if set.contains(connection) {
            return Ok(true);
        }
        if set.len() as u64 >= max {
            return Ok(false);
        }
        set.insert(connection.to_owned());
        Ok(true)
    }

    async fn remove_connection(&self, channel: &str, connection: &str) -> Result<()> {
        self.ensure_open()?;
        let mut conns = self.connections.lock();
        if let Some(set) = conns.get_mut(channel) {
            set.remove(connection);
            if set.is_empty() {
                conns.remove(channel);
            }
        }
        Ok(())
    }

    async fn connection_count(&self, channel: &str) -> Result<u64> {
        self.ensure_open()?;
        Ok(self
            .connections
            .lock()
            .get(channel)
            .map_or(0, |s| s.len() as u64))
    }

    fn log_stats(&self) -> Option<crate::LogStats> {
        Some(self.shared.segments.stats())
    }

    async fn create_account(&self, account: &AccountRecord, max_accounts: u64) -> Result<Created> {
        self.ensure_open()?;
        self.hosted.create_account(account, max_accounts)
    }

    async fn put_account(&self, account: &AccountRecord) -> Result<bool> {
        self.ensure_open()?;
        self.hosted.put_account(account)
    }

    async fn account(&self, account_id: &str) -> Result<Option<AccountRecord>> {
        Ok(self.hosted.read(|ix| ix.account(account_id).cloned()))
    }

    async fn account_by_key(&self, key_digest: &str) -> Result<Option<AccountRecord>> {
        Ok(self
            .hosted
            .read(|ix| ix.account_by_key(key_digest).cloned()))
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>> {
        Ok(self.hosted.read(|ix| ix.accounts()))
    }

    async fn account_count(&self) -> Result<u64> {
        Ok(self.hosted.read(|ix| ix.account_count()))
    }

    async fn delete_account(&self, account_id: &str) -> Result<bool> {
        self.ensure_open()?;
        self.hosted.delete_account(account_id)
    }

    async fn create_hosted_channel(
        &self,
        channel: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<Created> {
        self.ensure_open()?;
        self.hosted.create_channel(channel, max_channels)
    }

    async fn put_hosted_channel(&self, channel: &HostedChannelRecord) -> Result<bool> {
        self.ensure_open()?;
        self.hosted.put_channel(channel)
    }

    async fn hosted_channel(&self, name: &str) -> Result<Option<HostedChannelRecord>> {
        Ok(self.hosted.read(|ix| ix.channel(name)))
    }

    async fn hosted_channel_by_webhook(
        &self,
        webhook_id: &str,
    ) -> Result<Option<HostedChannelRecord>> {
        Ok(self.hosted.read(|ix| ix.channel_by_webhook(webhook_id)))
    }

    async fn hosted_channels(&self) -> Result<Vec<HostedChannelRecord>> {
        Ok(self.hosted.read(|ix| ix.channels()))
    }

    async fn hosted_channel_names(&self) -> Result<Vec<String>> {
        Ok(self.hosted.read(|ix| ix.channel_names()))
    }

    async fn hosted_channel_count(&self) -> Result<u64> {
        Ok(self.hosted.read(|ix| ix.channel_count()))
    }

    async fn account_channels(&self, account_id: &str) -> Result<Vec<HostedChannelRecord>> {
        Ok(self.hosted.read(|ix| ix.account_channels(account_id)))
    }

    async fn delete_hosted_channel(&self, name: &str) -> Result<bool> {
        self.ensure_open()?;
        self.hosted.delete_channel(name)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let writer = self.writer.write().take();
        if let Some(w) = writer {
            // The thread writes everything queued before it exits.
            tokio::task::spawn_blocking(move || w.shutdown())
                .await
                .map_err(|e| BufferError::Unavailable(format!("closing the store: {e}")))?;
        }
        self.hosted.close();
        self.lock.lock().take();
        match self.shared.failure.lock().clone() {
            Some(e) => Err(BufferError::Unavailable(e)),
            None => Ok(()),
        }
    }
}
