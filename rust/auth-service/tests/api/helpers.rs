//! `spawn_app()` and friends: start the real auth-service in-process, talk to it over gRPC.
//! Its database is on the suite's backend (`GRIMOS_TEST_BACKEND`: SQLite files, or
//! PostgreSQL), like every app these tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use auth_service::{App, Config};
use grimos_proto::auth::v1 as pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_test_support::app::{Running, TestData};
use grimos_test_support::init_logs;
use secrecy::SecretString;
use tonic::Status;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use grimos_test_support::PASSWORD;
pub use grimos_test_support::grpc::{bearer, expect_code, violated_fields};

/// The service credential every test app is configured with.
pub const SERVICE_TOKEN: &str = "test-service-token-0123456789";

/// A running auth-service and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Its folder (key file) and database: restart or replicate it with [`spawn_in`].
    pub dir: Arc<TestData>,
    running: Running,
    pub client: AuthServiceClient<Channel>,
}

/// Starts auth-service with the test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts auth-service with the test configuration as `adjust` changes it.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_in(TestData::new(), adjust).await
}

/// Starts auth-service on `data` (its key file and database; for restarts and replicas).
pub async fn spawn_in(data: Arc<TestData>, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let (addr, running) = start(&data, adjust).await;
    let client = AuthServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("client connects");
    TestApp {
        addr,
        dir: data,
        running,
        client,
    }
}

/// Starts auth-service with the TLS settings `adjust` gives it; its `client` speaks TLS, with
/// `tls`, to `https://127.0.0.1:port`.
pub async fn spawn_tls_app_with(adjust: impl FnOnce(&mut Config), tls: ClientTlsConfig) -> TestApp {
    let data = TestData::new();
    let (addr, running) = start(&data, adjust).await;
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS client connects");
    TestApp {
        addr,
        dir: data,
        running,
        client: AuthServiceClient::new(channel),
    }
}

/// Builds and runs auth-service on `data`, with the test configuration as `adjust` changes it.
async fn start(data: &TestData, adjust: impl FnOnce(&mut Config)) -> (SocketAddr, Running) {
    init_logs();
    let app = App::build(test_config(data, adjust).await)
        .await
        .expect("auth-service builds");
    let addr = app.local_addr();
    let running = Running::spawn(|stopped| app.run_until_stopped(stopped));
    (addr, running)
}

/// The configuration tests start from, on `data` (port 0, fast throttling), as `adjust`
/// changes it.
pub async fn test_config(data: &TestData, adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::with_data_dir(data.path(), "127.0.0.1:0".parse().unwrap());
    config.database_url = data.database_url("auth.db").await;
    config.service_token = Some(SecretString::from(SERVICE_TOKEN.to_owned()));
    config.admin_emails = vec!["root@grimos.dev".to_owned()];
    config.login_slowdown = Duration::from_millis(10);
    config.hash_concurrency = Some(2);
    config.revocation_sync_interval = Duration::from_millis(200);
    adjust(&mut config);
    config
}

/// The error `App::build` returns for the test settings as `adjust` changes them (for
/// settings that must fail the start).
pub async fn build_error(adjust: impl FnOnce(&mut Config)) -> String {
    let build = async |data: Arc<TestData>| App::build(test_config(&data, adjust).await).await;
    grimos_test_support::app::build_error(build, "auth-service").await
}

impl TestApp {
    /// A fresh client (its own connection).
    pub async fn new_client(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// A new channel to the server, for the other clients (health, reflection).
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server gracefully and waits until it has; returns its data.
    pub async fn stop(mut self) -> Arc<TestData> {
        self.running.stop().await;
        self.dir.clone()
    }

    /// CreateCredential with the service token.
    pub async fn create_credential(
        &self,
        user_id: &str,
        email: &str,
        password: &str,
    ) -> Result<Vec<String>, Status> {
        let request = bearer(
            pb::CreateCredentialRequest {
                user_id: user_id.into(),
                email: email.into(),
                password: password.into(),
            },
            SERVICE_TOKEN,
        );
        Ok(self
            .client
            .clone()
            .create_credential(request)
            .await?
            .into_inner()
            .roles)
    }

    /// Creates a credential with a random user id and [`PASSWORD`]; returns the user id.
    pub async fn sign_up(&self, email: &str) -> String {
        let user_id = uuid::Uuid::new_v4().to_string();
        self.create_credential(&user_id, email, PASSWORD)
            .await
            .unwrap();
        user_id
    }

    /// Login.
    pub async fn login(&self, email: &str, password: &str) -> Result<pb::LoginResponse, Status> {
        let request = pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        };
        Ok(self.client.clone().login(request).await?.into_inner())
    }

    /// Signs a user up and logs in.
    pub async fn signed_in(&self, email: &str) -> pb::LoginResponse {
        self.sign_up(email).await;
        self.login(email, PASSWORD).await.unwrap()
    }

    /// ValidateToken.
    pub async fn validate(&self, access_token: &str) -> Result<pb::ValidateTokenResponse, Status> {
        let request = pb::ValidateTokenRequest {
            access_token: access_token.into(),
        };
        Ok(self
            .client
            .clone()
            .validate_token(request)
            .await?
            .into_inner())
    }

    /// RefreshToken.
    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::RefreshTokenResponse, Status> {
        let request = pb::RefreshTokenRequest {
            refresh_token: refresh_token.into(),
        };
        Ok(self
            .client
            .clone()
            .refresh_token(request)
            .await?
            .into_inner())
    }

    /// RevokeToken.
    pub async fn revoke(&self, token: &str) -> Result<(), Status> {
        let request = pb::RevokeTokenRequest {
            token: token.into(),
        };
        self.client.clone().revoke_token(request).await?;
        Ok(())
    }

    /// The PEM text of the signing key file.
    pub fn signing_key_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("auth-signing-key.pem")).unwrap()
    }
}
