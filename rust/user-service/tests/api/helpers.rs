//! `spawn_app()` and friends: start the real user-service in-process and talk to it. Its
//! databases (and its embedded auth-service's) are on the suite's backend
//! (`GRIMOS_TEST_BACKEND`: SQLite files, or PostgreSQL), like every app these tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use grimos_common::shutdown::Stop;
use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_proto::user::v1 as pb;
use grimos_proto::user::v1::user_service_client::UserServiceClient;
use grimos_test_support::app::{Running, TestData};
use grimos_test_support::init_logs;
use grimos_test_support::ports::Reserved;
use secrecy::SecretString;
use serde_json::{Value, json};
use tonic::Status;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use user_service::{App, Config};
use x509_parser::extensions::GeneralName;

pub use grimos_test_support::PASSWORD;
pub use grimos_test_support::grpc::{bearer, expect_code, violated_fields};

/// The admin email every test app is configured with.
pub const ADMIN_EMAIL: &str = "root@grimos.dev";

/// A running user-service (with its embedded auth-service) and clients for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub auth_addr: Option<SocketAddr>,
    /// Its folder and databases: restart it with [`spawn_in`].
    pub dir: Arc<TestData>,
    pub grpc: UserServiceClient<Channel>,
    pub http: reqwest::Client,
    /// `http://addr`, or `https://<name in its certificate>:port` when it serves TLS.
    pub base_url: String,
    /// How [`TestApp::channel`] connects (TLS trusting the app's certificate, if it serves TLS).
    endpoint: Endpoint,
    running: Running,
}

/// Starts user-service with the test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts user-service with the test configuration as `adjust` changes it.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_in(TestData::new(), adjust).await
}

/// Starts user-service on `data` (its databases and files; for restarts).
pub async fn spawn_in(data: Arc<TestData>, adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let config = test_config(&data, adjust).await;
    let app = App::build(config.clone())
        .await
        .expect("user-service builds");
    let (addr, auth_addr) = (app.local_addr(), app.embedded_auth_addr());
    let running = Running::spawn(|stopped| app.run_until_stopped(stopped));
    let (base_url, endpoint, http) = match TlsClient::for_app(&config) {
        None => (
            format!("http://{addr}"),
            Endpoint::from_shared(format!("http://{addr}")).unwrap(),
            reqwest::Client::new(),
        ),
        Some(tls) => (
            format!("https://{}:{}", tls.name, addr.port()),
            tls.endpoint(addr),
            tls.http(addr),
        ),
    };
    let channel = endpoint.connect().await.unwrap();
    TestApp {
        addr,
        auth_addr,
        dir: data,
        grpc: UserServiceClient::new(channel),
        http,
        base_url,
        endpoint,
        running,
    }
}

/// The configuration tests start from, on `data` (port 0 everywhere; the embedded
/// auth-service's database beside user-service's), as `adjust` changes it.
pub async fn test_config(data: &TestData, adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::with_data_dir(data.path());
    config.user_database_url = data.database_url("user.db").await;
    config.auth.database_url = data.database_url("auth.db").await;
    config.auth.admin_emails = vec![ADMIN_EMAIL.to_owned()];
    config.auth.login_slowdown = Duration::from_millis(10);
    config.auth.hash_concurrency = Some(2);
    config.auth.login_max_attempts = 50;
    adjust(&mut config);
    config
}

/// The error `App::build` returns for the test settings as `adjust` changes them (for
/// settings that must fail the start).
pub async fn build_error(adjust: impl FnOnce(&mut Config)) -> String {
    let build = async |data: Arc<TestData>| App::build(test_config(&data, adjust).await).await;
    grimos_test_support::app::build_error(build, "user-service").await
}

/// A separate auth-service (the production topology) on the suite's backend; it stops when
/// dropped, or gracefully with [`AuthService::stop`].
pub struct AuthService {
    pub addr: SocketAddr,
    /// Its key file and database: start it again on them with [`start_auth`].
    pub data: Arc<TestData>,
    running: Running,
}

/// Starts auth-service on `data` (on the reserved `port` if given, else a free one) with
/// `service_token`, fast test settings, and `adjust`ed.
pub async fn start_auth(
    data: Arc<TestData>,
    port: Option<&Reserved>,
    service_token: &str,
    adjust: impl FnOnce(&mut auth_service::Config),
) -> AuthService {
    let addr = port.map_or_else(|| "127.0.0.1:0".parse().unwrap(), Reserved::addr);
    let mut config = auth_service::Config::with_data_dir(data.path(), addr);
    config.database_url = data.database_url("auth.db").await;
    config.service_token = Some(SecretString::from(service_token.to_owned()));
    config.login_slowdown = Duration::from_millis(10);
    config.hash_concurrency = Some(2);
    adjust(&mut config);
    let app = match port {
        Some(port) => auth_service::App::build_on(config, port.listener()).await,
        None => auth_service::App::build(config).await,
    }
    .expect("auth-service builds");
    let addr = app.local_addr();
    let running = Running::spawn(|stopped| app.run_until_stopped(stopped));
    AuthService {
        addr,
        data,
        running,
    }
}

