//! The gRPC face of user-service (also served as gRPC-Web, and called by the HTTP routes):
//! each handler reads the request id and bearer token, calls [`Users`] and encodes the reply.

use std::sync::Arc;

use grimos_proto::user::v1 as pb;
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use crate::service::{Caller, Users};

/// The metadata key that carries a request id from HTTP, between services and into logs.
pub const REQUEST_ID: &str = "x-request-id";

/// The `grimos.user.v1.UserService` implementation.
#[derive(Clone)]
pub struct UserApi {
    users: Arc<Users>,
}

impl UserApi {
    /// Serves `users`.
    pub fn new(users: Arc<Users>) -> Self {
        Self { users }
    }

    /// The service behind the handlers.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, String), Status> {
        let id = request_id(request);
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = self.users.authenticate(authorization, &id).await?;
        tracing::Span::current().record("user_id", caller.user_id.as_str());
        Ok((caller, id))
    }
}

/// The caller's request id if it sent a sane one, else a new one.
pub fn request_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// [`request_id`], also recorded on the current span's `request_id` field.
pub fn traced_request_id<T>(request: &Request<T>) -> String {
    let id = request_id(request);
    tracing::Span::current().record("request_id", id.as_str());
    id
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for UserApi {
    #[tracing::instrument(name = "CreateUser", skip_all, fields(request_id))]
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let id = traced_request_id(&request);
        let req = request.into_inner();
        let user = self
            .users
            .create_user(
                &req.email,
                SecretString::from(req.password),
                &req.display_name,
                &id,
            )
            .await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(name = "GetUser", skip_all, fields(user_id))]
    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let user = self
            .users
            .get_user(&caller, &request.into_inner().user_id)
            .await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(name = "GetCurrentUser", skip_all, fields(user_id))]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let user = self.users.current_user(&caller).await?;
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(name = "UpdateUser", skip_all, fields(user_id))]
    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let req = request.into_inner();
        let user = self
            .users
            .update_user(&caller, req.user, req.update_mask)
            .await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(name = "DeleteUser", skip_all, fields(user_id))]
    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let (caller, id) = self.caller(&request).await?;
        self.users
            .delete_user(&caller, &request.into_inner().user_id, &id)
            .await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    #[tracing::instrument(name = "ListUsers", skip_all, fields(user_id))]
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let req = request.into_inner();
        let (users, next_page_token) = self
            .users
            .list_users(&caller, req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}
