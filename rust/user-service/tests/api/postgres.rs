//! The real user-service on PostgreSQL (`USER_DATABASE_URL=postgres://…`), a fresh database
//! per test from `GRIMOS_TEST_POSTGRES_URL` (each test fails without it; `just test-rust` skips them).
//! The embedded auth-service keeps its SQLite file in the test's folder.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_proto::user::v1 as pb;
use grimos_proto::wkt::FieldMask;
use grimos_test_support::postgres::{PgDatabase, database};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tonic::Code;

use crate::consistency;
use crate::helpers::{
    PASSWORD, Session, TestApp, bearer, build_error, expect_code, expect_http_error,
    spawn_app_with, spawn_in,
};

/// user-service on the database `db`.
async fn spawn_on(db: &PgDatabase) -> TestApp {
    spawn_app_with(|c| c.user_database_url = db.url.clone()).await
}

/// `GET /v1/users?pageSize=5&pageToken=…` as `admin`: the ids listed, and the next token
/// (empty on the last page).
async fn http_page(app: &TestApp, admin: &Session, token: &str) -> (Vec<String>, String) {
    let body: Value = app
        .get_json(&format!("/v1/users?pageSize=5&pageToken={token}"), admin)
        .await;
    let ids = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    let next = body["nextPageToken"].as_str().unwrap_or("").to_owned();
    (ids, next)
}

/// The number of rows in the users table of `db`, read directly.
async fn rows_in(db: &PgDatabase, state: &str) -> i64 {
    let mut conn = db.connect_in("user_service").await;
    let count = sqlx::query_scalar("SELECT count(*) FROM users WHERE state = $1")
        .bind(state)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    count
}

