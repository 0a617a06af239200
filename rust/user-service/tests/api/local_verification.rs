//! Local verification (`AUTH_LOCAL_VERIFICATION`): tokens verified against the keys
//! auth-service publishes, revocations from its `WatchRevocations` stream, and the explicit
//! fallback to `ValidateToken` whenever the stream cannot vouch for the local state. Every
//! case runs the real auth-service (embedded, or separate on loopback) on the suite's backend.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_test_support::app::TestData;
use grimos_test_support::metrics::sum;
use grimos_test_support::ports::Reserved;
use grimos_test_support::wire::CuttableLink;
use secrecy::SecretString;

use crate::helpers::{
    AuthService, PASSWORD, Session, TestApp, spawn_app, spawn_app_with, start_auth,
};

const SERVICE_TOKEN: &str = "local-verification-test-token";
/// The contract: a revoked token is refused within 1 s of the revocation.
const REFUSED_WITHIN: Duration = Duration::from_secs(1);

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn counter(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&metrics(app).await, name, labels)
}

async fn validate_token_calls(app: &TestApp) -> f64 {
    counter(
        app,
        "auth_client_requests_total",
        &[("rpc", "ValidateToken")],
    )
    .await
}

async fn key_fetches(app: &TestApp) -> f64 {
    counter(app, "auth_client_key_fetches_total", &[("outcome", "ok")]).await
}

/// Waits until the revocation stream is in sync (and so local verification answers).
async fn wait_in_sync(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(app, "auth_client_revocation_stream_connected", &[]).await != 1.0 {
        assert!(Instant::now() < deadline, "the stream never got in sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.me_with(token).await.status().as_u16()
}

/// user-service on a separate auth-service at `auth`.
async fn app_on(auth: &AuthService, adjust: impl FnOnce(&mut user_service::Config)) -> TestApp {
    let addr = auth.addr;
    spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{addr}"));
        c.auth.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
        c.auth_deadline = Duration::from_millis(500);
        c.validation_cache_ttl = Duration::ZERO;
        adjust(c);
    })
    .await
}

