//! The gRPC face of user-service (also served as gRPC-Web, and called by the HTTP routes):
//! each handler reads the bearer token, calls [`Users`] and encodes the reply. (The request id
//! is in the request's context: see [`grimos_server::request_id`].)

use std::sync::Arc;

use grimos_proto::user::v1 as pb;
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use crate::service::{Caller, Users};

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

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = self.users.authenticate(authorization).await?;
        tracing::Span::current().record("user_id", caller.user_id.as_str());
        Ok(caller)
    }
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for UserApi {
    #[tracing::instrument(name = "CreateUser", skip_all)]
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let req = request.into_inner();
        let user = self
            .users
            .create_user(
                &req.email,
                SecretString::from(req.password),
                &req.display_name,
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
        let caller = self.caller(&request).await?;
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
        let caller = self.caller(&request).await?;
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
        let caller = self.caller(&request).await?;
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
        let caller = self.caller(&request).await?;
        self.users
            .delete_user(&caller, &request.into_inner().user_id)
            .await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    #[tracing::instrument(name = "ListUsers", skip_all, fields(user_id))]
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = self.caller(&request).await?;
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
