//! The endpoints the client dials: one per URL of the address, or one per resolved address
//! of a `dns:///` name, each with the connection settings and TLS they all share.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use http::Uri;
use tonic::transport::{ClientTlsConfig, Endpoint};

/// The endpoint settings every connection shares.
fn configure(endpoint: Endpoint, deadline: Duration) -> Endpoint {
    endpoint.connect_timeout(deadline).tcp_nodelay(true)
}

/// The endpoint of one `http://` or `https://` URL of the address.
pub(super) fn url_endpoint(
    uri: Uri,
    tls: Option<&ClientTlsConfig>,
    deadline: Duration,
) -> anyhow::Result<Endpoint> {
    let https = uri.scheme_str() == Some("https");
    let endpoint = configure(Endpoint::from(uri.clone()), deadline);
    match (https, tls) {
        (true, Some(tls)) => endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("invalid TLS settings for {uri}")),
        (false, None) => Ok(endpoint),
        (true, None) => bail!("{uri}: https:// needs TLS settings (set GRIMOS_TLS_CA)"),
        (false, Some(_)) => bail!(
            "{uri}: TLS is configured (GRIMOS_TLS_CA is set), so write https:// instead of http://"
        ),
    }
}

/// Builds the endpoint of one resolved address of a `dns:///` name.
pub(super) struct EndpointTemplate {
    scheme: &'static str,
    /// `scheme://name:port`: the `:authority` auth-service sees, whatever address is dialled.
    origin: Uri,
    /// With the certificate checked against the name, not the dialled address.
    tls: Option<ClientTlsConfig>,
    deadline: Duration,
}

impl EndpointTemplate {
    pub(super) fn new(
        host: &str,
        port: u16,
        tls: Option<ClientTlsConfig>,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let origin: Uri = format!("{scheme}://{authority}")
            .parse()
            .with_context(|| format!("{authority:?} is not a valid host and port"))?;
        let template = Self {
            scheme,
            origin,
            tls: tls.map(|tls| tls.domain_name(host)),
            deadline,
        };
        // Bad TLS settings fail here, at start-up, rather than once per resolved address.
        template.endpoint(SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(template)
    }

    pub(super) fn endpoint(&self, addr: SocketAddr) -> anyhow::Result<Endpoint> {
        // `SocketAddr` prints IPv6 in brackets, as a URI wants; a zone id would not parse.
        let uri: Uri = format!("{}://{addr}", self.scheme)
            .parse()
            .with_context(|| format!("cannot make a URI of {addr}"))?;
        let endpoint = configure(Endpoint::from(uri), self.deadline).origin(self.origin.clone());
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .context("invalid TLS settings"),
            None => Ok(endpoint),
        }
    }
}
