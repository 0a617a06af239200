//! The auth client's TLS settings, from the shared `GRIMOS_TLS_*` files, checked at start-up.
//!
//! [`external_auth`] is for an auth-service at `AUTH_SERVICE_ADDRESS`; [`embedded_auth`] for
//! the one user-service starts itself, which serves TLS with the same files. The certificates'
//! names and key usages are read with `x509-parser`, to choose the name the embedded
//! auth-service is verified by and to refuse, at start-up, a client certificate that the
//! server would refuse at every handshake.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use x509_parser::error::PEMError;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// For an external auth-service (`AUTH_SERVICE_ADDRESS`): none without `GRIMOS_TLS_CA`;
/// with it, TLS trusting that CA (`https://` URLs, and every `dns:///` address), presenting
/// `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY` as the client certificate when they are set.
pub(crate) fn external_auth(
    auth: &auth_service::Config,
    deadline: Duration,
) -> anyhow::Result<Option<ClientTlsConfig>> {
    // GRIMOS_TLS_CERT and GRIMOS_TLS_KEY alone serve user-service's own HTTPS (`https.rs`);
    // they are presented to auth-service only along with GRIMOS_TLS_CA.
    let Some(ca) = &auth.tls_ca else {
        return Ok(None);
    };
    let ca = CertFile::read("GRIMOS_TLS_CA", ca)?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem))
        .timeout(deadline);
    if let Some(identity) = client_identity(auth)? {
        tls = tls.identity(identity);
    }
    Ok(Some(tls))
}

/// For the embedded auth-service listening on `addr`: its URL, and the TLS settings that
/// match the ones it serves with. The server name is one of its certificate's names (an
/// IP address equal to the dialled one, else `localhost`, else the first DNS name, else
/// the first IP address); the trusted root is `GRIMOS_TLS_CA`, else the certificates of
/// `GRIMOS_TLS_CERT` itself (a self-signed certificate, or a chain that includes its CA).
/// With `GRIMOS_TLS_CA` the client presents `GRIMOS_TLS_CERT`, as the server requires.
pub(crate) fn embedded_auth(
    auth: &auth_service::Config,
    addr: SocketAddr,
    deadline: Duration,
) -> anyhow::Result<(String, Option<ClientTlsConfig>)> {
    // An unspecified listen address (0.0.0.0, [::]) is reached on loopback.
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let dial = SocketAddr::new(ip, addr.port());
    let (Some(cert), Some(_)) = (&auth.tls_cert, &auth.tls_key) else {
        return Ok((format!("http://{dial}"), None));
    };
    let chain = CertFile::read("GRIMOS_TLS_CERT", cert)?;
    let leaf = chain.leaf().with_context(|| {
        format!(
            "GRIMOS_TLS_CERT ({}): cannot read the first certificate",
            cert.display()
        )
    })?;
    let name = server_name(&leaf, ip).with_context(|| {
        format!(
            "GRIMOS_TLS_CERT ({}) has no DNS name or IP address (subjectAltName) to verify \
             the embedded auth-service by",
            cert.display()
        )
    })?;
    let mut tls = ClientTlsConfig::new().timeout(deadline);
    match &auth.tls_ca {
        Some(ca) => {
            let ca = CertFile::read("GRIMOS_TLS_CA", ca)?;
            tls = tls.ca_certificate(Certificate::from_pem(ca.pem));
            if let Some(identity) = client_identity(auth)? {
                tls = tls.identity(identity);
            }
        }
        None => {
            if !leaf.self_issued && chain.certificates.len() == 1 {
                bail!(
                    "GRIMOS_TLS_CERT ({}) is signed by a CA that is not in the file: set \
                     GRIMOS_TLS_CA to that CA so that user-service can verify its embedded \
                     auth-service",
                    cert.display()
                );
            }
            tls = tls.ca_certificate(Certificate::from_pem(chain.pem));
        }
    }
    let name = match name {
        ServerName::Dialled => ip.to_string(),
        ServerName::Other(name) => {
            tls = tls.domain_name(name.clone());
            name
        }
    };
    tracing::info!(
        addr = %dial,
        server_name = name,
        mutual = auth.tls_ca.is_some(),
        "calling the embedded auth-service over TLS"
    );
    Ok((format!("https://{dial}"), Some(tls)))
}

/// The name the embedded auth-service's certificate is verified against.
#[derive(Debug, PartialEq, Eq)]
enum ServerName {
    /// The dialled IP address, which the certificate names.
    Dialled,
    /// Another of the certificate's names.
    Other(String),
}

