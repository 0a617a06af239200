//! Calling grimOS from Rust with the generated tonic clients: sign up, log in, read your own
//! profile.
//!
//! Run it against a running system (`tools/dev.sh`): `cargo run -p grimos-example-client`.
//!
//! Settings (environment):
//! - `USER_SERVICE_URL`: user-service, which serves `grimos.user.v1.UserService` and the public
//!   calls of `grimos.auth.v1.AuthService` (default `http://127.0.0.1:8080`). An `https://`
//!   URL turns TLS on.
//! - `GRIMOS_TLS_CA`: optional path of a PEM file with CA certificates to trust besides the
//!   public roots, for a server whose certificate a private CA signed.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use grimos_proto::auth::v1::LoginRequest;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_proto::user::v1::user_service_client::UserServiceClient;
use grimos_proto::user::v1::{CreateUserRequest, GetCurrentUserRequest};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

const DEFAULT_USER_SERVICE_URL: &str = "http://127.0.0.1:8080";

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("USER_SERVICE_URL").unwrap_or_else(|_| DEFAULT_USER_SERVICE_URL.into());
    // One channel (one HTTP/2 connection) carries both services; clients are cheap to clone.
    let channel = connect(&url).await?;
    let mut users = UserServiceClient::new(channel.clone());
    let mut auth = AuthServiceClient::new(channel.clone());

    // 1. Sign up. The suffix makes the email unique, so the example can run again and again.
    let email = format!("example-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "correct horse battery staple";
    let display_name = "Example User";
    let created = users
        .create_user(CreateUserRequest {
            email: email.clone(),
            password: password.into(),
            display_name: display_name.into(),
        })
        .await
        .context("CreateUser failed")?
        .into_inner()
        .user
        .context("CreateUser returned no user")?;
    println!("signed up {} as user {}", created.email, created.id);

    // 2. Log in. `set_timeout` gives this one call a deadline: the client gives up after it
    //    and sends it to the server as `grpc-timeout`, so the server can give up too.
    let mut request = Request::new(LoginRequest {
        email: email.clone(),
        password: password.into(),
    });
    request.set_timeout(Duration::from_secs(5));
    let login = auth
        .login(request)
        .await
        .context("Login failed")?
        .into_inner();
    ensure!(
        login.user_id == created.id,
        "Login returned user {}, expected {}",
        login.user_id,
        created.id
    );
    println!("logged in; roles {:?}", login.roles);

    // 3. A wrong password is an error status, not a transport failure: match on its code.
    //    Every authentication failure is UNAUTHENTICATED; anything else is a real problem.
    let wrong = LoginRequest {
        email: email.clone(),
        password: "not the password".into(),
    };
    match auth.login(wrong).await {
        Ok(_) => bail!("Login with a wrong password succeeded"),
        Err(status) if status.code() == Code::Unauthenticated => {
            println!("wrong password rejected: {}", status.message());
        }
        Err(status) => return Err(status).context("Login with a wrong password failed"),
    }

    // 4. Call as the signed-in user. The interceptor adds `authorization: Bearer <token>` to
    //    every request of this client. Parse the header value once, here: a token that is not
    //    a valid header value is an error, not a panic.
    let bearer: AsciiMetadataValue = format!("Bearer {}", login.access_token)
        .parse()
        .context("the access token is not a valid header value")?;
    let mut me = UserServiceClient::with_interceptor(
        channel,
        move |mut req: Request<()>| -> Result<Request<()>, Status> {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        },
    );
    let user = me
        .get_current_user(GetCurrentUserRequest {})
        .await
        .context("GetCurrentUser failed")?
        .into_inner()
        .user
        .context("GetCurrentUser returned no user")?;

    ensure!(
        user.id == created.id,
        "GetCurrentUser returned user {}, expected {}",
        user.id,
        created.id
    );
    ensure!(
        user.email == email,
        "email is {:?}, expected {:?}",
        user.email,
        email
    );
    ensure!(
        user.display_name == display_name,
        "display name is {:?}, expected {:?}",
        user.display_name,
        display_name
    );
    ensure!(
        user.roles.iter().any(|role| role == "user"),
        "roles are {:?}, expected the role \"user\"",
        user.roles
    );
    println!(
        "current user: {} <{}> {:?}",
        user.display_name, user.email, user.roles
    );
    Ok(())
}

/// Opens a channel to `url`: plaintext HTTP/2 for `http://`, TLS for `https://`.
async fn connect(url: &str) -> Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid service URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        // A client-side deadline for every request on the channel. Unlike
        // `Request::set_timeout` it is not sent to the server.
        .timeout(Duration::from_secs(10));
    if url.starts_with("https://") {
        // The public (webpki) roots, plus a private CA if one is given.
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(path) = std::env::var_os("GRIMOS_TLS_CA") {
            let pem = std::fs::read(&path)
                .with_context(|| format!("cannot read GRIMOS_TLS_CA {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .context("invalid TLS configuration")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}
