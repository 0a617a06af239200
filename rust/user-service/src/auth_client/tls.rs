//! The client side of TLS to an external auth-service, from the process's `GRIMOS_TLS_*`
//! files, checked at start-up.
//!
//! One TLS stack: rustls, through tonic's client settings here and `grimos-server` on the
//! serving side, which also checks the client certificate the way auth-service will.

use std::time::Duration;

use anyhow::Context;
use grimos_common::tls::TlsSettings;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// For an auth-service at `AUTH_SERVICE_ADDRESS`: none without `GRIMOS_TLS_CA`; with it, TLS
/// trusting that CA (`https://` URLs, and every `dns:///` address), presenting
/// `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY` as the client certificate when they are set.
/// (The embedded auth-service is called in-process, without TLS or a socket.)
pub fn client_config(
    settings: &TlsSettings,
    handshake_timeout: Duration,
) -> anyhow::Result<Option<ClientTlsConfig>> {
    // GRIMOS_TLS_CERT and GRIMOS_TLS_KEY alone serve user-service's own HTTPS; they are
    // presented to auth-service only along with GRIMOS_TLS_CA.
    let Some(ca) = &settings.ca else {
        return Ok(None);
    };
    let ca_pem = std::fs::read(ca)
        .with_context(|| format!("GRIMOS_TLS_CA: cannot read {}", ca.display()))?;
    // The same parse the server side makes, so an empty or broken file fails here.
    grimos_server::tls::read_certificates("GRIMOS_TLS_CA", ca)?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .timeout(handshake_timeout);
    if let Some(identity) = settings.identity() {
        // auth-service would refuse, at every handshake, a certificate its CA did not sign or
        // that does not allow client authentication; say so now instead.
        grimos_server::tls::check_client_certificate(settings)?;
        let cert = std::fs::read(identity.cert)
            .with_context(|| format!("GRIMOS_TLS_CERT: cannot read {}", identity.cert.display()))?;
        let key = std::fs::read(identity.key)
            .with_context(|| format!("GRIMOS_TLS_KEY: cannot read {}", identity.key.display()))?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(tls))
}