#[tokio::test]
async fn sign_up_read_update_and_delete_are_stored_in_postgres() {
    let db = database().await;
    let app = spawn_on(&db).await;
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ada = app.sign_up("Ada@Example.com").await;
    // The profile is in PostgreSQL, and no user-service SQLite file was made.
    assert_eq!(rows_in(&db, "active").await, 1);
    assert!(!app.dir.path().join("user.db").exists());

    // Duplicates, in any case, over gRPC and HTTP.
    expect_code(
        app.create_user("ADA@example.com", PASSWORD, "Ada 2").await,
        Code::AlreadyExists,
    );
    let response = app
        .http
        .post(app.url("/v1/users"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "displayName": "Ada"}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 409, 6).await;
    assert_eq!(rows_in(&db, "active").await, 1);
    assert_eq!(
        rows_in(&db, "pending").await,
        0,
        "failed sign-ups left nothing"
    );

    // GetCurrentUser over gRPC and HTTP.
    let me = app
        .grpc
        .clone()
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &ada.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.id, ada.user_id);
    assert_eq!(me.email, "ada@example.com");
    assert_eq!(me.roles, ["user"]);
    let body: Value = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(body["user"]["id"], ada.user_id.as_str());

    // GetUser: an admin may, another user may not.
    let admin = app.admin().await;
    let bob = app.sign_up("bob@example.com").await;
    let path = format!("/v1/users/{}", ada.user_id);
    let response = app.authed(Method::GET, &path, &admin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = app.authed(Method::GET, &path, &bob).send().await.unwrap();
    expect_http_error(response, 403, 7).await;
    let result = app
        .grpc
        .clone()
        .get_user(bearer(
            pb::GetUserRequest {
                user_id: ada.user_id.clone(),
            },
            &bob.access_token,
        ))
        .await;
    expect_code(result, Code::PermissionDenied);
    let missing = "00000000-0000-0000-0000-000000000000";
    let response = app
        .authed(Method::GET, &format!("/v1/users/{missing}"), &admin)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 404, 5).await;

    // UpdateUser with an explicit mask (gRPC), then an inferred one (PATCH).
    let updated = app
        .grpc
        .clone()
        .update_user(bearer(
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: ada.user_id.clone(),
                    display_name: "  Ada Lovelace ".into(),
                    email: "ignored@example.com".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask::new(vec!["display_name"])),
            },
            &ada.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.display_name, "Ada Lovelace");
    assert_eq!(updated.email, "ada@example.com", "not in the mask");
    assert!(updated.update_time > updated.create_time);
    let result = app
        .grpc
        .clone()
        .update_user(bearer(
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: ada.user_id.clone(),
                    email: "evil@example.com".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask::new(vec!["email"])),
            },
            &ada.access_token,
        ))
        .await;
    expect_code(result, Code::InvalidArgument);
    let response = app
        .authed(Method::PATCH, &path, &admin)
        .json(&json!({"displayName": "Countess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["displayName"], "Countess");
    assert_eq!(body["user"]["email"], "ada@example.com");
    let response = app
        .authed(Method::PATCH, &path, &bob)
        .json(&json!({"displayName": "Mallory"}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 403, 7).await;
    let body: Value = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(body["user"]["displayName"], "Countess");
    assert_ne!(body["user"]["updateTime"], body["user"]["createTime"]);

    // DeleteUser: gone (404), its credential too, and the email can sign up again.
    let response = app
        .authed(Method::DELETE, &path, &bob)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 403, 7).await;
    let response = app
        .authed(Method::DELETE, &path, &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "204 has no body"
    );
    let response = app.authed(Method::GET, &path, &admin).send().await.unwrap();
    expect_http_error(response, 404, 5).await;
    let response = app
        .authed(Method::DELETE, &path, &admin)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 404, 5).await;
    assert!(!app.can_log_in("ada@example.com").await);
    let again = app
        .create_user("ada@example.com", PASSWORD, "Ada again")
        .await
        .unwrap();
    assert_ne!(again.id, ada.user_id);
    assert_eq!(rows_in(&db, "active").await, 3, "admin, bob, the new ada");
    assert_eq!(rows_in(&db, "deleting").await, 0);
}

#[tokio::test]
async fn walking_every_page_sees_each_user_once_in_creation_order() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let admin = app.admin().await;
    let mut created = vec![admin.user_id.clone()];
    for i in 0..23 {
        created.push(
            app.create_user(&format!("u{i}@example.com"), PASSWORD, "U")
                .await
                .unwrap()
                .id,
        );
    }
    // A pending sign-up is never listed.
    let mut conn = db.connect_in("user_service").await;
    sqlx::query(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES ('0190d0e0-0000-7000-8000-0000000000ff', 'pending@example.com', 'P', '', 'pending', 1, 1, 9223372036854775807)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        // Alternate gRPC and HTTP: the same tokens serve both.
        let (users, next) = if pages % 2 == 0 {
            let response = app
                .grpc
                .clone()
                .list_users(bearer(
                    pb::ListUsersRequest {
                        page_size: 5,
                        page_token: token.clone(),
                    },
                    &admin.access_token,
                ))
                .await
                .unwrap()
                .into_inner();
            let ids: Vec<String> = response.users.into_iter().map(|u| u.id).collect();
            (ids, response.next_page_token)
        } else {
            http_page(&app, &admin, &token).await
        };
        pages += 1;
        assert!(users.len() <= 5);
        seen.extend(users);
        if next.is_empty() {
            break;
        }
        token = next;
        // A user created mid-walk lands at the end, without disturbing the pages before it.
        if pages == 2 {
            created.push(
                app.create_user("late@example.com", PASSWORD, "Late")
                    .await
                    .unwrap()
                    .id,
            );
        }
    }
    assert_eq!(pages, 5, "25 users in pages of 5");
    assert_eq!(seen, created, "every user once, by create time then id");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());

    // A tampered token is still INVALID_ARGUMENT.
    let result = app
        .grpc
        .clone()
        .list_users(bearer(
            pb::ListUsersRequest {
                page_size: 5,
                page_token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            },
            &admin.access_token,
        ))
        .await;
    expect_code(result, Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sign_ups_have_one_winner_per_email() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let sign_up = |email: String, i: usize| {
        let mut client = app.grpc.clone();
        tokio::spawn(async move {
            client
                .create_user(pb::CreateUserRequest {
                    email,
                    password: PASSWORD.into(),
                    display_name: format!("Racer {i}"),
                })
                .await
        })
    };
    for round in 0..3 {
        let email = format!("race{round}@example.com");
        let attempts: Vec<_> = (0..12).map(|i| sign_up(email.clone(), i)).collect();
        let mut won = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => won += 1,
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert!(app.can_log_in(&email).await);
    }
    let attempts: Vec<_> = (0..12)
        .map(|i| sign_up(format!("user{i}@example.com"), i))
        .collect();
    for attempt in attempts {
        attempt.await.unwrap().unwrap();
    }
    assert_eq!(rows_in(&db, "active").await, 15);
    assert_eq!(rows_in(&db, "pending").await, 0);
    let admin = app.admin().await;
    let body: Value = app.get_json("/v1/users?pageSize=100", &admin).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 16);
}

