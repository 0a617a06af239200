//! The gRPC floor: a minimal tonic server with auth-service's settings (multi-threaded tokio
//! runtime, `TCP_NODELAY`, the same call timeout and request size cap) that answers
//! `AuthService.ValidateToken` and `UserService.GetCurrentUser` with fixed replies of the
//! real services' shape and size. Everything else is `UNIMPLEMENTED`.
//!
//! Each answered rpc runs through tonic's own server machinery, `tonic::server::Grpc` with the
//! prost codec (what a generated server runs for each of its methods), at its gRPC path; the
//! generated service traits are not implemented, since they require every rpc and the floor
//! would have to list each new one.
//!
//! Usage: `floor-grpc [127.0.0.1:PORT]` (or `FLOOR_GRPC_ADDR`; default a free port). Prints
//! `floor-grpc listening on ADDR` on stdout once bound.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::time::Duration;

use axum::response::IntoResponse as _;
use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::user::v1 as user_pb;
use tokio::net::TcpListener;
use tonic::server::{Grpc, UnaryService};
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// As auth-service: the longest a call may run, and the largest request accepted.
const MAX_CALL_TIME: Duration = Duration::from_secs(30);
const MAX_REQUEST_BYTES: usize = 64 * 1024;

fn unimplemented() -> Status {
    Status::unimplemented("floor server: only ValidateToken and GetCurrentUser")
}

/// Answers one unary rpc, whose request is a `Req`, with a fixed reply.
struct Fixed<Req, Resp> {
    reply: Resp,
    request: PhantomData<fn(Req)>,
}

impl<Req, Resp: Clone> Clone for Fixed<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            reply: self.reply.clone(),
            request: PhantomData,
        }
    }
}

impl<Req, Resp: Clone> UnaryService<Req> for Fixed<Req, Resp> {
    type Response = Resp;
    type Future = Ready<Result<Response<Resp>, Status>>;

    fn call(&mut self, _: Request<Req>) -> Self::Future {
        ready(Ok(Response::new(self.reply.clone())))
    }
}

/// Adds the rpc at `path` answered by `fixed`, decoded and encoded as a generated server does.
fn answer<Req, Resp>(router: axum::Router, path: &str, fixed: Fixed<Req, Resp>) -> axum::Router
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Clone + Send + Sync + 'static,
{
    let service = tower::service_fn(move |request: axum::extract::Request| {
        let fixed = fixed.clone();
        async move {
            let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default())
                .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            Ok::<_, Infallible>(grpc.unary(fixed, request).await)
        }
    });
    router.route_service(path, service)
}

/// Both floors on one router: the benchmarked rpcs, and `UNIMPLEMENTED` for any other path.
fn router() -> axum::Router {
    let router = answer(
        axum::Router::new(),
        "/grimos.auth.v1.AuthService/ValidateToken",
        Fixed::<auth_pb::ValidateTokenRequest, _> {
            reply: grimos_bench::validate_token_response(),
            request: PhantomData,
        },
    );
    let router = answer(
        router,
        "/grimos.user.v1.UserService/GetCurrentUser",
        Fixed::<user_pb::GetCurrentUserRequest, _> {
            reply: user_pb::GetCurrentUserResponse {
                user: Some(grimos_bench::user()),
            },
            request: PhantomData,
        },
    );
    router.fallback(|| async {
        unimplemented()
            .into_http::<axum::body::Body>()
            .into_response()
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = grimos_bench::listen_addr("FLOOR_GRPC_ADDR")?;
    let listener = TcpListener::bind(addr).await?;
    println!("floor-grpc listening on {}", listener.local_addr()?);

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .timeout(MAX_CALL_TIME)
        .add_routes(Routes::from(router()))
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

    /// The floor's router as a tonic transport: the generated clients call it in-process
    /// (codec and status mapping included, no socket).
    fn floor() -> tower::util::BoxCloneSyncService<
        http::Request<tonic::body::Body>,
        http::Response<tonic::body::Body>,
        Infallible,
    > {
        let router = router();
        tower::util::BoxCloneSyncService::new(
            tower::ServiceExt::<http::Request<tonic::body::Body>>::map_response(
                router,
                |response: axum::response::Response| response.map(tonic::body::Body::new),
            ),
        )
    }

    #[tokio::test]
    async fn the_floors_answer_their_benchmarked_rpc_and_nothing_else() {
        let mut auth = AuthServiceClient::new(floor());
        let reply = auth.validate_token(auth_pb::ValidateTokenRequest::default());
        let expected = grimos_bench::validate_token_response();
        assert_eq!(reply.await.unwrap().into_inner(), expected);
        assert_unimplemented(auth.login(auth_pb::LoginRequest::default()).await);

        let mut users = UserServiceClient::new(floor());
        let reply = users.get_current_user(user_pb::GetCurrentUserRequest::default());
        let user = reply.await.unwrap().into_inner().user;
        assert_eq!(user, Some(grimos_bench::user()));
        assert_unimplemented(users.list_users(user_pb::ListUsersRequest::default()).await);
    }
}
