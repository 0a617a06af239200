//! Operations: health, reflection, graceful shutdown, deadlines, and crash safety of the
//! real binary.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use grimos_proto::auth::v1 as pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_test_support::app::TestData;
use grimos_test_support::grpc::{ServingStatus, wait_for_health};
use grimos_test_support::process::{
    self, Log, assert_none_logged, jwt_signature, kill_and_read_log, start_logging, stop_with,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    PASSWORD, SERVICE_TOKEN, bearer, build_error, expect_code, spawn_app, spawn_app_with,
};

/// How long a binary may take to start answering, or to exit once it should.
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn health_reports_serving_overall_and_for_the_service() {
    let app = spawn_app().await;
    // SERVING once the first readiness check (the database answers) has passed.
    for service in ["", "grimos.auth.v1.AuthService"] {
        let channel = app.channel().await;
        wait_for_health(
            channel,
            service,
            ServingStatus::Serving,
            Duration::from_secs(5),
        )
        .await;
    }
    let mut health = HealthClient::new(app.channel().await);
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await;
    expect_code(unknown, Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_the_services_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = spawn_app().await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection response");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"grimos.auth.v1.AuthService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "grimos.auth.v1.AuthService".into(),
            ),
        ),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
            if !f.file_descriptor_proto.is_empty()
    ));
}

