//! Power loss, simulated for real: the cloud keeps its embedded store on a [`PowerLossFs`],
//! which drops every write not made durable by `fsync` when the power is "cut". Under eight
//! concurrent senders the cloud is killed and the filesystem crashed at random moments —
//! losing all unsynced writes, or tearing the last one — and started again, several times.
//! Afterwards the real connector drains the channel: every webhook answered 2xx must arrive.
//!
//! A process kill alone cannot show this (the kernel keeps a killed process's written pages),
//! so the second test runs the same harness with `fsync` ignored — what a store that never
//! syncs would get — and shows the cut then leaves a store the cloud refuses to start on
//! (before the start-up check of damaged store files, it started empty and the acknowledged
//! webhooks were lost): the harness can fail.
//!
//! The third runs with the smallest log segments and the real connector draining while the
//! webhooks come in, so drained segments are kept as spares and written over as new segments
//! *during* the cuts; half its cuts come at the worst moment for that — a segment just started
//! on the spare, its new header durable and nothing after it, so its earlier life's records
//! start right where the next record would (the harness cuts the power right after that
//! file's first sync). Beside
//! the first test's checks it asserts that segments really were reused, and that no message
//! whose settlement was surely durable is delivered again after a cut (a recycled segment's
//! earlier life coming back).
//!
//! The seed of the random moments is printed; `POWERLOSS_SEED=<n>` replays a run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{
    Crash, CrashReport, Durability, PowerLossFs, RecordedRequest, RecordingTarget, timing,
    wait_until,
};
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::connector::connector_flags;
use crate::crash_loop::{sender, sender_with, verify_delivered};

const TOKEN: &str = "power-loss-channel-token";

/// A small xorshift generator: the test needs reproducible randomness, not quality.
struct Moments(u64);

