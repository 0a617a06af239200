//! TLS with `GRIMOS_TLS_CERT`, `GRIMOS_TLS_KEY` and `GRIMOS_TLS_CA`: user-service serving
//! HTTPS (HTTP/JSON, gRPC and gRPC-Web on its one port), calling an external auth-service
//! (named by `https://` URLs or `dns:///`) over TLS, and the embedded auth-service serving TLS
//! to other clients while user-service calls it in-process, with certificates made for each
//! test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grimos_common::tls::TlsSettings;
use grimos_test_support::app::TestData;
use grimos_test_support::grpc::health;
use grimos_test_support::pki::{Issued, Pki};
use grimos_test_support::rcgen::ExtendedKeyUsagePurpose;
use prost::Message as _;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig};
use user_service::Config;

use crate::helpers::{
    AuthService, PASSWORD, TestApp, bearer, build_error, expect_code, expect_http_error,
    spawn_app_with, start_auth,
};
use grimos_proto::user::v1 as pb;

/// The service credential shared by user-service and the external auth-service.
const SERVICE_TOKEN: &str = "tls-test-service-token";

/// TLS settings for an auth-service that serve `server`; with `mutual`, client certificates
/// signed by `pki` are required.
fn serve(pki: &Pki, tls: &mut TlsSettings, server: &Issued, mutual: bool) {
    tls.cert = Some(server.cert.clone());
    tls.key = Some(server.key.clone());
    tls.ca = mutual.then(|| pki.ca_file());
}

/// A standalone auth-service with the test's service token, `adjust`ed; stops when dropped.
async fn start_tls_auth(adjust: impl FnOnce(&mut auth_service::Config)) -> AuthService {
    start_auth(TestData::new(), None, SERVICE_TOKEN, adjust).await
}

/// user-service calling the external auth-service at `address`, with `adjust`ed settings
/// (the shipped deadline: a sign-up's password hashing on a loaded machine needs it).
async fn spawn_calling(address: String, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|c| {
        c.auth_service_address = Some(address);
        c.auth.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
        adjust(c);
    })
    .await
}

/// The deadline of the calls that must fail in time.
const SHORT_DEADLINE: Duration = Duration::from_millis(500);

/// Sign up (gRPC), login (HTTP), `/v1/users/me` (HTTP) and GetCurrentUser (gRPC).
async fn sign_up_and_use(app: &TestApp, email: &str) {
    let session = app.sign_up(email).await;
    let response = app
        .authed(Method::GET, "/v1/users/me", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["user"]["email"], email);
    let user = app
        .grpc
        .clone()
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &session.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.id, session.user_id);
}

#[tokio::test]
async fn an_external_auth_service_is_called_over_https_trusting_grimos_tls_ca() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let auth = start_tls_auth(|c| serve(&pki, &mut c.tls, &server, false)).await;
    let app = spawn_calling(format!("https://{}", auth.addr), |c| {
        c.tls.ca = Some(pki.ca_file());
    })
    .await;
    sign_up_and_use(&app, "ada@example.com").await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn with_mutual_tls_every_address_form_works_with_a_client_certificate() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let client = pki.issue("user-service", &["user-service"]);
    let auth = start_tls_auth(|c| serve(&pki, &mut c.tls, &server, true)).await;
    let port = auth.addr.port();
    let forms = [
        format!("https://localhost:{port}"),
        format!("https://127.0.0.1:{port}, https://localhost:{port}"),
        // dns:/// speaks TLS because GRIMOS_TLS_CA is set; the name is checked.
        format!("dns:///localhost:{port}"),
    ];
    for (index, address) in forms.into_iter().enumerate() {
        let app = spawn_calling(address, |c| {
            c.tls.ca = Some(pki.ca_file());
            c.tls.cert = Some(client.cert.clone());
            c.tls.key = Some(client.key.clone());
        })
        .await;
        sign_up_and_use(&app, &format!("user{index}@example.com")).await;
        app.stop().await;
    }
}

