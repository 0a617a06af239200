//! Revoking a token ends the session it belongs to (the contract): logout with an access
//! token, or RevokeToken of a refresh token, stops every refresh token and every access token
//! descended from the same login, at once on the replica that served it and within 5 s on the
//! others, while the user's other sessions keep working. Each scenario runs on two replicas
//! sharing one database.

use tonic::Code;

use crate::helpers::{PASSWORD, TestApp, expect_code, spawn_app, spawn_in};
use crate::restart::{REPLICA_AGREEMENT, rejected_within};

/// Two replicas sharing one database (on the suite's backend) and key file.
async fn two_replicas() -> (TestApp, TestApp) {
    let a = spawn_app().await;
    let b = spawn_in(a.dir.clone(), |_| {}).await;
    (a, b)
}

async fn assert_rejected_within_agreement(app: &TestApp, token: &str, what: &str) {
    assert!(
        rejected_within(app, token, REPLICA_AGREEMENT)
            .await
            .is_some(),
        "{what} still accepted by the other replica after 5 s"
    );
}

async fn logout_with_an_access_token_ends_its_session(a: &TestApp, b: &TestApp) {
    let first = a.signed_in("ada@example.com").await;
    // The same session continues on B with a rotated refresh token and a new access token.
    let second = b.refresh(&first.refresh_token).await.unwrap();
    let other = b.login("ada@example.com", PASSWORD).await.unwrap();
    for app in [a, b] {
        for token in [
            &first.access_token,
            &second.access_token,
            &other.access_token,
        ] {
            app.validate(token).await.unwrap();
        }
    }

    a.revoke(&first.access_token).await.unwrap();

    // On A at once: every access token of the session, and its current refresh token.
    expect_code(a.validate(&first.access_token).await, Code::Unauthenticated);
    expect_code(
        a.validate(&second.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        a.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
    );
    // On B: the refresh token at once (it lives in the database), access tokens within 5 s.
    expect_code(
        b.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
    );
    assert_rejected_within_agreement(b, &second.access_token, "an access token of the session")
        .await;
    assert_rejected_within_agreement(b, &first.access_token, "the revoked access token").await;
    // Revoking a token of the ended session again is refused.
    expect_code(a.revoke(&second.access_token).await, Code::Unauthenticated);

    // The user's other session is untouched, on both replicas.
    for app in [a, b] {
        app.validate(&other.access_token).await.unwrap();
    }
    let other = a.refresh(&other.refresh_token).await.unwrap();
    b.validate(&other.access_token).await.unwrap();
}

async fn revoking_a_refresh_token_ends_every_access_token_of_its_session(a: &TestApp, b: &TestApp) {
    let first = a.signed_in("ada@example.com").await;
    let second = a.refresh(&first.refresh_token).await.unwrap();
    let other = a.login("ada@example.com", PASSWORD).await.unwrap();
    for token in [&first.access_token, &second.access_token] {
        a.validate(token).await.unwrap();
    }

    b.revoke(&second.refresh_token).await.unwrap();

    for token in [&first.access_token, &second.access_token] {
        expect_code(b.validate(token).await, Code::Unauthenticated);
        assert_rejected_within_agreement(a, token, "an access token of the ended session").await;
    }
    expect_code(
        a.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
    );
    for app in [a, b] {
        app.validate(&other.access_token).await.unwrap();
    }
    b.refresh(&other.refresh_token).await.unwrap();
}

#[tokio::test]
async fn logout_with_an_access_token_ends_its_session_on_every_replica() {
    let (a, b) = two_replicas().await;
    logout_with_an_access_token_ends_its_session(&a, &b).await;
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_every_access_token_of_its_session_on_every_replica() {
    let (a, b) = two_replicas().await;
    revoking_a_refresh_token_ends_every_access_token_of_its_session(&a, &b).await;
}
