//! `GET /openapi.json` and `GET /docs`: the generated document, served as built, describes
//! routes the server really has, and the reference page loads its embedded Swagger UI.

use prost::Message as _;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn openapi_json_is_the_generated_document_and_every_operation_is_routed() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    assert_eq!(text, grimos_proto::OPENAPI_JSON);
    let document: Value = serde_json::from_str(&text).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));

    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((
                method.to_uppercase(),
                path.clone(),
                operation["operationId"].as_str().unwrap().to_owned(),
            ));
        }
    }
    // The contract's operations are all there; the API may add more, each an rpc of its
    // descriptors (the operation id is `Service_Method`).
    let ids: Vec<&str> = operations.iter().map(|(_, _, id)| id.as_str()).collect();
    for id in [
        "AuthService_Login",
        "AuthService_RefreshToken",
        "AuthService_RevokeToken",
        "UserService_CreateUser",
        "UserService_DeleteUser",
        "UserService_GetCurrentUser",
        "UserService_GetUser",
        "UserService_ListUsers",
        "UserService_UpdateUser",
    ] {
        assert!(ids.contains(&id), "{id} is missing from {ids:?}");
    }
    let descriptors =
        prost_types::FileDescriptorSet::decode(grimos_proto::FILE_DESCRIPTOR_SET).unwrap();
    let rpcs: Vec<String> = descriptors
        .file
        .iter()
        .flat_map(|file| &file.service)
        .flat_map(|service| {
            service
                .method
                .iter()
                .map(move |method| format!("{}_{}", service.name(), method.name()))
        })
        .collect();
    for id in &ids {
        assert!(rpcs.iter().any(|rpc| rpc == id), "{id} is no rpc");
    }
    // Each operation reaches a handler: neither the unknown-path 404 nor the 405 fallback.
    for (method, path, id) in &operations {
        let url = app.url(&path.replace("{user_id}", "no-such-user"));
        let response = app
            .http
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{id}: {method} {path} is not routed: {body}");
        assert!(
            body["message"] != "no route for this path",
            "{id}: {method} {path} is not routed: {status} {body}"
        );
    }
}

#[tokio::test]
async fn docs_page_is_html_loading_the_embedded_swagger_ui() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.unwrap();
    for reference in [
        "docs/swagger-ui.css",
        "docs/swagger-ui-bundle.js",
        "docs/init.js",
    ] {
        assert!(html.contains(reference), "{reference} in {html}");
    }
    assert!(
        !html.contains("://"),
        "the page loads nothing from elsewhere: {html}"
    );

    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/swagger-ui");
    for (path, file, content_type) in [
        (
            "/docs/swagger-ui-bundle.js",
            "swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/docs/swagger-ui.css",
            "swagger-ui.css",
            "text/css; charset=utf-8",
        ),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        let served = response.bytes().await.unwrap();
        assert!(
            served == std::fs::read(assets.join(file)).unwrap(),
            "{path} is not the vendored {file}"
        );
    }
    let init = app.http.get(app.url("/docs/init.js")).send().await.unwrap();
    assert_eq!(init.status(), 200);
    let init = init.text().await.unwrap();
    assert!(
        init.contains("SwaggerUIBundle(") && init.contains("\"openapi.json\""),
        "{init}"
    );
    assert!(init.contains("validatorUrl: null"), "{init}");
}
