//! Distributed tracing, end to end: the real binaries export their spans over OTLP/gRPC to a
//! real receiver in the test (`grimos_test_support::otlp`), and one HTTP request is one
//! trace across user-service, the call to auth-service, auth-service and both databases, in
//! embedded mode (one process) and split mode (two processes), with nothing secret in it.
//!
//! The split-mode test runs the `auth-service` binary built beside `user-service` (the
//! workspace's test run builds both).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use grimos_test_support::app::TestData;
use grimos_test_support::backend::Backend;
use grimos_test_support::otlp::{Received, Receiver, SpanKind};
use grimos_test_support::process::{self, Log, jwt_signature, stop_with};
use serde_json::{Value, json};

use grimos_proto::user::v1 as pb;
use grimos_proto::user::v1::user_service_client::UserServiceClient;

use crate::helpers::PASSWORD;

const EMAIL: &str = "trace-ada@example.com";
/// The trace id of the caller of `GET /v1/users/me`, and its span id.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// The same for the gRPC caller of `GetCurrentUser`.
const GRPC_CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const GRPC_CALLER_SPAN: &str = "b7ad6b7169203331";
/// How long spans may take to arrive after the services stopped (they are flushed then).
const ARRIVAL: Duration = Duration::from_secs(10);

/// The OpenTelemetry settings of both services: the receiver, batches sent only when the
/// process stops (the test thereby checks the flush at the stop), an extra resource attribute,
/// and the shipped log level: the sign-up's `user signed up` line shows the trace id on log
/// lines. (`tower_http=debug` is left out: with spans exported and PostgreSQL it makes the
/// info lines vanish, a `tracing-subscriber` per-layer filtering problem noted in
/// docs/observability.md.)
fn otel_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test".to_owned(),
        ),
        ("RUST_LOG", "info".to_owned()),
        // Every /me asks auth-service.
        ("AUTH_VALIDATION_CACHE_TTL", "0s".to_owned()),
        ("GRIMOS_DRAIN_GRACE", "0s".to_owned()),
    ]
}

/// A `Command` for a binary in `data`'s folder with only `env` (and `PATH`).
fn command(binary: PathBuf, data: &TestData, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(binary);
    command
        .current_dir(data.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// The `auth-service` binary of this build.
fn auth_service_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_user-service")).with_file_name("auth-service");
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries (cargo build -p auth-service)",
        path.display()
    );
    path
}

/// What the requests answered: the secrets that must appear nowhere in the spans, and the
/// trace id of the `/me` request as its logs show it.
struct Requests {
    secrets: Vec<String>,
}

/// Signs up (request id `trace-signup`), logs in, and asks `GET /v1/users/me` (request id
/// `trace-me`) as a caller in the trace `CALLER_TRACE`.
async fn requests(base: &str) -> Requests {
    let http = reqwest::Client::new();
    let signed_up = http
        .post(format!("{base}/v1/users"))
        .header("x-request-id", "trace-signup")
        .json(&json!({"email": EMAIL, "password": PASSWORD, "displayName": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 201);
    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["accessToken"].as_str().unwrap();
    let me = http
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(access)
        .header("x-request-id", "trace-me")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    let channel = tonic::transport::Endpoint::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = UserServiceClient::new(channel);
    let mut request = grimos_test_support::grpc::bearer(pb::GetCurrentUserRequest {}, access);
    let metadata = request.metadata_mut();
    metadata.insert("x-request-id", "trace-grpc".parse().unwrap());
    let traceparent = format!("00-{GRPC_CALLER_TRACE}-{GRPC_CALLER_SPAN}-01");
    metadata.insert("traceparent", traceparent.parse().unwrap());
    grpc.get_current_user(request).await.unwrap();
    Requests {
        secrets: vec![
            PASSWORD.to_owned(),
            EMAIL.to_owned(),
            access.to_owned(),
            jwt_signature(access),
            login["refreshToken"].as_str().unwrap().to_owned(),
        ],
    }
}

/// The spans of `spans` in `trace`.
fn in_trace<'a>(spans: &'a [Received], trace: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.trace_id() == trace).collect()
}

/// The one span of `spans` that `matches`, named `what` in the failure.
#[track_caller]
fn one<'a>(
    spans: &[&'a Received],
    what: &str,
    matches: impl Fn(&Received) -> bool,
) -> &'a Received {
    let found: Vec<&&Received> = spans.iter().filter(|s| matches(s)).collect();
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{}:{}", s.service, s.span.name))
        .collect();
    assert_eq!(found.len(), 1, "one {what} in {names:?}");
    found[0]
}

