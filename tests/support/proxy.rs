//! A loopback TCP proxy a test puts between Bosun and a real server, to make that server stall: it
//! forwards, or accepts and never answers (holding every such connection open, as a hung server
//! does), or forwards slowly. The mode is read when a connection is accepted.
#![allow(dead_code)] // each test binary uses its own part of the support module

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Bytes go both ways as they come.
    Forward = 0,
    /// The connection is accepted and read from, and nothing is ever written back or closed.
    Stall = 1,
    /// Bytes go both ways, 512 at a time, each after a 5 ms wait.
    Slow = 2,
}

/// The proxy; stops, with every connection it holds, when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`, forwarding.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let task = tokio::spawn({
            let mode = mode.clone();
            async move {
                // Dropped with the accept loop: every connection ends with the proxy.
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let mode = mode.load(Ordering::SeqCst);
                    connections.spawn(serve(client, target, mode));
                }
            }
        });
        Proxy { addr, mode, task }
    }

    /// How the next connections are treated.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, target: SocketAddr, mode: u8) {
    if mode == Mode::Stall as u8 {
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        // The client gave up and closed: a hung server would still hold the socket.
        std::future::pending::<()>().await;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    if mode == Mode::Forward as u8 {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let _ = tokio::join!(
        slowly(client_read, server_write),
        slowly(server_read, client_write)
    );
}

async fn slowly(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 512];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        to.write_all(&chunk[..n]).await?;
    }
}
