//! ListUsers: order, page sizes and page tokens.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;
use tonic::Code;

use crate::helpers::{
    PASSWORD, Session, TestApp, bearer, expect_code, expect_http_error, spawn_app, spawn_in,
    violated_fields,
};
use grimos_proto::user::v1 as pb;

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

#[tokio::test]
async fn walking_every_page_sees_each_user_once_in_creation_order() {
    let app = spawn_app().await;
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
    let mut db = app.dir.connect("user.db", "user_service").await;
    db.execute(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES ('0190d0e0-0000-7000-8000-0000000000ff', 'pending@example.com', 'P', '', 'pending', 1, 1, 9223372036854775807)",
        &[],
    )
    .await;
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

#[tokio::test]
async fn users_and_page_tokens_survive_a_restart() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ada = app.sign_up("ada@example.com").await;
    app.sign_up("bob@example.com").await;
    let first: Value = app.get_json("/v1/users?pageSize=1", &admin).await;
    let token = first["nextPageToken"].as_str().unwrap().to_owned();
    let dir = app.stop().await;

    let app = spawn_in(dir, |_| {}).await;
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
}

/// Writes `count` active profiles straight into the app's database (no credentials: listing
/// reads profiles only), created before anyone signed up through the API.
async fn seed_profiles(app: &TestApp, count: i64) {
    let mut db = app.dir.connect("user.db", "user_service").await;
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
         INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         SELECT 'seed-' || i, 'seed' || i || '@example.com', 'Seeded', 'user', 'active', i, i, NULL
         FROM n",
        &[count.into()],
    )
    .await;
}

#[tokio::test]
async fn page_size_defaults_caps_and_rejects_negatives() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // More users than the largest page, so that "above 1000 means 1000" can fail.
    seed_profiles(&app, 1050).await;
    let list = |size: &str, token: &str| {
        app.authed(
            Method::GET,
            &format!("/v1/users?pageSize={size}&pageToken={token}"),
            &admin,
        )
        .send()
    };
    let users = |body: &Value| body["users"].as_array().unwrap().len();
    let body: Value = list("0", "").await.unwrap().json().await.unwrap();
    assert_eq!(users(&body), 50, "0 means 50");
    assert!(!body["nextPageToken"].as_str().unwrap().is_empty());
    let body: Value = list("5000", "").await.unwrap().json().await.unwrap();
    assert_eq!(users(&body), 1000, "above 1000 means 1000");
    let next = body["nextPageToken"].as_str().unwrap().to_owned();
    assert!(!next.is_empty(), "1051 users do not fit on one page");
    let body: Value = list("1001", &next).await.unwrap().json().await.unwrap();
    assert_eq!(users(&body), 51, "the rest, the admin last");
    assert_eq!(body["users"][50]["id"], admin.user_id.as_str());
    assert!(
        body.get("nextPageToken").is_none_or(|t| t == ""),
        "last page: {}",
        body["nextPageToken"]
    );
    let error = expect_http_error(list("-1", "").await.unwrap(), 400, 3).await;
    assert_eq!(
        error["details"][0]["fieldViolations"][0]["field"],
        "page_size"
    );
    expect_http_error(list("lots", "").await.unwrap(), 400, 3).await;
    // Given but empty is not an integer either (schemathesis found it answered as 0).
    let error = expect_http_error(list("", "").await.unwrap(), 400, 3).await;
    assert_eq!(
        error["details"][0]["fieldViolations"][0]["field"],
        "page_size"
    );
    // Absent is the default.
    let response = app
        .authed(Method::GET, "/v1/users", &admin)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(users(&body), 50, "no pageSize means 50");

    // Over gRPC: a negative size is INVALID_ARGUMENT too.
    let result = app
        .grpc
        .clone()
        .list_users(bearer(
            pb::ListUsersRequest {
                page_size: -1,
                page_token: String::new(),
            },
            &admin.access_token,
        ))
        .await;
    let status = expect_code(result, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn forged_or_tampered_page_tokens_are_invalid_argument() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for i in 0..3 {
        app.create_user(&format!("u{i}@example.com"), PASSWORD, "U")
            .await
            .unwrap();
    }
    let first = app
        .grpc
        .clone()
        .list_users(bearer(
            pb::ListUsersRequest {
                page_size: 1,
                page_token: String::new(),
            },
            &admin.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let real = first.next_page_token;
    let mut tampered = real.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    for token in [
        "garbage",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &String::from_utf8(tampered).unwrap(),
    ] {
        let result = app
            .grpc
            .clone()
            .list_users(bearer(
                pb::ListUsersRequest {
                    page_size: 1,
                    page_token: token.into(),
                },
                &admin.access_token,
            ))
            .await;
        let status = expect_code(result, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["page_token"]);
    }
    let response = app
        .authed(
            Method::GET,
            &format!("/v1/users?pageToken={real}&pageSize=1"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Over HTTP a forged token is 400, naming the field.
    let response = app
        .authed(
            Method::GET,
            "/v1/users?pageToken=garbage&pageSize=1",
            &admin,
        )
        .send()
        .await
        .unwrap();
    let error = expect_http_error(response, 400, 3).await;
    assert_eq!(
        error["details"][0]["fieldViolations"][0]["field"],
        "page_token"
    );
}
