//! docs/OPERATIONS.md "TLS": the documented nginx and Caddy configurations, read from the doc
//! as written, run by the real servers (Debian's `nginx` 1.22 and `caddy` 2.6) in front of the
//! real cloud, with a certificate of a CA made for the test. Only the listen port, the
//! certificate paths, Caddy's site address (plus its `tls` line and global options that keep
//! it off ports 80 and 2019) and the upstream port are replaced, each of which must occur
//! exactly once, so the doc cannot drift from what is tested. Through each proxy:
//! - webhooks are ingested (2xx) and reach the target byte for byte through the real
//!   `webhook-connect` over WebSocket, SSE and long-poll (`--ca-cert-path` trusting the test CA),
//!   each message ACKed;
//! - `ip_whitelist` sees the real client address (the cloud trusts the proxy per the doc's
//!   `WEBHOOK_CONNECT_TRUSTED_PROXIES`), and a client cannot forge it with its own header;
//! - idle streams outlive several heartbeat intervals: an SSE stream and a WebSocket each
//!   receive three heartbeats on one connection, and a long-poll held for 7 s answers 204.
//!
//! The checks can fail: `broken_configurations_fail_the_checks` runs them against nginx
//! variants without the Upgrade headers, without `X-Forwarded-For`, and with a read timeout
//! shorter than the heartbeat, and Caddy with such a timeout, and requires each to fail.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use connect_testkit::cloud::{Cloud, connect_hook};
use connect_testkit::{
    ChildProcess, ProxyKind, RecordingTarget, ReverseProxy, TestPki, timing, wait_until,
    workspace_bin,
};

const OPERATIONS: &str = include_str!("../../../../docs/OPERATIONS.md");
const TOKEN: &str = "reverse-proxy-channel-token";
const PROTOCOLS: [&str; 3] = ["websocket", "sse", "long_poll"];
/// The client `ip_whitelist` allows; requests from [`OTHER`] must be refused.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// The harness cloud's heartbeat interval (`Cloud` starts it with 5 s, the minimum).
const HEARTBEAT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(30);
/// How long three heartbeats may take on one stream (15 s nominal), scaled for a slow machine.
fn window() -> Duration {
    timing::scaled(HEARTBEAT * 5)
}
/// The channel of the idle-stream checks (no message is ever sent to it).
const IDLE: &str = "idle";

/// The fenced block tagged `lang` in OPERATIONS.md (there must be exactly one).
fn doc_block(lang: &str) -> Result<String> {
    let open = format!("```{lang}\n");
    let mut found = OPERATIONS.match_indices(&open);
    let (start, _) = found
        .next()
        .with_context(|| format!("no ```{lang} block in OPERATIONS.md"))?;
    ensure!(
        found.next().is_none(),
        "more than one ```{lang} block in OPERATIONS.md"
    );
    let body = &OPERATIONS[start + open.len()..];
    let end = body.find("\n```").context("unterminated block")?;
    Ok(body[..=end].to_owned())
}

/// The value the doc gives the cloud for `var` (`VAR=value` in the TLS section's prose).
fn doc_setting(var: &str) -> Result<String> {
    let tls = &OPERATIONS[OPERATIONS.find("## TLS").context("no TLS section")?..];
    let at = tls
        .find(&format!("{var}="))
        .with_context(|| format!("the TLS section sets no {var}"))?;
    let value = &tls[at + var.len() + 1..];
    let end = value
        .find(|c: char| c.is_whitespace() || c == '`')
        .context("unterminated setting")?;
    Ok(value[..end].to_owned())
}

fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    let n = text.matches(from).count();
    ensure!(
        n == 1,
        "expected exactly one {from:?} in the documented configuration, found {n}:\n{text}"
    );
    Ok(text.replacen(from, to, 1))
}

/// A change to the documented configuration (the broken variants).
type Edit = fn(&str) -> Result<String>;

fn as_written(text: &str) -> Result<String> {
    Ok(text.to_owned())
}

/// The cloud, the proxy in front of it and the CA the proxy's certificate comes from.
struct Site {
    cloud: Cloud,
    proxy: ReverseProxy,
    pki: TestPki,
    /// `https://localhost:<proxy port>`
    url: String,
}

