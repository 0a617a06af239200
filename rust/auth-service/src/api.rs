//! The gRPC face of auth-service: each handler decodes its request, calls [`Auth`] and
//! encodes the reply. No logic lives here beyond reading the `authorization` metadata.

use std::sync::Arc;

use grimos_proto::auth::v1 as pb;
use grimos_proto::wkt::Timestamp;
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use crate::service::{Auth, IssuedTokens};
use crate::{roles, tokens};

/// The `grimos.auth.v1.AuthService` implementation.
#[derive(Clone)]
pub struct AuthApi {
    auth: Arc<Auth>,
}

impl AuthApi {
    /// Serves `auth`.
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { auth }
    }
}

fn authorization<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
}

impl From<IssuedTokens> for pb::LoginResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            user_id: t.user_id,
            expire_time: Some(Timestamp::from(t.access_expire_time)),
            refresh_token_expire_time: Some(Timestamp::from(t.refresh_expire_time)),
            roles: t.roles,
        }
    }
}

impl From<IssuedTokens> for pb::RefreshTokenResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            expire_time: Some(Timestamp::from(t.access_expire_time)),
            refresh_token_expire_time: Some(Timestamp::from(t.refresh_expire_time)),
            user_id: t.user_id,
        }
    }
}

impl From<IssuedTokens> for pb::ChangePasswordResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            user_id: t.user_id,
            expire_time: Some(Timestamp::from(t.access_expire_time)),
            refresh_token_expire_time: Some(Timestamp::from(t.refresh_expire_time)),
        }
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    #[tracing::instrument(name = "Login", skip_all)]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = request.into_inner();
        let issued = self
            .auth
            .login(&req.email, SecretString::from(req.password))
            .await?;
        Ok(Response::new(issued.into()))
    }

    #[tracing::instrument(name = "RefreshToken", skip_all)]
    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let issued = self
            .auth
            .refresh(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(issued.into()))
    }

    #[tracing::instrument(name = "RevokeToken", skip_all)]
    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let session_id = self.auth.revoke(&request.into_inner().token).await?;
        Ok(Response::new(pb::RevokeTokenResponse { session_id }))
    }

    #[tracing::instrument(name = "ChangePassword", skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let bearer = authorization(&request)
            .and_then(grimos_common::bearer::bearer_token)
            .unwrap_or_default()
            .to_owned();
        let req = request.into_inner();
        let (issued, cursor) = self
            .auth
            .change_password(
                &bearer,
                SecretString::from(req.current_password),
                SecretString::from(req.new_password),
            )
            .await?;
        let mut response = Response::new(issued.into());
        // For user-service: its stream has the ended sessions once it reaches this cursor.
        if let Some(value) = cursor.and_then(|cursor| cursor.parse().ok()) {
            response
                .metadata_mut()
                .insert(grimos_token::CURSOR_HEADER, value);
        }
        Ok(response)
    }

    #[tracing::instrument(name = "ValidateToken", skip_all)]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let claims = self.auth.validate(&request.into_inner().access_token)?;
        let permissions = roles::permissions(&claims.roles)
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(Response::new(pb::ValidateTokenResponse {
            user_id: claims.sub.clone(),
            expire_time: Some(Timestamp {
                seconds: i64::try_from(claims.exp).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            roles: claims.roles.clone(),
            permissions,
            session_id: claims.sid.clone(),
        }))
    }

    #[tracing::instrument(name = "CheckPermission", skip_all)]
    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let req = request.into_inner();
        let allowed = self
            .auth
            .check_permission(&req.access_token, &req.permission)?;
        Ok(Response::new(pb::CheckPermissionResponse { allowed }))
    }

    #[tracing::instrument(name = "CreateCredential", skip_all)]
    async fn create_credential(
        &self,
        request: Request<pb::CreateCredentialRequest>,
    ) -> Result<Response<pb::CreateCredentialResponse>, Status> {
        self.auth.authorize_service(authorization(&request))?;
        let req = request.into_inner();
        let roles = self
            .auth
            .create_credential(&req.user_id, &req.email, SecretString::from(req.password))
            .await?;
        Ok(Response::new(pb::CreateCredentialResponse { roles }))
    }

    #[tracing::instrument(name = "DeleteCredential", skip_all)]
    async fn delete_credential(
        &self,
        request: Request<pb::DeleteCredentialRequest>,
    ) -> Result<Response<pb::DeleteCredentialResponse>, Status> {
        self.auth.authorize_service(authorization(&request))?;
        self.auth
            .delete_credential(&request.into_inner().user_id)
            .await?;
        Ok(Response::new(pb::DeleteCredentialResponse {}))
    }

    type WatchRevocationsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>,
    >;

    #[tracing::instrument(name = "GetVerificationKeys", skip_all)]
    async fn get_verification_keys(
        &self,
        request: Request<pb::GetVerificationKeysRequest>,
    ) -> Result<Response<pb::GetVerificationKeysResponse>, Status> {
        self.auth.authorize_service(authorization(&request))?;
        Ok(Response::new(pb::GetVerificationKeysResponse {
            keys: self
                .auth
                .verification_keys()
                .jwks()
                .into_iter()
                .map(Into::into)
                .collect(),
            issuer: tokens::ISSUER.to_owned(),
            audience: tokens::AUDIENCE.to_owned(),
            leeway: Some(tokens::LEEWAY.into()),
            roles: self.auth.role_table().into(),
        }))
    }

    #[tracing::instrument(name = "WatchRevocations", skip_all)]
    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        self.auth.authorize_service(authorization(&request))?;
        let watcher = self
            .auth
            .watch_revocations(&request.into_inner().cursor)
            .await?;
        let stream = futures_util::stream::unfold(watcher, |mut watcher| async move {
            let message = watcher.next().await?;
            Some((Ok(message), watcher))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
