//! The auth client against real auth-service instances, and against auth-service being down,
//! silent, confused or late to start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth_service::{App, Config};
use grimos_common::shutdown::Stop;
use grimos_proto::auth::v1 as pb;
use grimos_test_support::metrics;
use grimos_test_support::ports::Reserved;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use user_service::auth_client::{AuthClient, AuthClientConfig};

const SERVICE_TOKEN: &str = "test-service-token-0123456789";
const PASSWORD: &str = "correct horse battery";

/// A running auth-service; stops when dropped.
struct Auth {
    addr: SocketAddr,
    stop: oneshot::Sender<Stop>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Auth {
    /// Stops it gracefully, at once (no drain), and waits until it has.
    async fn stop(self) {
        self.stop_with(Stop::Now).await;
    }

    /// Stops it as `how` says and waits until it has.
    async fn stop_with(self, how: Stop) {
        let _ = self.stop.send(how);
        self.handle.await.unwrap().unwrap();
    }
}

/// auth-service serving on `port`, which stays reserved for the test once it stops.
async fn spawn_auth(dir: &Path, port: &Reserved) -> Auth {
    spawn_auth_with(dir, port, |_| {}).await
}

/// [`spawn_auth`] with the configuration as `adjust` changes it.
async fn spawn_auth_with(dir: &Path, port: &Reserved, adjust: impl FnOnce(&mut Config)) -> Auth {
    grimos_test_support::init_logs();
    let mut config = Config::with_data_dir(dir, port.addr());
    config.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
    config.login_slowdown = Duration::from_millis(10);
    config.hash_concurrency = Some(2);
    adjust(&mut config);
    let app = App::build_on(config, port.listener())
        .await
        .expect("auth-service builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<Stop>();
    let handle = tokio::spawn(app.run_until_stopped(async { stopped.await.unwrap_or(Stop::Now) }));
    Auth { addr, stop, handle }
}

fn client_with(address: &str, deadline: Duration, token: Option<&str>) -> AuthClient {
    let mut config = AuthClientConfig::new(address);
    config.deadline = deadline;
    config.service_token = token.map(|t| SecretString::from(t.to_owned()));
    AuthClient::new(config).expect("client builds")
}

fn client(address: &str) -> AuthClient {
    client_with(address, Duration::from_secs(2), Some(SERVICE_TOKEN))
}

/// Creates a credential and logs in; returns the user id and the access token.
async fn sign_up(client: &AuthClient, email: &str) -> (String, pb::LoginResponse) {
    let user_id = uuid::Uuid::new_v4().to_string();
    let created = client
        .create_credential(pb::CreateCredentialRequest {
            user_id: user_id.clone(),
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .expect("credential created");
    assert_eq!(created.roles, ["user"]);
    let login = client
        .login(pb::LoginRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .expect("login succeeds");
    assert_eq!(login.user_id, user_id);
    (user_id, login)
}

#[tokio::test]
async fn every_call_works_against_a_real_auth_service() {
    let dir = tempfile::tempdir().unwrap();
    let auth = spawn_auth(dir.path(), &Reserved::new()).await;
    let client = client(&format!("http://{}", auth.addr));

    client
        .health_check()
        .await
        .expect("auth-service is serving");
    let (user_id, login) = sign_up(&client, "ada@grimos.dev").await;

    let validated = client.validate_token(&login.access_token).await.unwrap();
    assert_eq!(validated.user_id, user_id);
    assert_eq!(validated.roles, ["user"]);

    // A request id that is not ASCII metadata is dropped, not fatal.
    let validated = grimos_server::with_request_id(
        std::sync::Arc::from("id-ü\n"),
        client.validate_token(&login.access_token),
    )
    .await
    .unwrap();
    assert_eq!(validated.user_id, user_id);

    let refreshed = client
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap();
    client
        .revoke_token(pb::RevokeTokenRequest {
            token: refreshed.access_token.clone(),
        })
        .await
        .unwrap();
    let revoked = client
        .validate_token(&refreshed.access_token)
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);

    client.delete_credential(&user_id).await.unwrap();
    let deleted = client
        .validate_token(&login.access_token)
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), Code::Unauthenticated);
}

/// What one call to auth-service carried in its metadata.
#[derive(Debug)]
struct Sent {
    path: String,
    request_id: Option<String>,
    timeout: Option<Duration>,
    credential: bool,
}

#[tokio::test]
async fn the_embedded_auth_service_is_called_in_process_with_the_request_id_deadline_and_credential()
 {
    let dir = tempfile::tempdir().unwrap();
    let port = Reserved::new();
    let mut config = Config::with_data_dir(dir.path(), port.addr());
    config.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
    config.hash_concurrency = Some(2);
    // Built but never run: no socket serves it, so every call below goes in-process.
    let app = App::build_on(config, port.listener()).await.unwrap();
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let record = sent.clone();
    let router = app.in_process().layer(tower::util::MapRequestLayer::new(
        move |request: http::Request<axum::body::Body>| {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            record.lock().unwrap().push(Sent {
                path: request.uri().path().to_owned(),
                request_id: header("x-request-id"),
                timeout: grimos_server::grpc_timeout(request.headers()),
                credential: header("authorization").is_some(),
            });
            request
        },
    ));
    let deadline = Duration::from_secs(2);
    let client = AuthClient::in_process(
        router,
        deadline,
        Some(SecretString::from(SERVICE_TOKEN.to_owned())),
    )
    .unwrap();

    let (user_id, login) =
        grimos_server::with_request_id(Arc::from("req-42"), sign_up(&client, "ada@grimos.dev"))
            .await;
    let validated = grimos_server::with_request_id(
        Arc::from("req-43"),
        client.validate_token(&login.access_token),
    )
    .await
    .unwrap();
    assert_eq!(validated.user_id, user_id);
    // Outside any request: no id is made up.
    client.health_check().await.unwrap();

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let paths: Vec<&str> = sent.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/grimos.auth.v1.AuthService/CreateCredential",
            "/grimos.auth.v1.AuthService/Login",
            "/grimos.auth.v1.AuthService/ValidateToken",
            "/grpc.health.v1.Health/Check",
        ]
    );
    let ids: Vec<Option<&str>> = sent.iter().map(|s| s.request_id.as_deref()).collect();
    assert_eq!(ids, [Some("req-42"), Some("req-42"), Some("req-43"), None]);
    for call in &sent {
        let timeout = call
            .timeout
            .unwrap_or_else(|| panic!("no deadline: {call:?}"));
        assert!(timeout <= deadline && timeout > deadline / 2, "{call:?}");
        assert_eq!(
            call.credential,
            call.path.ends_with("/CreateCredential"),
            "{call:?}"
        );
    }
}