/// An IP address equal to the dialled one, else `localhost`, else the first DNS name
/// (a wildcard standing for any label), else the first IP address; `None` if the
/// certificate names nothing.
fn server_name(leaf: &Leaf, dialled: IpAddr) -> Option<ServerName> {
    if leaf.ip_addresses.contains(&dialled) {
        return Some(ServerName::Dialled);
    }
    let names = &leaf.dns_names;
    let name = names
        .iter()
        .find(|name| name.eq_ignore_ascii_case("localhost"))
        .or_else(|| names.iter().find(|name| !name.starts_with("*.")))
        .cloned()
        .or_else(|| {
            names
                .iter()
                .find_map(|name| name.strip_prefix("*."))
                .map(|parent| format!("auth.{parent}"))
        })
        .or_else(|| leaf.ip_addresses.first().map(ToString::to_string))?;
    Some(ServerName::Other(name))
}

/// `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY` as a client certificate, when both are set.
fn client_identity(auth: &auth_service::Config) -> anyhow::Result<Option<Identity>> {
    let (Some(cert), Some(key)) = (&auth.tls_cert, &auth.tls_key) else {
        return Ok(None);
    };
    let chain = CertFile::read("GRIMOS_TLS_CERT", cert)?;
    // auth-service would refuse, at every handshake, a client certificate whose extended
    // key usage leaves out client authentication; say so now instead. A certificate that
    // cannot be read here is left for the TLS library to judge.
    if let Ok(Leaf {
        client_auth: Some(false),
        ..
    }) = chain.leaf()
    {
        bail!(
            "GRIMOS_TLS_CERT ({}) does not allow client authentication (extended key usage \
             clientAuth), which mutual TLS between services needs",
            cert.display()
        );
    }
    let key = std::fs::read(key)
        .with_context(|| format!("GRIMOS_TLS_KEY: cannot read {}", key.display()))?;
    Ok(Some(Identity::from_pem(chain.pem, key)))
}

/// A PEM file of one or more certificates.
struct CertFile {
    /// The file as read, for tonic.
    pem: Vec<u8>,
    /// Its certificates (DER), in order.
    certificates: Vec<Vec<u8>>,
}

impl CertFile {
    fn read(setting: &str, path: &Path) -> anyhow::Result<CertFile> {
        let pem = std::fs::read(path)
            .with_context(|| format!("{setting}: cannot read {}", path.display()))?;
        let certificates = pem_certificates(&pem)
            .map_err(|error| anyhow!("{setting} ({}): bad PEM: {error}", path.display()))?;
        if certificates.is_empty() {
            bail!(
                "{setting} ({}): no certificate (-----BEGIN CERTIFICATE-----) in it",
                path.display()
            );
        }
        Ok(CertFile { pem, certificates })
    }

    /// The first certificate, the server's or client's own.
    fn leaf(&self) -> anyhow::Result<Leaf> {
        Leaf::parse(self.certificates.first().context("no certificate")?)
    }
}

/// The DER certificates of a PEM text, in order; other PEM blocks (keys) are skipped.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, PEMError> {
    Pem::iter_from_buffer(pem)
        .filter_map(|block| match block {
            Ok(block) if block.label == "CERTIFICATE" => Some(Ok(block.contents)),
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        })
        .collect()
}

/// What the TLS set-up needs to know of a certificate.
#[derive(Debug, Default, PartialEq, Eq)]
struct Leaf {
    /// The subjectAltName DNS names.
    dns_names: Vec<String>,
    /// The subjectAltName IP addresses.
    ip_addresses: Vec<IpAddr>,
    /// Whether the extended key usage allows client authentication; `None` when the
    /// certificate does not restrict its usage.
    client_auth: Option<bool>,
    /// The issuer is the subject: self-signed (or at least self-issued).
    self_issued: bool,
}