/// Asserts that calls needing auth-service fail with 503 / UNAVAILABLE within the deadline;
/// returns the message of the first.
async fn assert_unavailable_in_time(app: &TestApp) -> String {
    let start = Instant::now();
    let response = app.login("ada@example.com", PASSWORD).await;
    let body = expect_http_error(response, 503, 14).await;
    let status = app.create_user("ada@example.com", PASSWORD, "Ada").await;
    expect_code(status, Code::Unavailable);
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    // Three calls, each bounded by the 500 ms deadline (they fail at the handshake).
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_client_certificate_gives_503_in_time() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let auth = start_tls_auth(|c| serve(&pki, &mut c.tls, &server, true)).await;
    let address = format!("https://localhost:{}", auth.addr.port());

    // user-service trusts another CA, which also signed its certificate: it refuses
    // auth-service's certificate before presenting its own.
    let other = Pki::new("another-ca");
    let client = other.issue("user-service", &["user-service"]);
    let app = spawn_calling(address.clone(), |c| {
        c.auth_deadline = SHORT_DEADLINE;
        c.tls.ca = Some(other.ca_file());
        c.tls.cert = Some(client.cert.clone());
        c.tls.key = Some(client.key.clone());
    })
    .await;
    let message = assert_unavailable_in_time(&app).await;
    assert!(message.contains("UnknownIssuer"), "{message}");
    app.stop().await;

    // user-service presents no client certificate: auth-service refuses it.
    let app = spawn_calling(address, |c| {
        c.auth_deadline = SHORT_DEADLINE;
        c.tls.ca = Some(pki.ca_file());
    })
    .await;
    assert_unavailable_in_time(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn the_embedded_auth_service_serves_tls_to_others_while_user_service_calls_it_in_process() {
    // Self-signed, naming neither 127.0.0.1 nor localhost: user-service needs no name to
    // verify its embedded auth-service by, as it calls it without a socket.
    let pki = Pki::new("unused-ca");
    let server = pki.self_signed("embedded", &["auth.internal"]);
    let app = spawn_app_with(|c| serve(&pki, &mut c.tls, &server, false)).await;
    sign_up_and_use(&app, "ada@example.com").await;

    let auth = app.auth_addr.unwrap();
    health(format!("http://{auth}"), None).await.unwrap_err();
    let trusting = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&server.cert).unwrap()))
        .domain_name("auth.internal");
    health(format!("https://{auth}"), Some(trusting))
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_embedded_auth_service_with_a_ca_requires_client_certificates_and_gets_them() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let app = spawn_app_with(|c| serve(&pki, &mut c.tls, &server, true)).await;
    sign_up_and_use(&app, "ada@example.com").await;

    let url = format!("https://{}", app.auth_addr.unwrap());
    let error = health(url.clone(), Some(pki.client())).await.unwrap_err();
    assert!(error.contains("CertificateRequired"), "{error}");
    health(url, Some(pki.client().identity(server.identity())))
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn inconsistent_tls_settings_fail_the_start_with_a_clear_message() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();

    // https:// without a CA to trust.
    let error = build_error(|c| c.auth_service_address = Some("https://auth:50051".into())).await;
    assert!(error.contains("GRIMOS_TLS_CA"), "{error}");
    // A CA (so TLS) with an http:// address.
    let error = build_error(|c| {
        c.auth_service_address = Some("http://auth:50051".into());
        c.tls.ca = Some(pki.ca_file());
    })
    .await;
    assert!(error.contains("https://"), "{error}");
    // A CA file without a certificate.
    let error = build_error(|c| {
        c.auth_service_address = Some("dns:///auth:50051".into());
        c.tls.ca = Some(server.key.clone());
    })
    .await;
    assert!(error.contains("no PEM certificate"), "{error}");
    // A client certificate that does not allow client authentication.
    let server_only = pki.issue_for(
        "server-only",
        &["localhost"],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let error = build_error(|c| {
        c.auth_service_address = Some("https://auth:50051".into());
        c.tls.ca = Some(pki.ca_file());
        c.tls.cert = Some(server_only.cert.clone());
        c.tls.key = Some(server_only.key.clone());
    })
    .await;
    assert!(error.contains("client authentication"), "{error}");

    // Embedded: a CA alone cannot be served.
    let error = build_error(|c| c.tls.ca = Some(pki.ca_file())).await;
    assert!(error.contains("GRIMOS_TLS_CERT"), "{error}");
}

