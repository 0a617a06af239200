//! CreateUser over gRPC and HTTP: validation, duplicates, concurrency, and consistency of
//! the two databases.

use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{
    ADMIN_EMAIL, PASSWORD, expect_code, expect_http_error, spawn_app, violated_fields,
};

#[tokio::test]
async fn sign_up_over_grpc_returns_the_stored_user_who_can_then_log_in() {
    let app = spawn_app().await;
    let user = app
        .create_user("Ada@Example.com", PASSWORD, "  Ada Lovelace ")
        .await
        .unwrap();
    assert!(!user.id.is_empty());
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.display_name, "Ada Lovelace");
    assert_eq!(user.roles, ["user"]);
    assert!(user.create_time.is_some() && user.create_time == user.update_time);
    assert!(app.can_log_in("ada@example.com").await);
}

#[tokio::test]
async fn sign_up_over_http_is_201_with_canonical_json() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/v1/users"))
        .json(&json!({"email": ADMIN_EMAIL, "password": PASSWORD, "displayName": "Root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let user = &body["user"];
    assert_eq!(user["email"], ADMIN_EMAIL);
    assert_eq!(user["displayName"], "Root");
    assert_eq!(user["roles"], json!(["user", "admin"]));
    let created = user["createTime"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.contains('T'),
        "RFC 3339 UTC: {created}"
    );
}

#[tokio::test]
async fn duplicate_email_in_any_case_is_already_exists() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, "Ada")
        .await
        .unwrap();
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
}

#[tokio::test]
async fn invalid_sign_ups_name_every_bad_field_and_store_nothing() {
    let app = spawn_app().await;
    let status = expect_code(
        app.create_user("nope", "short", "   ").await,
        Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["display_name", "email", "password"]);
    for (email, password, name, field) in [
        ("a@x.io", "x".repeat(1025), "Ada".to_owned(), "password"),
        (
            "a@x.io",
            PASSWORD.to_owned(),
            "n".repeat(101),
            "display_name",
        ),
        (
            "a@x.io",
            PASSWORD.to_owned(),
            "Ada\u{7}".to_owned(),
            "display_name",
        ),
        (
            "a@localhost",
            PASSWORD.to_owned(),
            "Ada".to_owned(),
            "email",
        ),
    ] {
        let status = expect_code(
            app.create_user(email, &password, &name).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
    }
    assert!(!app.can_log_in("a@x.io").await);

    let response = app
        .http
        .post(app.url("/v1/users"))
        .json(&json!({"email": "nope", "password": PASSWORD, "displayName": "Ada"}))
        .send()
        .await
        .unwrap();
    let body = expect_http_error(response, 400, 3).await;
    assert_eq!(
        body["details"],
        json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "email", "description": "email must contain exactly one @"}],
        }])
    );
}

#[tokio::test]
async fn concurrent_sign_ups_with_one_email_have_exactly_one_winner() {
    let app = spawn_app().await;
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let mut client = app.grpc.clone();
            tokio::spawn(async move {
                client
                    .create_user(grimos_proto::user::v1::CreateUserRequest {
                        email: "race@example.com".into(),
                        password: PASSWORD.into(),
                        display_name: format!("Racer {i}"),
                    })
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(won, 1);
    assert!(app.can_log_in("race@example.com").await);
}

#[tokio::test]
async fn concurrent_sign_ups_with_distinct_emails_all_win() {
    let app = spawn_app().await;
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let mut client = app.grpc.clone();
            tokio::spawn(async move {
                client
                    .create_user(grimos_proto::user::v1::CreateUserRequest {
                        email: format!("user{i}@example.com"),
                        password: PASSWORD.into(),
                        display_name: format!("User {i}"),
                    })
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        attempt.await.unwrap().unwrap();
    }
    let admin = app.admin().await;
    let body: Value = app.get_json("/v1/users?pageSize=100", &admin).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 9);
}
