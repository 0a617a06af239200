//! user-service reuses a `ValidateToken` answer for up to `AUTH_VALIDATION_CACHE_TTL`:
//! revocations made through user-service apply at once, others within that time. These tests
//! run with local verification off (`AUTH_LOCAL_VERIFICATION=false`), so every request takes
//! the `ValidateToken` path the cache belongs to.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::CommandFactory as _;
use grimos_proto::auth::v1 as auth_pb;
use grimos_test_support::shipped_duration;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app_with};

/// The contract: user-service refuses a revoked token within 1 s of the revocation.
const REFUSED_WITHIN: Duration = Duration::from_secs(1);

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.http
        .get(app.url("/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Revokes `token` at auth-service itself, behind user-service's back.
async fn revoke_at_auth_service(app: &TestApp, token: &str) {
    app.auth_client()
        .await
        .revoke_token(auth_pb::RevokeTokenRequest {
            token: token.to_owned(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_revoked_elsewhere_is_refused_within_1_second_at_the_shipped_ttl() {
    // The contract's bound (1 s) at the cache time user-service ships, not a test setting.
    let ttl = shipped_duration(&user_service::Config::command(), "validation-cache-ttl");
    let app = spawn_app_with(|c| {
        c.auth_local_verification = false;
        c.validation_cache_ttl = ttl;
    })
    .await;
    let ada = app.sign_up("ada@example.com").await;
    // An answer cached just before the revocation: the worst case.
    assert_eq!(me_status(&app, &ada.access_token).await, 200);

    let revoked = Instant::now();
    revoke_at_auth_service(&app, &ada.access_token).await;
    loop {
        let asked = revoked.elapsed();
        match me_status(&app, &ada.access_token).await {
            401 => break,
            200 => assert!(
                asked < REFUSED_WITHIN,
                "a token revoked {asked:?} before the request was still accepted"
            ),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
}

/// Sleeps until the wall clock reads `unix_secs`: what the expiry test waits for is the
/// passing of time itself.
async fn until(unix_secs: f64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    if unix_secs > now {
        tokio::time::sleep(Duration::from_secs_f64(unix_secs - now)).await;
    }
}

#[tokio::test]
async fn a_cached_answer_never_outlives_the_token() {
    // Access tokens of 1 s, answers kept for a minute: the token's expiry must win.
    let app = spawn_app_with(|c| {
        c.auth_local_verification = false;
        c.auth.access_token_ttl = Duration::from_secs(1);
        c.validation_cache_ttl = Duration::from_secs(60);
    })
    .await;
    app.create_user("ada@example.com", PASSWORD, "Ada")
        .await
        .unwrap();
    let login: Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap();
    let expires = humantime::parse_rfc3339(login["expireTime"].as_str().unwrap()).unwrap();
    let exp = expires.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert_eq!(me_status(&app, token).await, 200);

    // Inside auth-service's 5 s of leeway the token still works...
    until(exp + 2.0).await;
    assert_eq!(me_status(&app, token).await, 200);
    // ...and after it, not even from user-service's cache.
    until(exp + 6.5).await;
    assert_eq!(me_status(&app, token).await, 401);
}

#[tokio::test]
async fn with_a_zero_ttl_every_request_asks_auth_service() {
    let app = spawn_app_with(|c| {
        c.auth_local_verification = false;
        c.validation_cache_ttl = Duration::ZERO;
    })
    .await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    revoke_at_auth_service(&app, &ada.access_token).await;
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
}

#[tokio::test]
async fn revocations_through_user_service_apply_at_once() {
    let app = spawn_app_with(|c| {
        c.auth_local_verification = false;
        c.validation_cache_ttl = Duration::from_secs(60);
    })
    .await;

    // Logout with the bearer token.
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    let logout = app
        .authed(Method::POST, "/v1/auth/logout", &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(me_status(&app, &ada.access_token).await, 401);

    // Logout naming the token in the body.
    let bob = app.sign_up("bob@example.com").await;
    assert_eq!(me_status(&app, &bob.access_token).await, 200);
    let logout = app
        .http
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"token": bob.access_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(me_status(&app, &bob.access_token).await, 401);

    // Deleting the account revokes every token of the user.
    let eve = app.sign_up("eve@example.com").await;
    let second = app.login("eve@example.com", PASSWORD).await;
    let second: serde_json::Value = second.json().await.unwrap();
    let second = second["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&app, &eve.access_token).await, 200);
    assert_eq!(me_status(&app, &second).await, 200);
    let deleted = app
        .authed(Method::DELETE, &format!("/v1/users/{}", eve.user_id), &eve)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(me_status(&app, &eve.access_token).await, 401);
    assert_eq!(me_status(&app, &second).await, 401);
}