async fn auth_client(addr: std::net::SocketAddr) -> AuthServiceClient<tonic::transport::Channel> {
    AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

async fn revoke_at(addr: std::net::SocketAddr, token: &str) {
    auth_client(addr)
        .await
        .revoke_token(auth_pb::RevokeTokenRequest {
            token: token.to_owned(),
        })
        .await
        .unwrap();
}

/// Waits until `token` is refused (401), failing if it is still accepted `within` after
/// `since`, or if any other status comes.
async fn refused_within(app: &TestApp, token: &str, since: Instant, within: Duration) -> Duration {
    loop {
        let asked = since.elapsed();
        match me_status(app, token).await {
            401 => return since.elapsed(),
            200 => assert!(
                asked < within,
                "a token revoked {asked:?} before the request was accepted"
            ),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn tokens_verify_without_any_validate_token_call() {
    let app = spawn_app_with(|c| c.validation_cache_ttl = Duration::ZERO).await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    let before = validate_token_calls(&app).await;
    for _ in 0..20 {
        assert_eq!(me_status(&app, &ada.access_token).await, 200);
    }
    // Permissions come from the published role table: an admin lists users.
    let admin = app.admin().await;
    app.get_json("/v1/users", &admin).await;
    assert_eq!(validate_token_calls(&app).await, before, "no round trip");
    // A forged or garbled token is refused here too, with the contract's status.
    let mut forged = ada.access_token.clone();
    forged.pop();
    assert_eq!(me_status(&app, &forged).await, 401);
    assert_eq!(validate_token_calls(&app).await, before);
}

#[tokio::test]
async fn turned_off_every_request_asks_auth_service() {
    let app = spawn_app_with(|c| {
        c.validation_cache_ttl = Duration::ZERO;
        c.auth_local_verification = false;
    })
    .await;
    let ada = app.sign_up("ada@example.com").await;
    let before = validate_token_calls(&app).await;
    for _ in 0..3 {
        assert_eq!(me_status(&app, &ada.access_token).await, 200);
    }
    assert_eq!(validate_token_calls(&app).await, before + 3.0);
}

#[tokio::test]
async fn a_revocation_at_auth_service_is_refused_within_1_second() {
    let app = spawn_app_with(|c| c.validation_cache_ttl = Duration::ZERO).await;
    wait_in_sync(&app).await;
    for i in 0..5 {
        let session = app.sign_up(&format!("u{i}@example.com")).await;
        assert_eq!(me_status(&app, &session.access_token).await, 200);
        let revoked = Instant::now();
        revoke_at(app.auth_addr.unwrap(), &session.access_token).await;
        refused_within(&app, &session.access_token, revoked, REFUSED_WITHIN).await;
    }
    assert!(counter(&app, "auth_client_revocations_applied_total", &[]).await >= 5.0);
}

#[tokio::test]
async fn a_logout_through_user_service_applies_at_once() {
    let app = spawn_app_with(|c| c.validation_cache_ttl = Duration::ZERO).await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    let response = app
        .http
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(&ada.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
}

/// A token with the claims of `token` and a header naming `kid` (its signature cannot match).
fn with_kid(token: &str, kid: &str) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap())
    )
}

#[tokio::test]
async fn a_burst_of_made_up_key_ids_costs_one_key_fetch() {
    let app = spawn_app_with(|c| {
        c.validation_cache_ttl = Duration::ZERO;
        c.auth_key_fetch_interval = Duration::from_secs(60);
    })
    .await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    let before = key_fetches(&app).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..40 {
        let token = with_kid(&ada.access_token, &format!("made-up-{i}"));
        let (http, url) = (app.http.clone(), app.url("/v1/users/me"));
        requests.spawn(async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            response.status().as_u16()
        });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(key_fetches(&app).await, before + 1.0);
    // The real key still verifies locally.
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
}

/// Puts a new key first in `data`'s key file (the old one stays, to verify older tokens).
fn rotate_key(data: &TestData) {
    let fresh = TestData::new();
    let path = |d: &TestData| d.path().join("auth-signing-key.pem");
    // A key file of its own, created by auth-service's own code.
    auth_service::keys::KeyRing::load_or_create(&path(&fresh)).unwrap();
    let new = std::fs::read_to_string(path(&fresh)).unwrap();
    let old = std::fs::read_to_string(path(data)).unwrap();
    std::fs::write(path(data), format!("{new}{old}")).unwrap();
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// A separate auth-service on a reserved port (to start it again there), user-service in sync
/// with it, and a user whose token verifies.
async fn signed_in_on_a_restartable_auth_service() -> (Reserved, AuthService, TestApp, Session) {
    let port = Reserved::new();
    let auth = start_auth(TestData::new(), Some(&port), SERVICE_TOKEN, |_| {}).await;
    let app = app_on(&auth, |_| {}).await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    (port, auth, app, ada)
}

#[tokio::test]
async fn a_key_rotation_needs_no_restart_of_user_service() {
    let (port, auth, app, ada) = signed_in_on_a_restartable_auth_service().await;

    let data = auth.stop().await;
    rotate_key(&data);
    let fetched = key_fetches(&app).await;
    let _auth = start_auth(data, Some(&port), SERVICE_TOKEN, |_| {}).await;
    wait_in_sync(&app).await;
    let login: serde_json::Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let new_token = login["accessToken"].as_str().unwrap();
    assert_ne!(
        kid_of(new_token),
        kid_of(&ada.access_token),
        "a new key signs"
    );
    let calls = validate_token_calls(&app).await;
    assert_eq!(me_status(&app, new_token).await, 200);
    assert_eq!(
        me_status(&app, &ada.access_token).await,
        200,
        "the old key still verifies"
    );
    assert_eq!(validate_token_calls(&app).await, calls, "verified locally");
    assert_eq!(key_fetches(&app).await, fetched + 1.0, "one key fetch");
}

#[tokio::test]
async fn a_stopped_auth_service_means_fallback_and_503_then_recovery() {
    let (port, auth, app, ada) = signed_in_on_a_restartable_auth_service().await;

    let data = auth.stop().await;
    let stopped = Instant::now();
    // Within the silence bound (1 s at most), requests go to ValidateToken, which fails.
    let fallback = loop {
        match me_status(&app, &ada.access_token).await {
            503 => break stopped.elapsed(),
            200 => assert!(
                stopped.elapsed() < REFUSED_WITHIN,
                "still trusted {:?} after the stop",
                stopped.elapsed()
            ),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(fallback < REFUSED_WITHIN, "{fallback:?}");
    assert!(counter(&app, "auth_client_local_fallbacks_total", &[]).await >= 1.0);
    assert_eq!(
        counter(&app, "auth_client_revocation_stream_connected", &[]).await,
        0.0
    );

    let _auth = start_auth(data, Some(&port), SERVICE_TOKEN, |_| {}).await;
    wait_in_sync(&app).await;
    let calls = validate_token_calls(&app).await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    assert_eq!(validate_token_calls(&app).await, calls, "local again");
}

#[tokio::test]
async fn a_revocation_made_while_the_stream_is_down_applies_on_reconnect() {
    // Two auth-service replicas on one database; user-service follows only the first.
    let port = Reserved::new();
    let first = start_auth(TestData::new(), Some(&port), SERVICE_TOKEN, |_| {}).await;
    let second = start_auth(first.data.clone(), None, SERVICE_TOKEN, |_| {}).await;
    let app = app_on(&first, |_| {}).await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);

    let data = first.stop().await;
    revoke_at(second.addr, &ada.access_token).await;
    // Never accepted again: first unavailable (fallback), then refused.
    assert_ne!(me_status(&app, &ada.access_token).await, 200);
    let _first = start_auth(data, Some(&port), SERVICE_TOKEN, |_| {}).await;
    wait_in_sync(&app).await;
    let calls = validate_token_calls(&app).await;
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
    assert_eq!(
        validate_token_calls(&app).await,
        calls,
        "refused from the local set"
    );
}

#[tokio::test]
async fn an_embedded_auth_service_is_verified_locally_too() {
    let app = spawn_app().await;
    wait_in_sync(&app).await;
    assert!(key_fetches(&app).await >= 1.0);
}

#[tokio::test]
async fn with_two_replicas_the_stream_moves_to_the_one_left() {
    let first = start_auth(TestData::new(), None, SERVICE_TOKEN, |_| {}).await;
    let second = start_auth(first.data.clone(), None, SERVICE_TOKEN, |_| {}).await;
    let (one, two) = (first.addr, second.addr);
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{one},http://{two}"));
        c.auth.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
        c.auth_deadline = Duration::from_millis(500);
        c.validation_cache_ttl = Duration::ZERO;
    })
    .await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    let bob = app.sign_up("bob@example.com").await;

    first.stop().await;
    // Every request is served meanwhile (locally, or by the replica left); none fails.
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_millis(1500) {
        assert_eq!(me_status(&app, &ada.access_token).await, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_in_sync(&app).await;
    let revoked = Instant::now();
    revoke_at(two, &bob.access_token).await;
    refused_within(&app, &bob.access_token, revoked, REFUSED_WITHIN).await;
    let calls = validate_token_calls(&app).await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    assert_eq!(validate_token_calls(&app).await, calls, "local again");
}

#[tokio::test]
async fn a_cut_link_means_fallback_within_the_bound_and_no_revoked_token_accepted() {
    let auth = start_auth(TestData::new(), None, SERVICE_TOKEN, |_| {}).await;
    let link = CuttableLink::start(auth.addr).await;
    let through = link.addr;
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{through}"));
        c.auth.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
        c.auth_deadline = Duration::from_millis(500);
        c.validation_cache_ttl = Duration::ZERO;
    })
    .await;
    wait_in_sync(&app).await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);

    // The stream goes silent: no error, no end. The revocation happens behind the cut.
    link.cut();
    let revoked = Instant::now();
    revoke_at(auth.addr, &ada.access_token).await;
    let mut unavailable = 0;
    while revoked.elapsed() < Duration::from_secs(3) {
        let asked = revoked.elapsed();
        match me_status(&app, &ada.access_token).await {
            200 => assert!(
                asked < REFUSED_WITHIN,
                "a token revoked {asked:?} before was accepted"
            ),
            503 => unavailable += 1,
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        unavailable > 0,
        "requests went to ValidateToken, which failed"
    );
    assert!(counter(&app, "auth_client_local_fallbacks_total", &[]).await >= 1.0);
}

#[tokio::test]
async fn every_revocation_through_user_service_applies_at_once_locally() {
    let app = spawn_app_with(|c| c.validation_cache_ttl = Duration::ZERO).await;
    wait_in_sync(&app).await;

    // Logout naming the token in the body.
    let bob = app.sign_up("bob@example.com").await;
    assert_eq!(me_status(&app, &bob.access_token).await, 200);
    let logout = app
        .http
        .post(app.url("/v1/auth/logout"))
        .json(&serde_json::json!({"token": bob.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(
        me_status(&app, &bob.access_token).await,
        401,
        "its session ended"
    );

    // A password change ends every session but the new one.
    let ada = app.sign_up("ada@example.com").await;
    let changed = app
        .http
        .post(app.url("/v1/auth/password"))
        .bearer_auth(&ada.access_token)
        .json(
            &serde_json::json!({"currentPassword": PASSWORD, "newPassword": "another-password-1"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
    let new_token = changed["accessToken"].as_str().unwrap();
    assert_eq!(me_status(&app, new_token).await, 200);

    // Deleting the account revokes every token of the user.
    let eve = app.sign_up("eve@example.com").await;
    let second: serde_json::Value = app
        .login("eve@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let second = second["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&app, &second).await, 200);
    let deleted = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/v1/users/{}", eve.user_id),
            &eve,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(me_status(&app, &eve.access_token).await, 401);
    assert_eq!(me_status(&app, &second).await, 401);
}
