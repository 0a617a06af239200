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

/// Implements a generated service trait for a floor: the rpcs it answers as written, and every
/// rpc listed under `unimplemented` as one shared `UNIMPLEMENTED` reply. The floor still goes
/// through the generated server (the same routing and codec as the real services), so only the
/// rpcs' bodies are left out.
macro_rules! floor_service {
    (
        impl $service:ident for $floor:ty { $($answered:tt)* }
        unimplemented { $($rpc:ident: $request:ty => $response:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl $service for $floor {
            $($answered)*

            $(
                async fn $rpc(&self, _: Request<$request>) -> Result<Response<$response>, Status> {
                    Err(unimplemented())
                }
            )*
        }
    };
}

/// Answers `ValidateToken` with a fixed reply.
struct FloorAuth {
    reply: auth_pb::ValidateTokenResponse,
}

floor_service! {
    impl AuthService for FloorAuth {
        async fn validate_token(
            &self,
            _: Request<auth_pb::ValidateTokenRequest>,
        ) -> Result<Response<auth_pb::ValidateTokenResponse>, Status> {
            Ok(Response::new(self.reply.clone()))
        }
    }
    unimplemented {
        login: auth_pb::LoginRequest => auth_pb::LoginResponse;
        refresh_token: auth_pb::RefreshTokenRequest => auth_pb::RefreshTokenResponse;
        revoke_token: auth_pb::RevokeTokenRequest => auth_pb::RevokeTokenResponse;
        check_permission: auth_pb::CheckPermissionRequest => auth_pb::CheckPermissionResponse;
        create_credential: auth_pb::CreateCredentialRequest => auth_pb::CreateCredentialResponse;
        delete_credential: auth_pb::DeleteCredentialRequest => auth_pb::DeleteCredentialResponse;
    }
}

/// Answers `GetCurrentUser` with a fixed user.
struct FloorUsers {
    user: user_pb::User,
}

floor_service! {
    impl UserService for FloorUsers {
        async fn get_current_user(
            &self,
            _: Request<user_pb::GetCurrentUserRequest>,
        ) -> Result<Response<user_pb::GetCurrentUserResponse>, Status> {
            Ok(Response::new(user_pb::GetCurrentUserResponse {
                user: Some(self.user.clone()),
            }))
        }
    }
    unimplemented {
        create_user: user_pb::CreateUserRequest => user_pb::CreateUserResponse;
        get_user: user_pb::GetUserRequest => user_pb::GetUserResponse;
        update_user: user_pb::UpdateUserRequest => user_pb::UpdateUserResponse;
        delete_user: user_pb::DeleteUserRequest => user_pb::DeleteUserResponse;
        list_users: user_pb::ListUsersRequest => user_pb::ListUsersResponse;
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

#[cfg(test)]
mod tests {
    use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
    use grimos_proto::user::v1::user_service_client::UserServiceClient;
    use tonic::Code;

    use super::*;

    fn assert_unimplemented<T>(reply: Result<T, Status>) {
        let status = reply.err().unwrap();
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(status.message(), unimplemented().message());
    }

    #[tokio::test]
    async fn the_floors_answer_their_benchmarked_rpc_and_nothing_else() {
        // In-process gRPC: the generated client calls the generated server (codec and status
        // mapping included, no socket).
        let mut auth = AuthServiceClient::new(AuthServiceServer::new(FloorAuth {
            reply: grimos_bench::validate_token_response(),
        }));
        let reply = auth.validate_token(auth_pb::ValidateTokenRequest::default());
        let expected = grimos_bench::validate_token_response();
        assert_eq!(reply.await.unwrap().into_inner(), expected);
        assert_unimplemented(auth.login(auth_pb::LoginRequest::default()).await);

        let mut users = UserServiceClient::new(UserServiceServer::new(FloorUsers {
            user: grimos_bench::user(),
        }));
        let reply = users.get_current_user(user_pb::GetCurrentUserRequest::default());
        let user = reply.await.unwrap().into_inner().user;
        assert_eq!(user, Some(grimos_bench::user()));
        assert_unimplemented(users.list_users(user_pb::ListUsersRequest::default()).await);
    }
}
