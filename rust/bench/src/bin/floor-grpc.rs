//! The gRPC floor: a minimal tonic server with auth-service's settings (multi-threaded tokio
//! runtime, `TCP_NODELAY`, the same call timeout and request size cap) that answers
//! `AuthService.ValidateToken` and `UserService.GetCurrentUser` with fixed replies of the
//! real services' shape and size. Everything else is `UNIMPLEMENTED`.
//!
//! Usage: `floor-grpc [127.0.0.1:PORT]` (or `FLOOR_GRPC_ADDR`; default a free port). Prints
//! `floor-grpc listening on ADDR` on stdout once bound.

use std::time::Duration;

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use grimos_proto::user::v1 as user_pb;
use grimos_proto::user::v1::user_service_server::{UserService, UserServiceServer};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// As auth-service: the longest a call may run, and the largest request accepted.
const MAX_CALL_TIME: Duration = Duration::from_secs(30);
const MAX_REQUEST_BYTES: usize = 64 * 1024;

fn unimplemented() -> Status {
    Status::unimplemented("floor server: only ValidateToken and GetCurrentUser")
}

/// Answers `ValidateToken` with a fixed reply.
struct FloorAuth {
    reply: auth_pb::ValidateTokenResponse,
}

#[tonic::async_trait]
impl AuthService for FloorAuth {
    async fn login(
        &self,
        _: Request<auth_pb::LoginRequest>,
    ) -> Result<Response<auth_pb::LoginResponse>, Status> {
        Err(unimplemented())
    }

    async fn refresh_token(
        &self,
        _: Request<auth_pb::RefreshTokenRequest>,
    ) -> Result<Response<auth_pb::RefreshTokenResponse>, Status> {
        Err(unimplemented())
    }

    async fn revoke_token(
        &self,
        _: Request<auth_pb::RevokeTokenRequest>,
    ) -> Result<Response<auth_pb::RevokeTokenResponse>, Status> {
        Err(unimplemented())
    }

    async fn validate_token(
        &self,
        _: Request<auth_pb::ValidateTokenRequest>,
    ) -> Result<Response<auth_pb::ValidateTokenResponse>, Status> {
        Ok(Response::new(self.reply.clone()))
    }

    async fn check_permission(
        &self,
        _: Request<auth_pb::CheckPermissionRequest>,
    ) -> Result<Response<auth_pb::CheckPermissionResponse>, Status> {
        Err(unimplemented())
    }

    async fn create_credential(
        &self,
        _: Request<auth_pb::CreateCredentialRequest>,
    ) -> Result<Response<auth_pb::CreateCredentialResponse>, Status> {
        Err(unimplemented())
    }

    async fn delete_credential(
        &self,
        _: Request<auth_pb::DeleteCredentialRequest>,
    ) -> Result<Response<auth_pb::DeleteCredentialResponse>, Status> {
        Err(unimplemented())
    }
}

/// Answers `GetCurrentUser` with a fixed user.
struct FloorUsers {
    user: user_pb::User,
}

#[tonic::async_trait]
impl UserService for FloorUsers {
    async fn create_user(
        &self,
        _: Request<user_pb::CreateUserRequest>,
    ) -> Result<Response<user_pb::CreateUserResponse>, Status> {
        Err(unimplemented())
    }

    async fn get_user(
        &self,
        _: Request<user_pb::GetUserRequest>,
    ) -> Result<Response<user_pb::GetUserResponse>, Status> {
        Err(unimplemented())
    }

    async fn get_current_user(
        &self,
        _: Request<user_pb::GetCurrentUserRequest>,
    ) -> Result<Response<user_pb::GetCurrentUserResponse>, Status> {
        Ok(Response::new(user_pb::GetCurrentUserResponse {
            user: Some(self.user.clone()),
        }))
    }

    async fn update_user(
        &self,
        _: Request<user_pb::UpdateUserRequest>,
    ) -> Result<Response<user_pb::UpdateUserResponse>, Status> {
        Err(unimplemented())
    }

    async fn delete_user(
        &self,
        _: Request<user_pb::DeleteUserRequest>,
    ) -> Result<Response<user_pb::DeleteUserResponse>, Status> {
        Err(unimplemented())
    }

    async fn list_users(
        &self,
        _: Request<user_pb::ListUsersRequest>,
    ) -> Result<Response<user_pb::ListUsersResponse>, Status> {
        Err(unimplemented())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = grimos_bench::listen_addr("FLOOR_GRPC_ADDR")?;
    let listener = TcpListener::bind(addr).await?;
    println!("floor-grpc listening on {}", listener.local_addr()?);

    let auth = AuthServiceServer::new(FloorAuth {
        reply: grimos_bench::validate_token_response(),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let users = UserServiceServer::new(FloorUsers {
        user: grimos_bench::user(),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .timeout(MAX_CALL_TIME)
        .add_service(auth)
        .add_service(users)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
