//! Exercises every piece of the test kit for real: processes, sockets, redis-server and etcd.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use connect_testkit::{
    ChildProcess, EtcdServer, RecordingTarget, RedisServer, TcpProxy, free_port, wait_for,
    wait_until, within, workspace_bin,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod secret_service;

const STEP: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn wait_until_fails_with_its_description_after_the_timeout() {
    let error = wait_until(Duration::from_secs(3), "the moon to turn blue", || async {
        false
    })
    .await
    .expect_err("must time out");
    assert!(
        error.to_string().contains("the moon to turn blue"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_for_returns_the_first_some() {
    let mut calls = 0;
    let value = wait_for(Duration::from_secs(1), "third call", || {
        calls += 1;
        let seen = calls;
        async move { (seen == 3).then_some(seen * 10) }
    })
    .await
    .unwrap();
    assert_eq!(value, 30);
}

#[tokio::test(start_paused = true)]
async fn wait_until_cuts_off_a_hanging_probe() {
    let started = tokio::time::Instant::now();
    let result = wait_until(Duration::from_secs(2), "a hanging probe", || {
        std::future::pending::<bool>()
    })
    .await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn within_times_out_with_its_description() {
    let error = within(
        Duration::from_secs(1),
        "a slow step",
        std::future::pending::<()>(),
    )
    .await
    .expect_err("must time out");
    assert!(error.to_string().contains("a slow step"), "{error}");
    assert_eq!(within(STEP, "ready", async { 7 }).await.unwrap(), 7);
}

#[test]
fn free_port_can_be_bound() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn kill9_stops_a_child_at_once() {
    let mut child = ChildProcess::spawn("sleep", &["30"], &[], "sleep").unwrap();
    assert!(child.is_running());
    let started = Instant::now();
    child.kill9();
    assert!(!child.is_running());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn terminate_sends_sigterm_and_reports_the_exit_code() {
    let mut plain = ChildProcess::spawn("sleep", &["30"], &[], "sleep").unwrap();
    // `sleep` dies from SIGTERM: no exit code.
    assert_eq!(plain.terminate(Duration::from_secs(5)), None);
    assert!(!plain.is_running());

    let script = "trap 'echo bye; exit 3' TERM; echo up; while true; do sleep 0.05; done";
    let mut trapping = ChildProcess::spawn("sh", &["-c", script], &[], "trap").unwrap();
    wait_std(|| trapping.stdout_text().contains("up"));
    assert_eq!(trapping.terminate(Duration::from_secs(5)), Some(3));
    assert_eq!(trapping.stdout_text(), "up\nbye\n");
}

#[test]
fn terminate_falls_back_to_sigkill_after_the_grace() {
    let script = "trap '' TERM; echo up; while true; do sleep 0.05; done";
    let mut stubborn = ChildProcess::spawn("sh", &["-c", script], &[], "stubborn").unwrap();
    wait_std(|| stubborn.stdout_text().contains("up"));
    let started = Instant::now();
    assert_eq!(stubborn.terminate(Duration::from_millis(300)), None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!stubborn.is_running());
}

#[test]
fn child_output_is_captured_and_env_passed() {
    let script = "echo \"out $GREETING\"; echo err >&2";
    let mut child =
        ChildProcess::spawn("sh", &["-c", script], &[("GREETING", "hi")], "echo").unwrap();
    wait_std(|| !child.is_running());
    assert_eq!(child.stdout_text(), "out hi\n");
    assert_eq!(child.stderr_text(), "err\n");
}

#[test]
fn dropping_a_child_kills_it() {
    let child = ChildProcess::spawn("sleep", &["30"], &[], "sleep").unwrap();
    let proc_dir = format!("/proc/{}", child.pid());
    assert!(std::path::Path::new(&proc_dir).exists());
    drop(child);
    assert!(!std::path::Path::new(&proc_dir).exists());
}

#[test]
fn workspace_bin_explains_how_to_build_a_missing_binary() {
    let error = workspace_bin("no-such-binary-here").unwrap_err();
    assert!(
        error.to_string().contains("cargo build --workspace"),
        "{error}"
    );
}

#[tokio::test]
async fn recording_target_keeps_the_exact_request() -> Result<()> {
    let target = RecordingTarget::start().await?;
    let body: &[u8] = b"{\"a\":1}\x00\xff\r\n tail";
    let mut request = format!(
        "POST /hooks/github?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-Hub-Signature: sha256=abc\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let response = within(STEP, "POST", http(target.addr, &request)).await??;
    ensure!(response.starts_with("HTTP/1.1 200"), "{response}");
    ensure!(response.ends_with("\r\n\r\nok"), "{response}");

    let recorded = target.wait_for_count(1, STEP).await?;
    let request = &recorded[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/github");
    assert_eq!(request.query.as_deref(), Some("x=1&y=%20"));
    assert_eq!(request.body.as_ref(), body);
    assert_eq!(request.header("x-hub-signature"), Some("sha256=abc"));
    assert_eq!(request.header("CONTENT-TYPE"), Some("application/json"));
    let names: Vec<&str> = request
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "host",
            "x-hub-signature",
            "content-type",
            "content-length",
            "connection"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn recording_target_decodes_a_chunked_body() -> Result<()> {
    let target = RecordingTarget::start().await?;
    let request = b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                    Connection: close\r\n\r\n3\r\nabc\r\n2\r\n\x00\n\r\n0\r\n\r\n";
    within(STEP, "PUT", http(target.addr, request)).await??;
    let recorded = target.wait_for_count(1, STEP).await?;
    assert_eq!(recorded[0].body.as_ref(), b"abc\x00\n");
    Ok(())
}

#[tokio::test]
async fn recording_target_follows_its_script_then_the_default() -> Result<()> {
    let target = RecordingTarget::start().await?;
    target.script(&[503, 503, 429]);
    target.set_headers(&[("Retry-After", "2")]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = within(STEP, "GET", get(target.addr, "/")).await??;
        statuses.push(response[9..12].to_owned());
        ensure!(
            response.to_lowercase().contains("retry-after: 2"),
            "{response}"
        );
    }
    assert_eq!(statuses, ["503", "503", "429", "200", "200"]);

    target.set_status(500);
    target.clear();
    assert_eq!(target.count(), 0);
    let response = within(STEP, "GET", get(target.addr, "/")).await??;
    ensure!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert_eq!(target.count(), 1);

    let addr = target.addr;
    within(STEP, "stop", target.stop()).await?;
    ensure!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after stop"
    );
    Ok(())
}

#[tokio::test]
async fn recording_target_delays_its_answer_and_reports_a_short_count() -> Result<()> {
    let target = RecordingTarget::start().await?;
    target.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    within(STEP, "GET", get(target.addr, "/slow")).await??;
    ensure!(started.elapsed() >= Duration::from_millis(300));

    let error = target
        .wait_for_count(2, Duration::from_millis(100))
        .await
        .expect_err("only one request was sent");
    ensure!(format!("{error:#}").contains("got 1"), "{error:#}");
    Ok(())
}

#[tokio::test]
async fn tcp_proxy_relays_until_cut_and_again_after_restore() -> Result<()> {
    let echo = EchoServer::start().await?;
    let proxy = TcpProxy::start(echo.addr).await?;

    let mut first = within(STEP, "connect", TcpStream::connect(proxy.addr)).await??;
    assert_eq!(
        within(STEP, "echo", echo_once(&mut first, b"ping")).await??,
        b"ping"
    );
    wait_until(STEP, "one live connection", || async {
        proxy.connections() == 1
    })
    .await?;

    proxy.cut();
    within(STEP, "the cut to reach the client", closed(&mut first)).await?;
    wait_until(STEP, "no live connection", || async {
        proxy.connections() == 0
    })
    .await?;
    // While cut, a new connection is dropped before anything is relayed.
    if let Ok(mut refused) = TcpStream::connect(proxy.addr).await {
        let _ = refused.write_all(b"lost").await;
        within(STEP, "refusal", closed(&mut refused)).await?;
    }
    assert_eq!(proxy.connections(), 0);

    proxy.restore();
    let mut second = within(STEP, "reconnect", TcpStream::connect(proxy.addr)).await??;
    assert_eq!(
        within(STEP, "echo", echo_once(&mut second, b"pong")).await??,
        b"pong"
    );
    Ok(())
}

#[tokio::test]
async fn redis_server_answers_ping_and_survives_a_restart() -> Result<()> {
    require("redis-server")?;
    let mut redis =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await?;
    assert_eq!(redis.url, format!("redis://127.0.0.1:{}", redis.port));
    let addr: SocketAddr = ([127, 0, 0, 1], redis.port).into();
    assert_eq!(resp(addr, &["PING"]).await?, "+PONG\r\n");
    assert_eq!(resp(addr, &["SET", "k", "v"]).await?, "+OK\r\n");

    redis.kill9();
    ensure!(
        TcpStream::connect(addr).await.is_err(),
        "redis still answers after kill9"
    );
    within(Duration::from_secs(20), "redis restart", redis.restart()).await??;
    assert_eq!(resp(addr, &["GET", "k"]).await?, "$1\r\nv\r\n");
    Ok(())
}

#[tokio::test]
async fn etcd_answers_version_and_survives_a_restart() -> Result<()> {
    require("etcd")?;
    let mut etcd = within(Duration::from_secs(20), "etcd start", EtcdServer::start()).await??;
    let addr: SocketAddr = etcd.endpoint.trim_start_matches("http://").parse()?;
    let version = within(STEP, "GET /version", get(addr, "/version")).await??;
    ensure!(version.starts_with("HTTP/1.1 200"), "{version}");
    ensure!(version.contains("etcdserver"), "{version}");

    etcd.kill9();
    ensure!(
        TcpStream::connect(addr).await.is_err(),
        "etcd still answers after kill9"
    );
    within(Duration::from_secs(20), "etcd restart", etcd.restart()).await??;
    let version = within(STEP, "GET /version", get(addr, "/version")).await??;
    ensure!(version.contains("etcdserver"), "{version}");
    Ok(())
}

/// The tool must be on PATH: a missing one fails the test (in CI and locally alike) instead of
/// passing it unseen.
fn require(program: &str) -> Result<()> {
    let found = std::process::Command::new("which")
        .arg(program)
        .output()
        .is_ok_and(|output| output.status.success());
    ensure!(
        found,
        "{program} is not installed (apt-get install -y redis-server etcd-server); this test needs it"
    );
    Ok(())
}

/// Polls a synchronous condition for up to 5 s.
fn wait_std(mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !probe() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {STEP:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http(addr, request.as_bytes()).await
}

/// Sends a raw HTTP/1.1 request (which must ask for `Connection: close`) and reads the answer.
async fn http(addr: SocketAddr, request: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Sends one RESP command and returns the first reply chunk.
async fn resp(addr: SocketAddr, args: &[&str]) -> Result<String> {
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    let mut stream = within(STEP, "connect to redis", TcpStream::connect(addr)).await??;
    stream.write_all(command.as_bytes()).await?;
    let mut reply = vec![0; 512];
    let n = within(STEP, "redis reply", stream.read(&mut reply)).await??;
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

async fn echo_once(stream: &mut TcpStream, message: &[u8]) -> Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

/// Resolves once the peer has closed or reset the connection.
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        let _ = n;
    }
}

struct EchoServer {
    addr: SocketAddr,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl EchoServer {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                connections.spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Ok(Self {
            addr,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        })
    }
}

mod powerloss {
    use std::io::{Read, Seek, SeekFrom, Write};

    use connect_testkit::{Crash, Durability, PowerLossFs};

    #[test]
    fn a_power_cut_keeps_synced_bytes_and_drops_the_rest_through_the_kernel() -> anyhow::Result<()>
    {
        let mut fs = PowerLossFs::mount(Durability::Honest)?;
        let path = fs.path().join("log");
        {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(b"synced;")?;
            f.sync_data()?;
            f.write_all(b"lost")?;
        }
        assert_eq!(
            std::fs::read(&path)?,
            b"synced;lost",
            "readers see unsynced bytes"
        );
        assert!(fs.unsynced_bytes() > 0);
        let report = fs.crash(Crash::LoseAll)?;
        assert_eq!(report.files_reverted, 1);
        assert_eq!(
            std::fs::read(&path)?,
            b"synced;",
            "the page cache is gone too"
        );
        // Overwrites in place go back to the synced bytes, size changes too.
        {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(b"SYN")?;
            f.set_len(2)?;
            let mut s = String::new();
            f.seek(SeekFrom::Start(0))?;
            f.read_to_string(&mut s)?;
            assert_eq!(s, "SY");
        }
        fs.crash(Crash::LoseAll)?;
        assert_eq!(std::fs::read(&path)?, b"synced;");
        Ok(())
    }

    #[test]
    fn a_torn_power_cut_keeps_a_prefix_of_the_last_write() -> anyhow::Result<()> {
        let mut fs = PowerLossFs::mount(Durability::Honest)?;
        let path = fs.path().join("log");
        {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&[b'a'; 4096])?;
            f.sync_all()?;
            f.write_all(&[b'b'; 4096])?;
            f.write_all(&[b'c'; 4096])?;
        }
        fs.crash(Crash::TornTail {
            keep_per_mille: 250,
        })?;
        let data = std::fs::read(&path)?;
        assert_eq!(data.len(), 4096 * 2 + 1024);
        assert!(data[8192..].iter().all(|b| *b == b'c'));
        Ok(())
    }

    #[test]
    fn with_fsync_ignored_nothing_written_survives() -> anyhow::Result<()> {
        let mut fs = PowerLossFs::mount(Durability::IgnoreFsync)?;
        let path = fs.path().join("dir").join("log");
        std::fs::create_dir(fs.path().join("dir"))?;
        {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(b"acknowledged")?;
            f.sync_all()?;
        }
        fs.crash(Crash::LoseAll)?;
        assert_eq!(
            std::fs::read(&path)?,
            b"",
            "the name survives, the bytes do not"
        );
        Ok(())
    }
}
