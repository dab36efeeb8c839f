//! The closed-loop HTTP/1.1 load generator the cloud's benches share (`ingest`, `backlog`):
//! keep-alive connections, one request at a time each, latencies and per-second counts.

#![allow(dead_code)] // each bench uses a different part

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BODY_TARGET_LEN: usize = 1024;

pub static EPOCH: OnceLock<Instant> = OnceLock::new();

pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy)]
pub struct Config {
    pub seconds: f64,
    pub warmup: f64,
    pub concurrency: usize,
    pub e2e_rate: u64,
    pub server_threads: usize,
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.1 keep-alive client (no pipelining: one request, then its response).
// ---------------------------------------------------------------------------------------

pub struct HttpConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends a prebuilt request and returns the response status.
    pub async fn round_trip(&mut self, request: &[u8]) -> std::io::Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = &self.buf[..end];
                let status = parse_status(head)?;
                let len = content_length(head)
                    .ok_or_else(|| std::io::Error::other("response without Content-Length"))?;
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                self.buf.drain(..total);
                return Ok(status);
            }
            self.fill().await?;
        }
    }

    pub async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(8192);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_status(head: &[u8]) -> std::io::Result<u16> {
    // "HTTP/1.1 200 OK"
    head.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))
}

pub fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

pub fn post_request(addr: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A JSON body of about `BODY_TARGET_LEN` bytes.
pub fn json_body(t_ns: Option<u64>, seq: u64) -> Vec<u8> {
    let head = match t_ns {
        Some(t) => format!("{{\"t_ns\":{t},\"seq\":{seq},\"event\":\"bench.ping\",\"pad\":\""),
        None => format!("{{\"seq\":{seq},\"event\":\"bench.ping\",\"pad\":\""),
    };
    let pad = BODY_TARGET_LEN.saturating_sub(head.len() + 2);
    let mut s = head;
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------
// Closed-loop load: `concurrency` connections, each sending its next request on response.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
pub struct LoadResult {
    /// 2xx answers in the measured window.
    pub ok: u64,
    /// 2xx answers including the warm-up.
    pub ok_total: u64,
    pub non_2xx: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies (ns) of measured 2xx requests.
    pub lat: Vec<u64>,
    /// 2xx answers per second of the measured window.
    pub per_second: Vec<u64>,
}

pub fn run_load(addr: SocketAddr, path: &str, cfg: Config) -> LoadResult {
    run_load_spread(&[addr], path, cfg)
}

/// Like [`run_load`], connection `i` going to `addrs[i % addrs.len()]`.
pub fn run_load_spread(addrs: &[SocketAddr], path: &str, cfg: Config) -> LoadResult {
    run_load_body(addrs, path, cfg, &json_body(None, 0))
}

/// Like [`run_load_spread`] with a body of the caller's.
pub fn run_load_body(addrs: &[SocketAddr], path: &str, cfg: Config, body: &[u8]) -> LoadResult {
    let requests: Vec<(SocketAddr, Arc<Vec<u8>>)> = addrs
        .iter()
        .map(|a| (*a, Arc::new(post_request(*a, path, body))))
        .collect();
    // The load generator gets its own OS thread and single-threaded runtime.
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let start = Instant::now();
                let measure_from = start + Duration::from_secs_f64(cfg.warmup);
                let end = measure_from + Duration::from_secs_f64(cfg.seconds);
                let mut tasks = Vec::new();
                for i in 0..cfg.concurrency {
                    let (addr, request) = requests[i % requests.len()].clone();
                    tasks.push(tokio::spawn(async move {
                        let mut r = LoadResult {
                            lat: Vec::with_capacity(1 << 16),
                            ..Default::default()
                        };
                        let mut conn = None;
                        loop {
                            let t0 = Instant::now();
                            if t0 >= end {
                                break;
                            }
                            if conn.is_none() {
                                match HttpConn::connect(addr).await {
                                    Ok(c) => conn = Some(c),
                                    Err(_) => {
                                        r.errors += 1;
                                        tokio::time::sleep(Duration::from_millis(10)).await;
                                        continue;
                                    }
                                }
                            }
                            let c = conn.as_mut().unwrap();
                            match c.round_trip(&request).await {
                                Ok(status) => {
                                    let t1 = Instant::now();
                                    let measured = t0 >= measure_from && t1 <= end;
                                    if (200..300).contains(&status) {
                                        r.ok_total += 1;
                                        if measured {
                                            r.ok += 1;
                                            r.lat.push((t1 - t0).as_nanos() as u64);
                                            let sec = (t1 - measure_from).as_secs() as usize;
                                            if r.per_second.len() <= sec {
                                                r.per_second.resize(sec + 1, 0);
                                            }
                                            r.per_second[sec] += 1;
                                        }
                                    } else if measured {
                                        r.non_2xx += 1;
                                    }
                                }
                                Err(_) => {
                                    r.errors += 1;
                                    conn = None;
                                }
                            }
                        }
                        r
                    }));
                }
                let mut total = LoadResult::default();
                for t in tasks {
                    let r = t.await.unwrap();
                    total.ok += r.ok;
                    total.ok_total += r.ok_total;
                    total.non_2xx += r.non_2xx;
                    total.errors += r.errors;
                    total.lat.extend(r.lat);
                    if total.per_second.len() < r.per_second.len() {
                        total.per_second.resize(r.per_second.len(), 0);
                    }
                    for (t, n) in total.per_second.iter_mut().zip(&r.per_second) {
                        *t += n;
                    }
                }
                total.elapsed = end - measure_from;
                total.lat.sort_unstable();
                total
            })
        })
        .join()
        .unwrap()
    })
}

pub fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e6
}
