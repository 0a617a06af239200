//! A throwaway certificate authority for TLS tests: [`Pki`] makes a CA, and signs
//! certificates ([`Issued`]) that it writes as PEM files into its own temporary folder, so
//! that they can be given to a service as `GRIMOS_TLS_CERT`, `GRIMOS_TLS_KEY` and
//! `GRIMOS_TLS_CA` files, or used directly by a tonic client.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The parameters of a certificate with the common name `common_name` and the subject
/// alternative `names` (DNS names, or IP addresses where they parse as one).
pub fn params(common_name: &str, names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

/// A throwaway CA, and the PEM files of what it signs, in a temporary folder (removed when
/// the `Pki` is dropped).
pub struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as PEM text and as files.
pub struct Issued {
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The private key's PEM file.
    pub key: PathBuf,
    /// The certificate, as PEM text.
    pub cert_pem: String,
    /// The private key, as PEM text.
    pub key_pem: String,
}

impl Issued {
    /// The certificate and key as a tonic identity (a server's, or a client's for mutual TLS).
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl Pki {
    /// A new CA with the common name `name`; its certificate is written to [`Pki::ca_file`].
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = params(name, &[]);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki
    }

    /// The temporary folder the files are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate, as PEM text.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate, for a tonic client or server to trust.
    pub fn ca_certificate(&self) -> Certificate {
        Certificate::from_pem(self.ca.pem())
    }

    /// A client that trusts this CA.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca_certificate())
    }

    /// Writes `cert` and `key` as `<file>.pem` and `<file>.key`.
    fn write(&self, file: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Issued {
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&issued.cert, &issued.cert_pem).unwrap();
        std::fs::write(&issued.key, &issued.key_pem).unwrap();
        issued
    }

    /// A certificate for `names` with the extended key `usages` (none: no such extension),
    /// signed by this CA, written as `<file>.pem` and `<file>.key`.
    pub fn issue_for(
        &self,
        file: &str,
        names: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Issued {
        let mut params = params(file, names);
        params.extended_key_usages = usages;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        self.write(file, &cert, &key)
    }

    /// A certificate for `names`, signed by this CA, usable by servers and clients alike.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue_for(file, names, usages)
    }

    /// A self-signed certificate for `names` (this CA plays no part), written as
    /// `<file>.pem` and `<file>.key`.
    pub fn self_signed(&self, file: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params(file, names).self_signed(&key).unwrap();
        self.write(file, &cert, &key)
    }

    /// A server's certificate: `localhost` and `127.0.0.1`, as `server.pem` and `server.key`.
    pub fn server(&self) -> Issued {
        self.issue("server", &["localhost", "127.0.0.1"])
    }
}

#[cfg(test)]
mod tests {
    use super::Pki;

    #[test]
    fn what_the_ca_issues_is_written_where_it_says() {
        let pki = Pki::new("test-ca");
        assert_eq!(
            std::fs::read_to_string(pki.ca_file()).unwrap(),
            pki.ca_pem()
        );
        let server = pki.server();
        assert_eq!(server.cert, pki.dir().join("server.pem"));
        assert_eq!(server.key, pki.dir().join("server.key"));
        assert_eq!(
            std::fs::read_to_string(&server.cert).unwrap(),
            server.cert_pem
        );
        assert_eq!(
            std::fs::read_to_string(&server.key).unwrap(),
            server.key_pem
        );
        let own = pki.self_signed("own", &["auth.internal"]);
        assert!(own.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(own.cert_pem, server.cert_pem);
    }
}