/// Whether `span` is `ancestor` or below it in `spans`.
fn descends(spans: &[&Received], span: &Received, ancestor: &Received) -> bool {
    let mut current = span;
    for _ in 0..spans.len() + 1 {
        if current.span_id() == ancestor.span_id() {
            return true;
        }
        match spans
            .iter()
            .find(|s| s.span_id() == current.parent_span_id())
        {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

/// One request as its trace must show it.
#[derive(Clone, Copy)]
struct Expected {
    request_id: &'static str,
    method: &'static str,
    route: &'static str,
    status: u16,
    /// The rpc of auth-service it calls.
    rpc: &'static str,
    /// Whether auth-service reads its database for it (`ValidateToken` does not).
    auth_reads_database: bool,
}

/// Checks one request's trace: the HTTP server span on user-service named for its route,
/// the auth client call of its rpc under it, auth-service's server span whose parent is
/// that call (in the same trace: the context crossed the boundary), and database spans under
/// user-service's span and, if it reads one, auth-service's. Returns the trace id.
#[track_caller]
fn check_request(
    spans: &[Received],
    expected: &Expected,
    (user, auth): (&str, &str),
    db_system: &str,
) -> String {
    let Expected {
        request_id,
        method,
        route,
        status,
        rpc,
        auth_reads_database,
    } = *expected;
    let all: Vec<&Received> = spans.iter().collect();
    let http = one(&all, "HTTP server span", |s| {
        s.attribute("request_id").as_deref() == Some(request_id)
            && s.attribute("http.route").is_some()
    });
    assert_eq!(http.service, user);
    let trace = http.trace_id();
    let trace_spans = in_trace(spans, &trace);
    assert_eq!(http.kind(), SpanKind::Server);
    assert_eq!(http.span.name, format!("{method} {route}"));
    assert_eq!(http.attribute("http.route").as_deref(), Some(route));
    assert_eq!(
        http.attribute("http.request.method").as_deref(),
        Some(method)
    );
    assert_eq!(
        http.attribute("http.response.status_code"),
        Some(status.to_string())
    );

    let client = one(&trace_spans, "auth client span", |s| {
        s.kind() == SpanKind::Client && s.attribute("rpc.method").as_deref() == Some(rpc)
    });
    assert_eq!(client.service, user);
    assert_eq!(
        client.span.name,
        format!("grimos.auth.v1.AuthService/{rpc}")
    );
    assert_eq!(client.attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        client.attribute("rpc.service").as_deref(),
        Some("grimos.auth.v1.AuthService")
    );
    assert_eq!(
        client.attribute("rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert!(
        descends(&trace_spans, client, http),
        "the call is under the request"
    );

    // auth-service's span of the call carries the same request id, and is in the same trace
    // as the call's child: the trace context went with the call.
    let served = one(&all, "auth-service server span", |s| {
        s.kind() == SpanKind::Server
            && s.attribute("rpc.method").as_deref() == Some(rpc)
            && s.attribute("request_id").as_deref() == Some(request_id)
    });
    assert_eq!(served.service, auth);
    assert_eq!(served.trace_id(), trace, "auth-service continued the trace");
    assert_eq!(
        served.parent_span_id(),
        client.span_id(),
        "its parent is the call"
    );
    assert_eq!(
        served.span.name,
        format!("grimos.auth.v1.AuthService/{rpc}")
    );
    assert_eq!(served.attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        served.attribute("rpc.grpc.status_code").as_deref(),
        Some("0")
    );

    let is_db = |s: &Received| s.attribute("db.system.name").is_some();
    let user_db = trace_spans.iter().find(|s| {
        is_db(s) && descends(&trace_spans, s, http) && !descends(&trace_spans, s, served)
    });
    let auth_db = trace_spans
        .iter()
        .find(|s| is_db(s) && descends(&trace_spans, s, served));
    assert_eq!(
        auth_db.is_some(),
        auth_reads_database,
        "auth-service's database spans in {request_id}'s trace"
    );
    let user_db = user_db
        .unwrap_or_else(|| panic!("no database span of user-service in {request_id}'s trace"));
    for (db, service) in [(Some(user_db), user), (auth_db, auth)] {
        let Some(db) = db else { continue };
        assert_eq!(db.service, service);
        assert_eq!(db.kind(), SpanKind::Client);
        assert_eq!(db.attribute("db.system.name").as_deref(), Some(db_system));
        let operation = db.attribute("db.operation.name").unwrap();
        assert_eq!(db.span.name, operation);
    }
    trace
}

/// No secret anywhere: span names, attributes, events, resources.
#[track_caller]
fn assert_no_secrets(spans: &[Received], secrets: &[String]) {
    for span in spans {
        for text in span.texts() {
            for secret in secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{secret:?} is in {}:{} ({text:?})",
                    span.service,
                    span.span.name
                );
            }
        }
    }
}

fn db_system(data: &TestData) -> &'static str {
    match data.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    }
}