impl Moments {
    fn new() -> Self {
        let seed = std::env::var("POWERLOSS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            .max(1);
        eprintln!("power-loss seed: {seed} (replay with POWERLOSS_SEED={seed})");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn crash(&mut self) -> Crash {
        if self.below(2) == 0 {
            Crash::LoseAll
        } else {
            Crash::TornTail {
                keep_per_mille: self.below(1000) as u16,
            }
        }
    }
}

async fn cloud_on(fs: &PowerLossFs) -> anyhow::Result<Cloud> {
    cloud_with(fs, &[]).await
}

async fn cloud_with(fs: &PowerLossFs, env: &[(&str, &str)]) -> anyhow::Result<Cloud> {
    let data = fs.path().join("data");
    let data = data.to_str().expect("UTF-8 temporary path").to_owned();
    let mut env = env.to_vec();
    env.push(("WEBHOOK_CONNECT_DATA_DIR", &data));
    Cloud::start_with(
        json!({"hook": connect_hook("power", TOKEN, json!({}))}),
        &env,
    )
    .await
}

/// Kills the cloud, cuts the power, starts the cloud again; what the cut threw away.
async fn power_cut(
    cloud: &mut Cloud,
    fs: &mut PowerLossFs,
    how: Crash,
) -> anyhow::Result<CrashReport> {
    fs.power_off();
    cloud.kill9();
    let report = fs.crash(how)?;
    eprintln!("power cut ({how:?}): {report:?}");
    cloud.restart().await?;
    Ok(report)
}

#[tokio::test]
async fn every_acknowledged_webhook_survives_repeated_power_cuts() -> anyhow::Result<()> {
    // Cut until three cuts caught unsynced writes (a cut between two syncs loses nothing and
    // proves little), at most 40 times.
    const CUTS_THAT_LOST_WRITES: usize = 3;
    const MAX_CUTS: usize = 40;
    let mut fs = PowerLossFs::mount(Durability::Honest)?;
    let mut cloud = cloud_on(&fs).await?;
    // A rotation is store state too: the connector below uses the new token.
    let token = cloud.rotate_token("power").await?;
    let mut moments = Moments::new();
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let senders: Vec<_> = (0..8)
        .map(|w| sender(cloud.base.clone(), w, accepted.clone(), stop.clone()))
        .collect();
    let (mut cuts, mut cuts_that_lost) = (0, 0);
    while cuts_that_lost < CUTS_THAT_LOST_WRITES {
        anyhow::ensure!(
            cuts < MAX_CUTS,
            "{MAX_CUTS} power cuts and only {cuts_that_lost} caught unsynced writes"
        );
        let round = cuts;
        let before = accepted.lock().len();
        wait_until(
            Duration::from_secs(60),
            &format!("100 more webhooks accepted before power cut {round}"),
            || async { accepted.lock().len() >= before + 100 },
        )
        .await?;
        // A random moment inside the stream of writes and syncs.
        tokio::time::sleep(Duration::from_millis(moments.below(50))).await;
        let report = power_cut(&mut cloud, &mut fs, moments.crash()).await?;
        cuts += 1;
        cuts_that_lost += usize::from(report.bytes_lost > 0);
    }
    let before = accepted.lock().len();
    wait_until(
        Duration::from_secs(60),
        "webhooks accepted after the last power cut",
        || async { accepted.lock().len() >= before + 50 },
    )
    .await?;
    stop.cancel();
    for s in senders {
        s.await?;
    }

    let target = RecordingTarget::start().await?;
    let conn = connector_flags(&cloud, "power", &token, "websocket", &target.url, &[])?;
    verify_delivered(&accepted, &target, &conn, cuts).await
}

#[tokio::test]
async fn the_harness_catches_a_store_whose_fsync_does_nothing() -> anyhow::Result<()> {
    let mut fs = PowerLossFs::mount(Durability::IgnoreFsync)?;
    let mut cloud = cloud_on(&fs).await?;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let senders: Vec<_> = (0..4)
        .map(|w| sender(cloud.base.clone(), w, accepted.clone(), stop.clone()))
        .collect();
    wait_until(Duration::from_secs(60), "100 webhooks accepted", || async {
        accepted.lock().len() >= 100
    })
    .await?;
    stop.cancel();
    for s in senders {
        s.await?;
    }
    // With fsync ignored nothing the store wrote survives the cut, not even the redb file's
    // header: `buffer.redb` and `hosted.redb` are empty. The cloud must refuse to start on
    // them (exit 69, naming the first it opens: the index of self-service channels, since the
    // store takes their names from it) — this refusal is how `every_acknowledged_webhook_survives_repeated_power_cuts`
    // fails on such a store. Before cloud/buffer/src/store_file.rs it started on a new,
    // empty store and every acknowledged webhook was lost without a word.
    let refused = power_cut(&mut cloud, &mut fs, Crash::LoseAll)
        .await
        .expect_err("the cloud must not start on what a store that never syncs leaves");
    let refused = format!("{refused:#}");
    assert!(
        (refused.contains("hosted.redb") || refused.contains("buffer.redb"))
            && refused.contains("damaged"),
        "the refusal names the damaged file: {refused}"
    );
    assert_eq!(
        cloud.proc.exit_status().and_then(|s| s.code()),
        Some(69),
        "{refused}"
    );
    eprintln!(
        "fsync ignored: {} webhooks acknowledged, then the store refused to start",
        accepted.lock().len()
    );
    Ok(())
}

/// The smallest segment the cloud accepts (cloud/src/settings): a roll every few hundred
/// webhooks.
const SMALL_SEGMENTS: &str = "65536";

/// One 2xx answer: the message id, when the POST was sent and when its answer came.
struct Answered {
    id: String,
    sent: Instant,
    answered: Instant,
}

/// As `crash_loop::sender`, keeping when each accepted POST was sent and answered.
fn timed_sender(
    base: String,
    w: u64,
    answered: Arc<Mutex<Vec<Answered>>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    sender_with(base, w, stop, move |id, sent| {
        answered.lock().push(Answered {
            id,
            sent,
            answered: Instant::now(),
        })
    })
}

/// Segments the running cloud has started on the spare since it started.
async fn recycled(cloud: &Cloud) -> anyhow::Result<u64> {
    const NAME: &str = "webhook_connect_store_log_segments_recycled_total";
    let text = cloud
        .http
        .get(format!("{}/metrics", cloud.base))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .filter(|l| l.starts_with(NAME))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| anyhow::anyhow!("no {NAME} in /metrics"))
}

/// Polls the counter until it is above `seen`; the counter it then read.
async fn until_recycled(cloud: &Cloud, seen: u64, what: &str) -> anyhow::Result<u64> {
    let wait = async {
        loop {
            if let Ok(n) = recycled(cloud).await
                && n > seen
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(timing::scaled(Duration::from_secs(60)), wait)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: no log segment was started on the spare"))
}

/// One power cut: when the power went off, and when the cloud was gone.
struct Cut {
    off: Instant,
    killed: Instant,
}

/// No message is delivered again after a cut once its settlement was surely durable before
/// it: delivered, then a POST sent `margin` later (the connector's ACK has reached the cloud
/// by then) was answered 2xx in the same life of the cloud (the settlement is written with
/// the next durable write, at the latest that POST's). A legitimate redelivery is of a message
/// whose ACK was not yet durable: delivered less than `margin` before the cut.
fn nothing_settled_comes_back(
    requests: &[RecordedRequest],
    answered: &[Answered],
    cuts: &[Cut],
    margin: Duration,
) -> anyhow::Result<()> {
    let mut deliveries: HashMap<&str, Vec<Instant>> = HashMap::new();
    for r in requests {
        if let Some(id) = r.header("x-webhook-message-id") {
            deliveries.entry(id).or_default().push(r.received_at);
        }
    }
    // For each cut, the latest sending time of a POST answered before the power went off.
    let latest_sent: Vec<Option<Instant>> = cuts
        .iter()
        .map(|c| {
            answered
                .iter()
                .filter(|a| a.answered < c.off)
                .map(|a| a.sent)
                .max()
        })
        .collect();
    let (mut back, mut proven) = (Vec::new(), 0);
    for (id, times) in &deliveries {
        for &delivered in times {
            // The first cut after this delivery; the life it was delivered in ends there.
            let Some(k) = cuts.iter().position(|c| c.off > delivered) else {
                continue;
            };
            if latest_sent[k].is_none_or(|sent| sent < delivered + margin) {
                continue;
            }
            proven += 1;
            if times.iter().any(|&t| t > cuts[k].killed) {
                back.push(*id);
            }
            break;
        }
    }
    // Messages delivered before the last cut: the ones the check could apply to.
    let last_off = cuts.last().map(|c| c.off);
    let before_a_cut = deliveries
        .values()
        .filter(|t| t.iter().any(|&t| last_off.is_some_and(|off| t < off)))
        .count();
    eprintln!(
        "{proven} of the {before_a_cut} messages delivered before the last cut were surely settled before one"
    );
    // A check that applies to almost nothing proves nothing.
    anyhow::ensure!(
        proven * 4 >= before_a_cut,
        "only {proven} of {before_a_cut} messages delivered before a cut were surely settled before it: lives too short for the margin"
    );
    anyhow::ensure!(
        back.is_empty(),
        "{} settled messages delivered again after a power cut (an earlier life of a recycled segment came back?): {:?}",
        back.len(),
        back.iter().take(10).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn power_cuts_while_drained_segments_are_recycled_lose_nothing_and_resurrect_nothing()
-> anyhow::Result<()> {
    const CUTS_THAT_LOST_WRITES: usize = 3;
    const CUTS_AFTER_REUSE: usize = 3;
    const MAX_CUTS: usize = 40;
    const LIFE: usize = 400;
    let mut fs = PowerLossFs::mount(Durability::Honest)?;
    let mut cloud = cloud_with(&fs, &[("WEBHOOK_CONNECT_SEGMENT_BYTES", SMALL_SEGMENTS)]).await?;
    let target = RecordingTarget::start().await?;
    let conn = connector_flags(&cloud, "power", TOKEN, "websocket", &target.url, &[])?;
    let mut moments = Moments::new();
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let stop = CancellationToken::new();
    let senders: Vec<_> = (0..8)
        .map(|w| timed_sender(cloud.base.clone(), w, answered.clone(), stop.clone()))
        .collect();
    let mut cuts: Vec<Cut> = Vec::new();
    let (mut lost, mut after_reuse, mut reused_at_random) = (0, 0, 0);
    while lost < CUTS_THAT_LOST_WRITES || after_reuse < CUTS_AFTER_REUSE {
        anyhow::ensure!(
            cuts.len() < MAX_CUTS,
            "{MAX_CUTS} power cuts: {lost} caught unsynced writes, {after_reuse} came right after a reuse"
        );
        let round = cuts.len();
        let before = answered.lock().len();
        // Enough for a life of the cloud to outlast the margin below many times over.
        wait_until(
            timing::scaled(Duration::from_secs(60)),
            &format!("{LIFE} more webhooks accepted before power cut {round}"),
            || async { answered.lock().len() >= before + LIFE },
        )
        .await?;
        let delivered = target.count();
        wait_until(
            timing::scaled(Duration::from_secs(60)),
            &format!("deliveries moving before power cut {round}"),
            || async { target.count() > delivered },
        )
        .await?;
        // As `power_cut`, noting when the power went off and when the cloud was gone.
        let off = if round % 2 == 1 {
            // The worst moment for a recycled segment: its new header is durable and nothing
            // after it, so its earlier life's records start right where the next would.
            fs.power_off_after_first_sync_of_renamed(".spare");
            wait_until(
                timing::scaled(Duration::from_secs(60)),
                &format!("a segment started on the spare before power cut {round}"),
                || async { fs.powered_off() },
            )
            .await?;
            after_reuse += 1;
            Instant::now()
        } else {
            // A random moment in a life that has started a segment on the spare (the active
            // segment, or one before it, had an earlier life).
            until_recycled(&cloud, 0, &format!("before power cut {round}")).await?;
            tokio::time::sleep(Duration::from_millis(moments.below(50))).await;
            reused_at_random += recycled(&cloud).await?;
            let off = Instant::now();
            fs.power_off();
            off
        };
        let how = moments.crash();
        cloud.kill9();
        cuts.push(Cut {
            off,
            killed: Instant::now(),
        });
        let report = fs.crash(how)?;
        eprintln!("power cut {round} ({how:?}): {report:?}");
        cloud.restart().await?;
        lost += usize::from(report.bytes_lost > 0);
    }
    // Segments are reused after restarts too, not only in the first life.
    let seen = recycled(&cloud).await?;
    until_recycled(&cloud, seen, "after the last power cut").await?;
    stop.cancel();
    for s in senders {
        s.await?;
    }
    eprintln!(
        "{} cuts, {after_reuse} right after a segment was started on the spare; {reused_at_random} segments started on the spare in the lives cut at random moments",
        cuts.len()
    );

    let accepted: Mutex<Vec<String>> =
        Mutex::new(answered.lock().iter().map(|a| a.id.clone()).collect());
    verify_delivered(&accepted, &target, &conn, cuts.len()).await?;
    nothing_settled_comes_back(
        &target.requests(),
        &answered.lock(),
        &cuts,
        timing::scaled(Duration::from_millis(300)),
    )
}
