//! Login: tokens for the right password, one indistinguishable error for everything else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Code;

use crate::helpers::{PASSWORD, expect_code, spawn_app};

fn secs_from_now(ts: &Option<grimos_proto::wkt::Timestamp>) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ts.as_ref().expect("timestamp set").seconds - now
}

#[tokio::test]
async fn login_returns_an_access_token_a_refresh_token_and_their_expiry() {
    let app = spawn_app().await;
    let user_id = app.sign_up("ada@example.com").await;
    let login = app.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(login.user_id, user_id);
    assert_eq!(login.roles, ["user"]);
    assert_eq!(login.access_token.split('.').count(), 3, "a JWT");
    assert!(login.refresh_token.starts_with("grt_"));
    let access = secs_from_now(&login.expire_time);
    assert!(
        (895..=901).contains(&access),
        "access token lives 15 min, got {access}s"
    );
    let refresh = secs_from_now(&login.refresh_token_expire_time);
    let thirty_days = 30 * 24 * 3600;
    assert!(
        (thirty_days - 5..=thirty_days + 1).contains(&refresh),
        "got {refresh}s"
    );
    assert_eq!(
        app.validate(&login.access_token).await.unwrap().user_id,
        user_id
    );
}

#[tokio::test]
async fn email_is_case_insensitive_at_login() {
    let app = spawn_app().await;
    let user_id = app.sign_up("Ada@Example.com").await;
    assert_eq!(
        app.login("ADA@EXAMPLE.COM", PASSWORD)
            .await
            .unwrap()
            .user_id,
        user_id
    );
}

#[tokio::test]
async fn wrong_password_unknown_email_and_malformed_email_share_one_error() {
    let app = spawn_app_with_many_attempts().await;
    app.sign_up("ada@example.com").await;
    let too_long = "p".repeat(2000);
    let attempts = [
        ("ada@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
        ("not-an-email", PASSWORD),
        ("", ""),
        ("ada@example.com", too_long.as_str()),
    ];
    let mut messages = Vec::new();
    for (email, password) in attempts {
        let status = expect_code(app.login(email, password).await, Code::Unauthenticated);
        assert!(status.details().is_empty(), "no hints in details");
        messages.push(status.message().to_owned());
    }
    messages.dedup();
    assert_eq!(messages, ["invalid email or password"]);
}

#[tokio::test]
async fn wrong_email_and_wrong_password_take_comparable_time() {
    let app = spawn_app_with_many_attempts().await;
    app.sign_up("ada@example.com").await;
    // Warm up the connection and the hash pool.
    expect_code(
        app.login("ada@example.com", "warm up attempt").await,
        Code::Unauthenticated,
    );
    // Every attempt must fail for the credentials: a login failing fast for another reason
    // (UNAVAILABLE, INTERNAL) would make both sides equally quick and prove nothing.
    let time = |email: &'static str| {
        let app = &app;
        async move {
            let start = std::time::Instant::now();
            for _ in 0..3 {
                expect_code(
                    app.login(email, "wrong password").await,
                    Code::Unauthenticated,
                );
            }
            start.elapsed()
        }
    };
    let known = time("ada@example.com").await;
    let unknown = time("nobody@example.com").await;
    // Both pay for an Argon2 verification: neither is several times faster than the other.
    let (fast, slow) = if known < unknown {
        (known, unknown)
    } else {
        (unknown, known)
    };
    assert!(
        slow < fast * 3 + Duration::from_millis(50),
        "known {known:?}, unknown {unknown:?}"
    );
}

async fn spawn_app_with_many_attempts() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.login_max_attempts = 100).await
}
