//! `grimos.auth.v1.AuthService` at the edge: user-service serves the rpcs that end users call
//! (Login, RefreshToken, RevokeToken, ChangePassword, ValidateToken, CheckPermission) on its own port by
//! forwarding them to auth-service, so a browser (gRPC-Web) or any client that can reach only
//! user-service can sign in with the generated clients; the `/v1/auth/*` HTTP routes (generated,
//! `grimos_proto::auth::v1::auth_service_gateway`) call this same implementation. The
//! service-only rpcs (CreateCredential, DeleteCredential, GetVerificationKeys,
//! WatchRevocations) are not exposed here.

use grimos_proto::auth::v1 as pb;
use tonic::{Request, Response, Status};

use crate::api::UserApi;

/// The edge `AuthService`: forwards to auth-service through user-service's auth client (its
/// deadline, balancing and metrics apply).
#[derive(Clone)]
pub struct AuthEdge {
    api: UserApi,
}

impl AuthEdge {
    /// Forwards through `api`'s auth client.
    pub fn new(api: UserApi) -> Self {
        Self { api }
    }
}

/// The bearer token of a request, if it has one.
fn bearer<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(grimos_common::bearer::bearer_token)
}

fn not_at_the_edge(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is a service-only rpc: user-service does not expose it; call auth-service"
    ))
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthEdge {
    #[tracing::instrument(name = "Login", skip_all)]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        // Passed on as it came, on the client's one call path; the answer's message only.
        let auth = self.api.users().auth();
        let response = auth
            .forward("Login", request, |mut auth, request| async move {
                auth.login(request).await
            })
            .await?;
        Ok(Response::new(response.into_inner()))
    }

    #[tracing::instrument(name = "RefreshToken", skip_all)]
    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let auth = self.api.users().auth();
        Ok(Response::new(
            auth.refresh_token(request.into_inner()).await?,
        ))
    }

    /// Revokes `token`, or, when it is empty, the caller's bearer access token. The one copy
    /// of logout's fallback: `POST /v1/auth/logout` is this rpc, the generated route passing
    /// the `Authorization` header on as metadata.
    #[tracing::instrument(name = "RevokeToken", skip_all)]
    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let bearer = bearer(&request).unwrap_or_default().to_owned();
        let mut req = request.into_inner();
        if req.token.is_empty() {
            req.token = bearer;
        }
        if req.token.is_empty() {
            return Err(Status::unauthenticated(
                "give the token to revoke in the request or as a bearer token",
            ));
        }
        let auth = self.api.users().auth();
        Ok(Response::new(auth.revoke_token(req).await?))
    }

    /// Passed on with the caller's bearer token; every cached validation of the user's tokens
    /// is forgotten, since their sessions ended.
    #[tracing::instrument(name = "ChangePassword", skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let auth = self.api.users().auth();
        let caller = bearer(&request).map(str::to_owned);
        let response = auth
            .forward("ChangePassword", request, |mut auth, request| async move {
                auth.change_password(request).await
            })
            .await?;
        // Where auth-service's revocation streams were with the ended sessions: for this
        // service only, not passed on to the caller.
        let cursor = response
            .metadata()
            .get(grimos_token::CURSOR_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let response = response.into_inner();
        auth.password_changed(
            &response.user_id,
            caller.as_deref(),
            &response.access_token,
            cursor.as_deref(),
        );
        Ok(Response::new(response))
    }

    #[tracing::instrument(name = "ValidateToken", skip_all)]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = request.into_inner().access_token;
        let auth = self.api.users().auth();
        Ok(Response::new(auth.validate_token(&token).await?))
    }

    #[tracing::instrument(name = "CheckPermission", skip_all)]
    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let auth = self.api.users().auth();
        Ok(Response::new(
            auth.check_permission(request.into_inner()).await?,
        ))
    }

    async fn create_credential(
        &self,
        _request: Request<pb::CreateCredentialRequest>,
    ) -> Result<Response<pb::CreateCredentialResponse>, Status> {
        Err(not_at_the_edge("CreateCredential"))
    }

    async fn delete_credential(
        &self,
        _request: Request<pb::DeleteCredentialRequest>,
    ) -> Result<Response<pb::DeleteCredentialResponse>, Status> {
        Err(not_at_the_edge("DeleteCredential"))
    }

    async fn get_verification_keys(
        &self,
        _request: Request<pb::GetVerificationKeysRequest>,
    ) -> Result<Response<pb::GetVerificationKeysResponse>, Status> {
        Err(not_at_the_edge("GetVerificationKeys"))
    }

    type WatchRevocationsStream = tokio_stream::Empty<Result<pb::WatchRevocationsResponse, Status>>;

    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Err(not_at_the_edge("WatchRevocations"))
    }
}