/// Every line `log` holds so far.
fn lines(log: &Log) -> String {
    log.lock().unwrap().join("\n")
}

/// The checks both modes share, once the spans are in.
#[track_caller]
fn check_both_requests(
    spans: &[Received],
    services: (&str, &str),
    data: &TestData,
    requests: &Requests,
    user_log: &str,
) {
    let system = db_system(data);
    let signup = Expected {
        request_id: "trace-signup",
        method: "POST",
        route: "/v1/users",
        status: 201,
        rpc: "CreateCredential",
        auth_reads_database: true,
    };
    let signup = check_request(spans, &signup, services, system);
    let me = Expected {
        request_id: "trace-me",
        method: "GET",
        route: "/v1/users/me",
        status: 200,
        rpc: "ValidateToken",
        auth_reads_database: false,
    };
    let me = check_request(spans, &me, services, system);
    assert_ne!(signup, me, "one trace per request");
    // The caller's traceparent was continued: its trace, under its span.
    assert_eq!(me, CALLER_TRACE);
    let all: Vec<&Received> = spans.iter().collect();
    let me_http = one(&all, "/me server span", |s| {
        s.attribute("request_id").as_deref() == Some("trace-me")
            && s.attribute("http.route").is_some()
    });
    assert_eq!(me_http.parent_span_id(), CALLER_SPAN);
    // The rpc the route serves is a span of its own under the HTTP span.
    let trace_spans = in_trace(spans, &me);
    let rpc = one(&trace_spans, "GetCurrentUser span", |s| {
        s.span.name == "GetCurrentUser"
    });
    assert_eq!(rpc.parent_span_id(), me_http.span_id());
    // Over gRPC, the server span is the rpc's, in its caller's trace.
    let grpc = one(&all, "gRPC server span", |s| {
        s.attribute("request_id").as_deref() == Some("trace-grpc")
            && s.kind() == SpanKind::Server
            && s.attribute("rpc.service").as_deref() == Some("grimos.user.v1.UserService")
    });
    assert_eq!(grpc.span.name, "grimos.user.v1.UserService/GetCurrentUser");
    assert_eq!(grpc.trace_id(), GRPC_CALLER_TRACE);
    assert_eq!(grpc.parent_span_id(), GRPC_CALLER_SPAN);
    assert_eq!(grpc.attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        grpc.attribute("rpc.method").as_deref(),
        Some("GetCurrentUser")
    );
    assert_eq!(grpc.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    // Every resource names its service and carries OTEL_RESOURCE_ATTRIBUTES.
    for span in spans {
        assert!(
            span.resource
                .contains(&("deployment.environment.name".to_owned(), "test".to_owned())),
            "{:?}",
            span.resource
        );
    }
    assert_no_secrets(spans, &requests.secrets);
    // Health checks (user-service's of auth-service, every second) are not traced.
    assert!(
        spans.iter().all(|s| !s.span.name.contains("Health")),
        "a health check was traced"
    );
    // The request's log lines carry its trace id.
    assert!(
        user_log.lines().any(|l| l.contains("trace-signup")
            && l.contains("user signed up")
            && l.contains(&format!("trace_id={signup}"))),
        "no log line of trace-signup with its trace id:\n{user_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_through_the_embedded_auth_service() {
    let receiver = Receiver::start().await;
    let data = TestData::new();
    let mut env = otel_env(&receiver);
    env.push(("OTEL_SERVICE_NAME", "grimos-edge".to_owned()));
    // `/me` asks auth-service ValidateToken, so its trace crosses both services.
    env.push(("AUTH_LOCAL_VERIFICATION", "false".to_owned()));
    env.push(("USER_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    env.push(("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    if data.backend() == Backend::Postgres {
        env.push(("USER_DATABASE_URL", data.database_url("user.db").await));
        env.push(("AUTH_DATABASE_URL", data.database_url("auth.db").await));
    }
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_user-service"));
    let (child, addr, log, _) =
        process::start_logging(command(binary, &data, &env), "user-service listening");
    let requests = requests(&format!("http://{addr}")).await;
    assert_eq!(receiver.count(), 0, "spans are batched until the stop");

    let exit = stop_with(child, "-TERM").await;
    assert!(exit.success(), "{exit:?}");
    // Flushed at the stop: every span of both requests.
    let spans = receiver
        .wait_for("auth-service span of /me", ARRIVAL, |spans| {
            spans.iter().any(|s| {
                s.attribute("request_id").as_deref() == Some("trace-me")
                    && s.attribute("rpc.method").as_deref() == Some("ValidateToken")
            })
        })
        .await;
    // One process, one service: OTEL_SERVICE_NAME names it.
    assert!(spans.iter().all(|s| s.service == "grimos-edge"));
    check_both_requests(
        &spans,
        ("grimos-edge", "grimos-edge"),
        &data,
        &requests,
        &lines(&log),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_the_two_processes() {
    let receiver = Receiver::start().await;
    let data = TestData::new();
    let mut auth_env = otel_env(&receiver);
    auth_env.push(("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    auth_env.push(("GRIMOS_SERVICE_TOKEN", "trace-service-token".to_owned()));
    auth_env.push(("AUTH_DATABASE_URL", data.database_url("auth.db").await));
    let (auth, auth_addr, _, _) = process::start_logging(
        command(auth_service_binary(), &data, &auth_env),
        "auth-service listening",
    );
    let mut user_env = otel_env(&receiver);
    user_env.push(("USER_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    user_env.push(("AUTH_LOCAL_VERIFICATION", "false".to_owned()));
    user_env.push(("AUTH_SERVICE_ADDRESS", format!("http://{auth_addr}")));
    user_env.push(("GRIMOS_SERVICE_TOKEN", "trace-service-token".to_owned()));
    user_env.push(("USER_DATABASE_URL", data.database_url("user.db").await));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_user-service"));
    let (user, addr, log, _) =
        process::start_logging(command(binary, &data, &user_env), "user-service listening");
    let mut requests = requests(&format!("http://{addr}")).await;
    requests.secrets.push("trace-service-token".to_owned());

    // Both ways of stopping flush: SIGTERM's drain here, Ctrl-C there.
    let exit = stop_with(user, "-TERM").await;
    assert!(exit.success(), "{exit:?}");
    let exit = stop_with(auth, "-INT").await;
    assert!(exit.success(), "{exit:?}");
    let spans = receiver
        .wait_for("both services' spans of /me", ARRIVAL, |spans| {
            ["user-service", "auth-service"].iter().all(|service| {
                spans.iter().any(|s| {
                    s.service == *service
                        && s.attribute("request_id").as_deref() == Some("trace-me")
                        && s.kind() == SpanKind::Server
                })
            })
        })
        .await;
    check_both_requests(
        &spans,
        ("user-service", "auth-service"),
        &data,
        &requests,
        &lines(&log),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_when_the_sampler_samples_nothing() {
    let receiver = Receiver::start().await;
    let data = TestData::new();
    let mut env = otel_env(&receiver);
    env.push(("OTEL_TRACES_SAMPLER", "traceidratio".to_owned()));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0".to_owned()));
    env.push(("USER_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    env.push(("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
    env.push(("USER_DATABASE_URL", data.database_url("user.db").await));
    env.push(("AUTH_DATABASE_URL", data.database_url("auth.db").await));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_user-service"));
    let (child, addr, log, _) =
        process::start_logging(command(binary, &data, &env), "user-service listening");
    requests(&format!("http://{addr}")).await;
    let exit = stop_with(child, "-TERM").await;
    assert!(exit.success(), "{exit:?}");
    // The stop waited for the export to be answered: what was sampled has arrived.
    assert_eq!(
        receiver.count(),
        0,
        "the ratio sampler at 0 samples nothing"
    );
    let log = lines(&log);
    assert!(
        log.contains("trace-signup"),
        "the requests were logged: {log}"
    );
    assert!(
        !log.contains("trace_id="),
        "no trace id for an unsampled trace: {log}"
    );
}

#[tokio::test]
async fn logs_are_json_lines_with_log_format_json_and_a_bad_format_fails_the_start() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let data = TestData::new();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_user-service"));
    let env = [
        ("USER_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("USER_DATABASE_URL", data.database_url("user.db").await),
        ("AUTH_DATABASE_URL", data.database_url("auth.db").await),
        ("GRIMOS_LOG_FORMAT", "json".to_owned()),
    ];
    let mut child = command(binary.clone(), &data, &env)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = loop {
        let line = lines.next().expect("the binary logs its start").unwrap();
        let line: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if line["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("user-service listening"))
        {
            break line;
        }
    };
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["fields"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(listening["timestamp"].is_string());
    child.kill().unwrap();
    child.wait().unwrap();

    let mut env = env.to_vec();
    env.push(("GRIMOS_LOG_FORMAT", "xml".to_owned()));
    let failed = command(binary, &data, &env).output().unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("GRIMOS_LOG_FORMAT must be text or json"),
        "{stderr}"
    );
}