impl Site {
    async fn start(kind: ProxyKind, edit: Edit) -> Result<Self> {
        let mut hooks = serde_json::Map::new();
        for p in PROTOCOLS {
            let mut hook = connect_hook(&channel(p), TOKEN, json!({}));
            hook["data_type"] = json!("blob");
            hooks.insert(format!("to-{p}"), hook);
        }
        // The idle streams get a channel of their own: on a delivery channel they would
        // compete with the connector for its messages.
        hooks.insert("idle".into(), connect_hook(IDLE, TOKEN, json!({})));
        let mut guarded = connect_hook("guarded", TOKEN, json!({}));
        guarded["ip_whitelist"] = json!([CLIENT.to_string()]);
        hooks.insert("guarded".into(), guarded);
        let trusted = doc_setting("WEBHOOK_CONNECT_TRUSTED_PROXIES")?;
        let cloud = Cloud::start_with(
            Value::Object(hooks),
            &[("WEBHOOK_CONNECT_TRUSTED_PROXIES", &trusted)],
        )
        .await?;
        let pki = TestPki::generate()?;
        let port = connect_testkit::free_port();
        let upstream = format!("127.0.0.1:{}", cloud.port);
        let (cert, key) = (
            pki.server_cert.to_str().context("utf-8 path")?,
            pki.server_key.to_str().context("utf-8 path")?,
        );
        let proxy = match kind {
            ProxyKind::Nginx => {
                let conf = doc_block("nginx")?;
                let conf = replace_once(&conf, "listen 443 ", &format!("listen {port} "))?;
                let conf = replace_once(&conf, "/etc/ssl/relay.crt", cert)?;
                let conf = replace_once(&conf, "/etc/ssl/relay.key", key)?;
                let conf = replace_once(&conf, "127.0.0.1:8000", &upstream)?;
                ReverseProxy::nginx(&edit(&conf)?, port).await?
            }
            ProxyKind::Caddy => {
                let conf = doc_block("caddyfile")?;
                let conf = replace_once(
                    &conf,
                    "relay.example.com {",
                    &format!("localhost:{port} {{\n    tls {cert} {key}"),
                )?;
                let conf = replace_once(&conf, "127.0.0.1:8000", &upstream)?;
                // Keep the admin API (:2019), the HTTP redirect (:80) and HTTP/3 (UDP) off:
                // parallel tests would fight over them.
                let globals = "{\n\tadmin off\n\tauto_https disable_redirects\n\
                               \tservers {\n\t\tprotocols h1 h2\n\t}\n}\n";
                ReverseProxy::caddy(&format!("{globals}{}", edit(&conf)?), port).await?
            }
        };
        Ok(Self {
            cloud,
            proxy,
            url: format!("https://localhost:{port}"),
            pki,
        })
    }

    /// An HTTPS client trusting the test CA, connecting from `from`.
    fn client(&self, from: Ipv4Addr) -> Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.pki.ca)?)?;
        Ok(reqwest::Client::builder()
            .add_root_certificate(ca)
            .local_address(IpAddr::V4(from))
            .timeout(timing::scaled(WAIT))
            .build()?)
    }

    fn context(&self) -> String {
        format!(
            "{:?} log:\n{}\ncloud log (tail):\n{}",
            self.proxy.kind,
            self.proxy.logs(),
            tail(&self.cloud.logs())
        )
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn channel(protocol: &str) -> String {
    format!("ch-{}", protocol.replace('_', "-"))
}

/// Bodies no proxy may alter: 1 MiB of pseudo-random bytes (not UTF-8, beyond any default
/// buffer), and a short one with CR, LF, NUL and 0xFF.
fn bodies(seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let big = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect();
    vec![big, b"line one\r\nline two\n\0\xff end".to_vec()]
}

fn connector(site: &Site, protocol: &str, target: &str) -> Result<ChildProcess> {
    let ca = site.pki.ca.to_str().context("utf-8 path")?;
    let ch = channel(protocol);
    ChildProcess::spawn(
        workspace_bin("webhook-connect")?,
        &[
            "--cloud-url",
            &site.url,
            "--channel",
            &ch,
            "--protocol",
            protocol,
            "--target-url",
            target,
            "--ca-cert-path",
            ca,
            "--reconnect-delay",
            "0.2",
            "--max-reconnect-delay",
            "1",
            "--log-level",
            "DEBUG",
        ],
        &[("CONNECTOR_TOKEN", TOKEN)],
        "connector",
    )
}

/// Webhooks in through the proxy, out through the real connector over `protocol` through the
/// proxy: every body arrives unchanged and every message is ACKed.
async fn deliver(site: &Site, protocol: &str) -> Result<()> {
    let target = RecordingTarget::start().await?;
    let conn = connector(site, protocol, &target.url)?;
    let http = site.client(CLIENT)?;
    let sent = bodies(protocol.len() as u64);
    for body in &sent {
        let r = http
            .post(format!("{}/webhook/to-{protocol}", site.url))
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await?;
        let status = r.status();
        ensure!(
            status.is_success(),
            "ingest through the proxy answered {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let got = target
        .wait_for_count(sent.len(), timing::scaled(WAIT))
        .await
        .with_context(|| {
            format!(
                "{protocol}: connector stderr:\n{}\n{}",
                tail(&conn.stderr_text()),
                site.context()
            )
        })?;
    let mut got: Vec<Vec<u8>> = got.into_iter().map(|r| r.body.to_vec()).collect();
    let mut want = sent;
    got.sort();
    want.sort();
    ensure!(
        got == want,
        "{protocol}: the bodies at the target differ from those sent"
    );
    let ch = channel(protocol);
    wait_until(
        timing::scaled(WAIT),
        &format!("{ch}: every message ACKed"),
        || async {
            site.cloud.stats(&ch).await.is_ok_and(|s| {
                s["messages_acked"] == 2
                    && s["messages_queued"] == 0
                    && s["messages_in_flight"] == 0
            })
        },
    )
    .await
}

/// `ip_whitelist` allows [`CLIENT`] only: the cloud sees the address of the client, not the
/// proxy's, and not one a client claims itself.
async fn client_ip(site: &Site) -> Result<()> {
    let post = |from: Ipv4Addr, forged: Option<&'static str>| async move {
        let mut req = site
            .client(from)?
            .post(format!("{}/webhook/guarded", site.url))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(xff) = forged {
            req = req.header("x-forwarded-for", xff);
        }
        anyhow::Ok(req.send().await?.status().as_u16())
    };
    let allowed = post(CLIENT, None).await?;
    ensure!(allowed == 200, "the allowed client got {allowed}");
    let other = post(OTHER, None).await?;
    ensure!(other == 401, "another client got {other}");
    let forged = post(OTHER, Some("127.0.0.2")).await?;
    ensure!(
        forged == 401,
        "a client naming the allowed address itself got {forged}"
    );
    Ok(())
}

/// One SSE stream through the proxy receives three heartbeats (15 s idle, no message).
async fn sse_outlives_heartbeats(site: &Site) -> Result<()> {
    let r = site
        .client(CLIENT)?
        .get(format!("{}/connect/stream/{IDLE}/sse", site.url))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    ensure!(r.status() == 200, "SSE answered {}", r.status());
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let counted = tokio::time::timeout(window(), async {
        while text.matches("event: heartbeat").count() < 3 {
            match stream.next().await {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk?)),
                None => bail!("the stream ended"),
            }
        }
        anyhow::Ok(())
    })
    .await;
    match counted {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.context(format!("SSE after {text:?}"))),
        Err(_) => bail!("fewer than 3 heartbeats in {:?}: {text:?}", window()),
    }
}

