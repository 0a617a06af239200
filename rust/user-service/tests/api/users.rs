//! Reading, updating and deleting users, and who may do it.

use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{
    PASSWORD, bearer, expect_code, expect_http_error, spawn_app, violated_fields,
};
use grimos_proto::user::v1 as pb;
use grimos_proto::wkt::FieldMask;

#[tokio::test]
async fn get_me_returns_the_signed_in_user_over_http_and_grpc() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let response = app
        .authed(Method::GET, "/v1/users/me", &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], ada.user_id.as_str());
    assert_eq!(body["user"]["email"], "ada@example.com");

    let me = app
        .grpc
        .clone()
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &ada.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().id, ada.user_id);
}

#[tokio::test]
async fn anonymous_and_bad_tokens_are_401() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/v1/users/me")).send().await.unwrap();
    expect_http_error(response, 401, 16).await;
    let response = app
        .http
        .get(app.url("/v1/users/me"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    expect_http_error(response, 401, 16).await;
    let result = app
        .grpc
        .clone()
        .get_current_user(pb::GetCurrentUserRequest {})
        .await;
    expect_code(result, Code::Unauthenticated);
}

#[tokio::test]
async fn authorization_matrix_for_get_update_delete_and_list() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let admin = app.admin().await;
    let missing = "00000000-0000-0000-0000-000000000000";

    // Self: allowed.
    let response = app
        .authed(Method::GET, &format!("/v1/users/{}", ada.user_id), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Another user, existing or not: 403.
    for target in [bob.user_id.as_str(), missing] {
        let path = format!("/v1/users/{target}");
        for method in [Method::GET, Method::DELETE] {
            let response = app.authed(method, &path, &ada).send().await.unwrap();
            expect_http_error(response, 403, 7).await;
        }
        let response = app
            .authed(Method::PATCH, &path, &ada)
            .json(&json!({"displayName": "Mallory"}))
            .send()
            .await
            .unwrap();
        expect_http_error(response, 403, 7).await;
    }
    let response = app
        .authed(Method::GET, "/v1/users", &ada)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 403, 7).await;

    // Admin: everyone; a missing id is 404.
    let response = app
        .authed(Method::GET, &format!("/v1/users/{}", bob.user_id), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .authed(Method::GET, &format!("/v1/users/{missing}"), &admin)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 404, 5).await;
    let response = app
        .authed(Method::DELETE, &format!("/v1/users/{missing}"), &admin)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 404, 5).await;
    let response = app
        .authed(Method::PATCH, &format!("/v1/users/{}", bob.user_id), &admin)
        .json(&json!({"displayName": "Robert"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .authed(Method::GET, "/v1/users", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Anonymous: 401 everywhere.
    for (method, path) in [
        (Method::GET, format!("/v1/users/{}", ada.user_id)),
        (Method::DELETE, format!("/v1/users/{}", ada.user_id)),
        (Method::GET, "/v1/users".to_owned()),
    ] {
        let response = app
            .http
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        expect_http_error(response, 401, 16).await;
    }
}

#[tokio::test]
async fn update_changes_only_the_display_name_and_update_time() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let before: Value = app.get_json("/v1/users/me", &ada).await;
    let path = format!("/v1/users/{}", ada.user_id);
    let response = app
        .authed(
            Method::PATCH,
            &format!("{path}?updateMask=displayName"),
            &ada,
        )
        .json(&json!({"displayName": "  Countess  ", "id": ada.user_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["user"]["displayName"], "Countess");
    for field in ["id", "email", "roles", "createTime"] {
        assert_eq!(
            after["user"][field], before["user"][field],
            "{field} unchanged"
        );
    }
    assert_ne!(after["user"]["updateTime"], before["user"]["updateTime"]);
    // Stored: a fresh read agrees.
    let again: Value = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(again["user"], after["user"]);
}

#[tokio::test]
async fn update_masks_are_checked() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let path = format!("/v1/users/{}", ada.user_id);
    // Inferred mask naming a field that cannot change, an empty body, a mismatched id.
    for (query, body, field) in [
        ("", json!({"email": "evil@example.com"}), "update_mask"),
        ("", json!({}), "update_mask"),
        (
            "?updateMask=email",
            json!({"displayName": "Ada"}),
            "update_mask",
        ),
        ("?updateMask=", json!({"displayName": "Ada"}), "update_mask"),
        (
            "",
            json!({"id": "someone-else", "displayName": "Ada"}),
            "user.id",
        ),
        ("", json!({"displayName": ""}), "user.display_name"),
    ] {
        let response = app
            .authed(Method::PATCH, &format!("{path}{query}"), &ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        let error = expect_http_error(response, 400, 3).await;
        assert_eq!(
            error["details"][0]["fieldViolations"][0]["field"], field,
            "{query} {body}"
        );
    }

    // The same rules over gRPC.
    let update = |mask: Vec<&str>| pb::UpdateUserRequest {
        user: Some(pb::User {
            id: ada.user_id.clone(),
            display_name: "Ada".into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask::new(mask)),
    };
    for mask in [
        vec![],
        vec!["email"],
        vec!["display_name", "roles"],
        vec!["nonsense"],
    ] {
        let result = app
            .grpc
            .clone()
            .update_user(bearer(update(mask.clone()), &ada.access_token))
            .await;
        let status = expect_code(result, Code::InvalidArgument);
        assert!(
            violated_fields(&status).contains(&"update_mask".to_owned()),
            "{mask:?}"
        );
    }
    let ok = app
        .grpc
        .clone()
        .update_user(bearer(update(vec!["display_name"]), &ada.access_token))
        .await;
    assert_eq!(ok.unwrap().into_inner().user.unwrap().display_name, "Ada");
}

#[tokio::test]
async fn delete_removes_the_profile_and_the_credential() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let response = app
        .authed(Method::DELETE, &format!("/v1/users/{}", ada.user_id), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());
    assert!(!app.can_log_in("ada@example.com").await);
    let response = app
        .authed(Method::GET, "/v1/users/me", &ada)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 401, 16).await;
    // The email is free again.
    app.create_user("ada@example.com", PASSWORD, "Ada again")
        .await
        .unwrap();
}

#[tokio::test]
async fn get_update_delete_and_list_over_grpc_answer_each_caller_with_the_right_code() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let admin = app.admin().await;
    let missing = "00000000-0000-0000-0000-000000000000";
    let grpc = || app.grpc.clone();
    let get = |id: &str| pb::GetUserRequest { user_id: id.into() };
    let delete = |id: &str| pb::DeleteUserRequest { user_id: id.into() };
    let update = |id: &str| pb::UpdateUserRequest {
        user: Some(pb::User {
            id: id.into(),
            display_name: "Renamed".into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask::new(vec!["display_name"])),
    };
    let list = pb::ListUsersRequest {
        page_size: 10,
        page_token: String::new(),
    };

    // GetUser: self and admin read; anonymous 401; an admin asking for a missing id 404.
    let me = grpc()
        .get_user(bearer(get(&ada.user_id), &ada.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (me.id.as_str(), me.email.as_str()),
        (ada.user_id.as_str(), "ada@example.com")
    );
    let read = grpc()
        .get_user(bearer(get(&ada.user_id), &admin.access_token))
        .await
        .unwrap();
    assert_eq!(read.into_inner().user.unwrap(), me);
    expect_code(
        grpc().get_user(get(&ada.user_id)).await,
        Code::Unauthenticated,
    );
    expect_code(
        grpc()
            .get_user(bearer(get(missing), &admin.access_token))
            .await,
        Code::NotFound,
    );

    // UpdateUser: anonymous 401; another user's profile 403, and it is unchanged.
    expect_code(
        grpc().update_user(update(&bob.user_id)).await,
        Code::Unauthenticated,
    );
    expect_code(
        grpc()
            .update_user(bearer(update(&bob.user_id), &ada.access_token))
            .await,
        Code::PermissionDenied,
    );
    let bob_now = grpc()
        .get_user(bearer(get(&bob.user_id), &bob.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(bob_now.display_name, "Test User");

    // ListUsers: only admins.
    expect_code(
        grpc()
            .list_users(bearer(list.clone(), &ada.access_token))
            .await,
        Code::PermissionDenied,
    );
    let listed = grpc()
        .list_users(bearer(list, &admin.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 3);

    // DeleteUser: anonymous 401, another user's 403, a missing id 404 (admin), then self.
    expect_code(
        grpc().delete_user(delete(&ada.user_id)).await,
        Code::Unauthenticated,
    );
    expect_code(
        grpc()
            .delete_user(bearer(delete(&bob.user_id), &ada.access_token))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        grpc()
            .delete_user(bearer(delete(missing), &admin.access_token))
            .await,
        Code::NotFound,
    );
    grpc()
        .delete_user(bearer(delete(&ada.user_id), &ada.access_token))
        .await
        .unwrap();
    assert!(!app.can_log_in("ada@example.com").await);
    expect_code(
        grpc()
            .get_user(bearer(get(&ada.user_id), &admin.access_token))
            .await,
        Code::NotFound,
    );
    // An admin deletes another user.
    grpc()
        .delete_user(bearer(delete(&bob.user_id), &admin.access_token))
        .await
        .unwrap();
    assert!(!app.can_log_in("bob@example.com").await);
}

#[tokio::test]
async fn patch_answers_anonymous_missing_and_bad_bodies_with_the_right_status() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let admin = app.admin().await;
    let path = format!("/v1/users/{}", ada.user_id);

    let response = app
        .http
        .patch(app.url(&path))
        .json(&json!({"displayName": "Anon"}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 401, 16).await;
    let response = app
        .authed(
            Method::PATCH,
            "/v1/users/00000000-0000-0000-0000-000000000000",
            &admin,
        )
        .json(&json!({"displayName": "Ghost"}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 404, 5).await;

    let patch = |body: String| {
        app.authed(Method::PATCH, &path, &ada)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{".to_owned(),
        "[]".to_owned(),
        r#"{"displayName": 42}"#.to_owned(),
        r#"{"displayName": "Ada", "admin": true}"#.to_owned(),
    ] {
        expect_http_error(patch(body.clone()).await.unwrap(), 400, 3).await;
    }
    let huge = format!(r#"{{"displayName": "{}"}}"#, "x".repeat(70_000));
    expect_http_error(patch(huge).await.unwrap(), 413, 3).await;
    for name in ["   ", &"n".repeat(101), "Ada\u{7}", "Ada\nLovelace"] {
        let body = json!({ "displayName": name }).to_string();
        let error = expect_http_error(patch(body).await.unwrap(), 400, 3).await;
        assert_eq!(
            error["details"][0]["fieldViolations"][0]["field"], "user.display_name",
            "{name:?}"
        );
    }
    // None of it changed the profile.
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["displayName"], "Test User");
}
