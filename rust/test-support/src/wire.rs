//! Raw clients for the limit tests: HTTP/1.1 over a bare socket, and HTTP/2 through the `h2`
//! crate with settings an ordinary client would never choose (a zero flow-control window),
//! so a test can behave like the slow, idle or greedy client a limit exists for.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// An HTTP/2 connection (prior knowledge, no TLS) and the task driving it, which ends with
/// the connection.
pub struct H2 {
    /// Opens streams.
    pub send: h2::client::SendRequest<Bytes>,
    /// The connection; it finishes when the server closes it.
    pub driver: JoinHandle<Result<(), h2::Error>>,
}

/// Opens an HTTP/2 connection to `addr`; `window` sets the initial stream window the client
/// advertises (zero: the server can send no response body until the client allows it).
pub async fn h2(addr: SocketAddr, window: Option<u32>) -> H2 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut builder = h2::client::Builder::new();
    if let Some(window) = window {
        builder.initial_window_size(window);
    }
    let (send, connection) = builder.handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    let send = send.ready().await.unwrap();
    H2 { send, driver }
}

/// A gRPC request's head for `path` (`/package.Service/Method`), with extra headers.
pub fn grpc_request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// A gRPC message frame holding the encoded protobuf `message`.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

/// Whether the peer closes `tcp` (EOF or reset) within `within`, discarding what it sends.
pub async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends `request` (raw HTTP/1.1 bytes) on a new connection to `addr` and returns the
/// connection, for tests that then stall, trickle or read.
pub async fn http1(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    tcp
}

/// Everything the peer sends until it closes or `within` passes, as text.
pub async fn read_text(tcp: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// A server that speaks HTTP/2 and takes every call but never answers one: a hung
/// dependency. It records the head of each request it receives.
pub struct SilentGrpc {
    /// Where it listens.
    pub addr: SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SilentGrpc {
    /// Starts one on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = heads.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let recorded = recorded.clone();
                connections.spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    // Held, never answered, so the streams stay open.
                    let mut held = Vec::new();
                    while let Some(Ok((request, respond))) = connection.accept().await {
                        let path = request.uri().path().to_owned();
                        recorded
                            .lock()
                            .unwrap()
                            .push((path, request.headers().clone()));
                        held.push((request, respond));
                    }
                });
            }
        });
        Self {
            addr,
            heads,
            _task: AbortOnDrop(task),
        }
    }

    /// The headers of the requests received so far whose path starts with `prefix`
    /// (`/grimos.auth.v1.AuthService/`: the calls, not the health checks).
    pub fn heads(&self, prefix: &str) -> Vec<http::HeaderMap> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, headers)| headers.clone())
            .collect()
    }
}

/// A TCP proxy to `target` whose link can be cut ([`CuttableLink::cut`]): from then on every
/// byte either way is dropped while the connections stay open, as on a cable pulled or a
/// partition, so the peers see silence rather than a closed connection.
pub struct CuttableLink {
    /// Where it listens.
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _task: AbortOnDrop,
}

impl CuttableLink {
    /// Starts one on a free loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pipes.spawn(pipe(client_read, server_write, flag.clone()));
                pipes.spawn(pipe(server_read, client_write, flag.clone()));
            }
        });
        Self {
            addr,
            cut,
            _task: AbortOnDrop(task),
        }
    }

    /// Drops every byte from now on, keeping the connections open.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if cut.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
