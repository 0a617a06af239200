//! The TLS files of a process (`GRIMOS_TLS_*`), one setting group that both services flatten
//! into their configuration: what a service serves with, and what user-service presents and
//! trusts when it calls auth-service.

use std::path::PathBuf;

/// `GRIMOS_TLS_CERT`, `GRIMOS_TLS_KEY` and `GRIMOS_TLS_CA`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsSettings {
    /// PEM certificate chain. With `tls_key`, the service serves TLS only (auth-service, also
    /// the one embedded in user-service, and user-service). With `tls_ca` too, it is also the
    /// client certificate user-service presents to an external auth-service (mutual TLS), so
    /// it must allow client authentication.
    #[arg(
        id = "tls_cert",
        long = "tls-cert",
        env = "GRIMOS_TLS_CERT",
        requires = "tls_key"
    )]
    pub cert: Option<PathBuf>,

    /// PEM private key of `tls_cert`.
    #[arg(
        id = "tls_key",
        long = "tls-key",
        env = "GRIMOS_TLS_KEY",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,

    /// PEM CA certificate(s). auth-service serving TLS (needs `tls_cert` and `tls_key`):
    /// clients must present a certificate it signed (mutual TLS). user-service serving TLS: a
    /// client certificate is optional (browsers have none), but one presented must be signed
    /// by it. Calling an external auth-service from user-service: the root trusted for its
    /// certificate (alone, without `tls_cert`, for TLS without a client certificate).
    #[arg(id = "tls_ca", long = "tls-ca", env = "GRIMOS_TLS_CA")]
    pub ca: Option<PathBuf>,
}

/// A certificate and its key, which a process serves with or presents as a client.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// PEM certificate chain.
    pub cert: &'a std::path::Path,
    /// PEM private key of `cert`.
    pub key: &'a std::path::Path,
}

impl TlsSettings {
    /// The certificate and key, when both are set.
    pub fn identity(&self) -> Option<Identity<'_>> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Identity { cert, key }),
            _ => None,
        }
    }
}
