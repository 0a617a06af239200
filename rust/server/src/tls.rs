//! The server side of TLS from PEM files, checked at start so that a bad certificate, key or
//! CA fails the start rather than every handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// The files of a TLS server identity (`GRIMOS_TLS_CERT`, `GRIMOS_TLS_KEY`, `GRIMOS_TLS_CA`).
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// PEM certificate chain.
    pub cert: &'a Path,
    /// PEM private key of `cert`.
    pub key: &'a Path,
    /// PEM CA certificate(s) that client certificates must chain to.
    pub ca: Option<&'a Path>,
}

/// Whether clients must present a certificate signed by the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// Mutual TLS: no certificate, no connection (between services).
    Required,
    /// A certificate is checked when presented, but browsers and programs without one are
    /// served (the edge).
    Optional,
}

/// A rustls server configuration for `files`, offering the ALPN protocols `alpn` (most
/// preferred first).
pub fn server_config(
    files: TlsFiles<'_>,
    clients: ClientCertificates,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_certificates("GRIMOS_TLS_CERT", files.cert)?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|error| {
        anyhow!(
            "GRIMOS_TLS_KEY: no PEM private key in {}: {error}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match files.ca {
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
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match clients {
                ClientCertificates::Required => verifier,
                ClientCertificates::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
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
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Every PEM certificate in `path`; at least one.
pub fn read_certificates(
    setting: &str,
    path: &Path,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| anyhow!("{setting}: cannot read {}: {error}", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{setting}: no PEM certificate in {}", path.display());
    }
    Ok(certificates)
}