/// A gRPC-Web GetCurrentUser call over `app.http`; returns the user's email.
async fn grpc_web_current_user(app: &TestApp, access_token: &str) -> String {
    let response = app
        .http
        .post(app.url("/grimos.user.v1.UserService/GetCurrentUser"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(access_token)
        // An empty message: the flag byte and a zero length.
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body[0], 0, "a message frame first: {body:?}");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let reply = pb::GetCurrentUserResponse::decode(&body[5..5 + len]).unwrap();
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    reply.user.unwrap().email
}

#[tokio::test]
async fn user_service_serves_json_grpc_and_grpc_web_over_https_and_no_plaintext() {
    let pki = Pki::new("unused-ca");
    let server = pki.self_signed("server", &["localhost", "127.0.0.1"]);
    let app = spawn_app_with(|c| serve(&pki, &mut c.tls, &server, false)).await;
    assert!(app.base_url.starts_with("https://"), "{}", app.base_url);
    // JSON (login), then /me and GetCurrentUser, all over TLS.
    sign_up_and_use(&app, "ada@example.com").await;
    let session = app.sign_up("bob@example.com").await;
    assert_eq!(
        grpc_web_current_user(&app, &session.access_token).await,
        "bob@example.com"
    );

    // ALPN: h2 for clients that offer it, HTTP/1.1 (browsers' gRPC-Web, curl --http1.1) too.
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let http1 = reqwest::Client::builder()
        .http1_only()
        .resolve("localhost", app.addr)
        .add_root_certificate(reqwest::Certificate::from_pem(server.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = http1.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);

    // Nothing in plaintext: neither HTTP/1.1 nor gRPC (h2 prior knowledge) gets an answer.
    let plain = format!("http://{}", app.addr);
    let error = reqwest::get(format!("{plain}/healthz")).await.unwrap_err();
    assert!(error.is_request() || error.is_connect(), "{error:?}");
    health(plain, None).await.unwrap_err();
    // A client that does not trust the CA is refused at the handshake.
    let error = reqwest::get(app.url("/healthz")).await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");

    // Health over TLS, by the certificate's name.
    let trusting = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server.cert_pem))
        .domain_name("localhost");
    health(format!("https://{}", app.addr), Some(trusting))
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_silent_connection_does_not_hold_up_other_handshakes() {
    let pki = Pki::new("unused-ca");
    let server = pki.self_signed("server", &["localhost"]);
    let app = spawn_app_with(|c| serve(&pki, &mut c.tls, &server, false)).await;
    // Connected, but never says hello: its handshake waits up to 10 s in its own task.
    let _silent: Vec<_> = connect_silently(app.addr, 4).await;
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        app.http.get(app.url("/healthz")).send(),
    )
    .await
    .expect("an HTTPS request while silent connections are open")
    .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

async fn connect_silently(addr: SocketAddr, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut streams = Vec::new();
    for _ in 0..count {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    streams
}

#[tokio::test]
async fn with_a_ca_client_certificates_are_optional_but_checked_when_presented() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    let app = spawn_app_with(|c| serve(&pki, &mut c.tls, &server, true)).await;
    // Browsers and end-user programs present no certificate.
    sign_up_and_use(&app, "ada@example.com").await;

    let url = format!("https://{}", app.addr);
    let client = pki.client().domain_name("localhost");
    // A certificate signed by the CA: accepted.
    let service = pki.issue("other-service", &["other-service"]);
    health(
        url.clone(),
        Some(client.clone().identity(service.identity())),
    )
    .await
    .unwrap();
    // A certificate the CA did not sign: refused.
    let other = Pki::new("another-ca");
    let stranger = other.issue("stranger", &["stranger"]);
    let error = health(url, Some(client.identity(stranger.identity())))
        .await
        .unwrap_err();
    assert!(
        error.contains("UnknownCA") || error.contains("alert") || error.contains("BadCertificate"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unusable_tls_files_fail_the_start_of_user_service_with_the_setting_named() {
    let pki = Pki::new("grimos-test-ca");
    let server = pki.server();
    // The key of another certificate.
    let other = pki.issue("other", &["localhost"]);
    let error = build_error(|c| {
        serve(&pki, &mut c.tls, &server, false);
        c.tls.key = Some(other.key.clone());
    })
    .await;
    assert!(error.contains("GRIMOS_TLS_KEY"), "{error}");
    // A key file where the certificate should be.
    let error = build_error(|c| {
        serve(&pki, &mut c.tls, &server, false);
        c.tls.cert = Some(server.key.clone());
    })
    .await;
    assert!(error.contains("GRIMOS_TLS_CERT"), "{error}");
    // A missing key file.
    let error = build_error(|c| {
        serve(&pki, &mut c.tls, &server, false);
        c.tls.key = Some(pki.dir().join("missing.key"));
    })
    .await;
    assert!(error.contains("GRIMOS_TLS_KEY"), "{error}");
}
