//! ListUsers: order, page sizes and page tokens.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;
use tonic::Code;

use crate::helpers::{
    PASSWORD, bearer, expect_code, expect_http_error, spawn_app, violated_fields,
};
use grimos_proto::user::v1 as pb;

#[tokio::test]
async fn walking_every_page_sees_each_user_once_in_creation_order() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut created = vec![admin.user_id.clone()];
    for i in 0..22 {
        created.push(
            app.create_user(&format!("u{i}@example.com"), PASSWORD, "U")
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
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
        pages += 1;
        assert!(response.users.len() <= 5);
        seen.extend(response.users.into_iter().map(|u| u.id));
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
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
    assert_eq!(pages, 5);
    assert_eq!(seen, created, "every user once, by create time then id");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
}

#[tokio::test]
async fn page_size_defaults_caps_and_rejects_negatives() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for i in 0..55 {
        app.create_user(&format!("u{i}@example.com"), PASSWORD, "U")
            .await
            .unwrap();
    }
    let list = |size: &str| {
        app.authed(Method::GET, &format!("/v1/users?pageSize={size}"), &admin)
            .send()
    };
    let body: Value = list("0").await.unwrap().json().await.unwrap();
    assert_eq!(body["users"].as_array().unwrap().len(), 50);
    assert!(!body["nextPageToken"].as_str().unwrap().is_empty());
    let body: Value = list("5000").await.unwrap().json().await.unwrap();
    assert_eq!(body["users"].as_array().unwrap().len(), 56);
    assert!(
        body.get("nextPageToken").is_none_or(|t| t == ""),
        "last page: {}",
        body["nextPageToken"]
    );
    let error = expect_http_error(list("-1").await.unwrap(), 400, 3).await;
    assert_eq!(
        error["details"][0]["fieldViolations"][0]["field"],
        "page_size"
    );
    expect_http_error(list("lots").await.unwrap(), 400, 3).await;
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
        "",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &String::from_utf8(tampered).unwrap(),
    ] {
        if token.is_empty() {
            continue;
        }
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
}