/// One WebSocket (`wss://`) through the proxy receives three heartbeat frames, echoing each.
async fn ws_outlives_heartbeats(site: &Site) -> Result<()> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&site.pki.ca)?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", site.proxy.port)).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let url = format!("wss://localhost:{}/connect/stream/{IDLE}", site.proxy.port);
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    req.headers_mut()
        .insert("x-webhook-connect-version", "2".parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .context("the WebSocket upgrade through the proxy")?;
    let mut beats = 0;
    let counted = tokio::time::timeout(window(), async {
        while beats < 3 {
            let frame = ws.next().await.context("the WebSocket ended")??;
            if let Message::Text(t) = &frame {
                let v: Value = serde_json::from_str(t)?;
                if v["type"] == "heartbeat" {
                    beats += 1;
                    ws.send(Message::text(
                        json!({"type": "heartbeat", "timestamp": v["timestamp"]}).to_string(),
                    ))
                    .await?;
                }
            } else if let Message::Close(c) = &frame {
                bail!("closed: {c:?}");
            }
        }
        anyhow::Ok(())
    })
    .await;
    match counted {
        Ok(r) => r.with_context(|| format!("WebSocket after {beats} heartbeats")),
        Err(_) => bail!("{beats} heartbeats in {:?}", window()),
    }
}

/// A long-poll held 7 s (longer than the broken variants' read timeout) answers 204.
async fn long_poll_held(site: &Site) -> Result<()> {
    let r = site
        .client(CLIENT)?
        .get(format!("{}/connect/stream/{IDLE}/poll?timeout=7", site.url))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-version", "2")
        .send()
        .await?;
    ensure!(
        r.status() == 204,
        "a held long-poll answered {}",
        r.status()
    );
    Ok(())
}

async fn idle_streams(site: &Site) -> Result<()> {
    let (sse, ws, poll) = tokio::join!(
        sse_outlives_heartbeats(site),
        ws_outlives_heartbeats(site),
        long_poll_held(site)
    );
    sse.and(ws).and(poll)
}

async fn everything_through(kind: ProxyKind) -> Result<()> {
    let site = Site::start(kind, as_written).await?;
    let run = async {
        client_ip(&site).await?;
        let (ws, sse, poll, idle) = tokio::join!(
            deliver(&site, "websocket"),
            deliver(&site, "sse"),
            deliver(&site, "long_poll"),
            idle_streams(&site)
        );
        ws.and(sse).and(poll).and(idle)
    };
    run.await.with_context(|| site.context())
}

