//! auth-service on PostgreSQL (`AUTH_DATABASE_URL=postgres://...`): the API end to end,
//! replicas sharing one database, restarts, and a wrong password. Each test gets
//! a fresh database on the server named by `GRIMOS_TEST_POSTGRES_URL`; without it they fail
//! (`just test-rust` skips them). A server that does not answer: `operations.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grimos_proto::auth::v1 as pb;
use grimos_test_support::postgres::{PgDatabase, database};
use tonic::Code;

use crate::helpers::{
    PASSWORD, SERVICE_TOKEN, TestApp, bearer, build_error, expect_code, spawn_app_with, spawn_in,
};

/// The contract: replicas agree on revocations within 5 s.
const REPLICA_AGREEMENT: Duration = Duration::from_secs(5);

/// auth-service on `db`, with a data folder of its own (for the signing key).
async fn spawn_on(db: &PgDatabase) -> TestApp {
    let url = db.url.clone();
    spawn_app_with(move |c| c.database_url = url).await
}

/// Another replica of `app`: the same database and signing key file.
async fn replica_of(app: &TestApp, db: &PgDatabase) -> TestApp {
    let url = db.url.clone();
    spawn_in(app.dir.clone(), move |c| c.database_url = url).await
}

/// Polls `app`'s ValidateToken every 100 ms until it rejects `token` with UNAUTHENTICATED;
/// `None` if it still validated after `within`.
async fn rejected_within(app: &TestApp, token: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        match app.validate(token).await {
            Err(status) if status.code() == Code::Unauthenticated => return Some(start.elapsed()),
            Err(status) => panic!("unexpected status while polling: {status:?}"),
            Ok(_) if start.elapsed() >= within => return None,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn delete_credential(app: &TestApp, user_id: &str) {
    let request = bearer(
        pb::DeleteCredentialRequest {
            user_id: user_id.into(),
        },
        SERVICE_TOKEN,
    );
    app.client.clone().delete_credential(request).await.unwrap();
}

#[tokio::test]
async fn credentials_and_logins() {
    let db = database().await;
    let app = spawn_on(&db).await;

    let roles = app
        .create_credential("u-ada", "Ada@Example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(roles, ["user"]);
    let roles = app
        .create_credential("u-root", "root@grimos.dev", PASSWORD)
        .await
        .unwrap();
    assert_eq!(roles, ["user", "admin"]);
    // The same email (in any case) or user id again.
    expect_code(
        app.create_credential("u-other", "ada@example.com", PASSWORD)
            .await,
        Code::AlreadyExists,
    );
    expect_code(
        app.create_credential("u-ada", "other@example.com", PASSWORD)
            .await,
        Code::AlreadyExists,
    );

    expect_code(
        app.login("ada@example.com", "wrong password").await,
        Code::Unauthenticated,
    );
    expect_code(
        app.login("nobody@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    let login = app.login("ADA@example.com", PASSWORD).await.unwrap();
    assert_eq!(login.user_id, "u-ada");
    assert_eq!(login.roles, ["user"]);
    let valid = app.validate(&login.access_token).await.unwrap();
    assert_eq!(valid.user_id, "u-ada");
    assert_eq!(valid.roles, ["user"]);
    let admin = app.login("root@grimos.dev", PASSWORD).await.unwrap();
    assert_eq!(
        app.validate(&admin.access_token).await.unwrap().roles,
        ["user", "admin"]
    );
    expect_code(app.validate("not.a.token").await, Code::Unauthenticated);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_session() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let login = app.signed_in("ada@example.com").await;
    let other = app.login("ada@example.com", PASSWORD).await.unwrap();

    let first = app.refresh(&login.refresh_token).await.unwrap();
    assert_ne!(first.refresh_token, login.refresh_token);
    assert_eq!(first.user_id, login.user_id);
    assert_eq!(
        app.validate(&first.access_token).await.unwrap().roles,
        ["user"]
    );
    assert_eq!(
        first.refresh_token_expire_time, login.refresh_token_expire_time,
        "the session's end does not move"
    );
    app.validate(&first.access_token).await.unwrap();
    let second = app.refresh(&first.refresh_token).await.unwrap();
    app.validate(&second.access_token).await.unwrap();

    // The first, rotated token presented again: reuse, the whole session ends.
    expect_code(
        app.refresh(&login.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
    );
    for token in [
        &login.access_token,
        &first.access_token,
        &second.access_token,
    ] {
        expect_code(app.validate(token).await, Code::Unauthenticated);
    }
    // Another session of the same user is untouched.
    app.validate(&other.access_token).await.unwrap();
    app.refresh(&other.refresh_token).await.unwrap();
    expect_code(
        app.refresh("not-a-refresh-token").await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_rotate_it_once() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let login = app.signed_in("ada@example.com").await;

    let refreshes = (0..8).map(|_| {
        let mut client = app.client.clone();
        let token = login.refresh_token.clone();
        tokio::spawn(async move {
            client
                .refresh_token(pb::RefreshTokenRequest {
                    refresh_token: token,
                })
                .await
                .map(tonic::Response::into_inner)
        })
    });
    let mut rotated = Vec::new();
    for refresh in refreshes.collect::<Vec<_>>() {
        match refresh.await.unwrap() {
            Ok(response) => rotated.push(response),
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        }
    }
    assert_eq!(rotated.len(), 1, "exactly one refresh succeeds");
    // The others were reuse of the rotated token: the session is over.
    expect_code(
        app.refresh(&rotated[0].refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.validate(&rotated[0].access_token).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn revoke_token_of_an_access_or_refresh_token_ends_its_session() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let login = app.signed_in("ada@example.com").await;
    let ended = app.login("ada@example.com", PASSWORD).await.unwrap();
    let refreshed = app.refresh(&login.refresh_token).await.unwrap();

    app.revoke(&refreshed.access_token).await.unwrap();
    // The whole session: its other access token and its refresh token too.
    for token in [&refreshed.access_token, &login.access_token] {
        expect_code(app.validate(token).await, Code::Unauthenticated);
    }
    expect_code(
        app.refresh(&refreshed.refresh_token).await,
        Code::Unauthenticated,
    );

    app.revoke(&ended.refresh_token).await.unwrap();
    expect_code(
        app.validate(&ended.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.refresh(&ended.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.revoke(&ended.refresh_token).await,
        Code::Unauthenticated,
    );
    // Logging out with a rotated refresh token is reuse: refused, and the session ends.
    let reused = app.login("ada@example.com", PASSWORD).await.unwrap();
    let rotated = app.refresh(&reused.refresh_token).await.unwrap();
    expect_code(
        app.revoke(&reused.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.refresh(&rotated.refresh_token).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn delete_credential_is_idempotent_and_stops_every_token() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let user_id = app.sign_up("ada@example.com").await;
    let bystander = app.signed_in("bob@example.com").await;
    let login = app.login("ada@example.com", PASSWORD).await.unwrap();
    let refreshed = app
        .refresh(
            &app.login("ada@example.com", PASSWORD)
                .await
                .unwrap()
                .refresh_token,
        )
        .await
        .unwrap();

    delete_credential(&app, &user_id).await;
    delete_credential(&app, &user_id).await;
    delete_credential(&app, "never-existed").await;

    for token in [&login.access_token, &refreshed.access_token] {
        expect_code(app.validate(token).await, Code::Unauthenticated);
    }
    for token in [&login.refresh_token, &refreshed.refresh_token] {
        expect_code(app.refresh(token).await, Code::Unauthenticated);
    }
    expect_code(
        app.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    app.validate(&bystander.access_token).await.unwrap();
    // The email is free again.
    app.create_credential("u-new", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    let again = app.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(again.user_id, "u-new");
}

#[tokio::test]
async fn logins_are_throttled() {
    let db = database().await;
    crate::throttling::parallel_attempts_cannot_exceed_the_limit_of(&spawn_on(&db).await).await;
}

#[tokio::test]
async fn a_successful_login_resets_the_count_and_the_lockout_ends() {
    let db = database().await;
    let url = db.url.clone();
    let app = spawn_app_with(move |c| {
        c.database_url = url;
        c.login_max_attempts = 2;
        c.login_lockout = Duration::from_secs(2);
    })
    .await;
    app.sign_up("ada@example.com").await;
    expect_code(
        app.login("ada@example.com", "wrong password").await,
        Code::Unauthenticated,
    );
    app.login("ada@example.com", PASSWORD).await.unwrap();
    for _ in 0..2 {
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }
    expect_code(
        app.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.login("ada@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn replicas_on_one_database_agree_on_revocations() {
    let db = database().await;
    let a = spawn_on(&db).await;
    let b = replica_of(&a, &db).await;

    // Credentials and sessions are shared.
    let user_id = a.sign_up("ada@example.com").await;
    let revoked = b.login("ada@example.com", PASSWORD).await.unwrap();
    let ended = a.login("ada@example.com", PASSWORD).await.unwrap();
    let reused = b.login("ada@example.com", PASSWORD).await.unwrap();
    for token in [&revoked, &ended, &reused] {
        a.validate(&token.access_token).await.unwrap();
        b.validate(&token.access_token).await.unwrap();
    }

    // An access token revoked on A.
    a.revoke(&revoked.access_token).await.unwrap();
    assert!(
        rejected_within(&b, &revoked.access_token, REPLICA_AGREEMENT)
            .await
            .is_some(),
        "B still accepts a token revoked on A after 5 s"
    );
    // A session ended on B.
    b.revoke(&ended.refresh_token).await.unwrap();
    assert!(
        rejected_within(&a, &ended.access_token, REPLICA_AGREEMENT)
            .await
            .is_some(),
        "A still accepts a token of a session ended on B after 5 s"
    );
    expect_code(a.refresh(&ended.refresh_token).await, Code::Unauthenticated);
    // A refresh token rotated on A and replayed on B.
    let rotated = a.refresh(&reused.refresh_token).await.unwrap();
    expect_code(
        b.refresh(&reused.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        a.refresh(&rotated.refresh_token).await,
        Code::Unauthenticated,
    );
    assert!(
        rejected_within(&a, &rotated.access_token, REPLICA_AGREEMENT)
            .await
            .is_some(),
        "A still accepts a token of a session B ended for reuse after 5 s"
    );

    // A credential deleted on B.
    let kept = a.login("ada@example.com", PASSWORD).await.unwrap();
    let bystander = a.signed_in("bob@example.com").await;
    delete_credential(&b, &user_id).await;
    assert!(
        rejected_within(&a, &kept.access_token, REPLICA_AGREEMENT)
            .await
            .is_some(),
        "A still accepts a deleted user's token after 5 s"
    );
    expect_code(
        a.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    a.validate(&bystander.access_token).await.unwrap();
    b.validate(&bystander.access_token).await.unwrap();
}

#[tokio::test]
async fn data_and_revocations_survive_a_restart() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let user_id = app.sign_up("ada@example.com").await;
    let login = app.login("ada@example.com", PASSWORD).await.unwrap();
    let revoked = app.login("ada@example.com", PASSWORD).await.unwrap();
    let ended = app.login("ada@example.com", PASSWORD).await.unwrap();
    let rotated = app.refresh(&login.refresh_token).await.unwrap();
    app.revoke(&revoked.access_token).await.unwrap();
    app.revoke(&ended.refresh_token).await.unwrap();
    for _ in 0..2 {
        expect_code(
            app.login("bob@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }

    let dir = app.stop().await;
    let url = db.url.clone();
    let app = spawn_in(dir, move |c| {
        c.database_url = url;
        c.login_max_attempts = 2;
    })
    .await;

    let again = app.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(again.user_id, user_id);
    app.validate(&again.access_token).await.unwrap();
    app.validate(&rotated.access_token).await.unwrap();
    expect_code(
        app.validate(&revoked.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.validate(&ended.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.refresh(&ended.refresh_token).await,
        Code::Unauthenticated,
    );
    // The rotation before the restart still counts, and so do the login attempts.
    app.refresh(&rotated.refresh_token).await.unwrap();
    expect_code(
        app.login("bob@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
}

#[tokio::test]
async fn replicas_starting_together_on_a_new_database_all_start() {
    let db = database().await;
    // Four replicas migrate the empty database at once (each with its own key file, so that
    // only the database is shared).
    let starts = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move {
            let dir = Arc::new(tempfile::tempdir().unwrap());
            spawn_in(dir, move |c| c.database_url = url).await
        })
    });
    let mut apps = Vec::new();
    for start in starts.collect::<Vec<_>>() {
        apps.push(start.await.unwrap());
    }
    apps[0].sign_up("ada@example.com").await;
    for app in &apps {
        let login = app.login("ada@example.com", PASSWORD).await.unwrap();
        app.validate(&login.access_token).await.unwrap();
    }
    expect_code(
        apps[3]
            .create_credential("u-other", "ada@example.com", PASSWORD)
            .await,
        Code::AlreadyExists,
    );
}

#[tokio::test]
async fn a_wrong_password_fails_the_start_without_showing_it() {
    let db = database().await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, host_and_db) = rest.rsplit_once('@').unwrap();
    let user = rest.split(':').next().unwrap();
    let url = format!("{scheme}://{user}:wrong-pw-xyz@{host_and_db}");
    let start = Instant::now();
    let error = build_error(move |c| c.database_url = url).await;
    assert!(start.elapsed() < Duration::from_secs(10), "{error}");
    assert!(error.contains("PostgreSQL"), "{error}");
    assert!(
        !error.contains("wrong-pw-xyz"),
        "the password leaked: {error}"
    );
}

#[tokio::test]
async fn sessions_end_with_their_lifetime() {
    let db = database().await;
    let url = db.url.clone();
    let app = spawn_app_with(move |c| {
        c.database_url = url;
        c.refresh_token_ttl = Duration::from_secs(2);
    })
    .await;
    crate::lifetimes::a_session_ends_with_its_lifetime_on(&app).await;
}
