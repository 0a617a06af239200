//! `grimos.auth.v1.AuthService` served by user-service: the end-user rpcs are forwarded to
//! auth-service (ChangePassword over HTTP and gRPC too, and at auth-service itself), the
//! service-only ones are not exposed.

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_proto::user::v1 as pb;
use reqwest::Method;
use serde_json::json;
use tonic::Code;

use crate::helpers::{PASSWORD, bearer, expect_code, expect_http_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn login_through_user_service_gives_tokens_that_user_service_accepts() {
    let app = spawn_app().await;
    let user = app
        .create_user("edge@example.com", PASSWORD, "Edge")
        .await
        .unwrap();
    let mut edge = AuthServiceClient::new(app.channel().await);

    let wrong = edge
        .login(auth_pb::LoginRequest {
            email: "edge@example.com".into(),
            password: "not the password".into(),
        })
        .await;
    expect_code(wrong, Code::Unauthenticated);

    let tokens = edge
        .login(auth_pb::LoginRequest {
            email: "edge@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let me = app
        .grpc
        .clone()
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &tokens.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.id, user.id);

    let validated = edge
        .validate_token(auth_pb::ValidateTokenRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.user_id, user.id);
    assert_eq!(validated.roles, ["user"]);

    let refreshed = edge
        .refresh_token(auth_pb::RefreshTokenRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(refreshed.refresh_token, tokens.refresh_token);
}

#[tokio::test]
async fn revoke_without_a_token_revokes_the_bearer_token() {
    let app = spawn_app().await;
    let session = app.sign_up("revoker@example.com").await;
    let mut edge = AuthServiceClient::new(app.channel().await);

    let anonymous = edge
        .revoke_token(auth_pb::RevokeTokenRequest::default())
        .await;
    expect_code(anonymous, Code::Unauthenticated);

    edge.revoke_token(bearer(
        auth_pb::RevokeTokenRequest::default(),
        &session.access_token,
    ))
    .await
    .unwrap();
    let after = app
        .grpc
        .clone()
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &session.access_token))
        .await;
    expect_code(after, Code::Unauthenticated);
}

#[tokio::test]
async fn service_only_rpcs_are_not_exposed() {
    let app = spawn_app().await;
    let mut edge = AuthServiceClient::new(app.channel().await);
    let create = edge
        .create_credential(bearer(
            auth_pb::CreateCredentialRequest {
                user_id: "u-1".into(),
                email: "sneaky@example.com".into(),
                password: PASSWORD.into(),
            },
            "a guessed service token",
        ))
        .await;
    let status = expect_code(create, Code::Unimplemented);
    assert!(status.message().contains("auth-service"), "{status:?}");
    let delete = edge
        .delete_credential(auth_pb::DeleteCredentialRequest {
            user_id: "u-1".into(),
        })
        .await;
    expect_code(delete, Code::Unimplemented);
    let keys = edge
        .get_verification_keys(auth_pb::GetVerificationKeysRequest {})
        .await;
    expect_code(keys, Code::Unimplemented);
    let watch = edge
        .watch_revocations(auth_pb::WatchRevocationsRequest::default())
        .await;
    expect_code(watch, Code::Unimplemented);
    assert!(!app.can_log_in("sneaky@example.com").await);
}

#[tokio::test]
async fn check_permission_through_user_service_answers_from_the_roles() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let admin = app.admin().await;
    let edge = AuthServiceClient::new(app.channel().await);
    let allowed = |token: &str, permission: &str| {
        let request = auth_pb::CheckPermissionRequest {
            access_token: token.into(),
            permission: permission.into(),
        };
        let mut edge = edge.clone();
        async move {
            edge.check_permission(request)
                .await
                .map(|r| r.into_inner().allowed)
        }
    };
    assert!(allowed(&ada.access_token, "users.read.self").await.unwrap());
    assert!(!allowed(&ada.access_token, "users.list").await.unwrap());
    assert!(allowed(&admin.access_token, "users.list").await.unwrap());
    expect_code(
        allowed("garbage", "users.read.self").await,
        Code::Unauthenticated,
    );
    expect_code(allowed(&ada.access_token, "").await, Code::InvalidArgument);
    edge.clone()
        .revoke_token(auth_pb::RevokeTokenRequest {
            token: ada.access_token.clone(),
        })
        .await
        .unwrap();
    expect_code(
        allowed(&ada.access_token, "users.read.self").await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn health_answers_per_service_name_and_reflection_speaks_v1alpha() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1alpha;

    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in [
        "",
        "grimos.user.v1.UserService",
        "grimos.auth.v1.AuthService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await;
    expect_code(unknown, Code::NotFound);

    // grpcurl still speaks v1alpha: list the services, then fetch one's file.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let list = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let file = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "grimos.user.v1.UserService".into(),
            ),
        ),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([list, file]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(listed)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    for name in [
        "grimos.user.v1.UserService",
        "grimos.auth.v1.AuthService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a file descriptor");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

/// The password ChangePassword sets in these tests.
const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn change_password_over_http_ends_every_session_and_gives_the_caller_a_new_one() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let other = app.login("ada@example.com", PASSWORD).await;
    let other: serde_json::Value = other.json().await.unwrap();
    let other_access = other["accessToken"].as_str().unwrap().to_owned();
    // Validated once, so user-service holds a cached answer for it.
    let response = app.me_with(&other_access).await;
    assert_eq!(response.status(), 200);

    let response = app
        .authed(Method::POST, "/v1/auth/password", &ada)
        .json(&json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fresh: serde_json::Value = response.json().await.unwrap();
    assert_eq!(fresh["userId"], ada.user_id.as_str());
    assert!(fresh["expireTime"].as_str().unwrap().ends_with('Z'));
    let fresh_access = fresh["accessToken"].as_str().unwrap();
    assert!(fresh["refreshToken"].as_str().unwrap().starts_with("grt_"));

    // Every earlier session ended, the caller's and the other one, at once.
    for token in [ada.access_token.as_str(), other_access.as_str()] {
        let response = app.me_with(token).await;
        expect_http_error(response, 401, 16).await;
    }
    let response = app.refresh(&ada.refresh_token).await;
    expect_http_error(response, 401, 16).await;
    // The new session works, and only the new password logs in.
    let response = app.me_with(fresh_access).await;
    assert_eq!(response.status(), 200);
    let response = app.refresh(fresh["refreshToken"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    expect_http_error(app.login("ada@example.com", PASSWORD).await, 401, 16).await;
    assert_eq!(
        app.login("ada@example.com", NEW_PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn change_password_needs_a_token_a_valid_new_password_and_the_current_one_under_throttling() {
    let app = spawn_app_with(|c| c.auth.login_max_attempts = 2).await;
    let ada = app.sign_up("ada@example.com").await;
    let change = |current: &str, new: &str| {
        app.authed(Method::POST, "/v1/auth/password", &ada)
            .json(&json!({"currentPassword": current, "newPassword": new}))
            .send()
    };

    let response = app
        .http
        .post(app.url("/v1/auth/password"))
        .json(&json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 401, 16).await;
    // Sign-up's rules, before the current password is checked (no attempt is counted).
    for new in ["short", ""] {
        let error = expect_http_error(change(PASSWORD, new).await.unwrap(), 400, 3).await;
        assert_eq!(
            error["details"][0]["fieldViolations"][0]["field"],
            "new_password"
        );
    }
    let response = app
        .authed(Method::POST, "/v1/auth/password", &ada)
        .json(&json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD, "admin": true}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 400, 3).await;

    // Wrong current passwords count as failed logins of the email, the right one then too.
    for _ in 0..2 {
        expect_http_error(
            change("not the password", NEW_PASSWORD).await.unwrap(),
            401,
            16,
        )
        .await;
    }
    let error = expect_http_error(change(PASSWORD, NEW_PASSWORD).await.unwrap(), 429, 8).await;
    assert_eq!(
        error["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    expect_http_error(app.login("ada@example.com", PASSWORD).await, 429, 8).await;
    // Nothing changed: the caller's token still works.
    app.get_json("/v1/users/me", &ada).await;
}

/// Whether a `ChangePassword` answer carries auth-service's revocation stream cursor.
fn carries_cursor<T>(response: &tonic::Response<T>) -> bool {
    response
        .metadata()
        .get(grimos_token::CURSOR_HEADER)
        .is_some()
}

#[tokio::test]
async fn change_password_over_grpc_at_user_service_and_at_auth_service() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let request = |current: &str, new: &str| auth_pb::ChangePasswordRequest {
        current_password: current.into(),
        new_password: new.into(),
    };

    let mut edge = AuthServiceClient::new(app.channel().await);
    expect_code(
        edge.change_password(request(PASSWORD, NEW_PASSWORD)).await,
        Code::Unauthenticated,
    );
    let answered = edge
        .change_password(bearer(request(PASSWORD, NEW_PASSWORD), &ada.access_token))
        .await
        .unwrap();
    // auth-service's stream cursor is for user-service, not passed on to end users.
    assert!(!carries_cursor(&answered));
    let fresh = answered.into_inner();
    assert_eq!(fresh.user_id, ada.user_id);

    // auth-service itself serves it too, to the holder of an access token.
    let mut auth = app.auth_client().await;
    expect_code(
        auth.change_password(bearer(
            request(NEW_PASSWORD, "yet another passphrase"),
            &ada.access_token,
        ))
        .await,
        Code::Unauthenticated,
    );
    let answered = auth
        .change_password(bearer(
            request(NEW_PASSWORD, "yet another passphrase"),
            &fresh.access_token,
        ))
        .await
        .unwrap();
    assert!(carries_cursor(&answered));
    let again = answered.into_inner();
    let me = app
        .grpc
        .clone()
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &again.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().id, ada.user_id);
    assert_eq!(
        app.login("ada@example.com", "yet another passphrase")
            .await
            .status(),
        200
    );
}
