//! A TCP relay whose links can be cut and restored, or frozen and thawed, to simulate a broken
//! or half-open network path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Relays `127.0.0.1:<port>` to an upstream address.
///
/// [`cut`](Self::cut) resets every live connection and, until [`restore`](Self::restore), resets
/// new ones right after accepting them. The port stays bound throughout, so nothing else can take
/// it while the link is down.
///
/// [`freeze`](Self::freeze) keeps every connection open but stops relaying bytes in both
/// directions (a half-open path: no RST, no FIN, just silence), also for connections accepted
/// while frozen; [`thaw`](Self::thaw) relays what was held back and carries on.
pub struct TcpProxy {
    pub port: u16,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _accept: AbortOnDropHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    link: Mutex<Link>,
    live: AtomicUsize,
    frozen: watch::Sender<bool>,
}

struct Link {
    cut: bool,
    /// Cancelled by `cut`; every relay holds the token of the link state it was accepted under.
    generation: CancellationToken,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the TCP proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            link: Mutex::new(Link {
                cut: false,
                generation: CancellationToken::new(),
            }),
            live: AtomicUsize::new(0),
            frozen: watch::channel(false).0,
        });
        let accept = AbortOnDropHandle::new(tokio::spawn(accept_loop(listener, shared.clone())));
        Ok(Self {
            port: addr.port(),
            addr,
            shared,
            _accept: accept,
        })
    }

    /// Resets all live connections and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        let mut link = self.shared.link.lock();
        link.cut = true;
        link.generation.cancel();
        link.generation = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.shared.link.lock().cut = false;
    }

    /// Stops relaying bytes on every connection, live and new, without closing any.
    pub fn freeze(&self) {
        self.shared.frozen.send_replace(true);
    }

    /// Relays again, starting with the bytes held back while frozen.
    pub fn thaw(&self) {
        self.shared.frozen.send_replace(false);
    }

    /// Connections currently being relayed.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

/// Relays live in a `JoinSet` owned here, so aborting this task drops every connection.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut relays = JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while relays.try_join_next().is_some() {}
        // Decided under the lock so a connection is either refused or reset by a concurrent `cut`.
        let token = {
            let link = shared.link.lock();
            (!link.cut).then(|| link.generation.clone())
        };
        match token {
            Some(token) => {
                let live = LiveGuard::new(shared.clone());
                let frozen = shared.frozen.subscribe();
                relays.spawn(relay(client, shared.upstream, token, frozen, live));
            }
            None => reset(client),
        }
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    cut: CancellationToken,
    frozen: watch::Receiver<bool>,
    _live: LiveGuard,
) {
    let mut server = tokio::select! {
        _ = cut.cancelled() => return reset(client),
        connected = TcpStream::connect(upstream) => match connected {
            Ok(server) => server,
            Err(error) => {
                tracing::debug!(%error, %upstream, "proxy upstream connect failed");
                return reset(client);
            }
        },
    };
    let was_cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both = async {
            tokio::join!(
                pump(client_read, server_write, frozen.clone()),
                pump(server_read, client_write, frozen),
            )
        };
        tokio::select! {
            _ = cut.cancelled() => true,
            _ = both => false,
        }
    };
    if was_cut {
        reset(client);
        reset(server);
    }
}

/// Copies one direction until end of stream, holding every read (data or end) while frozen.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let read = from.read(&mut buf).await;
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Closes with RST, so peers see a broken link rather than an orderly end of stream.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
}

struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.live.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}
