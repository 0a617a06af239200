//! Token lifetimes end to end: short `AUTH_ACCESS_TOKEN_TTL` and `AUTH_REFRESH_TOKEN_TTL`,
//! real tokens expiring on the clock, and the 5 s leeway bounded from both sides. (The instant
//! `exp + 5 s` itself is left to the tokens' own tests; these check clear cases on each side.)

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use tonic::Code;

use crate::helpers::{PASSWORD, expect_code, spawn_app, spawn_app_with};
use crate::tokens::{check, good_claims, sign_real, unix_now, with};

/// Waits until the wall clock reads `unix_secs`: the condition these tests wait for is the
/// passing of time itself.
async fn until(unix_secs: f64) {
    grimos_test_support::clock::wait_until(UNIX_EPOCH + Duration::from_secs_f64(unix_secs)).await;
}

fn seconds(timestamp: Option<&grimos_proto::wkt::Timestamp>) -> i64 {
    timestamp.expect("timestamp is set").seconds
}

#[tokio::test]
async fn an_access_token_is_accepted_within_the_leeway_and_refused_once_it_has_passed() {
    let app = spawn_app_with(|c| c.access_token_ttl = Duration::from_secs(1)).await;
    let login = app.signed_in("ada@example.com").await;
    let exp = seconds(login.expire_time.as_ref());
    let lifetime = exp - unix_now();
    assert!(
        (0..=1).contains(&lifetime),
        "a 1 s token lives {lifetime} s"
    );
    app.validate(&login.access_token).await.unwrap();

    // 2 s past its expiry: inside the 5 s of clock-skew leeway (and served from the cache of
    // verified tokens, which must check the expiry too).
    until(exp as f64 + 2.0).await;
    app.validate(&login.access_token).await.unwrap();
    assert!(
        check(&app, &login.access_token, "users.read.self")
            .await
            .unwrap()
    );

    // 6.5 s past it: the leeway is over, for every rpc that takes an access token.
    until(exp as f64 + 6.5).await;
    expect_code(
        app.validate(&login.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        check(&app, &login.access_token, "users.read.self").await,
        Code::Unauthenticated,
    );
    expect_code(app.revoke(&login.access_token).await, Code::Unauthenticated);
    // The session itself lives on: a refresh gives a token that works.
    let refreshed = app.refresh(&login.refresh_token).await.unwrap();
    app.validate(&refreshed.access_token).await.unwrap();
}

#[tokio::test]
async fn tokens_expired_6_to_59_seconds_ago_are_refused_and_2_seconds_ago_accepted() {
    let app = spawn_app().await;
    // Signed with the real key, as auth-service would have, `ago` seconds past their expiry
    // (whole seconds of the clock, so at least that long).
    let expired = |ago: i64| {
        let now = unix_now();
        let claims = with(good_claims("forged-user"), "exp", json!(now - ago));
        let claims = with(claims, "iat", json!(now - ago - 900));
        let claims = with(claims, "nbf", json!(now - ago - 900));
        sign_real(&app, &claims)
    };
    let valid = app.validate(&expired(2)).await.unwrap();
    assert_eq!(valid.user_id, "forged-user");
    for ago in [7, 10, 30, 59] {
        let status = expect_code(app.validate(&expired(ago)).await, Code::Unauthenticated);
        assert!(status.details().is_empty(), "{ago} s: {status:?}");
        expect_code(
            check(&app, &expired(ago), "users.read.self").await,
            Code::Unauthenticated,
        );
    }
}

/// A session with a 2 s `AUTH_REFRESH_TOKEN_TTL`: it refreshes while it lives, and once its
/// end has passed neither RefreshToken nor RevokeToken takes its refresh token.
#[tokio::test]
async fn a_refresh_token_is_refused_once_its_session_lifetime_has_passed() {
    let app = spawn_app_with(|c| c.refresh_token_ttl = Duration::from_secs(2)).await;
    let login = app.signed_in("ada@example.com").await;
    let end = seconds(login.refresh_token_expire_time.as_ref());
    let lifetime = end - unix_now();
    assert!(
        (1..=2).contains(&lifetime),
        "a 2 s session lives {lifetime} s"
    );
    let rotated = app.refresh(&login.refresh_token).await.unwrap();
    assert_eq!(
        seconds(rotated.refresh_token_expire_time.as_ref()),
        end,
        "a rotated token keeps the session's end"
    );
    let spare = app.login("ada@example.com", PASSWORD).await.unwrap();
    let spare_end = seconds(spare.refresh_token_expire_time.as_ref());

    // A session's end, in whole seconds, is the first second in which it is over.
    until(end.max(spare_end) as f64).await;
    expect_code(
        app.refresh(&rotated.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.revoke(&rotated.refresh_token).await,
        Code::Unauthenticated,
    );
    // Another session of the user, also past its end.
    expect_code(
        app.refresh(&spare.refresh_token).await,
        Code::Unauthenticated,
    );
    // The account is fine: a new login opens a new session.
    let again = app.login("ada@example.com", PASSWORD).await.unwrap();
    app.refresh(&again.refresh_token).await.unwrap();
}
