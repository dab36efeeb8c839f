//! The proxy for the cloud (CONFIG.md §7.2): which one, by hyper-util's proxy `Matcher`
//! (`HTTPS_PROXY` for an `https` cloud_url, `HTTP_PROXY` for `http`, upper or lower case,
//! unless `NO_PROXY` names the host), and hyper-util's `CONNECT` `Tunnel` that carries
//! WebSocket links through it (reqwest tunnels the HTTP transports itself).

use std::collections::BTreeMap;
use std::{fmt, io};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use tower::ServiceExt;

/// The proxy chosen for a cloud_url.
#[derive(Clone, Debug)]
pub(crate) struct CloudProxy {
    /// The variable's value as written, for reqwest (which reads the credentials from it).
    raw: String,
    intercept: Intercept,
}

impl CloudProxy {
    /// The proxy for `cloud_url`, if any. Variables are read from the injected environment,
    /// then from the process's (as reqwest would).
    pub(crate) fn for_cloud(cloud_url: &str, env: &BTreeMap<String, String>) -> Option<Self> {
        let var = |k: &str| {
            env.get(k)
                .cloned()
                .or_else(|| std::env::var(k).ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let either = |a: &str, b: &str| var(a).or_else(|| var(b)).unwrap_or_default();
        let http = either("HTTP_PROXY", "http_proxy");
        let https = either("HTTPS_PROXY", "https_proxy");
        let matcher = Matcher::builder()
            .http(http.clone())
            .https(https.clone())
            .no(either("NO_PROXY", "no_proxy"))
            .build();
        let intercept = matcher.intercept(&cloud_url.parse().ok()?)?;
        let raw = if cloud_url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            https
        } else {
            http
        };
        Some(Self { raw, intercept })
    }

    /// The proxy for the cloud's HTTP client.
    pub(crate) fn reqwest(&self) -> reqwest::Result<reqwest::Proxy> {
        reqwest::Proxy::all(&self.raw)
    }

    /// Opens a `CONNECT` tunnel to `host:port` through this proxy, which must be `http://`.
    /// The error names the proxy (never its credentials) and every cause.
    pub(crate) async fn tunnel(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        let proxy = self.intercept.uri();
        if proxy.scheme_str() != Some("http") {
            return Err(io::Error::other(format!(
                "proxy {self}: only http:// proxies carry WebSocket links"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let mut tunnel = Tunnel::new(proxy.clone(), connector);
        if let Some(auth) = self.intercept.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let dst: http::Uri = format!("http://{host}:{port}")
            .parse()
            .map_err(|e| io::Error::other(format!("proxy {self}: tunnel to {host}:{port}: {e}")))?;
        let io = tunnel.oneshot(dst).await.map_err(|e| {
            io::Error::other(format!("proxy {self}: {}", crate::channel::error_chain(&e)))
        })?;
        Ok(io.into_inner())
    }
}

/// `scheme://host:port` of the proxy, without its credentials.
impl fmt::Display for CloudProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.intercept.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        match uri.authority() {
            Some(a) => write!(f, "{scheme}://{a}"),
            None => write!(f, "{uri}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::CloudProxy;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_proxy_follows_the_scheme_and_no_proxy() {
        let e = env(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("HTTP_PROXY", "http://q:3128"),
            ("NO_PROXY", "internal.example, .corp.example,10.0.0.1"),
        ]);
        let p = |url: &str| CloudProxy::for_cloud(url, &e).map(|p| p.to_string());
        assert_eq!(p("https://cloud.example").as_deref(), Some("http://p:3128"));
        assert_eq!(
            p("http://cloud.example:8000/x").as_deref(),
            Some("http://q:3128")
        );
        assert_eq!(p("https://internal.example"), None);
        assert_eq!(p("https://a.internal.example:443"), None);
        assert_eq!(p("https://b.corp.example"), None);
        assert_eq!(p("https://10.0.0.1:8443"), None);
        assert_eq!(
            p("https://notinternal.example").as_deref(),
            Some("http://p:3128")
        );
        let all = env(&[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", "*")]);
        assert!(CloudProxy::for_cloud("https://x.example", &all).is_none());
    }

    /// The tunnel sends `CONNECT host:port` with the proxy's credentials (percent-decoded) and
    /// hands back the stream once the proxy agreed.
    #[tokio::test]
    async fn the_tunnel_connects_with_the_proxys_credentials() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).await.expect("read");
                head.push(b[0]);
            }
            s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .expect("write");
            // The client speaks first through a tunnel (a TLS hello, an upgrade request).
            let mut ping = [0u8; 4];
            s.read_exact(&mut ping).await.expect("read");
            assert_eq!(&ping, b"ping");
            s.write_all(b"through").await.expect("write");
            String::from_utf8(head).expect("utf-8")
        });
        let e = env(&[("HTTPS_PROXY", &format!("http://us%40er:p%3Ass@{addr}"))]);
        let p = CloudProxy::for_cloud("https://cloud.example", &e).expect("a proxy");
        assert_eq!(p.to_string(), format!("http://{addr}"));
        let mut stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            p.tunnel("cloud.example", 8443),
        )
        .await
        .expect("in time")
        .expect("a tunnel");
        stream.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 7];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"through");
        let head = proxy.await.expect("proxy task");
        assert!(
            head.starts_with("CONNECT cloud.example:8443 HTTP/1.1\r\n"),
            "{head}"
        );
        // base64("us@er:p:ss")
        assert!(
            head.contains("Proxy-Authorization: Basic dXNAZXI6cDpzcw==\r\n"),
            "{head}"
        );
    }
}
