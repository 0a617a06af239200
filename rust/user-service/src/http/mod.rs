//! The HTTP/JSON face of user-service: the contract's `/v1` routes, health, readiness and
//! metrics, and the JSON error mapping. It never holds logic of its own: `/v1` routes go
//! through the gRPC handlers.

pub mod error;
pub mod ops;
pub mod routes;
