//! The HTTP/JSON surface: errors as the contract describes them, auth routes, operations.

use serde_json::{Value, json};

use crate::helpers::{expect_http_error, spawn_app};

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_json_bodies() {
    let app = spawn_app().await;
    expect_http_error(app.http.get(app.url("/nope")).send().await.unwrap(), 404, 5).await;
    expect_http_error(
        app.http.get(app.url("/v2/users")).send().await.unwrap(),
        404,
        5,
    )
    .await;
    expect_http_error(
        app.http.put(app.url("/v1/users")).send().await.unwrap(),
        405,
        12,
    )
    .await;
    expect_http_error(
        app.http
            .get(app.url("/v1/auth/login"))
            .send()
            .await
            .unwrap(),
        405,
        12,
    )
    .await;
}

#[tokio::test]
async fn bad_bodies_are_400_or_413_never_500() {
    let app = spawn_app().await;
    let post = |body: String| {
        app.http
            .post(app.url("/v1/users"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{".to_owned(),
        "[]".to_owned(),
        r#"{"email": 42, "password": "x", "displayName": "y"}"#.to_owned(),
        r#"{"email": "a@x.io", "password": "correct horse", "displayName": "A", "admin": true}"#
            .to_owned(),
        "\u{0}\u{1}".to_owned(),
    ] {
        expect_http_error(post(body.clone()).await.unwrap(), 400, 3).await;
    }
    let huge = format!(
        r#"{{"email": "a@x.io", "password": "{}", "displayName": "A"}}"#,
        "x".repeat(70_000)
    );
    expect_http_error(post(huge).await.unwrap(), 413, 3).await;
}

#[tokio::test]
async fn login_refresh_and_logout_over_http() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;

    let response = app.login("ada@example.com", "wrong password").await;
    let error = expect_http_error(response, 401, 16).await;
    assert_eq!(error["message"], "invalid email or password");

    let response = app.refresh(&ada.refresh_token).await;
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    let new_access = refreshed["accessToken"].as_str().unwrap().to_owned();
    assert!(refreshed["expireTime"].as_str().unwrap().ends_with('Z'));
    // Logout with an empty body revokes the bearer access token.
    let response = app
        .http
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(&new_access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app.me_with(&new_access).await;
    expect_http_error(response, 401, 16).await;
    // The rotated refresh token is spent: presenting it again is refused (and, as reuse,
    // ends the session).
    let response = app.refresh(&ada.refresh_token).await;
    expect_http_error(response, 401, 16).await;
    // Neither a body token nor a bearer: 401.
    let response = app
        .http
        .post(app.url("/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 401, 16).await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
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
    // What /metrics counts: tests/metrics.rs, a binary of its own (the recorder is global).
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn auth_routes_refuse_bad_input_and_throttled_logins_with_the_right_status() {
    let app = crate::helpers::spawn_app_with(|c| c.auth.login_max_attempts = 2).await;
    let ada = app.sign_up("ada@example.com").await;
    let post = |path: &str, body: &str| {
        app.http
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };

    // Malformed bodies: 400, for login, refresh and logout alike.
    for path in ["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"] {
        for body in ["{", r#"{"email": 42}"#, r#"{"unknownField": "x"}"#] {
            expect_http_error(post(path, body).await.unwrap(), 400, 3).await;
        }
    }
    // Refresh with an empty, a garbage or an access token: 401.
    for token in [
        "",
        "garbage",
        "grt_not-a-real-one",
        ada.access_token.as_str(),
    ] {
        let body = json!({ "refreshToken": token }).to_string();
        expect_http_error(post("/v1/auth/refresh", &body).await.unwrap(), 401, 16).await;
    }
    // Logout naming an invalid token in the body: 401, even with a valid bearer token.
    for token in ["garbage", "a.b.c"] {
        let response = app
            .http
            .post(app.url("/v1/auth/logout"))
            .bearer_auth(&ada.access_token)
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
        expect_http_error(response, 401, 16).await;
    }
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["id"], ada.user_id.as_str());

    // Throttled: after the limit, even the right password is 429 with a RetryInfo.
    for _ in 0..2 {
        let response = app.login("ada@example.com", "wrong password").await;
        expect_http_error(response, 401, 16).await;
    }
    let response = app.login("ada@example.com", crate::helpers::PASSWORD).await;
    let error = expect_http_error(response, 429, 8).await;
    let retry = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .unwrap_or_else(|| panic!("no RetryInfo in {error}"));
    let delay = retry["retryDelay"].as_str().unwrap();
    let seconds: f64 = delay.strip_suffix('s').unwrap().parse().unwrap();
    assert!(seconds > 0.0 && seconds <= 15.0 * 60.0, "{delay}");
}
