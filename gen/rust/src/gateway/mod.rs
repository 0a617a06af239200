//! The runtime of the generated HTTP/JSON gateway (the `gateway` feature): what the routes in
//! `gen/<package>.gateway.rs` call to bind a request to its gRPC message and to answer.
//!
//! `grimos-codegen` writes one `routes(service)` per service from the `google.api.http`
//! options and `rust/codegen/src/http_rules.rs`; each route decodes the path, the query and
//! the JSON body into the rpc's request message, calls the same tonic service implementation
//! that gRPC clients reach, and encodes the reply. Hand-written, like `wkt.rs`: the code here
//! is the same for every rpc, so it is written once rather than generated per route.
//!
//! - [`json`]: the proto3 JSON body extractor [`ProtoJson`] (pbjson impls, 64 KiB,
//!   unknown fields and repeated keys refused) and JSON answers.
//! - [`error`]: [`HttpError`], the one mapping from a `tonic::Status` to the contract's HTTP
//!   status and `{"code","message","details"}` body, the `details` rendered by the pbjson
//!   impls of the generated `google.rpc` types.
//! - [`bind`]: path, query and body binding, and the update-mask inference of PATCH.
//!
//! It never decides who may call what: the service implementation does, from the metadata the
//! route passes on. It depends on no server crate, so anything that serves an axum router
//! can mount the routes.

pub mod bind;
pub mod error;
pub mod json;

pub use bind::{Query, Success};
pub use error::{HttpError, deadline_exceeded, http_status, method_not_allowed, not_found};
pub use json::{MAX_BODY_BYTES, ProtoJson, body_limit, json_with_status};
