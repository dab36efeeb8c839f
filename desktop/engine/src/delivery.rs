//! What happens to a message once it arrived: target choice or module mode, the delivery task
//! (limits, ordered targets, lease extension, local retries), settlement and the history
//! record; and replays from the history.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use connect_protocol::message::WireMessage;
use tokio::sync::mpsc;

use crate::api::{EventDetail, Outcome, ReplayRequest};
use crate::channel::{ChannelCtx, Link, Settle};
use crate::config::Target;
use crate::error::EngineError;
use crate::forward::{self, Verdict};
use crate::history::Entry;
use crate::modules::Modules;

impl ChannelCtx {
    /// Takes one wire message from any transport.
    pub(crate) fn accept(self: &Arc<Self>, link: &Arc<Link>, mut msg: WireMessage) {
        // A v1 server does not name the channel in its messages; `X-Webhook-Channel` still must.
        if msg.channel.is_none() {
            msg.channel = Some(self.cfg.channel.clone());
        }
        {
            let mut l = self.live.lock();
            l.status.counters.received += 1;
            l.status.last_event_at = Some(SystemTime::now());
        }
        if msg.message_id.is_empty() {
            return;
        }
        if let Some(modules) = &self.modules {
            let seq = self.remember(&msg, None, None);
            let ctx = self.clone();
            let link = link.clone();
            let modules = modules.clone();
            self.deliveries
                .spawn(async move { ctx.run_modules(&link, &msg, seq, &modules).await });
            return;
        }
        let selected = if msg.webhook_id.is_empty() {
            None
        } else {
            forward::select_target(&self.cfg.targets, self.cfg.default_target.as_ref(), &msg)
                .map(|(k, t)| (k, t.clone()))
        };
        let Some((key, target)) = selected else {
            let error = if msg.webhook_id.is_empty() {
                "missing webhook_id"
            } else {
                "no target for webhook_id"
            };
            let seq = self.remember(&msg, None, None);
            let ctx = self.clone();
            let link = link.clone();
            self.deliveries.spawn(async move {
                {
                    let mut l = ctx.live.lock();
                    l.status.counters.failed += 1;
                    l.status.counters.dead_lettered += 1;
                }
                ctx.finish(seq, |e| {
                    e.summary.outcome = Outcome::DeadLetter;
                    e.push_attempts(vec![crate::api::Attempt {
                        at: crate::history::rfc3339(SystemTime::now()),
                        target_url: String::new(),
                        status: None,
                        duration_ms: 0.0,
                        response_headers: Vec::new(),
                        response_body_excerpt: String::new(),
                        error: Some(error.to_owned()),
                    }]);
                });
                ctx.settle(
                    &link,
                    &msg.message_id,
                    Settle::Nack {
                        retry: false,
                        error: error.to_owned(),
                    },
                )
                .await;
                ctx.subject(&msg, "-").dead_lettered(error);
            });
            return;
        };
        let seq = self.remember(
            &msg,
            Some(key.clone()),
            Some(forward::url_for(&msg, &target)),
        );
        if target.ordered {
            let tx = {
                let mut q = self.ordered_queues.lock();
                q.entry(key.clone())
                    .or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.deliveries.spawn(ordered_worker(
                            self.clone(),
                            key.clone(),
                            target.clone(),
                            rx,
                        ));
                        tx
                    })
                    .clone()
            };
            let _ = tx.send((link.clone(), msg, seq));
            return;
        }
        let ctx = self.clone();
        let link = link.clone();
        self.deliveries
            .spawn(async move { ctx.process(link, msg, key, target, false, seq).await });
    }

    /// Module mode: runs the local webhooks.json module of the message, then settles it.
    pub(crate) async fn run_modules(
        &self,
        link: &Link,
        msg: &WireMessage,
        seq: u64,
        modules: &Modules,
    ) {
        let started = Instant::now();
        self.live.lock().status.in_flight += 1;
        let result = modules.handle(msg).await;
        let elapsed = started.elapsed();
        let (action, outcome, error) = match &result {
            Ok(()) => (Settle::Ack, Outcome::Delivered, None),
            Err(crate::modules::ModuleError::Permanent(e)) => (
                Settle::Nack {
                    retry: false,
                    error: e.clone(),
                },
                Outcome::DeadLetter,
                Some(e.clone()),
            ),
            Err(crate::modules::ModuleError::Transient(e)) => (
                Settle::Nack {
                    retry: true,
                    error: e.clone(),
                },
                Outcome::Retry,
                Some(e.clone()),
            ),
        };
        self.settle(link, &msg.message_id, action).await;
        match &result {
            Ok(()) => {}
            Err(crate::modules::ModuleError::Permanent(e)) => {
                self.subject(msg, "module").dead_lettered(e);
            }
            Err(crate::modules::ModuleError::Transient(e)) => {
                self.subject(msg, "module").handed_back(e);
            }
        }
        {
            let mut l = self.live.lock();
            l.status.in_flight -= 1;
            match outcome {
                Outcome::Delivered => l.status.counters.delivered += 1,
                Outcome::DeadLetter => {
                    l.status.counters.failed += 1;
                    l.status.counters.dead_lettered += 1;
                }
                _ => l.status.counters.failed += 1,
            }
            l.finished(elapsed, result.is_ok());
        }
        self.finish(seq, |e| {
            e.summary.outcome = outcome;
            e.summary.duration_ms = elapsed.as_secs_f64() * 1000.0;
            e.summary.attempts = 1;
            e.summary.target_url = Some(format!("module:{}", modules.describe(msg)));
            e.push_attempts(vec![crate::api::Attempt {
                at: crate::history::rfc3339(SystemTime::now()),
                target_url: format!("module:{}", modules.describe(msg)),
                status: None,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                response_headers: Vec::new(),
                response_body_excerpt: String::new(),
                error,
            }]);
        });
    }

    pub(crate) async fn process(
        self: Arc<Self>,
        link: Arc<Link>,
        msg: WireMessage,
        key: String,
        target: Target,
        ordered: bool,
        seq: u64,
    ) {
        self.live.lock().status.in_flight += 1;
        let hard = self.tokens.hard.clone();
        tokio::select! {
            _ = hard.cancelled() => {
                // The grace ran out: hand the message back now rather than at the ack timeout.
                self.settle(&link, &msg.message_id, Settle::Nack {
                    retry: true,
                    error: "connector shutting down".into(),
                }).await;
                self.finish(seq, |e| e.summary.outcome = Outcome::Retry);
            }
            _ = self.process_inner(&link, &msg, &key, &target, ordered, seq) => {}
        }
        self.live.lock().status.in_flight -= 1;
    }

    pub(crate) async fn process_inner(
        &self,
        link: &Link,
        msg: &WireMessage,
        key: &str,
        target: &Target,
        ordered: bool,
        seq: u64,
    ) {
        let received = Instant::now();
        // Leases are kept while waiting for a permit too.
        let work = async {
            let _g = self.global.acquire().await;
            let _c = match &self.channel_limit {
                Some(s) => Some(s.acquire().await),
                None => None,
            };
            let _t = match self.target_limits.get(key) {
                Some(s) => Some(s.acquire().await),
                None => None,
            };
            let Some(client) = self.target_clients.get(key) else {
                return forward::Delivery {
                    verdict: Verdict::Reject("no target for webhook_id".into()),
                    attempts: 0,
                    response: forward::Response::default(),
                    duration: Duration::ZERO,
                    log: Vec::new(),
                    brief: "no target for webhook_id".into(),
                };
            };
            let subject = self.subject(msg, key);
            let on_retry = |note: &forward::RetryNote| {
                self.live.lock().status.counters.retried += 1;
                subject.retrying(note);
            };
            if !ordered {
                return forward::deliver(client, msg, target, on_retry).await;
            }
            // Ordered: retry locally until success, a permanent failure or expiry.
            let mut round = 1u32;
            let mut log = Vec::new();
            loop {
                let mut d = forward::deliver(client, msg, target, on_retry).await;
                log.append(&mut d.log);
                let expired = msg.expires_at.as_ref().is_some_and(|e| e.0 <= chrono_now());
                if !matches!(d.verdict, Verdict::Retry(_))
                    || expired
                    || self.tokens.intake.is_cancelled()
                {
                    let keep = log.len().saturating_sub(crate::history::ATTEMPTS_CAP);
                    log.drain(..keep);
                    d.log = log;
                    return d;
                }
                self.live.lock().status.counters.retried += 1;
                let wait = forward::retry_wait(target, round, None);
                subject.retrying_ordered(round, &d.brief, wait);
                tokio::time::sleep(wait).await;
                round = round.saturating_add(1);
            }
        };
        let every = (link.ack_timeout / 3).max(Duration::from_secs(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        let delivery = loop {
            tokio::select! {
                d = &mut work => break d,
                _ = ticker.tick(), if link.v2 => {
                    self.settle(link, &msg.message_id, Settle::Extend).await;
                }
            }
        };
        let elapsed = received.elapsed();
        let action = match &delivery.verdict {
            Verdict::Ack => Settle::Ack,
            Verdict::Reject(e) => Settle::Nack {
                retry: false,
                error: e.clone(),
            },
            Verdict::Retry(e) => Settle::Nack {
                retry: true,
                error: e.clone(),
            },
        };
        self.settle(link, &msg.message_id, action).await;
        match &delivery.verdict {
            Verdict::Ack => {}
            Verdict::Reject(_) => self.subject(msg, key).dead_lettered(&delivery.brief),
            Verdict::Retry(_) => self.subject(msg, key).handed_back(&delivery.brief),
        }
        let outcome = match delivery.verdict {
            Verdict::Ack => Outcome::Delivered,
            Verdict::Reject(_) => Outcome::DeadLetter,
            Verdict::Retry(_) => Outcome::Retry,
        };
        {
            let mut l = self.live.lock();
            match outcome {
                Outcome::Delivered => l.status.counters.delivered += 1,
                Outcome::DeadLetter => {
                    l.status.counters.failed += 1;
                    l.status.counters.dead_lettered += 1;
                }
                _ => l.status.counters.failed += 1,
            }
            l.finished(elapsed, outcome == Outcome::Delivered);
        }
        self.finish(seq, |e| {
            e.summary.outcome = outcome;
            e.summary.response_status = delivery.response.status;
            e.summary.duration_ms = elapsed.as_secs_f64() * 1000.0;
            e.summary.attempts = delivery.attempts;
            e.push_attempts(delivery.log);
        });
    }

    pub(crate) async fn replay(&self, req: ReplayRequest) -> Result<EventDetail, EngineError> {
        let (mut msg, body, target_key, truncated) = {
            let h = self.history.lock();
            let e = h
                .get(&req.message_id)
                .ok_or_else(|| EngineError::UnknownEvent(req.message_id.clone()))?;
            (
                e.wire.clone(),
                e.body.clone(),
                e.target_key.clone(),
                e.truncated(),
            )
        };
        let body = match &req.body_base64 {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| EngineError::Replay(format!("body_base64: {e}")))?,
            None if truncated => {
                return Err(EngineError::Replay(
                    "the history kept only the first MiB of this body: replay it with an edited body".into(),
                ));
            }
            None => body,
        };
        if let Some(headers) = req.headers {
            msg.raw_headers = Some(headers);
        }
        msg.body_b64 = Some(base64::engine::general_purpose::STANDARD.encode(&body));
        let configured = target_key.as_deref().and_then(|k| {
            if k == "*default*" {
                self.cfg.default_target.as_ref()
            } else {
                self.cfg.targets.get(k)
            }
        });
        let (mut target, client) = match (&req.target_url, configured) {
            (Some(url), base) => {
                let mut t = match base {
                    Some(b) => b.clone(),
                    None => {
                        Target::from_url(url).map_err(|e| EngineError::Replay(e.to_string()))?
                    }
                };
                t.url = url.clone();
                t.append_path = false;
                t.append_query = false;
                t.path_rewrite = None;
                (t, self.plain_client.clone())
            }
            (None, Some(t)) => {
                let c = target_key
                    .as_deref()
                    .and_then(|k| self.target_clients.get(k))
                    .cloned()
                    .unwrap_or_else(|| self.plain_client.clone());
                (t.clone(), c)
            }
            (None, None) => {
                return Err(EngineError::Replay(
                    "this event had no target: give a target URL to replay it to".into(),
                ));
            }
        };
        target.retry_enabled = false;
        let seq;
        let replay_id;
        {
            let mut h = self.history.lock();
            seq = h.next_seq();
            replay_id = format!("{}.r{seq}", req.message_id);
            let mut e = Entry::received(
                seq,
                &msg,
                body,
                target_key,
                Some(forward::url_for(&msg, &target)),
            );
            e.summary.message_id = replay_id.clone();
            e.summary.replay_of = Some(req.message_id.clone());
            h.push(e);
        }
        let d = forward::deliver(&client, &msg, &target, |_| {}).await;
        let outcome = match d.verdict {
            Verdict::Ack => Outcome::Delivered,
            Verdict::Reject(_) => Outcome::Failed,
            Verdict::Retry(_) => Outcome::Retry,
        };
        self.finish(seq, |e| {
            e.summary.outcome = outcome;
            e.summary.response_status = d.response.status;
            e.summary.duration_ms = d.duration.as_secs_f64() * 1000.0;
            e.summary.attempts = d.attempts;
            e.push_attempts(d.log);
        });
        let h = self.history.lock();
        h.get(&replay_id).map(Entry::detail).ok_or_else(|| {
            EngineError::Replay("the history is too small to keep the replay".into())
        })
    }
}

pub(crate) fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

pub(crate) async fn ordered_worker(
    ctx: Arc<ChannelCtx>,
    key: String,
    target: Target,
    mut rx: mpsc::UnboundedReceiver<(Arc<Link>, WireMessage, u64)>,
) {
    loop {
        let next = tokio::select! {
            _ = ctx.tokens.intake.cancelled() => None,
            n = rx.recv() => n,
        };
        let Some((link, msg, seq)) = next else { break };
        ctx.clone()
            .process(link, msg, key.clone(), target.clone(), true, seq)
            .await;
    }
    // Stopping: hand back what is still queued here.
    rx.close();
    while let Some((link, msg, seq)) = rx.recv().await {
        ctx.settle(
            &link,
            &msg.message_id,
            Settle::Nack {
                retry: true,
                error: "connector shutting down".into(),
            },
        )
        .await;
        ctx.finish(seq, |e| e.summary.outcome = Outcome::Retry);
    }
}