#[tokio::test]
async fn in_flight_calls_finish_during_graceful_shutdown() {
    let app = spawn_app_with(|c| c.login_slowdown = Duration::from_millis(600)).await;
    app.sign_up("ada@example.com").await;
    for _ in 0..2 {
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }
    // The third attempt is slowed by 600 ms; stop the server while it is in flight.
    let mut client = app.new_client().await;
    let slow = tokio::spawn(async move {
        client
            .login(pb::LoginRequest {
                email: "ada@example.com".into(),
                password: PASSWORD.into(),
            })
            .await
    });
    // In flight once its attempt is counted (a login counts before it waits out the slowdown).
    let mut db = app.dir.connect("auth.db", "auth_service").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempts = db
            .fetch_i64(
                "SELECT attempts FROM login_attempts WHERE email = $1",
                &["ada@example.com".into()],
            )
            .await;
        if attempts == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "the third login never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(db);
    assert!(!slow.is_finished(), "the login is slowed by 600 ms");
    let addr = app.addr;
    app.stop().await;
    let finished = slow.await.unwrap();
    assert!(finished.is_ok(), "in-flight login completed: {finished:?}");
    assert!(
        AuthServiceClient::connect(format!("http://{addr}"))
            .await
            .is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn client_deadlines_are_honoured() {
    let app = spawn_app_with(|c| c.login_slowdown = Duration::from_secs(3)).await;
    app.sign_up("ada@example.com").await;
    for _ in 0..2 {
        expect_code(
            app.login("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
        );
    }
    let mut request = tonic::Request::new(pb::LoginRequest {
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
    });
    request.set_timeout(Duration::from_millis(300));
    let start = std::time::Instant::now();
    let status = app.client.clone().login(request).await.unwrap_err();
    // tonic reports its own expired `grpc-timeout` as CANCELLED ("Timeout expired"); other
    // gRPC clients say DEADLINE_EXCEEDED. Either way the call ends at the deadline, not after
    // the 3 s the server would have taken.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// The real binary on a free port, with its data in `data`, logging at `info`.
async fn start_binary(data: &TestData) -> (Child, String) {
    let (child, url, _, _) = start_binary_logging(data, "info").await;
    (child, url)
}

/// The real binary, logging at `level`; every stderr line is collected, by a thread that ends
/// when the binary's stderr does.
async fn start_binary_logging(
    data: &TestData,
    level: &str,
) -> (Child, String, Log, std::thread::JoinHandle<()>) {
    let mut command = binary(data, level).await;
    // No drain on SIGTERM, where the test is not about the drain.
    command.env("GRIMOS_DRAIN_GRACE", "0s");
    let (child, addr, log, reader) = start_logging(command, "auth-service listening");
    (child, format!("http://{addr}"), log, reader)
}

/// The command that starts the real binary with its data in `data`, logging at `level`.
async fn binary(data: &TestData, level: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth-service"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_LISTEN_ADDR", "127.0.0.1:0")
        .env("AUTH_DATABASE_URL", data.database_url("auth.db").await)
        .env("AUTH_SIGNING_KEY_FILE", data.path().join("key.pem"))
        .env("GRIMOS_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("RUST_LOG", level);
    command
}

#[tokio::test]
async fn sigterm_drains_for_the_grace_and_sigint_stops_at_once() {
    const GRACE: Duration = Duration::from_secs(2);
    let data = TestData::new();
    let mut command = binary(&data, "info").await;
    command.env("GRIMOS_DRAIN_GRACE", "2s");
    let (child, addr, _, _) = start_logging(command, "auth-service listening");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    wait_for_health(channel.clone(), "", ServingStatus::Serving, WITHIN).await;

    // SIGTERM (an orchestrator's stop): NOT_SERVING at once, calls still answered...
    let start = Instant::now();
    process::signal(&child, "-TERM");
    wait_for_health(channel.clone(), "", ServingStatus::NotServing, GRACE).await;
    let mut auth = AuthServiceClient::new(channel);
    let login = auth
        .login(pb::LoginRequest {
            email: "nobody@example.com".into(),
            password: PASSWORD.into(),
        })
        .await;
    expect_code(login, Code::Unauthenticated);
    assert!(
        start.elapsed() < GRACE,
        "the drain took {:?}",
        start.elapsed()
    );
    // ... until the grace has passed; then a clean exit.
    process::exits_after_the_grace(child, start, GRACE).await;

    // Ctrl-C (SIGINT) does not wait for the grace, whatever it is.
    let mut command = binary(&data, "info").await;
    command.env("GRIMOS_DRAIN_GRACE", "60s");
    let (child, addr, _, _) = start_logging(command, "auth-service listening");
    AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    process::stops_at_once_on_sigint(child).await;
}

#[tokio::test]
async fn the_binary_keeps_committed_writes_across_kill_9_and_stops_on_sigterm_and_sigint() {
    let data = TestData::new();
    let (mut child, url) = start_binary(&data).await;
    let mut client = AuthServiceClient::connect(url).await.unwrap();
    let create = pb::CreateCredentialRequest {
        user_id: "u-1".into(),
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
    };
    client
        .create_credential(bearer(create, SERVICE_TOKEN))
        .await
        .unwrap();
    let login = client
        .login(pb::LoginRequest {
            email: "ada@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();

    let (child, url) = start_binary(&data).await;
    let mut client = AuthServiceClient::connect(url).await.unwrap();
    let again = client
        .login(pb::LoginRequest {
            email: "ada@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.user_id, "u-1");
    client
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token,
        })
        .await
        .unwrap();

    let exit = stop_with(child, "-TERM").await;
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");

    // Ctrl-C (SIGINT) is a graceful stop too.
    let (child, url) = start_binary(&data).await;
    AuthServiceClient::connect(url).await.unwrap();
    let exit = stop_with(child, "-INT").await;
    assert!(exit.success(), "clean exit on SIGINT: {exit:?}");
}

#[tokio::test]
async fn no_password_hash_or_token_reaches_the_logs_even_at_debug() {
    let data = TestData::new();
    let (child, url, log, reader) = start_binary_logging(&data, "debug").await;
    let mut client = AuthServiceClient::connect(url).await.unwrap();
    let password = "log-canary-password-1";
    let create = pb::CreateCredentialRequest {
        user_id: "u-1".into(),
        email: "ada@example.com".into(),
        password: password.into(),
    };
    client
        .create_credential(bearer(create, SERVICE_TOKEN))
        .await
        .unwrap();
    let login_request = |password: &str| pb::LoginRequest {
        email: "ada@example.com".into(),
        password: password.into(),
    };
    let login = client
        .login(login_request(password))
        .await
        .unwrap()
        .into_inner();
    expect_code(
        client.login(login_request("log-canary-wrong")).await,
        Code::Unauthenticated,
    );
    let refreshed = client
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .revoke_token(pb::RevokeTokenRequest {
            token: refreshed.access_token.clone(),
        })
        .await
        .unwrap();
    let log = kill_and_read_log(child, reader, &log).await;
    assert!(log.contains("login"), "the log has content: {log}");
    assert_none_logged(
        &log,
        &[
            password.to_owned(),
            "log-canary-wrong".to_owned(),
            SERVICE_TOKEN.to_owned(),
            "$argon2id".to_owned(),
            login.refresh_token,
            refreshed.refresh_token,
            jwt_signature(&login.access_token),
            jwt_signature(&refreshed.access_token),
        ],
    );
}

#[tokio::test]
async fn the_callers_request_id_is_on_the_log_lines_of_its_call() {
    let data = TestData::new();
    let (mut child, url, log, _) = start_binary_logging(&data, "debug").await;
    let mut client = AuthServiceClient::connect(url).await.unwrap();
    let mut request = tonic::Request::new(pb::ValidateTokenRequest {
        access_token: "not-a-token".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "req-canary-4242".parse().unwrap());
    expect_code(client.validate_token(request).await, Code::Unauthenticated);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let found = loop {
        let found = log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(r#"request_id="req-canary-4242""#));
        if found || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        found,
        "no log line carries the request id:\n{}",
        log.lock().unwrap().join("\n")
    );
}

/// `AUTH_DATABASE_URL` naming a PostgreSQL server that does not answer (needs no server).
#[tokio::test]
async fn an_unreachable_postgres_server_fails_the_start_quickly_without_the_password() {
    let start = Instant::now();
    let error = build_error(|c| {
        c.database_url = "postgres://grimos:pg-s3cret-pw@127.0.0.1:1/grimos".into();
    })
    .await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}: {error}");
    assert!(error.contains("PostgreSQL"), "{error}");
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(
        !error.contains("pg-s3cret-pw"),
        "the password leaked: {error}"
    );
}

/// `auth-service --health-check` with only `AUTH_LISTEN_ADDR` set, as a container health check
/// runs it beside the service.
fn health_check(addr: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .arg("--health-check")
        .env_clear()
        .env("AUTH_LISTEN_ADDR", addr)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_health_check_flag_exits_0_while_the_binary_serves_and_1_once_it_stopped() {
    let data = TestData::new();
    let (child, url) = start_binary(&data).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let serving = health_check(&addr);
    let stdout = String::from_utf8_lossy(&serving.stdout);
    assert!(serving.status.success(), "{serving:?}");
    assert!(stdout.contains("SERVING"), "{stdout}");

    let exit = stop_with(child, "-TERM").await;
    assert!(exit.success(), "{exit:?}");
    let stopped = health_check(&addr);
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(1), "{stopped:?}");
    assert!(
        stderr.contains("not serving") && stderr.contains(&addr),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_binary_reads_the_service_token_from_grimos_service_token_file() {
    let data = TestData::new();
    let token_file = data.path().join("service-token");
    std::fs::write(&token_file, "token-from-a-file\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth-service"));
    command
        .env_clear()
        .env("AUTH_LISTEN_ADDR", "127.0.0.1:0")
        .env("AUTH_DATABASE_URL", data.database_url("auth.db").await)
        .env("AUTH_SIGNING_KEY_FILE", data.path().join("key.pem"))
        .env("GRIMOS_SERVICE_TOKEN_FILE", &token_file);
    let (child, addr, log, reader) = start_logging(command, "auth-service listening");
    let mut client = AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let create = |user_id: &str| pb::CreateCredentialRequest {
        user_id: user_id.into(),
        email: format!("{user_id}@example.com"),
        password: PASSWORD.into(),
    };
    // The file's text without its newline is the token, and only it.
    client
        .create_credential(bearer(create("u-1"), "token-from-a-file"))
        .await
        .unwrap();
    let other = client
        .create_credential(bearer(create("u-2"), "token-from-a-fil"))
        .await;
    expect_code(other, Code::Unauthenticated);
    let log = kill_and_read_log(child, reader, &log).await;
    assert!(!log.contains("GRIMOS_SERVICE_TOKEN is not set"), "{log}");
    assert_none_logged(&log, &["token-from-a-file".to_owned()]);
}
