//! Fair dispatch, measured (README: "fair dispatch to the connection with the fewest leases";
//! PROTOCOL §6.2 rule 3: ties go to the connection served least recently).
//!
//! Three WebSocket connections on one channel acknowledge at different speeds: a slow one
//! (one ACK every fifth round), a medium one (one ACK every second round) and a fast one
//! (everything it holds, every round). Each round posts one webhook, notes which connection
//! got it and how many leases every connection held just before, applies that round's ACKs and
//! waits until the cloud's own per-connection lease counts (the admin channel view) equal the
//! test's. The counts the dispatcher saw are therefore known exactly, and the rule is checked
//! with a tolerance of zero leases at every dispatch: the receiver held the fewest leases, and
//! among equals it was served least recently. A dispatcher that prefers a connection (the
//! first eligible, round-robin, sticky) breaks it within a few rounds: the slow connection is
//! registered first on purpose.

use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::wait_until;

const TOKEN: &str = "fairness-channel-token";
const ROUNDS: usize = 90;
const MAX_IN_FLIGHT: usize = 8;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Link {
    name: &'static str,
    connection_id: String,
    sink: SplitSink<Ws, Message>,
    /// Message ids received and not yet acknowledged, oldest first.
    held: Vec<String>,
    /// ACK every `ack_every` rounds: one message (`ack_all` false) or all held ones.
    ack_every: usize,
    ack_all: bool,
    /// Round in which it last received a message.
    last_served: Option<usize>,
    received: usize,
}

/// Connects, reads the `connected` frame, and forwards every later `webhook` frame (heartbeats
/// and anything else are skipped) to `tx` tagged with `index`.
async fn connect(
    cloud: &Cloud,
    index: usize,
    tx: mpsc::UnboundedSender<(usize, Value)>,
) -> anyhow::Result<(String, SplitSink<Ws, Message>)> {
    let mut req = format!("{}/connect/stream/fair", cloud.ws_base()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    let (sink, mut stream) = ws.split();
    let connection_id = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str())?;
                if v["type"] == "connected" {
                    break v["connection_id"].as_str().unwrap_or_default().to_owned();
                }
            }
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!("no connected frame: {other:?}"),
        }
    };
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(t) = m
                && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                && v["type"] == "webhook"
                && tx.send((index, v)).is_err()
            {
                return;
            }
        }
    });
    Ok((connection_id, sink))
}

/// The cloud's lease count per connection id (the admin channel view).
async fn cloud_counts(cloud: &Cloud) -> anyhow::Result<Vec<(String, u64)>> {
    let detail = cloud.admin_get("/channels/fair").await?;
    Ok(detail["connected_clients"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["connection_id"].as_str().unwrap_or_default().to_owned(),
                c["in_flight_count"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_goes_to_the_connection_with_the_fewest_leases() -> anyhow::Result<()> {
    let cloud = Cloud::start(json!({
        "f": connect_hook("fair", TOKEN, json!({"max_in_flight": MAX_IN_FLIGHT}))
    }))
    .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut links = Vec::new();
    // Slow first: a dispatcher that prefers the first eligible connection overloads it.
    for (index, (name, ack_every, ack_all)) in
        [("slow", 5, false), ("medium", 2, false), ("fast", 1, true)]
            .into_iter()
            .enumerate()
    {
        let (connection_id, sink) = connect(&cloud, index, tx.clone()).await?;
        links.push(Link {
            name,
            connection_id,
            sink,
            held: Vec::new(),
            ack_every,
            ack_all,
            last_served: None,
            received: 0,
        });
    }
    drop(tx);
    wait_until(
        Duration::from_secs(10),
        "three connections registered",
        || async { cloud_counts(&cloud).await.is_ok_and(|c| c.len() == 3) },
    )
    .await?;

    let mut violations = Vec::new();
    let mut history = Vec::new();
    for round in 1..=ROUNDS {
        let before: Vec<usize> = links.iter().map(|l| l.held.len()).collect();
        assert_eq!(
            cloud.post("f", &format!(r#"{{"round":{round}}}"#)).await?.0,
            200
        );
        let (to, msg) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("round {round}: no connection got the webhook"))?
            .ok_or_else(|| anyhow::anyhow!("every connection closed"))?;
        let fewest = *before.iter().min().unwrap_or(&0);
        let ties: Vec<usize> = (0..links.len()).filter(|&i| before[i] == fewest).collect();
        let least_recent = ties.iter().map(|&i| links[i].last_served).min().flatten();
        let rule_holds = before[to] == fewest && links[to].last_served == least_recent;
        if !rule_holds {
            violations.push(format!(
                "round {round}: went to {} holding {:?} (last served {:?}); leases before {:?}, \
                 last served {:?}",
                links[to].name,
                before[to],
                links[to].last_served,
                before,
                links.iter().map(|l| l.last_served).collect::<Vec<_>>()
            ));
        }
        history.push((round, links[to].name, before.clone()));
        let id = msg["message_id"].as_str().unwrap_or_default().to_owned();
        links[to].held.push(id);
        links[to].last_served = Some(round);
        links[to].received += 1;

        // This round's ACKs, then wait until the cloud counts the same leases per connection.
        for l in &mut links {
            if round % l.ack_every != 0 || l.held.is_empty() {
                continue;
            }
            let n = if l.ack_all { l.held.len() } else { 1 };
            for id in l.held.drain(..n).collect::<Vec<_>>() {
                l.sink
                    .send(Message::Text(
                        json!({"type": "ack", "message_id": id}).to_string().into(),
                    ))
                    .await?;
            }
        }
        let expected: Vec<(String, u64)> = links
            .iter()
            .map(|l| (l.connection_id.clone(), l.held.len() as u64))
            .collect();
        wait_until(
            Duration::from_secs(20),
            &format!("round {round}: the cloud's lease counts {expected:?}"),
            || async {
                cloud_counts(&cloud).await.is_ok_and(|mut c| {
                    c.sort();
                    let mut e = expected.clone();
                    e.sort();
                    c == e
                })
            },
        )
        .await?;
        // Exactly one delivery per webhook: nothing else arrived meanwhile.
        if let Ok((other, m)) = rx.try_recv() {
            anyhow::bail!(
                "round {round}: a second delivery to {}: {m}",
                links[other].name
            );
        }
    }
    let received: Vec<(&str, usize)> = links.iter().map(|l| (l.name, l.received)).collect();
    eprintln!("deliveries per connection after {ROUNDS} rounds: {received:?}");
    assert!(
        violations.is_empty(),
        "the least-loaded rule was broken {} times in {ROUNDS} rounds:\n{}\nhistory: {history:?}",
        violations.len(),
        violations.join("\n")
    );
    // Every connection was used, and the slow one carried the least.
    assert!(links.iter().all(|l| l.received > 0), "{received:?}");
    assert!(
        links[2].received >= links[1].received && links[1].received > links[0].received,
        "{received:?}"
    );
    Ok(())
}
