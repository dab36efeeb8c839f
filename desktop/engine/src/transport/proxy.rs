//! The proxy for the cloud: which one (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) and the
//! `CONNECT` tunnel that carries WebSocket links through it.

use std::collections::BTreeMap;

use base64::Engine as _;

/// The proxy for the cloud (CONFIG.md §7.2): `HTTPS_PROXY` for an `https` cloud_url, `HTTP_PROXY`
/// for `http` (upper or lower case), unless `NO_PROXY` names the host. Read from the injected
/// environment, then from the process's (as reqwest would).
pub(crate) fn cloud_proxy(cloud_url: &str, env: &BTreeMap<String, String>) -> Option<String> {
    let var = |k: &str| {
        env.get(k)
            .cloned()
            .or_else(|| std::env::var(k).ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let (scheme, rest) = cloud_url.split_once("://")?;
    let proxy = if scheme.eq_ignore_ascii_case("https") {
        var("HTTPS_PROXY").or_else(|| var("https_proxy"))
    } else {
        var("HTTP_PROXY").or_else(|| var("http_proxy"))
    }?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
    .to_ascii_lowercase();
    let no_proxy = var("NO_PROXY")
        .or_else(|| var("no_proxy"))
        .unwrap_or_default();
    let bypass = no_proxy.split(',').map(str::trim).any(|e| {
        let e = e.trim_start_matches('.').to_ascii_lowercase();
        e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    });
    (!bypass).then_some(proxy)
}

/// Opens a `CONNECT` tunnel to `host:port` through an `http://[user:pass@]host:port` proxy.
pub(crate) async fn connect_tunnel(
    proxy: &str,
    host: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = match proxy.split_once("://") {
        None => proxy,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => {
            return Err(format!(
                "proxy {proxy:?}: only http:// proxies carry WebSocket links"
            ));
        }
    };
    let rest = rest.split('/').next().unwrap_or_default();
    let (auth, addr) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("proxy {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        let plain = percent_encoding::percent_decode_str(a).decode_utf8_lossy();
        let b64 = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
        head.push_str(&format!("Proxy-Authorization: Basic {b64}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("proxy {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() > 16 * 1024 {
            return Err(format!("proxy {addr}: answer head too long"));
        }
        match stream.read(&mut byte).await {
            Ok(1) => answer.push(byte[0]),
            Ok(_) => return Err(format!("proxy {addr} closed the connection")),
            Err(e) => return Err(format!("proxy {addr}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().trim().to_owned();
    let ok = status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2') && c.len() == 3);
    if !ok {
        return Err(format!("proxy {addr} refused the tunnel: {status}"));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::cloud_proxy;

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
        let p = |url: &str| cloud_proxy(url, &e);
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
        assert_eq!(cloud_proxy("https://x.example", &all), None);
    }
}
