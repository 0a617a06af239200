//! Closing a connection so that the client reads our last answer.
//!
//! When the server answers early (413 for a body over the limit, 408, 431) and closes while
//! the client is still sending, the client's data arrives at a closed socket and the kernel
//! answers with a reset, which can destroy the answer before the client reads it. nginx
//! avoids this with a "lingering close": shut down the sending side, then read and discard
//! what the client still sends, for a bounded time and amount, before closing. [`Lingering`]
//! does the same for every connection, whichever way it ends: its `Drop` hands the socket to
//! a task that lingers. The connection's slot ([`Slot`]) is held until that task is done, so
//! lingering sockets still count against the connection limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest a closing connection is read from (nginx's `lingering_time` is 30 s; our
/// bodies are at most 64 KiB, so a client still sending after this is not sending a body).
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// A closing connection from which nothing arrives for this long is closed at once.
pub const LINGER_QUIET: Duration = Duration::from_secs(1);
/// The most a closing connection is read from.
pub const LINGER_BYTES: usize = 1024 * 1024;

/// A connection's place under the connection limit, and its count in the metrics; released
/// when dropped.
pub struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    server: &'static str,
}

impl Slot {
    pub(crate) fn new(permit: tokio::sync::OwnedSemaphorePermit, server: &'static str) -> Self {
        metrics::gauge!("server_connections_open", "server" => server).increment(1.0);
        Self {
            _permit: permit,
            server,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("server_connections_open", "server" => self.server).decrement(1.0);
    }
}

/// Since when writes to a connection have been blocked (the peer does not read), for the
/// connection's watchdog: a client that stops reading while the server has something to send
/// (answers to its own PING or SETTINGS flood, say) holds the connection without any request
/// in flight.
#[derive(Debug)]
pub struct WriteStall {
    opened: Instant,
    /// Milliseconds from `opened` to when writes became blocked, plus one; 0 when they are not.
    since: AtomicU64,
}

impl WriteStall {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            since: AtomicU64::new(0),
        })
    }

    fn blocked(&self) {
        if self.since.load(Ordering::Relaxed) == 0 {
            let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.since
                .store(millis.saturating_add(1), Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// How long writes have been blocked at `now` (zero when they are not).
    pub(crate) fn blocked_for(&self, now: Instant) -> Duration {
        match self.since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => {
                let at = self.opened + Duration::from_millis(since - 1);
                now.saturating_duration_since(at)
            }
        }
    }

    /// Records the outcome of a write: blocked while `poll` is pending.
    fn record<T>(&self, poll: Poll<T>) -> Poll<T> {
        if poll.is_pending() {
            self.blocked();
        } else {
            self.wrote();
        }
        poll
    }
}

/// A TCP connection that lingers when dropped (see the module documentation) and records when
/// its writes are blocked.
pub struct Lingering {
    inner: Option<(TcpStream, Slot)>,
    stall: Arc<WriteStall>,
}

impl Lingering {
    /// Wraps `tcp`, which holds `slot` until it has finished closing.
    pub fn new(tcp: TcpStream, slot: Slot, stall: Arc<WriteStall>) -> Self {
        Self {
            inner: Some((tcp, slot)),
            stall,
        }
    }

    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.inner
            .as_mut()
            .map(|(tcp, _)| tcp)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if let Some((tcp, slot)) = self.inner.take() {
            // Outside a runtime (never in a server) the socket just closes.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    linger(tcp).await;
                    drop(slot);
                });
            }
        }
    }
}

/// Sends FIN, then reads and discards until the client closes too, goes quiet, or the time
/// or byte bound is reached.
async fn linger(mut tcp: TcpStream) {
    if tcp.shutdown().await.is_err() {
        return;
    }
    let until = Instant::now() + LINGER_TIME;
    let mut buffer = [0u8; 4096];
    let mut read = 0usize;
    while read < LINGER_BYTES {
        let quiet = (Instant::now() + LINGER_QUIET).min(until);
        match tokio::time::timeout_at(quiet, tcp.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            // EOF, an error, silence or the end of the linger time.
            _ => return,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(self.tcp()?).poll_write(cx, buf);
        self.stall.record(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(self.tcp()?).poll_write_vectored(cx, bufs);
        self.stall.record(poll)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The shutdown happens in the lingering close, after any data the client still sends
        // has been read; shutting down here and then dropping would skip nothing, but an
        // early FIN while hyper may still flush is what we want to avoid doing twice.
        Poll::Ready(Ok(()))
    }
}
