//! Access and refresh tokens as a caller sees them: validation, permissions, rotation, reuse
//! detection, revocation, and forged tokens signed so that exactly one property is wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_service::keys::{KeyRing, generate_pem};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grimos_proto::auth::v1 as pb;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tonic::{Code, Status};

use crate::helpers::{TestApp, expect_code, spawn_app};

const USER_PERMISSIONS: [&str; 3] = ["users.delete.self", "users.read.self", "users.update.self"];

pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn seconds(timestamp: Option<&grimos_proto::wkt::Timestamp>) -> i64 {
    timestamp.expect("timestamp is set").seconds
}

pub async fn check(app: &TestApp, access_token: &str, permission: &str) -> Result<bool, Status> {
    let request = pb::CheckPermissionRequest {
        access_token: access_token.into(),
        permission: permission.into(),
    };
    Ok(app
        .client
        .clone()
        .check_permission(request)
        .await?
        .into_inner()
        .allowed)
}

/// Sleeps until the wall clock enters a later second than `after` (at most about 1 s), so
/// that a value recomputed from "now" would differ from one computed at `after`.
async fn wait_for_next_second(after: i64) {
    while unix_now() <= after {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Forging helpers.

/// The app's real signing key and its `kid`.
fn real_key(app: &TestApp) -> (EncodingKey, String) {
    let pem = app.signing_key_pem();
    let kid = KeyRing::from_pem(&pem).unwrap().signing_kid;
    (EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(), kid)
}

/// Claims exactly like the ones auth-service issues, for user `sub`.
pub fn good_claims(sub: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": "grimos-auth",
        "aud": "grimos",
        "sub": sub,
        "exp": now + 600,
        "nbf": now,
        "iat": now,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "sid": uuid::Uuid::new_v4().simple().to_string(),
        "roles": ["user"],
    })
}

/// `claims` with `name` set to `value`.
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).unwrap()
}