#[tokio::test]
async fn the_documented_nginx_configuration_carries_every_protocol() -> Result<()> {
    everything_through(ProxyKind::Nginx).await
}

#[tokio::test]
async fn the_documented_caddy_configuration_carries_every_protocol() -> Result<()> {
    everything_through(ProxyKind::Caddy).await
}

fn without_upgrade(conf: &str) -> Result<String> {
    let conf = replace_once(
        conf,
        "proxy_set_header Upgrade $http_upgrade;",
        "# (no Upgrade)",
    )?;
    replace_once(
        &conf,
        "proxy_set_header Connection $connection_upgrade;",
        "# (no Connection)",
    )
}

fn without_forwarded_for(conf: &str) -> Result<String> {
    replace_once(
        conf,
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "# (no X-Forwarded-For)",
    )
}

fn nginx_short_timeout(conf: &str) -> Result<String> {
    replace_once(conf, "proxy_read_timeout 3600s;", "proxy_read_timeout 2s;")
}

fn caddy_short_timeout(conf: &str) -> Result<String> {
    replace_once(conf, "read_timeout 1h", "read_timeout 2s")
}

/// A stream cut by the proxy: SSE ended before 3 heartbeats, the long-poll answered by the
/// proxy with a 5xx instead of the cloud's 204.
fn cut(sse: Result<()>, poll: Result<()>, proxy: &str) -> Result<()> {
    ensure!(
        sse.is_err_and(|e| !format!("{e:#}").contains("fewer than 3 heartbeats")),
        "SSE through {proxy} with a 2 s read timeout was not cut"
    );
    ensure!(
        poll.is_err_and(|e| e.to_string().starts_with("a held long-poll answered 5")),
        "long-poll through {proxy} with a 2 s read timeout was not cut"
    );
    Ok(())
}

/// Each check above fails against a configuration that lacks what it checks.
#[tokio::test]
async fn broken_configurations_fail_the_checks() -> Result<()> {
    let no_upgrade = async {
        let site = Site::start(ProxyKind::Nginx, without_upgrade).await?;
        let e = ws_outlives_heartbeats(&site).await.err();
        eprintln!("no Upgrade headers, WebSocket: {e:?}");
        ensure!(
            e.is_some_and(|e| format!("{e:#}").contains("upgrade")),
            "WebSocket through nginx without the Upgrade headers"
        );
        anyhow::Ok(())
    };
    let no_xff = async {
        let site = Site::start(ProxyKind::Nginx, without_forwarded_for).await?;
        let e = client_ip(&site).await.err();
        eprintln!("no X-Forwarded-For, client address: {e:?}");
        ensure!(
            e.is_some_and(|e| e.to_string() == "the allowed client got 401"),
            "client address through nginx without X-Forwarded-For"
        );
        anyhow::Ok(())
    };
    let nginx_timeout = async {
        let site = Site::start(ProxyKind::Nginx, nginx_short_timeout).await?;
        let (sse, poll) = tokio::join!(sse_outlives_heartbeats(&site), long_poll_held(&site));
        eprintln!("nginx with a 2 s read timeout: SSE {sse:?}, long-poll {poll:?}");
        cut(sse, poll, "nginx")?;
        anyhow::Ok(())
    };
    let caddy_timeout = async {
        let site = Site::start(ProxyKind::Caddy, caddy_short_timeout).await?;
        let (sse, poll) = tokio::join!(sse_outlives_heartbeats(&site), long_poll_held(&site));
        eprintln!("Caddy with a 2 s read timeout: SSE {sse:?}, long-poll {poll:?}");
        cut(sse, poll, "Caddy")?;
        anyhow::Ok(())
    };
    let (a, b, c, d) = tokio::join!(no_upgrade, no_xff, nginx_timeout, caddy_timeout);
    a.and(b).and(c).and(d)
}

#[test]
fn the_documented_configurations_are_the_ones_tested() -> Result<()> {
    // The substitutions the tests make must each find their one place in the doc.
    let nginx = doc_block("nginx")?;
    for s in [
        "listen 443 ",
        "/etc/ssl/relay.crt",
        "/etc/ssl/relay.key",
        "127.0.0.1:8000",
    ] {
        replace_once(&nginx, s, "")?;
    }
    let caddy = doc_block("caddyfile")?;
    for s in ["relay.example.com {", "127.0.0.1:8000"] {
        replace_once(&caddy, s, "")?;
    }
    assert_eq!(doc_setting("WEBHOOK_CONNECT_TRUSTED_PROXIES")?, "127.0.0.1");
    Ok(())
}
