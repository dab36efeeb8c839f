//! A minimal forward proxy that only does `CONNECT` tunnels, like an `HTTPS_PROXY`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::AbortOnDropHandle;

/// Answers `CONNECT host:port` with `200` and relays the tunnel; anything else gets `405`.
pub struct ConnectProxy {
    pub port: u16,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub url: String,
    tunnels: Arc<Mutex<Vec<String>>>,
    _accept: AbortOnDropHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the CONNECT proxy")?;
        let addr = listener.local_addr()?;
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let accept = AbortOnDropHandle::new(tokio::spawn(accept_loop(listener, tunnels.clone())));
        Ok(Self {
            port: addr.port(),
            addr,
            url: format!("http://{addr}"),
            tunnels,
            _accept: accept,
        })
    }

    /// The `host:port` of every tunnel opened so far.
    pub fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().clone()
    }
}

impl std::fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, tunnels: Arc<Mutex<Vec<String>>>) {
    let mut relays = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        while relays.try_join_next().is_some() {}
        relays.spawn(tunnel(client, tunnels.clone()));
    }
}

async fn tunnel(mut client: TcpStream, tunnels: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || !matches!(client.read(&mut byte).await, Ok(1)) {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let target = target.to_owned();
    let Ok(mut server) = TcpStream::connect(&target).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    tunnels.lock().push(target);
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
