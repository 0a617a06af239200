//! Login throttling: slowed, then refused per email, race-free under parallel attempts.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{PASSWORD, expect_code, spawn_app, spawn_app_with};

/// 12 parallel wrong-password attempts (5 attempts per 15 minutes): 5 are checked, 7
/// refused; then even the right password is refused, with RetryInfo; other emails are not.
#[tokio::test]
async fn parallel_attempts_cannot_exceed_the_limit() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    let attempts = (0..12).map(|_| {
        let mut client = app.client.clone();
        tokio::spawn(async move {
            client
                .login(grimos_proto::auth::v1::LoginRequest {
                    email: "ada@example.com".into(),
                    password: "wrong password".into(),
                })
                .await
                .map(|_| ())
        })
    });
    let mut unauthenticated = 0;
    let mut exhausted = 0;
    for attempt in futures_join(attempts).await {
        match attempt.unwrap_err().code() {
            Code::Unauthenticated => unauthenticated += 1,
            Code::ResourceExhausted => exhausted += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((unauthenticated, exhausted), (5, 7));

    // Now even the right password is refused, with a retry delay inside the window.
    let status = expect_code(
        app.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
    let retry = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(15 * 60),
        "{retry:?}"
    );
    // Other accounts are unaffected.
    app.sign_up("bob@example.com").await;
    app.login("bob@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn a_successful_login_resets_the_count() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    for _ in 0..4 {
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }
    app.login("ada@example.com", PASSWORD).await.unwrap();
    for _ in 0..4 {
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }
    app.login("ada@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn unknown_emails_are_throttled_like_known_ones() {
    let app = spawn_app().await;
    for _ in 0..5 {
        expect_code(
            app.login("nobody@example.com", PASSWORD).await,
            Code::Unauthenticated,
        );
    }
    expect_code(
        app.login("nobody@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
}

#[tokio::test]
async fn attempts_beyond_half_the_limit_are_slowed() {
    let app = spawn_app_with(|c| c.login_slowdown = Duration::from_millis(400)).await;
    app.sign_up("ada@example.com").await;
    let mut elapsed = Vec::new();
    for _ in 0..4 {
        let start = std::time::Instant::now();
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
        elapsed.push(start.elapsed());
    }
    // Attempts 1-2 are free; attempt 3 waits 1 × 400 ms, attempt 4 waits 2 × 400 ms.
    assert!(elapsed[1] < Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed[2] >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed[3] >= Duration::from_millis(800), "{elapsed:?}");
}

#[tokio::test]
async fn the_lockout_ends_with_its_window() {
    let app = spawn_app_with(|c| {
        c.login_max_attempts = 2;
        c.login_lockout = Duration::from_secs(2);
    })
    .await;
    app.sign_up("ada@example.com").await;
    for _ in 0..2 {
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }
    let refused = expect_code(
        app.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
    // Retrying when the server says to (RetryInfo) succeeds: the window, not more, has passed.
    let delay = tonic_types::StatusExt::get_details_retry_info(&refused)
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(delay <= Duration::from_secs(2), "{delay:?}");
    tokio::time::sleep(delay).await;
    app.login("ada@example.com", PASSWORD).await.unwrap();
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}