#[tokio::test]
async fn users_and_page_tokens_survive_a_restart_on_the_same_database() {
    let db = database().await;
    let url = db.url.clone();
    let app = spawn_on(&db).await;
    let admin = app.admin().await;
    let ada = app.sign_up("ada@example.com").await;
    app.sign_up("bob@example.com").await;
    let first: Value = app.get_json("/v1/users?pageSize=1", &admin).await;
    let token = first["nextPageToken"].as_str().unwrap().to_owned();
    let dir = app.stop().await;

    let app = spawn_in(dir, |c| c.user_database_url = url).await;
    let body: Value = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(body["user"]["id"], ada.user_id.as_str());
    assert_eq!(body["user"]["email"], "ada@example.com");
    // The page-token key is in the database: a token from before the restart still works.
    let (ids, _) = http_page(&app, &admin, &token).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], ada.user_id);
    expect_code(
        app.create_user("ada@example.com", PASSWORD, "Ada").await,
        Code::AlreadyExists,
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_wrong_password_fails_the_start_without_showing_it() {
    let db = database().await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    let url = format!("{scheme}://grimos:not-the-pw-123@{host}");
    let error = build_error(|c| c.user_database_url = url).await;
    assert!(error.contains("USER_DATABASE_URL"), "{error}");
    assert!(!error.contains("not-the-pw-123"), "{error}");
}

/// user-service on `db`, with a separate auth-service whose service token the test knows.
async fn app_with_known_auth(
    db: &PgDatabase,
    reconcile: Duration,
) -> (
    TestApp,
    AuthServiceClient<tonic::transport::Channel>,
    tempfile::TempDir,
) {
    consistency::app_with_known_auth(reconcile, |c| c.user_database_url = db.url.clone()).await
}

/// What a crash between CreateCredential and activation leaves: a credential, and a pending
/// profile whose lease has ended.
async fn interrupted_sign_up(
    db: &PgDatabase,
    auth: &mut AuthServiceClient<tonic::transport::Channel>,
    id: &str,
    email: &str,
) {
    consistency::store_credential(auth, id, email).await;
    let mut conn = db.connect_in("user_service").await;
    sqlx::query(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES ($1, $2, 'Interrupted', '', 'pending', 1000, 1000, 0)",
    )
    .bind(id)
    .bind(email)
    .execute(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
}

#[tokio::test]
async fn interrupted_sign_ups_complete_at_sign_in_or_are_replaced_by_a_retry() {
    let db = database().await;
    let (app, mut auth, _auth_dir) = app_with_known_auth(&db, Duration::from_secs(3600)).await;
    let ada = "0190d0e0-0000-7000-8000-000000000001";
    interrupted_sign_up(&db, &mut auth, ada, "ada@example.com").await;
    let admin = app.admin().await;
    let response = app
        .authed(Method::GET, &format!("/v1/users/{ada}"), &admin)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 404, 5).await;
    // Her token proves the credential exists: her first call completes the sign-up.
    let login: Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let me = app
        .http
        .get(app.url("/v1/users/me"))
        .bearer_auth(login["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["id"], ada);
    assert_eq!(me["user"]["roles"], json!(["user"]));

    // A retry of another interrupted sign-up takes its row over.
    let bob = "0190d0e0-0000-7000-8000-000000000002";
    interrupted_sign_up(&db, &mut auth, bob, "bob@example.com").await;
    let user = app
        .create_user("bob@example.com", "a brand new password", "Bob")
        .await
        .unwrap();
    assert_ne!(user.id, bob);
    assert_eq!(app.login("bob@example.com", PASSWORD).await.status(), 401);
    assert_eq!(
        app.login("bob@example.com", "a brand new password")
            .await
            .status(),
        200
    );
    assert_eq!(rows_in(&db, "pending").await, 0);
    assert_eq!(rows_in(&db, "active").await, 3);
}

#[tokio::test]
async fn the_reconciler_removes_abandoned_sign_ups_and_their_credentials() {
    let db = database().await;
    let (app, mut auth, _auth_dir) = app_with_known_auth(&db, Duration::from_millis(200)).await;
    let id = "0190d0e0-0000-7000-8000-000000000003";
    interrupted_sign_up(&db, &mut auth, id, "carol@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let login = auth
            .login(auth_pb::LoginRequest {
                email: "carol@example.com".into(),
                password: PASSWORD.into(),
            })
            .await;
        if let Err(status) = login {
            assert_eq!(status.code(), Code::Unauthenticated);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reconciler never removed the credential"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while rows_in(&db, "pending").await + rows_in(&db, "deleting").await > 0 {
        assert!(Instant::now() < deadline, "the row was never removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.create_user("carol@example.com", PASSWORD, "Carol")
        .await
        .unwrap();
}

#[tokio::test]
async fn both_services_can_share_one_database_each_in_its_own_schema() {
    let db = database().await;
    // The embedded auth-service on the same database as user-service.
    let app = spawn_app_with(|c| {
        c.user_database_url = db.url.clone();
        c.auth.database_url = db.url.clone();
    })
    .await;
    let session = app.sign_up("shared@example.com").await;
    let response = app
        .authed(Method::GET, "/v1/users/me", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let dir = app.stop().await;

    // Each service's tables and migration records are in its own schema.
    let mut conn = db.connect_in("public").await;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_schema IN ('auth_service', 'user_service', 'public')
         ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    let has = |schema: &str, table: &str| {
        tables
            .iter()
            .any(|(s, t)| s.as_str() == schema && t.as_str() == table)
    };
    assert!(has("auth_service", "credentials"), "{tables:?}");
    assert!(has("auth_service", "_sqlx_migrations"), "{tables:?}");
    assert!(has("user_service", "users"), "{tables:?}");
    assert!(has("user_service", "_sqlx_migrations"), "{tables:?}");
    assert!(!tables.iter().any(|(s, _)| s == "public"), "{tables:?}");

    // And both start again on it.
    let app = spawn_in(dir, |c| {
        c.user_database_url = db.url.clone();
        c.auth.database_url = db.url.clone();
    })
    .await;
    assert_eq!(
        app.login("shared@example.com", PASSWORD).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn connections_the_server_ends_are_replaced_without_a_failed_request() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let ada = app.sign_up("ada@example.com").await;
    let admin = app.admin().await;
    // Both pools hold connections: the one reads use, and the one writes use.
    app.get_json("/v1/users/me", &ada).await;
    app.get_json("/v1/users", &admin).await;

    // The server ends every connection to the database, as a restart or a failover does.
    let mut connection = db.connect_in("user_service").await;
    let ended: i64 = sqlx::query_scalar(
        "WITH theirs AS MATERIALIZED (
             SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND usename = current_user
               AND pid <> pg_backend_pid())
         SELECT count(*) FROM theirs WHERE pg_terminate_backend(pid)",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(ended >= 2, "ended {ended} connections");

    // Reads and writes carry on, on new connections, without an error reaching the caller.
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["id"], ada.user_id.as_str());
    let page = app.get_json("/v1/users?pageSize=10", &admin).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2, "{page}");
    let path = format!("/v1/users/{}", ada.user_id);
    let response = app
        .authed(Method::PATCH, &path, &ada)
        .json(&json!({"displayName": "Still Here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["displayName"], "Still Here");
}
