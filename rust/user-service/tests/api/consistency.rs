//! Sign-up consistency across the two databases when a sign-up was interrupted after
//! auth-service stored the credential but before the profile became active: the state a
//! crash at that point leaves is written directly, then the service must recover.

use std::time::Duration;

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_test_support::app::TestData;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{AuthService, PASSWORD, TestApp, bearer, spawn_app_with, start_auth};

const TOKEN: &str = "consistency-test-token";

/// user-service (with its settings as `adjust` changes them) and a separate auth-service
/// whose service token the test knows, with a client of that auth-service.
pub async fn app_with_known_auth(
    reconcile: Duration,
    adjust: impl FnOnce(&mut user_service::Config),
) -> (
    TestApp,
    AuthServiceClient<tonic::transport::Channel>,
    AuthService,
) {
    let auth = start_auth(TestData::new(), None, TOKEN, |c| {
        c.admin_emails = vec![crate::helpers::ADMIN_EMAIL.to_owned()];
    })
    .await;
    let addr = auth.addr;
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{addr}"));
        c.auth.service_token = Some(SecretString::from(TOKEN.to_owned()));
        c.reconcile_interval = reconcile;
        adjust(c);
    })
    .await;
    let client = AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (app, client, auth)
}

/// The first half of what a crash between CreateCredential and activation leaves: the
/// credential, stored at auth-service. The caller writes the pending profile row.
pub async fn store_credential(
    auth: &mut AuthServiceClient<tonic::transport::Channel>,
    id: &str,
    email: &str,
) {
    auth.create_credential(bearer(
        auth_pb::CreateCredentialRequest {
            user_id: id.into(),
            email: email.into(),
            password: PASSWORD.into(),
        },
        TOKEN,
    ))
    .await
    .unwrap();
}

/// Writes what a crash between CreateCredential and activation leaves: a credential, and a
/// pending profile whose lease has ended.
async fn interrupted_sign_up(
    app: &TestApp,
    auth: &mut AuthServiceClient<tonic::transport::Channel>,
    id: &str,
    email: &str,
) {
    store_credential(auth, id, email).await;
    let mut db = app.dir.connect("user.db", "user_service").await;
    db.execute(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES ($1, $2, 'Interrupted', '', 'pending', 1000, 1000, 0)",
        &[id.into(), email.into()],
    )
    .await;
}

#[tokio::test]
async fn an_interrupted_sign_up_is_invisible_until_the_user_signs_in_then_complete() {
    let (app, mut auth, _auth) = app_with_known_auth(Duration::from_secs(3600), |_| {}).await;
    let id = "0190d0e0-0000-7000-8000-000000000001";
    interrupted_sign_up(&app, &mut auth, id, "ada@example.com").await;
    let admin = app.admin().await;
    let listed: Value = app.get_json("/v1/users", &admin).await;
    assert_eq!(
        listed["users"].as_array().unwrap().len(),
        1,
        "only the admin is visible"
    );
    let response = app
        .authed(Method::GET, &format!("/v1/users/{id}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The user can log in (the credential exists), so their profile must exist for them.
    let login: Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap();
    let me = app
        .http
        .get(app.url("/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["roles"], json!(["user"]));
    let response = app
        .authed(Method::GET, &format!("/v1/users/{id}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "now visible to admins too");
}

#[tokio::test]
async fn retrying_an_interrupted_sign_up_replaces_it_cleanly() {
    let (app, mut auth, _auth) = app_with_known_auth(Duration::from_secs(3600), |_| {}).await;
    let old = "0190d0e0-0000-7000-8000-000000000002";
    interrupted_sign_up(&app, &mut auth, old, "bob@example.com").await;
    let user = app
        .create_user("bob@example.com", "a brand new password", "Bob")
        .await
        .unwrap();
    assert_ne!(user.id, old);
    // The old credential is gone, the new one works.
    let old_login = app.login("bob@example.com", PASSWORD).await;
    assert_eq!(old_login.status(), 401, "the old credential is gone");
    let login = app.login("bob@example.com", "a brand new password").await;
    assert_eq!(login.status(), 200);
}

#[tokio::test]
async fn the_reconciler_removes_abandoned_sign_ups_and_their_credentials() {
    let (app, mut auth, _auth) = app_with_known_auth(Duration::from_millis(200), |_| {}).await;
    let id = "0190d0e0-0000-7000-8000-000000000003";
    interrupted_sign_up(&app, &mut auth, id, "carol@example.com").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let login = auth
            .login(auth_pb::LoginRequest {
                email: "carol@example.com".into(),
                password: PASSWORD.into(),
            })
            .await;
        if let Err(status) = login {
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reconciler never removed the credential"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the email is free again.
    app.create_user("carol@example.com", PASSWORD, "Carol")
        .await
        .unwrap();
}
