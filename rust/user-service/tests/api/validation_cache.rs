//! user-service reuses a `ValidateToken` answer for up to `AUTH_VALIDATION_CACHE_TTL`:
//! revocations made through user-service apply at once, others within that time.

use std::time::{Duration, Instant};

use grimos_proto::auth::v1 as auth_pb;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

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
async fn a_token_revoked_elsewhere_stops_working_within_the_ttl() {
    let ttl = Duration::from_millis(1500);
    let app = spawn_app_with(|c| c.validation_cache_ttl = ttl).await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);

    let revoked = Instant::now();
    revoke_at_auth_service(&app, &ada.access_token).await;
    // The answer user-service already has is still used for a while...
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    // ...but not for longer than the TTL.
    while me_status(&app, &ada.access_token).await == 200 {
        assert!(
            revoked.elapsed() < ttl + Duration::from_millis(500),
            "a revoked token was still accepted {:?} after revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
}

#[tokio::test]
async fn with_a_zero_ttl_every_request_asks_auth_service() {
    let app = spawn_app_with(|c| c.validation_cache_ttl = Duration::ZERO).await;
    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(me_status(&app, &ada.access_token).await, 200);
    revoke_at_auth_service(&app, &ada.access_token).await;
    assert_eq!(me_status(&app, &ada.access_token).await, 401);
}

#[tokio::test]
async fn revocations_through_user_service_apply_at_once() {
    let app = spawn_app_with(|c| c.validation_cache_ttl = Duration::from_secs(60)).await;

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
    let second = app.login("eve@example.com", crate::helpers::PASSWORD).await;
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
