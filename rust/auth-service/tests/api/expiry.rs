//! The contract's expiry rule, at its boundary: an access token is accepted for at most 5 s
//! of clock-skew leeway past its `exp`, measured to the sub-second, by every rpc that reads
//! one. Runs the real app with a 1 s access-token lifetime and waits on the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grimos_test_support::clock::wait_until;
use tonic::{Code, Status};

use crate::helpers::{PASSWORD, TestApp, expect_code, spawn_app_with};

/// Half a second inside and outside the contract's 5 s of leeway.
const JUST_INSIDE: Duration = Duration::from_millis(4_500);
const JUST_OUTSIDE: Duration = Duration::from_millis(5_500);

/// A new login's access token and its `exp`.
async fn fresh_token(app: &TestApp) -> (String, SystemTime) {
    let login = app.login("ada@example.com", PASSWORD).await.unwrap();
    let exp = login.expire_time.expect("expire_time is set");
    let exp = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp.seconds).unwrap());
    (login.access_token, exp)
}

/// CheckPermission of a permission every user holds.
async fn check(app: &TestApp, access_token: &str) -> Result<bool, Status> {
    crate::tokens::check(app, access_token, "users.read.self").await
}

#[tokio::test]
async fn an_access_token_is_refused_once_5_seconds_past_its_expiry_have_passed() {
    let app = spawn_app_with(|c| c.access_token_ttl = Duration::from_secs(1)).await;
    app.sign_up("ada@example.com").await;

    // The "still accepted" half only means something if the answers came before exp + 5 s;
    // on a machine too busy for that, try again with new tokens rather than guess.
    for _ in 0..3 {
        // `seen` is validated inside the leeway (and so remembered by auth-service);
        // `unseen` is presented only after it.
        let (seen, exp) = fresh_token(&app).await;
        let (unseen, unseen_exp) = fresh_token(&app).await;

        wait_until(exp + JUST_INSIDE).await;
        let validated = app.validate(&seen).await;
        let allowed = check(&app, &seen).await;
        if SystemTime::now() >= exp + Duration::from_secs(5) {
            continue;
        }
        validated.expect("ValidateToken accepts a token 4.5 s past its exp");
        assert!(allowed.expect("CheckPermission accepts a token 4.5 s past its exp"));

        wait_until(exp.max(unseen_exp) + JUST_OUTSIDE).await;
        for token in [&seen, &unseen] {
            expect_code(app.validate(token).await, Code::Unauthenticated);
            expect_code(check(&app, token).await, Code::Unauthenticated);
            expect_code(app.revoke(token).await, Code::Unauthenticated);
        }
        return;
    }
    panic!("auth-service never answered within the 0.5 s before the end of the leeway");
}
