//! `wrk` as the load tool: the issue's own measure of ingest ("`wrk -t1 -c50`, the same load
//! tool against the bare handler and the cloud"). The benches call it beside their in-process
//! load generator; `wrk` is a Debian package (`apt-get install wrk`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What one `wrk` run reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    /// Requests completed in the run, any status.
    pub requests: u64,
    /// Answers outside 2xx/3xx.
    pub non_2xx: u64,
    /// Socket errors of any kind (connect, read, write, timeout).
    pub errors: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl WrkResult {
    /// Answers in 2xx/3xx.
    pub fn ok(&self) -> u64 {
        self.requests.saturating_sub(self.non_2xx)
    }
}

/// Whether `wrk` can be run here.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false)
}

/// `wrk -t1 -c<connections> -d<duration> --latency` POSTing `body` as JSON to `addr` + `path`.
pub fn run(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
    body: &[u8],
) -> std::io::Result<WrkResult> {
    let dir = tempfile::tempdir()?;
    let script = write_script(dir.path().to_path_buf(), body)?;
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")])
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse(&text).ok_or_else(|| std::io::Error::other(format!("unreadable wrk output: {text}")))
}

fn write_script(dir: PathBuf, body: &[u8]) -> std::io::Result<PathBuf> {
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, body)?;
    let script = dir.join("post.lua");
    // The body is read from its file: no quoting of its bytes in Lua.
    let lua = format!(
        "local f = assert(io.open({path:?}, \"rb\"))\n\
         wrk.method = \"POST\"\n\
         wrk.body = f:read(\"*a\")\n\
         f:close()\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n",
        path = body_file.display().to_string()
    );
    std::fs::write(&script, lua)?;
    Ok(script)
}

/// Reads wrk 4's report: the latency line, the distribution, the totals.
pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut seen_rate = false;
    let mut seen_p99 = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => r.max_ms = duration_ms(max)?,
            ["50%", v] => r.p50_ms = duration_ms(v)?,
            ["99%", v] => {
                r.p99_ms = duration_ms(v)?;
                seen_p99 = true;
            }
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                r.errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Requests/sec:", v] => {
                r.requests_per_sec = v.parse().ok()?;
                seen_rate = true;
            }
            _ => {}
        }
    }
    (seen_rate && seen_p99).then_some(r)
}

/// `812.00us`, `1.20ms`, `2.01s`, `1.00m` → milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:4000/webhook/bench
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.34us  301.10us  12.50ms   91.00%
    Req/Sec    61.2k     2.1k   64.0k    80.00%
  Latency Distribution
     50%  780.00us
     75%  850.00us
     90%    1.01ms
     99%    2.20ms
  304512 requests in 5.00s, 40.12MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  60902.40
Transfer/sec:      8.02MB
";

    #[test]
    fn a_wrk_report_is_read_whole() {
        let r = parse(REPORT).expect("parsed");
        assert_eq!(r.requests, 304_512);
        assert_eq!(r.non_2xx, 7);
        assert_eq!(r.ok(), 304_505);
        assert_eq!(r.errors, 6);
        assert!((r.requests_per_sec - 60_902.40).abs() < 1e-6);
        assert!((r.p50_ms - 0.78).abs() < 1e-9);
        assert!((r.p99_ms - 2.2).abs() < 1e-9);
        assert!((r.max_ms - 12.5).abs() < 1e-9);
    }

    #[test]
    fn a_report_without_its_rate_is_refused() {
        assert!(parse("  Latency Distribution\n     99%    2.20ms\n").is_none());
        assert!(parse("Requests/sec:  1.0\n").is_none());
    }
}
