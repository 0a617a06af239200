//! HTTPS on user-service's one port: with `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY`, HTTP/JSON,
//! gRPC and gRPC-Web are all served over TLS (ALPN `h2` and `http/1.1`), and nothing is served
//! in plaintext.
//!
//! With `GRIMOS_TLS_CA` too, a client certificate is verified against that CA when one is
//! presented, but none is required: user-service is the edge that browsers and end-user
//! programs call, and they have none. (Mutual TLS between the services is user-service's
//! client certificate at auth-service, which requires it.)
//!
//! [`TlsListener`] plugs into `axum::serve`. Handshakes run in their own tasks, each bounded
//! by [`HANDSHAKE_TIME`], so a client that connects and stays silent holds up nobody.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

/// How long a client has to complete its TLS handshake (the same bound as auth-service's).
pub(crate) const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// Connections whose handshake is done but that `axum::serve` has not taken yet.
const ACCEPTED_BACKLOG: usize = 128;

/// The server side of TLS from the `GRIMOS_TLS_*` files, checked now so that a bad
/// certificate, key or CA fails the start rather than every handshake. `None` without
/// `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY` (plaintext).
pub(crate) fn server_config(
    auth: &auth_service::Config,
) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let (Some(cert_file), Some(key_file)) = (&auth.tls_cert, &auth.tls_key) else {
        return Ok(None);
    };
    let chain = read_certificates("GRIMOS_TLS_CERT", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
        anyhow!(
            "GRIMOS_TLS_KEY: no PEM private key in {}: {error}",
            key_file.display()
        )
    })?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &auth.tls_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates("GRIMOS_TLS_CA", ca)? {
                roots.add(certificate).map_err(|error| {
                    anyhow!(
                        "GRIMOS_TLS_CA: {} is not a usable CA: {error}",
                        ca.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|error| anyhow!("GRIMOS_TLS_CA: {}: {error}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| {
        anyhow!(
            "GRIMOS_TLS_CERT and GRIMOS_TLS_KEY do not make a usable server identity \
             ({} and {}): {error}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn read_certificates(setting: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| anyhow!("{setting}: cannot read {}: {error}", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{setting}: no PEM certificate in {}", path.display());
    }
    Ok(certificates)
}

/// A TCP listener that hands `axum::serve` connections whose TLS handshake is complete.
pub(crate) struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`; `tap` runs on each TCP connection before its handshake.
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        tap: fn(&TcpStream),
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            tap,
            sender,
        ));
        Ok(Self {
            accepted,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Stop accepting once `axum::serve` is done with the listener (graceful shutdown).
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accept loop ends only when the listener is dropped, which cannot happen
            // while this borrow lives; wait like an idle listener rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tap: fn(&TcpStream),
    accepted: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors and the like: as axum's own listener does, wait
                // rather than spin, and go on.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tap(&tcp);
        let acceptor = acceptor.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIME, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the server has stopped; the connection is then dropped.
                    let _ = accepted.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}
