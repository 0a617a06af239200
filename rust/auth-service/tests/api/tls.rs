//! TLS and mutual TLS (`GRIMOS_TLS_CERT`, `GRIMOS_TLS_KEY`, `GRIMOS_TLS_CA`), with
//! certificates made for each test.

use auth_service::Config;
use grimos_test_support::grpc::health;
use grimos_test_support::pki::{Issued, Pki};
use tonic::transport::ClientTlsConfig;

use crate::helpers::{PASSWORD, build_error, spawn_tls_app_with};

/// Sets auth-service's TLS settings to serve `server`; with `mutual`, it requires client
/// certificates signed by `pki`.
fn serve(pki: &Pki, config: &mut Config, server: &Issued, mutual: bool) {
    config.tls.cert = Some(server.cert.clone());
    config.tls.key = Some(server.key.clone());
    config.tls.ca = mutual.then(|| pki.ca_file());
}

#[tokio::test]
async fn a_tls_server_answers_clients_that_trust_its_ca_and_no_others() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let app = spawn_tls_app_with(|c| serve(&pki, c, &server, false), pki.client()).await;

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
        |c| serve(&pki, c, &server, true),
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

#[tokio::test]
async fn bad_tls_settings_fail_the_start() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let other = pki.issue("other", &["localhost"]);

    // A CA alone: the server has no certificate to serve mutual TLS with.
    let error = build_error(|c| c.tls.ca = Some(pki.ca_file())).await;
    assert!(error.contains("GRIMOS_TLS_CA"), "{error}");
    assert!(error.contains("GRIMOS_TLS_CERT"), "{error}");

    // A missing file.
    let error = build_error(|c| {
        serve(&pki, c, &server, false);
        c.tls.key = Some(pki.dir().join("missing.key"));
    })
    .await;
    assert!(error.contains("GRIMOS_TLS_KEY"), "{error}");

    // Not a certificate.
    let error = build_error(|c| {
        serve(&pki, c, &server, false);
        c.tls.cert = Some(server.key.clone());
    })
    .await;
    assert!(
        error.contains("GRIMOS_TLS_CERT: no PEM certificate"),
        "{error}"
    );

    // A key that is not the certificate's.
    let error = build_error(|c| {
        serve(&pki, c, &server, false);
        c.tls.key = Some(other.key.clone());
    })
    .await;
    assert!(
        error.contains("do not make a usable server identity"),
        "{error}"
    );

    // A CA file without a certificate.
    let error = build_error(|c| {
        serve(&pki, c, &server, true);
        c.tls.ca = Some(server.key.clone());
    })
    .await;
    assert!(
        error.contains("GRIMOS_TLS_CA: no PEM certificate"),
        "{error}"
    );
}
