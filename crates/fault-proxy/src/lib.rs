//! A TCP proxy on loopback that forwards bytes to one upstream and cuts every open connection on command.
//!
//! It sits between the adapter and the API server in the log-resilience tests. It works below TLS, so it cannot
//! tell a log stream from a watch: [`FaultProxy::cut_all`] breaks every connection open at that moment, which is
//! what a proxy idle timeout, a load-balancer failover or a network blip does to a client. New connections are
//! accepted normally afterwards (the client has to reconnect by itself).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Shared {
    live: Mutex<HashMap<u64, CancellationToken>>,
    accepted: AtomicU64,
    cut: AtomicU64,
}

/// A running proxy; it stops (and drops its connections) when this is dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            upstream,
            shared.clone(),
            stop.clone(),
        ));
        Ok(Self { addr, shared, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Breaks every connection open now (both sides are closed at once); returns how many.
    pub fn cut_all(&self) -> usize {
        let cut: Vec<CancellationToken> = self
            .shared
            .live
            .lock()
            .unwrap()
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in &cut {
            t.cancel();
        }
        self.shared
            .cut
            .fetch_add(cut.len() as u64, Ordering::Relaxed);
        cut.len()
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.shared.live.lock().unwrap().len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections broken by [`Self::cut_all`] since the start.
    pub fn cut(&self) -> u64 {
        self.shared.cut.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let (client, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "fault-proxy: accept failed");
                    continue;
                }
            },
        };
        let id = shared.accepted.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        shared.live.lock().unwrap().insert(id, token.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                r = pipe(client, upstream) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "fault-proxy: connection ended");
                    }
                }
            }
            shared.live.lock().unwrap().remove(&id);
            // Dropping the future dropped both sockets: the client sees the connection closed mid-stream.
        });
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server standing in for the API server.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_then_cuts_and_accepts_again() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(proxy.live(), 1);

        assert_eq!(proxy.cut_all(), 1);
        // The client sees its connection end: EOF or a reset, never more data.
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert_eq!(proxy.cut(), 1);

        let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
        c2.write_all(b"again").await.unwrap();
        c2.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"again");
        assert_eq!(proxy.accepted(), 2);
    }
}