impl Leaf {
    /// The facts of a DER certificate; an error, never a panic, if it is not one.
    fn parse(der: &[u8]) -> anyhow::Result<Leaf> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|error| anyhow!("{error}"))?;
        let client_auth = cert
            .extended_key_usage()
            .map_err(|error| anyhow!("extended key usage: {error}"))?
            .map(|usage| usage.value.client_auth);
        let mut leaf = Leaf {
            client_auth,
            self_issued: cert.issuer().as_raw() == cert.subject().as_raw(),
            ..Leaf::default()
        };
        let names = cert
            .subject_alternative_name()
            .map_err(|error| anyhow!("subjectAltName: {error}"))?;
        for name in names.iter().flat_map(|names| &names.value.general_names) {
            match name {
                GeneralName::DNSName(name) => leaf.dns_names.push((*name).to_owned()),
                GeneralName::IPAddress(ip) => leaf.ip_addresses.push(match ip.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*ip)?),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*ip)?),
                    _ => bail!("subjectAltName: an IP address of {} bytes", ip.len()),
                }),
                // A malformed DNS name (2) or IP address (7); other kinds are not read.
                GeneralName::Invalid(tag, _) if matches!(tag.0, 2 | 7) => {
                    bail!("subjectAltName: a malformed name (tag {tag})")
                }
                _ => {} // other kinds of names
            }
        }
        Ok(leaf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::IpAddr;

    use grimos_test_support::pki::{Pki, params};
    use grimos_test_support::rcgen::{ExtendedKeyUsagePurpose, KeyPair};

    use super::{Leaf, ServerName, pem_certificates, server_name};

    fn leaf_of(pem: &str) -> Leaf {
        let ders = pem_certificates(pem.as_bytes()).unwrap();
        assert_eq!(ders.len(), 1);
        Leaf::parse(&ders[0]).expect("a certificate")
    }

    #[test]
    fn names_usages_and_self_issue_are_read() {
        let key = KeyPair::generate().unwrap();
        let mut server = params(
            "server",
            &["localhost", "auth.internal", "127.0.0.1", "::1"],
        );
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = leaf_of(&server.self_signed(&key).unwrap().pem());
        assert_eq!(leaf.dns_names, ["localhost", "auth.internal"]);
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(leaf.ip_addresses, ips);
        assert_eq!(leaf.client_auth, Some(true));
        assert!(leaf.self_issued);

        let mut server_only = params("server-only", &["localhost"]);
        server_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_only = leaf_of(&server_only.self_signed(&key).unwrap().pem());
        assert_eq!(server_only.client_auth, Some(false));
    }

    #[test]
    fn a_certificate_signed_by_a_ca_is_not_self_issued() {
        let ca = Pki::new("ca");
        // No extended key usages: no such extension.
        let leaf = ca.issue_for("leaf", &["auth.internal"], vec![]);
        let facts = leaf_of(&leaf.cert_pem);
        assert!(!facts.self_issued);
        assert_eq!(facts.client_auth, None);
        assert!(leaf_of(&ca.ca_pem()).self_issued);
    }

    #[test]
    fn pem_text_is_read_block_by_block() {
        let key = KeyPair::generate().unwrap();
        let a = params("a", &["a"]).self_signed(&key).unwrap().pem();
        let b = params("b", &["b"]).self_signed(&key).unwrap().pem();
        let text =
            format!("junk\n{a}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{b}");
        let ders = pem_certificates(text.as_bytes()).unwrap();
        assert_eq!(ders.len(), 2);
        assert_eq!(Leaf::parse(&ders[1]).unwrap().dns_names, ["b"]);
        assert!(pem_certificates(b"no pem here").unwrap().is_empty());
        assert!(
            pem_certificates(&[0xff, 0xfe, b'\n', 0x80])
                .unwrap()
                .is_empty()
        );
        let cut = &a[..a.len() / 2];
        assert!(pem_certificates(cut.as_bytes()).is_err());
        let bad = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(pem_certificates(bad.as_bytes()).is_err());
    }

    #[test]
    fn anything_but_a_certificate_is_an_error_not_a_panic() {
        let key = KeyPair::generate().unwrap();
        let der = params("a", &["a"])
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        assert!(Leaf::parse(&der).is_ok());
        for len in 0..der.len() {
            assert!(Leaf::parse(&der[..len]).is_err(), "cut at {len}");
        }
        // Every byte flipped in turn: an error or some certificate, never a panic.
        for at in 0..der.len() {
            let mut flipped = der.clone();
            flipped[at] ^= 0xff;
            let _ = Leaf::parse(&flipped);
        }
        assert!(Leaf::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Leaf::parse(&[0x30, 0x80, 0x00, 0x00]).is_err());
        assert!(Leaf::parse(&key.serialize_der()).is_err());
    }

    #[test]
    fn the_embedded_server_name_prefers_the_dialled_address_then_localhost() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let leaf = |dns: &[&str], ips: &[&str]| Leaf {
            dns_names: dns.iter().map(|n| (*n).to_owned()).collect(),
            ip_addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            ..Leaf::default()
        };
        let other = |name: &str| Some(ServerName::Other(name.to_owned()));
        assert_eq!(
            server_name(&leaf(&["localhost"], &["127.0.0.1"]), loopback),
            Some(ServerName::Dialled)
        );
        assert_eq!(
            server_name(&leaf(&["a.internal", "LocalHost"], &["10.0.0.1"]), loopback),
            other("LocalHost")
        );
        assert_eq!(
            server_name(&leaf(&["*.svc", "a.internal"], &[]), loopback),
            other("a.internal")
        );
        assert_eq!(
            server_name(&leaf(&["*.svc"], &[]), loopback),
            other("auth.svc")
        );
        assert_eq!(
            server_name(&leaf(&[], &["10.0.0.1"]), loopback),
            other("10.0.0.1")
        );
        assert_eq!(server_name(&leaf(&[], &[]), loopback), None);
    }
}