impl AuthService {
    /// Stops it gracefully and waits until it has; returns its data.
    pub async fn stop(mut self) -> Arc<TestData> {
        self.running.stop().await;
        self.data.clone()
    }
}

/// What a client needs to call a user-service that serves TLS with the test's files.
pub struct TlsClient {
    /// The name it is called by: the first name its certificate has.
    pub name: String,
    /// PEM roots: `GRIMOS_TLS_CA` when set, else the certificate itself (self-signed).
    pub roots: Vec<u8>,
}

impl TlsClient {
    /// `None` when `config` serves plaintext.
    pub fn for_app(config: &Config) -> Option<TlsClient> {
        let cert = std::fs::read(config.tls.cert.as_ref()?).unwrap();
        let roots = match &config.tls.ca {
            Some(ca) => std::fs::read(ca).unwrap(),
            None => cert.clone(),
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(&cert).unwrap();
        let parsed = pem.parse_x509().unwrap();
        let names = parsed.subject_alternative_name().unwrap().unwrap();
        let name = match names.value.general_names.first().unwrap() {
            GeneralName::DNSName(name) => (*name).to_owned(),
            GeneralName::IPAddress(ip) => {
                std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string()
            }
            other => panic!("unexpected name {other:?}"),
        };
        Some(TlsClient { name, roots })
    }

    /// A gRPC endpoint dialling `addr`, verifying the certificate for [`TlsClient::name`].
    pub fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.roots))
            .domain_name(&self.name);
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
    }

    /// An HTTP client that reaches [`TlsClient::name`] at `addr`, trusting the roots.
    pub fn http(&self, addr: SocketAddr) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().resolve(&self.name, addr);
        for root in reqwest::Certificate::from_pem_bundle(&self.roots).unwrap() {
            builder = builder.add_root_certificate(root);
        }
        builder.build().unwrap()
    }
}

/// A signed-in user: their id and tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// [`TestApp::base_url`] + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A new gRPC channel to user-service.
    pub async fn channel(&self) -> Channel {
        self.endpoint.connect().await.unwrap()
    }

    /// Asks the app to stop as `how` says ([`Stop::Drain`]: NOT_SERVING for the drain grace
    /// first), without waiting; [`TestApp::stop`] then waits until it has.
    pub fn begin_stop(&mut self, how: Stop) {
        self.running.begin_stop(how);
    }

    /// Stops the app gracefully (at once, unless [`TestApp::begin_stop`] asked for a drain);
    /// returns its data.
    pub async fn stop(mut self) -> Arc<TestData> {
        self.running.stop().await;
        self.dir.clone()
    }

    /// CreateUser over gRPC.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
    ) -> Result<pb::User, Status> {
        let request = pb::CreateUserRequest {
            email: email.into(),
            password: password.into(),
            display_name: display_name.into(),
        };
        Ok(self
            .grpc
            .clone()
            .create_user(request)
            .await?
            .into_inner()
            .user
            .unwrap())
    }

    /// Login over HTTP.
    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/users/me` with the bearer `access_token`.
    pub async fn me_with(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/v1/users/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/auth/refresh` with `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/auth/refresh"))
            .json(&json!({ "refreshToken": refresh_token }))
            .send()
            .await
            .unwrap()
    }

    /// Signs a user up (gRPC) and logs in (HTTP).
    pub async fn sign_up(&self, email: &str) -> Session {
        let user = self
            .create_user(email, PASSWORD, "Test User")
            .await
            .unwrap();
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        Session {
            user_id: user.id,
            access_token: body["accessToken"].as_str().unwrap().to_owned(),
            refresh_token: body["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    /// Signs up the configured admin.
    pub async fn admin(&self) -> Session {
        self.sign_up(ADMIN_EMAIL).await
    }

    /// An HTTP request with a bearer token.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        session: &Session,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&session.access_token)
    }

    /// `GET path` with `session`'s token, expecting 200; its JSON body.
    pub async fn get_json(&self, path: &str, session: &Session) -> Value {
        let response = self
            .authed(reqwest::Method::GET, path, session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// An AuthService client of the embedded auth-service.
    pub async fn auth_client(&self) -> AuthServiceClient<Channel> {
        let addr = self.auth_addr.expect("embedded auth-service");
        AuthServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }

    /// Whether `email` and [`PASSWORD`] can log in at auth-service: true, or false when it
    /// refuses the credentials (UNAUTHENTICATED); any other failure (UNAVAILABLE, INTERNAL, ...)
    /// panics, so that "cannot log in" never passes on a broken auth-service.
    pub async fn can_log_in(&self, email: &str) -> bool {
        let request = auth_pb::LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
        };
        match self.auth_client().await.login(request).await {
            Ok(_) => true,
            Err(status) if status.code() == tonic::Code::Unauthenticated => false,
            Err(status) => {
                panic!("login failed for another reason than the credentials: {status:?}")
            }
        }
    }
}

/// Asserts an HTTP error response: status, gRPC code in the body, and returns the body.
pub async fn expect_http_error(response: reqwest::Response, status: u16, code: i64) -> Value {
    assert_eq!(response.status().as_u16(), status, "HTTP status");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["code"], json!(code), "gRPC code in {body}");
    assert!(body["message"].is_string(), "message in {body}");
    assert!(body["details"].is_array(), "details in {body}");
    body
}
