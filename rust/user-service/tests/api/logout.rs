//! Logging out ends the session (the contract: revoking a token ends the session it belongs
//! to), as user-service's callers see it: after a logout, or a RevokeToken of a refresh
//! token, through user-service, the session's refresh token no longer refreshes and every
//! access token of the session is refused at once, even those whose `ValidateToken` answer
//! user-service had cached; the user's other sessions keep working.

use std::time::Duration;

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Session, TestApp, spawn_app_with};

/// A validation cache far longer than any test, so that "at once" cannot come from expiry.
async fn app_with_a_long_validation_cache() -> TestApp {
    spawn_app_with(|c| c.validation_cache_ttl = Duration::from_secs(60)).await
}

async fn me_status(app: &TestApp, access_token: &str) -> u16 {
    app.http
        .get(app.url("/v1/users/me"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// POST /v1/auth/refresh: the status, and the rotated tokens on success.
async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Option<Session>) {
    let response = app
        .http
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({ "refreshToken": refresh_token }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let body: Value = response.json().await.unwrap();
    let session = Session {
        user_id: body["userId"].as_str().unwrap().to_owned(),
        access_token: body["accessToken"].as_str().unwrap().to_owned(),
        refresh_token: body["refreshToken"].as_str().unwrap().to_owned(),
    };
    (status, Some(session))
}

/// A second session of the user `first` belongs to, by logging in again.
async fn another_session(app: &TestApp, email: &str, first: &Session) -> Session {
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    Session {
        user_id: first.user_id.clone(),
        access_token: body["accessToken"].as_str().unwrap().to_owned(),
        refresh_token: body["refreshToken"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn logout_over_http_ends_the_session_its_refresh_token_and_its_other_access_tokens() {
    let app = app_with_a_long_validation_cache().await;
    let first = app.sign_up("ada@example.com").await;
    // The same session continues with a rotated refresh token and a second access token.
    let (_, second) = refresh(&app, &first.refresh_token).await;
    let second = second.expect("the refresh succeeds");
    let other = another_session(&app, "ada@example.com", &first).await;
    for token in [
        &first.access_token,
        &second.access_token,
        &other.access_token,
    ] {
        assert_eq!(me_status(&app, token).await, 200, "cached as valid");
    }

    let logout = app
        .authed(Method::POST, "/v1/auth/logout", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    let (status, _) = refresh(&app, &second.refresh_token).await;
    assert_eq!(status, 401, "the session's refresh token after logout");
    assert_eq!(me_status(&app, &first.access_token).await, 401);
    assert_eq!(
        me_status(&app, &second.access_token).await,
        401,
        "another access token of the logged-out session"
    );
    // The user's other session is untouched.
    assert_eq!(me_status(&app, &other.access_token).await, 200);
    let (status, _) = refresh(&app, &other.refresh_token).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn logout_with_a_refresh_token_in_the_body_ends_the_cached_access_tokens_of_its_session() {
    let app = app_with_a_long_validation_cache().await;
    let session = app.sign_up("ada@example.com").await;
    let other = another_session(&app, "ada@example.com", &session).await;
    assert_eq!(me_status(&app, &session.access_token).await, 200);
    assert_eq!(me_status(&app, &other.access_token).await, 200);

    let logout = app
        .http
        .post(app.url("/v1/auth/logout"))
        .json(&json!({ "token": session.refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    assert_eq!(me_status(&app, &session.access_token).await, 401);
    assert_eq!(refresh(&app, &session.refresh_token).await.0, 401);
    assert_eq!(me_status(&app, &other.access_token).await, 200);
}

#[tokio::test]
async fn revoke_token_over_grpc_with_a_refresh_token_ends_the_cached_access_tokens_of_its_session()
{
    let app = app_with_a_long_validation_cache().await;
    let session = app.sign_up("ada@example.com").await;
    let other = another_session(&app, "ada@example.com", &session).await;
    assert_eq!(me_status(&app, &session.access_token).await, 200);
    assert_eq!(me_status(&app, &other.access_token).await, 200);

    AuthServiceClient::new(app.channel().await)
        .revoke_token(auth_pb::RevokeTokenRequest {
            token: session.refresh_token.clone(),
        })
        .await
        .unwrap();

    assert_eq!(me_status(&app, &session.access_token).await, 401);
    assert_eq!(me_status(&app, &other.access_token).await, 200);
}
