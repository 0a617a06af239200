//! TLS and mutual TLS (`GRIMOS_TLS_CERT`, `GRIMOS_TLS_KEY`, `GRIMOS_TLS_CA`), with
//! certificates made for each test.

use std::path::PathBuf;
use std::time::Duration;

use auth_service::{App, Config};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{PASSWORD, spawn_tls_app_with, test_config};

/// A throwaway CA, and the PEM files of what it signs, in a temporary folder.
struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as PEM text and as files.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl Issued {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

fn params(common_name: &str, names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

impl Pki {
    fn new(name: &str) -> Pki {
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

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn ca_certificate(&self) -> Certificate {
        Certificate::from_pem(self.ca.pem())
    }

    /// A certificate for `names`, signed by this CA, usable by servers and clients.
    fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let mut params = params(file, names);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
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

    /// The server's certificate: `localhost` and `127.0.0.1`.
    fn server(&self) -> Issued {
        self.issue("server", &["localhost", "127.0.0.1"])
    }

    /// Sets auth-service's TLS settings; with `mutual`, it requires client certificates.
    fn serve(&self, config: &mut Config, server: &Issued, mutual: bool) {
        config.tls_cert = Some(server.cert.clone());
        config.tls_key = Some(server.key.clone());
        config.tls_ca = mutual.then(|| self.ca_file());
    }

    /// A client that trusts this CA.
    fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca_certificate())
    }
}

/// A health check over a new connection to `url`, bounded so that a failure cannot hang;
/// the error describes the status and its cause.
async fn health(url: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let mut endpoint = Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let mut health = HealthClient::new(endpoint.connect_lazy());
    let call = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => Ok(()),
        // The debug form carries the cause (the TLS alert or certificate error).
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => panic!("the call hung"),
    }
}

#[tokio::test]
async fn a_tls_server_answers_clients_that_trust_its_ca_and_no_others() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let app = spawn_tls_app_with(|c| pki.serve(c, &server, false), pki.client()).await;

    // The whole API works over TLS: sign up, login, validate.
    let user_id = app.sign_up("ada@example.com").await;
    let tokens = app.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(
        app.validate(&tokens.access_token).await.unwrap().user_id,
        user_id
    );
    // By name too: the certificate names localhost.
    let by_name = pki.client().domain_name("localhost");
    health(format!("https://{}", app.addr), Some(by_name))
        .await
        .unwrap();

    // Plaintext is not served.
    health(format!("http://{}", app.addr), None)
        .await
        .unwrap_err();
    // A client that does not trust the CA refuses the server.
    let error = health(
        format!("https://{}", app.addr),
        Some(ClientTlsConfig::new()),
    )
    .await
    .unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    let other = Pki::new("another-ca");
    let error = health(format!("https://{}", app.addr), Some(other.client()))
        .await
        .unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    // Nor does one that checks for a name the certificate does not have.
    let wrong_name = pki.client().domain_name("auth.example.com");
    let error = health(format!("https://{}", app.addr), Some(wrong_name))
        .await
        .unwrap_err();
    assert!(error.contains("not valid for name"), "{error}");
    app.stop().await;
}

#[tokio::test]
async fn with_a_ca_the_server_requires_a_client_certificate_it_signed() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let client = pki.issue("user-service", &["user-service"]);
    let app = spawn_tls_app_with(
        |c| pki.serve(c, &server, true),
        pki.client().identity(client.identity()),
    )
    .await;
    let url = format!("https://{}", app.addr);

    // With a certificate the CA signed: served.
    app.signed_in("ada@example.com").await;
    health(url.clone(), Some(pki.client().identity(client.identity())))
        .await
        .unwrap();

    // Without a client certificate: refused.
    let error = health(url.clone(), Some(pki.client())).await.unwrap_err();
    assert!(error.contains("CertificateRequired"), "{error}");
    // With one another CA signed: refused.
    let other = Pki::new("another-ca");
    let stranger = other.issue("stranger", &["user-service"]);
    let error = health(
        url.clone(),
        Some(pki.client().identity(stranger.identity())),
    )
    .await
    .unwrap_err();
    assert!(error.contains("UnknownCA"), "{error}");
    // Plaintext: refused.
    health(format!("http://{}", app.addr), None)
        .await
        .unwrap_err();
    app.stop().await;
}

/// The error `App::build` returns for `adjust`ed test settings.
async fn build_error(adjust: impl FnOnce(&mut Config)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    adjust(&mut config);
    match App::build(config).await {
        Ok(_) => panic!("auth-service started"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn bad_tls_settings_fail_the_start() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let other = pki.issue("other", &["localhost"]);

    // A CA alone: the server has no certificate to serve mutual TLS with.
    let error = build_error(|c| c.tls_ca = Some(pki.ca_file())).await;
    assert!(error.contains("GRIMOS_TLS_CA"), "{error}");
    assert!(error.contains("GRIMOS_TLS_CERT"), "{error}");

    // A missing file.
    let error = build_error(|c| {
        pki.serve(c, &server, false);
        c.tls_key = Some(pki.dir.path().join("missing.key"));
    })
    .await;
    assert!(error.contains("GRIMOS_TLS_KEY"), "{error}");

    // Not a certificate.
    let error = build_error(|c| {
        pki.serve(c, &server, false);
        c.tls_cert = Some(server.key.clone());
    })
    .await;
    assert!(error.contains("invalid TLS settings"), "{error}");

    // A key that is not the certificate's.
    let error = build_error(|c| {
        pki.serve(c, &server, false);
        c.tls_key = Some(other.key.clone());
    })
    .await;
    assert!(error.contains("invalid TLS settings"), "{error}");

    // A CA file without a certificate.
    let error = build_error(|c| {
        pki.serve(c, &server, true);
        c.tls_ca = Some(server.key.clone());
    })
    .await;
    assert!(error.contains("invalid TLS settings"), "{error}");
}
