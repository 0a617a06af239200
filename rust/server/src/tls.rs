//! TLS from the `GRIMOS_TLS_*` PEM files ([`TlsSettings`]): the server side, and the check of
//! a client certificate against the CA a server verifies it with. Both run at start, so that
//! a bad certificate, key or CA fails the start rather than every handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use grimos_common::tls::TlsSettings;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// Whether clients must present a certificate signed by the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// Mutual TLS: no certificate, no connection (between services).
    Required,
    /// A certificate is checked when presented, but browsers and programs without one are
    /// served (the edge).
    Optional,
}

/// A rustls server configuration from `settings`, offering the ALPN protocols `alpn` (most
/// preferred first); `None` when `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY` are not set.
pub fn server_config(
    settings: &TlsSettings,
    clients: ClientCertificates,
    alpn: &[&[u8]],
) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let Some(identity) = settings.identity() else {
        return Ok(None);
    };
    let chain = read_certificates("GRIMOS_TLS_CERT", identity.cert)?;
    let key = PrivateKeyDer::from_pem_file(identity.key).map_err(|error| {
        anyhow!(
            "GRIMOS_TLS_KEY: no PEM private key in {}: {error}",
            identity.key.display()
        )
    })?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.ca {
        Some(ca) => {
            let verifier = client_verifier(ca, clients)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| {
        anyhow!(
            "GRIMOS_TLS_CERT and GRIMOS_TLS_KEY do not make a usable server identity \
             ({} and {}): {error}",
            identity.cert.display(),
            identity.key.display()
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Some(Arc::new(config)))
}

/// What a server with `GRIMOS_TLS_CA` = `ca` does with client certificates.
fn client_verifier(
    ca: &Path,
    clients: ClientCertificates,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates("GRIMOS_TLS_CA", ca)? {
        roots.add(certificate).map_err(|error| {
            anyhow!(
                "GRIMOS_TLS_CA: {} is not a usable CA: {error}",
                ca.display()
            )
        })?;
    }
    let provider = Arc::new(ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let verifier = match clients {
        ClientCertificates::Required => verifier,
        ClientCertificates::Optional => verifier.allow_unauthenticated(),
    };
    verifier
        .build()
        .map_err(|error| anyhow!("GRIMOS_TLS_CA: {}: {error}", ca.display()))
}

/// Checks, at start-up, that the certificate of `settings` is one a server with the same
/// `GRIMOS_TLS_CA` accepts from a client (signed by that CA, valid now, allowing client
/// authentication): the check auth-service makes at every handshake, made once by the
/// client instead, so that a wrong certificate fails the start with its reason rather than
/// every call. Nothing to check without a certificate and a CA.
pub fn check_client_certificate(settings: &TlsSettings) -> anyhow::Result<()> {
    let (Some(identity), Some(ca)) = (settings.identity(), &settings.ca) else {
        return Ok(());
    };
    let chain = read_certificates("GRIMOS_TLS_CERT", identity.cert)?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        anyhow::bail!(
            "GRIMOS_TLS_CERT: no PEM certificate in {}",
            identity.cert.display()
        );
    };
    client_verifier(ca, ClientCertificates::Required)?
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|error| {
            anyhow!(
                "GRIMOS_TLS_CERT ({}) is not a client certificate that a server trusting \
                 GRIMOS_TLS_CA ({}) accepts (signed by it, valid now, allowing client \
                 authentication), as mutual TLS between services needs: {error}",
                identity.cert.display(),
                ca.display()
            )
        })?;
    Ok(())
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