/// Signs `claims` with the app's real key and kid, as auth-service itself would.
pub fn sign_real(app: &TestApp, claims: &Value) -> String {
    let (key, kid) = real_key(app);
    sign(&key, Algorithm::EdDSA, &kid, claims)
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Asserts that the control token (signed the same way, every property right) validates,
/// and that `forged` is rejected with UNAUTHENTICATED.
async fn assert_rejected_while_control_validates(app: &TestApp, control: &str, forged: &str) {
    let ok = app
        .validate(control)
        .await
        .expect("the control token validates");
    assert_eq!(ok.user_id, "forged-user");
    expect_code(app.validate(forged).await, Code::Unauthenticated);
}

// ---------------------------------------------------------------------------------------
// ValidateToken and CheckPermission.

#[tokio::test]
async fn validate_token_returns_the_user_roles_permissions_and_a_15_minute_expiry() {
    let app = spawn_app().await;
    let user_id = app.sign_up("ada@example.com").await;
    let login = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();
    let now = unix_now();

    let valid = app.validate(&login.access_token).await.unwrap();

    assert_eq!(valid.user_id, user_id);
    assert_eq!(valid.roles, ["user"]);
    assert_eq!(valid.permissions, USER_PERMISSIONS);
    let expires_in = seconds(valid.expire_time.as_ref()) - now;
    assert!(
        (15 * 60 - 5..=15 * 60 + 5).contains(&expires_in),
        "access token expires in {expires_in} s, expected about 900"
    );
    assert_eq!(
        valid.expire_time, login.expire_time,
        "ValidateToken and Login agree on the expiry"
    );
}

#[tokio::test]
async fn an_admin_email_gets_the_admin_role_and_the_users_list_permission() {
    let app = spawn_app().await;
    let login = app.signed_in("root@grimos.dev").await;

    let valid = app.validate(&login.access_token).await.unwrap();

    assert_eq!(valid.roles, ["user", "admin"]);
    // The contract's names, every one: the user's three and the admin's four.
    assert_eq!(
        valid.permissions,
        [
            "users.delete",
            "users.delete.self",
            "users.list",
            "users.read",
            "users.read.self",
            "users.update",
            "users.update.self",
        ]
    );
}

#[tokio::test]
async fn validate_token_rejects_empty_garbage_and_refresh_tokens() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;

    expect_code(app.validate("").await, Code::Unauthenticated);
    expect_code(app.validate("not-a-token").await, Code::Unauthenticated);
    expect_code(app.validate("a.b.c").await, Code::Unauthenticated);
    expect_code(
        app.validate(&login.refresh_token).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn check_permission_allows_a_user_their_own_permissions_but_not_users_list() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;

    assert!(
        check(&app, &login.access_token, "users.read.self")
            .await
            .unwrap()
    );
    assert!(
        !check(&app, &login.access_token, "users.list")
            .await
            .unwrap()
    );
    assert!(
        !check(&app, &login.access_token, "no.such.permission")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn check_permission_allows_an_admin_users_list() {
    let app = spawn_app().await;
    let login = app.signed_in("root@grimos.dev").await;

    assert!(
        check(&app, &login.access_token, "users.list")
            .await
            .unwrap()
    );
    assert!(
        check(&app, &login.access_token, "users.read.self")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn check_permission_with_an_empty_permission_is_invalid_argument() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;

    expect_code(
        check(&app, &login.access_token, "").await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn check_permission_with_an_invalid_or_revoked_token_is_unauthenticated() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;

    expect_code(
        check(&app, "garbage", "users.read.self").await,
        Code::Unauthenticated,
    );
    expect_code(
        check(&app, "", "users.read.self").await,
        Code::Unauthenticated,
    );
    app.revoke(&login.access_token).await.unwrap();
    expect_code(
        check(&app, &login.access_token, "users.read.self").await,
        Code::Unauthenticated,
    );
}

// ---------------------------------------------------------------------------------------
// RefreshToken.

#[tokio::test]
async fn refresh_token_rotates_and_the_old_one_is_rejected() {
    let app = spawn_app().await;
    let user_id = app.sign_up("ada@example.com").await;
    let login = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();

    let refreshed = app.refresh(&login.refresh_token).await.unwrap();

    assert_ne!(refreshed.access_token, login.access_token);
    assert_ne!(refreshed.refresh_token, login.refresh_token);
    assert_eq!(refreshed.user_id, user_id);
    let valid = app.validate(&refreshed.access_token).await.unwrap();
    assert_eq!(valid.user_id, user_id);
    assert_eq!(valid.roles, ["user"]);
    expect_code(
        app.refresh(&login.refresh_token).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_keeps_the_expiry_of_its_login() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    let login_expiry = seconds(login.refresh_token_expire_time.as_ref());
    let expires_in = login_expiry - unix_now();
    assert!(
        (30 * 24 * 3600 - 5..=30 * 24 * 3600 + 5).contains(&expires_in),
        "session expires in {expires_in} s, expected about 30 days"
    );
    // Let the clock move on, so an expiry recomputed from "now" would differ.
    wait_for_next_second(login_expiry - 30 * 24 * 3600).await;

    let first = app.refresh(&login.refresh_token).await.unwrap();
    let second = app.refresh(&first.refresh_token).await.unwrap();

    assert_eq!(
        first.refresh_token_expire_time,
        login.refresh_token_expire_time
    );
    assert_eq!(
        second.refresh_token_expire_time,
        login.refresh_token_expire_time
    );
    // The access token is new, though: its expiry follows the refresh.
    assert!(seconds(second.expire_time.as_ref()) > seconds(login.expire_time.as_ref()));
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_ends_the_whole_session() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    let other = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();
    let r2 = app.refresh(&login.refresh_token).await.unwrap();
    app.validate(&r2.access_token).await.unwrap();

    // The original refresh token comes back: someone holds a stolen copy.
    expect_code(
        app.refresh(&login.refresh_token).await,
        Code::Unauthenticated,
    );

    expect_code(app.refresh(&r2.refresh_token).await, Code::Unauthenticated);
    expect_code(app.validate(&r2.access_token).await, Code::Unauthenticated);
    expect_code(
        app.validate(&login.access_token).await,
        Code::Unauthenticated,
    );
    // Another session of the same user is untouched.
    app.validate(&other.access_token).await.unwrap();
    app.refresh(&other.refresh_token).await.unwrap();
}

#[tokio::test]
async fn refresh_with_garbage_or_an_unknown_refresh_token_is_unauthenticated() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;

    expect_code(app.refresh("").await, Code::Unauthenticated);
    expect_code(app.refresh("garbage").await, Code::Unauthenticated);
    expect_code(
        app.refresh(&unknown_refresh_token()).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.refresh(&login.access_token).await,
        Code::Unauthenticated,
    );
    // None of that disturbed the real session.
    app.refresh(&login.refresh_token).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// RevokeToken.

fn unknown_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let token = format!("grt_{}", URL_SAFE_NO_PAD.encode(bytes));
    assert_eq!(token.len(), 4 + 43);
    token
}

#[tokio::test]
async fn revoking_an_access_token_rejects_it_but_not_other_logins_of_the_user() {
    let app = spawn_app().await;
    let first = app.signed_in("ada@example.com").await;
    let second = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();

    app.revoke(&first.access_token).await.unwrap();

    expect_code(
        app.validate(&first.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(app.revoke(&first.access_token).await, Code::Unauthenticated);
    app.validate(&second.access_token).await.unwrap();
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_session_and_its_access_tokens() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    let other = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();

    app.revoke(&login.refresh_token).await.unwrap();

    expect_code(
        app.refresh(&login.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.validate(&login.access_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.revoke(&login.refresh_token).await,
        Code::Unauthenticated,
    );
    app.validate(&other.access_token).await.unwrap();
}

#[tokio::test]
async fn revoking_a_rotated_refresh_token_is_unauthenticated_and_ends_the_session() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    let rotated = app.refresh(&login.refresh_token).await.unwrap();

    expect_code(
        app.revoke(&login.refresh_token).await,
        Code::Unauthenticated,
    );

    expect_code(
        app.refresh(&rotated.refresh_token).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.validate(&rotated.access_token).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn revoking_an_empty_garbage_or_unknown_token_is_unauthenticated() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;

    expect_code(app.revoke("").await, Code::Unauthenticated);
    expect_code(app.revoke("garbage").await, Code::Unauthenticated);
    expect_code(app.revoke("a.b.c").await, Code::Unauthenticated);
    expect_code(
        app.revoke(&unknown_refresh_token()).await,
        Code::Unauthenticated,
    );
    // Nothing real was touched.
    app.validate(&login.access_token).await.unwrap();
    app.refresh(&login.refresh_token).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Forged access tokens.

#[tokio::test]
async fn a_forged_token_with_correct_claims_and_the_real_key_validates() {
    // The control for every forged-token test below: the forging method itself is sound.
    let app = spawn_app().await;
    let token = sign_real(&app, &good_claims("forged-user"));

    let valid = app.validate(&token).await.unwrap();

    assert_eq!(valid.user_id, "forged-user");
    assert_eq!(valid.roles, ["user"]);
    assert_eq!(valid.permissions, USER_PERMISSIONS);
}

#[tokio::test]
async fn an_expired_token_is_rejected() {
    let app = spawn_app().await;
    let claims = good_claims("forged-user");
    let now = unix_now();
    let expired = with(claims.clone(), "exp", json!(now - 60));
    let expired = with(expired, "iat", json!(now - 960));
    let expired = with(expired, "nbf", json!(now - 960));

    assert_rejected_while_control_validates(
        &app,
        &sign_real(&app, &claims),
        &sign_real(&app, &expired),
    )
    .await;
}

#[tokio::test]
async fn a_token_expired_within_the_5_second_leeway_still_validates() {
    let app = spawn_app().await;
    let now = unix_now();
    let claims = with(good_claims("forged-user"), "exp", json!(now - 3));
    let claims = with(claims, "iat", json!(now - 903));
    let claims = with(claims, "nbf", json!(now - 903));

    let valid = app.validate(&sign_real(&app, &claims)).await.unwrap();

    assert_eq!(valid.user_id, "forged-user");
}

#[tokio::test]
async fn a_token_for_another_audience_is_rejected() {
    let app = spawn_app().await;
    let claims = good_claims("forged-user");
    let forged = with(claims.clone(), "aud", json!("other-system"));

    assert_rejected_while_control_validates(
        &app,
        &sign_real(&app, &claims),
        &sign_real(&app, &forged),
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_rejected() {
    let app = spawn_app().await;
    let claims = good_claims("forged-user");
    let forged = with(claims.clone(), "iss", json!("evil-auth"));

    assert_rejected_while_control_validates(
        &app,
        &sign_real(&app, &claims),
        &sign_real(&app, &forged),
    )
    .await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_rejected() {
    let app = spawn_app().await;
    let claims = good_claims("forged-user");
    let forged = with(claims.clone(), "nbf", json!(unix_now() + 120));

    assert_rejected_while_control_validates(
        &app,
        &sign_real(&app, &claims),
        &sign_real(&app, &forged),
    )
    .await;
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_rejected() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    let parts: Vec<&str> = login.access_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        payload["sub"],
        json!(login.user_id),
        "the payload decodes as expected"
    );

    let other_user = with(payload.clone(), "sub", json!("someone-else"));
    let tampered = format!("{}.{}.{}", parts[0], b64_json(&other_user), parts[2]);
    expect_code(app.validate(&tampered).await, Code::Unauthenticated);

    let escalated = with(payload, "roles", json!(["user", "admin"]));
    let tampered = format!("{}.{}.{}", parts[0], b64_json(&escalated), parts[2]);
    expect_code(app.validate(&tampered).await, Code::Unauthenticated);
    expect_code(
        check(&app, &tampered, "users.list").await,
        Code::Unauthenticated,
    );

    // The untouched token is still fine.
    app.validate(&login.access_token).await.unwrap();
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_rejected() {
    let app = spawn_app().await;
    let (_, kid) = real_key(&app);
    let claims = good_claims("forged-user");
    let payload = b64_json(&claims);

    let none = b64_json(&json!({"alg": "none", "typ": "JWT"}));
    let forged = format!("{none}.{payload}.");
    assert_rejected_while_control_validates(&app, &sign_real(&app, &claims), &forged).await;

    let none_with_kid = b64_json(&json!({"alg": "none", "typ": "JWT", "kid": kid}));
    expect_code(
        app.validate(&format!("{none_with_kid}.{payload}.")).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn an_hmac_token_keyed_with_the_public_key_is_rejected() {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

    let app = spawn_app().await;
    let (_, kid) = real_key(&app);
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&app.signing_key_pem()).unwrap();
    let public = signing.verifying_key();
    let public_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let claims = good_claims("forged-user");

    let forged = sign(
        &EncodingKey::from_secret(public.as_bytes()),
        Algorithm::HS256,
        &kid,
        &claims,
    );
    assert_rejected_while_control_validates(&app, &sign_real(&app, &claims), &forged).await;

    for secret in [public_pem.as_bytes(), b"secret".as_slice()] {
        let forged = sign(
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
            &kid,
            &claims,
        );
        expect_code(app.validate(&forged).await, Code::Unauthenticated);
    }
}

#[tokio::test]
async fn a_token_signed_by_an_unknown_key_is_rejected() {
    let app = spawn_app().await;
    let claims = good_claims("forged-user");
    let stranger_pem = generate_pem().unwrap();
    let stranger = EncodingKey::from_ed_pem(stranger_pem.as_bytes()).unwrap();
    let stranger_kid = KeyRing::from_pem(&stranger_pem).unwrap().signing_kid;
    let (_, real_kid) = real_key(&app);
    assert_ne!(stranger_kid, real_kid);

    // Its own kid, unknown to the service.
    let forged = sign(&stranger, Algorithm::EdDSA, &stranger_kid, &claims);
    assert_rejected_while_control_validates(&app, &sign_real(&app, &claims), &forged).await;

    // The real kid, but the signature is not the real key's.
    let forged = sign(&stranger, Algorithm::EdDSA, &real_kid, &claims);
    expect_code(app.validate(&forged).await, Code::Unauthenticated);

    // No kid at all.
    let (real, _) = real_key(&app);
    let no_kid = encode(&Header::new(Algorithm::EdDSA), &claims, &real).unwrap();
    expect_code(app.validate(&no_kid).await, Code::Unauthenticated);
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_rotate_it_once() {
    let app = spawn_app().await;
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
