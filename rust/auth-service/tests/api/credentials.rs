//! CreateCredential and DeleteCredential: input rules, roles, the service credential.

use grimos_proto::auth::v1 as pb;
use grimos_test_support::app::TestData;
use grimos_test_support::backend::Backend;
use tonic::Code;

use crate::helpers::{
    PASSWORD, SERVICE_TOKEN, bearer, expect_code, spawn_app, spawn_in, violated_fields,
};

#[tokio::test]
async fn create_credential_grants_user_and_admin_roles_from_the_admin_list() {
    let app = spawn_app().await;
    let roles = app
        .create_credential("u-1", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(roles, ["user"]);
    // Admin emails match case-insensitively.
    let roles = app
        .create_credential("u-2", "Root@GRIMOS.dev", PASSWORD)
        .await
        .unwrap();
    assert_eq!(roles, ["user", "admin"]);
    let login = app.login("root@grimos.dev", PASSWORD).await.unwrap();
    assert_eq!(login.roles, ["user", "admin"]);
}

#[tokio::test]
async fn duplicate_email_in_any_case_or_duplicate_user_id_is_already_exists() {
    let app = spawn_app().await;
    app.create_credential("u-1", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    expect_code(
        app.create_credential("u-2", "ADA@example.com", PASSWORD)
            .await,
        Code::AlreadyExists,
    );
    expect_code(
        app.create_credential("u-1", "other@example.com", PASSWORD)
            .await,
        Code::AlreadyExists,
    );
    // The first credential is untouched.
    app.login("ada@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn invalid_fields_are_invalid_argument_with_every_violation_named() {
    let app = spawn_app().await;
    let status = expect_code(
        app.create_credential("", "not-an-email", "short").await,
        Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["email", "password", "user_id"]);

    let too_long = "x".repeat(1025);
    let cases = [
        ("u-1", "a@x.io", too_long.as_str(), "password"),
        ("u-1", "a@x", PASSWORD, "email"),
        ("u-1", "a@@x.io", PASSWORD, "email"),
        ("u 1", "a@x.io", PASSWORD, "user_id"),
    ];
    for (user_id, email, password, field) in cases {
        let status = expect_code(
            app.create_credential(user_id, email, password).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field], "{user_id:?} {email:?}");
    }
    let long_email = format!("{}@x.io", "a".repeat(250));
    let status = expect_code(
        app.create_credential("u-1", &long_email, PASSWORD).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["email"]);
    // Nothing was stored by any of these.
    expect_code(app.login("a@x.io", PASSWORD).await, Code::Unauthenticated);
}

#[tokio::test]
async fn credential_calls_require_the_service_token() {
    let app = spawn_app().await;
    let request = || pb::CreateCredentialRequest {
        user_id: "u-1".into(),
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
    };
    let mut client = app.client.clone();
    expect_code(
        client.create_credential(request()).await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .create_credential(bearer(request(), "wrong-token"))
            .await,
        Code::Unauthenticated,
    );
    let mut basic = tonic::Request::new(request());
    basic.metadata_mut().insert(
        "authorization",
        format!("Basic {SERVICE_TOKEN}").parse().unwrap(),
    );
    expect_code(client.create_credential(basic).await, Code::Unauthenticated);

    // A user's valid access token is recognised, and refused.
    let login = app.signed_in("bob@example.com").await;
    expect_code(
        client
            .create_credential(bearer(request(), &login.access_token))
            .await,
        Code::PermissionDenied,
    );
    let delete = pb::DeleteCredentialRequest {
        user_id: login.user_id.clone(),
    };
    expect_code(
        client
            .delete_credential(bearer(delete.clone(), &login.access_token))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client.delete_credential(delete).await,
        Code::Unauthenticated,
    );
    // Bob is still there.
    app.login("bob@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn without_a_configured_service_token_credential_calls_are_refused() {
    let app = crate::helpers::spawn_app_with(|c| c.service_token = None).await;
    expect_code(
        app.create_credential("u-1", "ada@example.com", PASSWORD)
            .await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn delete_credential_revokes_every_token_and_is_idempotent() {
    let app = spawn_app().await;
    let first = app.signed_in("ada@example.com").await;
    let second = app.login("ada@example.com", PASSWORD).await.unwrap();
    let delete = || {
        bearer(
            pb::DeleteCredentialRequest {
                user_id: first.user_id.clone(),
            },
            SERVICE_TOKEN,
        )
    };
    app.client
        .clone()
        .delete_credential(delete())
        .await
        .unwrap();

    for login in [&first, &second] {
        expect_code(
            app.validate(&login.access_token).await,
            Code::Unauthenticated,
        );
        expect_code(
            app.refresh(&login.refresh_token).await,
            Code::Unauthenticated,
        );
    }
    expect_code(
        app.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    // Again: nothing to delete, still OK, so callers may retry.
    app.client
        .clone()
        .delete_credential(delete())
        .await
        .unwrap();
    // The email is free again.
    let user_id = app.sign_up("ada@example.com").await;
    let login = app.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(login.user_id, user_id);
    app.validate(&login.access_token).await.unwrap();
}

#[tokio::test]
async fn delete_credential_checks_the_user_id() {
    let app = spawn_app().await;
    let request = bearer(
        pb::DeleteCredentialRequest {
            user_id: String::new(),
        },
        SERVICE_TOKEN,
    );
    let status = expect_code(
        app.client.clone().delete_credential(request).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["user_id"]);
}

#[tokio::test]
async fn a_write_blocked_by_another_sqlite_writer_is_unavailable_and_then_succeeds() {
    // About SQLite's one write lock, whatever the suite's backend (PostgreSQL outages:
    // `health.rs`).
    let app = spawn_in(TestData::on(Backend::Sqlite), |_| {}).await;
    app.sign_up("bob@example.com").await;
    // Another process holds auth.db's write lock past the 5 s busy timeout. A sign-up writes
    // the credential; a login writes its attempt count before it checks the password.
    let lock = grimos_test_support::sqlite::write_lock(&app.dir.path().join("auth.db")).await;
    let (created, logged_in) = tokio::join!(
        app.create_credential("u-1", "ada@example.com", PASSWORD),
        app.login("bob@example.com", PASSWORD)
    );
    let status = expect_code(created, Code::Unavailable);
    assert!(status.message().contains("database"), "{status:?}");
    let status = expect_code(logged_in, Code::Unavailable);
    assert!(status.message().contains("database"), "{status:?}");
    lock.release().await;
    app.create_credential("u-1", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    app.login("ada@example.com", PASSWORD).await.unwrap();
    app.login("bob@example.com", PASSWORD).await.unwrap();
}