#[tokio::test]
async fn statuses_from_auth_service_pass_through_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let auth = spawn_auth(dir.path(), &Reserved::new()).await;
    let address = format!("http://{}", auth.addr);
    let good = client(&address);
    sign_up(&good, "grace@grimos.dev").await;

    let wrong = client_with(&address, Duration::from_secs(2), Some("not-the-token"));
    let status = wrong
        .create_credential(pb::CreateCredentialRequest {
            user_id: uuid::Uuid::new_v4().to_string(),
            email: "eve@grimos.dev".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = wrong.delete_credential("anyone").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let status = good
        .create_credential(pb::CreateCredentialRequest {
            user_id: uuid::Uuid::new_v4().to_string(),
            email: "grace@grimos.dev".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    let status = good
        .login(pb::LoginRequest {
            email: "grace@grimos.dev".to_owned(),
            password: "wrong password".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let status = good.validate_token("not.a.token").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn credential_calls_without_a_service_token_fail_before_sending() {
    let dead = Reserved::new();
    let client = client_with(
        &format!("http://{}", dead.addr()),
        Duration::from_secs(2),
        None,
    );
    let status = client.delete_credential("someone").await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "no service token configured");
}

#[tokio::test]
async fn a_list_of_two_replicas_serves_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn_auth(dir.path(), &Reserved::new()).await;
    let b = spawn_auth(dir.path(), &Reserved::new()).await;
    let client = client(&format!("http://{}, http://{}", a.addr, b.addr));

    let (user_id, login) = sign_up(&client, "linus@grimos.dev").await;
    for _ in 0..20 {
        let validated = client.validate_token(&login.access_token).await.unwrap();
        assert_eq!(validated.user_id, user_id);
    }
    client.health_check().await.unwrap();
}

/// How many of `count` ValidateToken calls fail.
async fn failures(client: &AuthClient, token: &str, count: usize) -> usize {
    let mut failed = 0;
    for _ in 0..count {
        if let Err(status) = client.validate_token(token).await {
            eprintln!("call failed: {status:?}");
            failed += 1;
        }
    }
    failed
}

/// Waits until 20 calls in a row succeed: the balancer's health checks (every second) have
/// caught up with a replica stopping or starting. Fails after 10 s.
async fn until_calls_succeed(client: &AuthClient, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures(client, token, 20).await > 0 {
        assert!(
            Instant::now() < deadline,
            "calls still fail 10 s after the change"
        );
    }
}

#[tokio::test]
async fn a_stopped_replica_leaves_the_rotation_and_returns_when_it_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (Reserved::new(), Reserved::new());
    let a = spawn_auth(dir.path(), &a_port).await;
    let b = spawn_auth(dir.path(), &b_port).await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let client = client(&format!("http://{a_addr}, http://{b_addr}"));
    let (_, login) = sign_up(&client, "replicas@grimos.dev").await;
    assert_eq!(failures(&client, &login.access_token, 20).await, 0);

    // b stops: once a health check has seen it, no call goes there (before this client
    // checked health, about a third of the calls failed for as long as b was down).
    b.stop().await;
    until_calls_succeed(&client, &login.access_token).await;
    assert_eq!(failures(&client, &login.access_token, 60).await, 0);

    // b serves again on its address, and a stops: b is back in rotation and takes every call.
    let b = spawn_auth(dir.path(), &b_port).await;
    a.stop().await;
    until_calls_succeed(&client, &login.access_token).await;
    assert_eq!(failures(&client, &login.access_token, 60).await, 0);

    // Both down: every endpoint stays in rotation (none is healthy), so calls fail at once
    // with UNAVAILABLE instead of waiting out the deadline for an endpoint to appear...
    b.stop().await;
    // Once a call has failed, both are down; across the next health-check rounds (every
    // second) every call keeps failing at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.validate_token(&login.access_token).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "calls still succeed with both down"
        );
    }
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(2500) {
        let start = Instant::now();
        let status = client
            .validate_token(&login.access_token)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... and the first replica back takes every call once a check has seen it.
    let _a = spawn_auth(dir.path(), &a_port).await;
    until_calls_succeed(&client, &login.access_token).await;
    assert_eq!(failures(&client, &login.access_token, 60).await, 0);
}

#[tokio::test]
async fn a_dns_name_is_resolved_to_its_instances() {
    let dir = tempfile::tempdir().unwrap();
    let auth = spawn_auth(dir.path(), &Reserved::new()).await;
    // auth-service listens on 127.0.0.1 only: use the name `localhost` where it resolves to
    // nothing else, so a refused ::1 endpoint cannot take a share of the calls.
    let localhost: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", auth.addr.port()))
        .await
        .map(Iterator::collect)
        .unwrap_or_default();
    let name = if !localhost.is_empty() && localhost.iter().all(|a| a.ip() == auth.addr.ip()) {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let client = client(&format!("dns:///{name}:{}", auth.addr.port()));

    let (user_id, login) = sign_up(&client, "dns@grimos.dev").await;
    for _ in 0..5 {
        let validated = client.validate_token(&login.access_token).await.unwrap();
        assert_eq!(validated.user_id, user_id);
    }
    client.health_check().await.unwrap();
}

#[tokio::test]
async fn auth_down_is_unavailable_quickly() {
    // Reserved ports nothing listens on: connections are refused.
    let (down_port, other_down_port) = (Reserved::new(), Reserved::new());
    let (down, other_down) = (down_port.addr(), other_down_port.addr());
    for address in [
        format!("http://{down}"),
        format!("http://{down},http://{other_down}"),
        format!("dns:///127.0.0.1:{}", down.port()),
    ] {
        let client = client_with(&address, Duration::from_millis(300), Some(SERVICE_TOKEN));
        let start = Instant::now();
        let status = client.validate_token("token").await.unwrap_err();
        let elapsed = start.elapsed();
        assert_eq!(status.code(), Code::Unavailable, "{address}: {status:?}");
        assert!(
            status.message().starts_with("auth-service"),
            "{address}: {status:?}"
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "{address}: took {elapsed:?}"
        );

        let status = client.health_check().await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{address}: {status:?}");
    }
}

#[tokio::test]
async fn auth_that_never_answers_is_unavailable_after_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts connections and holds them open without ever answering.
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let deadline = Duration::from_millis(300);
    for address in [format!("http://{addr}"), format!("dns:///{addr}")] {
        let client = client_with(&address, deadline, Some(SERVICE_TOKEN));
        let start = Instant::now();
        let status = client.validate_token("token").await.unwrap_err();
        let elapsed = start.elapsed();
        assert_eq!(status.code(), Code::Unavailable, "{address}: {status:?}");
        assert_eq!(
            status.message(),
            "auth-service did not answer within 300ms",
            "{address}"
        );
        assert!(
            elapsed < deadline + Duration::from_millis(500),
            "{address}: took {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn auth_that_speaks_no_grpc_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _confused = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0_u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });

    let client = client_with(&format!("http://{addr}"), Duration::from_millis(300), None);
    let start = Instant::now();
    let status = client.validate_token("token").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_client_recovers_when_auth_comes_up() {
    let port = Reserved::new();
    let addr = port.addr();
    let client = client_with(
        &format!("http://{addr}"),
        Duration::from_secs(2),
        Some(SERVICE_TOKEN),
    );
    let status = client.health_check().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let dir = tempfile::tempdir().unwrap();
    let _auth = spawn_auth(dir.path(), &port).await;
    let start = Instant::now();
    loop {
        match client.health_check().await {
            Ok(()) => break,
            Err(status) if start.elapsed() < Duration::from_secs(5) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("auth-service still unreachable after 5 s: {status:?}"),
        }
    }
    let (user_id, login) = sign_up(&client, "phoenix@grimos.dev").await;
    let validated = client.validate_token(&login.access_token).await.unwrap();
    assert_eq!(validated.user_id, user_id);
}

/// How long each worker of a [`Load`] waits between its calls.
const PACE: Duration = Duration::from_millis(10);

/// Calls made by a [`Load`], and the failures among them.
#[derive(Default)]
struct Tally {
    calls: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// A steady load on auth-service through one client: `workers` tasks, each with an account of
/// its own, calling `ValidateToken` and `CheckPermission` (reads, which may be retried after
/// any UNAVAILABLE) and now and then `Login` and `CreateCredential` (writes, which may be
/// retried only when they provably were not processed), one every [`PACE`], until
/// [`Load::finish`].
struct Load {
    tally: Arc<Tally>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    async fn start(client: &AuthClient, workers: usize) -> Load {
        let tally = Arc::new(Tally::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut accounts = tokio::task::JoinSet::new();
        for worker in 0..workers {
            let client = client.clone();
            accounts.spawn(async move {
                let email = format!("load-{worker}-{}@grimos.dev", uuid::Uuid::new_v4());
                let (_, login) = sign_up(&client, &email).await;
                (email, login)
            });
        }
        let mut tasks = Vec::new();
        while let Some(account) = accounts.join_next().await {
            let (email, login) = account.unwrap();
            let (client, tally, stopped) = (client.clone(), tally.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0_usize.. {
                    if *stopped.borrow() {
                        break;
                    }
                    // Mostly reads: a write hashes a password, and the tests beside this one
                    // need the CPU too.
                    let (rpc, outcome) = match n % 16 {
                        7 => (
                            "Login",
                            client
                                .login(pb::LoginRequest {
                                    email: email.clone(),
                                    password: PASSWORD.to_owned(),
                                })
                                .await
                                .map(drop),
                        ),
                        15 => {
                            let user_id = uuid::Uuid::new_v4().to_string();
                            let request = pb::CreateCredentialRequest {
                                email: format!("{user_id}@grimos.dev"),
                                user_id,
                                password: PASSWORD.to_owned(),
                            };
                            (
                                "CreateCredential",
                                client.create_credential(request).await.map(drop),
                            )
                        }
                        even if even % 2 == 0 => (
                            "ValidateToken",
                            client.validate_token(&login.access_token).await.map(drop),
                        ),
                        _ => (
                            "CheckPermission",
                            client
                                .check_permission(pb::CheckPermissionRequest {
                                    access_token: login.access_token.clone(),
                                    permission: "users.read.self".to_owned(),
                                })
                                .await
                                .map(drop),
                        ),
                    };
                    tally.calls.fetch_add(1, Ordering::Relaxed);
                    if let Err(status) = outcome {
                        tally
                            .failures
                            .lock()
                            .unwrap()
                            .push(format!("{rpc}: {status:?}"));
                    }
                    tokio::time::sleep(PACE).await;
                }
            }));
        }
        Load { tally, stop, tasks }
    }

    fn calls(&self) -> usize {
        self.tally.calls.load(Ordering::Relaxed)
    }

    /// Waits until `more` calls have been made from now on.
    async fn run(&self, more: usize) {
        let target = self.calls() + more;
        until(&format!("{more} more calls"), || self.calls() >= target).await;
    }

    /// Stops the load; how many calls it made, and the failures.
    async fn finish(self) -> (usize, Vec<String>) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = std::mem::take(&mut *self.tally.failures.lock().unwrap());
        (self.tally.calls.load(Ordering::Relaxed), failures)
    }
}

/// Waits until `condition` holds; fails, naming `what`, after 10 s.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The client's own view of each endpoint, from its metrics.
struct Seen;

impl Seen {
    /// Installs the process's recorder: before the client is made, so its metrics count.
    fn install() -> Self {
        grimos_server::metrics::recorder();
        Self
    }

    fn text(&self) -> String {
        grimos_server::metrics::recorder().render()
    }

    /// The value of the client's metric `name` for the endpoint `addr` (0 if it has none).
    fn of_endpoint(&self, name: &str, addr: SocketAddr) -> f64 {
        let endpoint = addr.to_string();
        metrics::sum(&self.text(), name, &[("endpoint", &endpoint)])
    }

    fn calls_to(&self, addr: SocketAddr) -> f64 {
        self.of_endpoint("auth_client_endpoint_calls_total", addr)
    }

    fn in_rotation(&self, addr: SocketAddr) -> bool {
        self.of_endpoint("auth_client_endpoint_in_rotation", addr) == 1.0
    }

    fn retries(&self) -> f64 {
        metrics::sum(&self.text(), "auth_client_retries_total", &[])
    }
}

#[tokio::test]
async fn replicas_stopped_without_a_drain_under_load_fail_no_call_thanks_to_retries() {
    let seen = Seen::install();
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (Reserved::new(), Reserved::new());
    let a = spawn_auth(dir.path(), &a_port).await;
    let b = spawn_auth(dir.path(), &b_port).await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let client = client(&format!("http://{a_addr}, http://{b_addr}"));
    let load = Load::start(&client, 4).await;
    until("both replicas take calls", || {
        seen.calls_to(a_addr) > 20.0 && seen.calls_to(b_addr) > 20.0
    })
    .await;

    // b stops at once while calls run: the calls in flight there finish; those that raced
    // its GOAWAY, and those that then find its port closed, were not processed and go to a.
    b.stop().await;
    until("b is out of rotation", || !seen.in_rotation(b_addr)).await;
    load.run(40).await;

    // b serves again on its address and is back once a check passes; then a stops.
    let b = spawn_auth(dir.path(), &b_port).await;
    let before = seen.calls_to(b_addr);
    until("b takes calls again", || {
        seen.in_rotation(b_addr) && seen.calls_to(b_addr) > before + 20.0
    })
    .await;
    a.stop().await;
    until("a is out of rotation", || !seen.in_rotation(a_addr)).await;
    load.run(40).await;

    let (calls, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:#?}",
        failures.len()
    );
    assert!(
        seen.retries() > 0.0,
        "no call raced a stop, so this run did not test the retries"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_draining_replica_leaves_the_rotation_before_it_stops_so_no_call_needs_a_retry() {
    const GRACE: Duration = Duration::from_millis(1500);
    let seen = Seen::install();
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (Reserved::new(), Reserved::new());
    let a = spawn_auth(dir.path(), &a_port).await;
    let b = spawn_auth_with(dir.path(), &b_port, |c| c.limits.drain_grace = GRACE).await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let mut config = AuthClientConfig::new(format!("http://{a_addr}, http://{b_addr}"));
    config.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
    config.health_check_interval = Duration::from_millis(200);
    let client = AuthClient::new(config).unwrap();
    let load = Load::start(&client, 3).await;
    until("both replicas take calls", || {
        seen.calls_to(a_addr) > 20.0 && seen.calls_to(b_addr) > 20.0
    })
    .await;

    let start = Instant::now();
    let stopping = tokio::spawn(b.stop_with(Stop::Drain));
    // b says NOT_SERVING at once, and the client's checks take it out of rotation while it
    // still serves...
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{b_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    grimos_test_support::grpc::wait_for_health(
        channel,
        "",
        grimos_test_support::grpc::ServingStatus::NotServing,
        GRACE,
    )
    .await;
    until("b is out of rotation", || !seen.in_rotation(b_addr)).await;
    assert!(
        start.elapsed() < GRACE,
        "b was still in rotation when it stopped serving"
    );
    // ... and only then stops, once the grace has passed.
    stopping.await.unwrap();
    assert!(
        start.elapsed() >= GRACE,
        "stopped after {:?}",
        start.elapsed()
    );
    load.run(40).await;

    let (calls, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(seen.retries(), 0.0, "a drained replica needs no retry");
    a.stop().await;
}
