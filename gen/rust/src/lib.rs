//! Generated Rust code for the grimOS API, as one crate every service depends on.
//!
//! Everything under `src/gen/` and `src/rpc/` (and `../openapi/`) is written by
//! `just generate` (buf and `grimos-codegen`) from `proto/` and the vendored `google/rpc`
//! protos; never edit it. This file, `wkt.rs` and `gateway/` are the hand-written parts: the
//! module paths users name, the canonical JSON form of `google.protobuf.FieldMask` and
//! `Timestamp`, and the runtime of the generated HTTP/JSON routes.
//!
//! - [`auth::v1`]: `grimos.auth.v1` messages, `auth_service_client::AuthServiceClient` and
//!   `auth_service_server::{AuthService, AuthServiceServer}`.
//! - [`user::v1`]: `grimos.user.v1`, likewise.
//! - [`google::rpc`]: the `google.rpc` error model (`Status`, the error details, `Code`)
//!   with proto3 JSON, as `tonic::Status` details carry it.
//! - [`gateway`] (feature `gateway`): each service's HTTP/JSON routes,
//!   `<service>_gateway::routes(service)` in its package module (for example
//!   `user::v1::user_service_gateway`), generated from the `google.api.http` options, and
//!   their runtime.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors (imports included) for
//!   `tonic-reflection`.
//! - [`OPENAPI_JSON`]: the OpenAPI 3.1 document of the HTTP/JSON surface.
//!
//! Every message implements `serde::Serialize` and `Deserialize` in the canonical proto3 JSON
//! mapping (lowerCamelCase names, RFC 3339 timestamps, 64-bit integers as strings, field
//! masks as comma-separated strings); unknown JSON fields are rejected.

#[path = "gen/mod.rs"]
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated;

#[path = "rpc/mod.rs"]
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated_rpc;

#[cfg(feature = "gateway")]
pub mod gateway;
pub mod wkt;

pub use generated::descriptor::FILE_DESCRIPTOR_SET;

/// The OpenAPI 3.1 document of the HTTP/JSON surface (`gen/openapi/grimos.openapi.json`,
/// written by `just generate` from the same descriptors as this crate), so a server serves
/// the document of the code it was built from.
pub const OPENAPI_JSON: &str = include_str!("../../openapi/grimos.openapi.json");

/// The descriptors a server of `package` should offer through reflection: that package's
/// files and every file that is not part of the grimOS API (the well-known types), so a
/// server does not advertise another service's API.
pub fn descriptor_set_for(
    package: &str,
) -> Result<prost_types::FileDescriptorSet, prost::DecodeError> {
    use prost::Message as _;
    let mut set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)?;
    set.file
        .retain(|file| !file.package().starts_with("grimos.") || file.package() == package);
    Ok(set)
}

/// The `grimos.auth` API.
pub mod auth {
    /// Version 1 of `grimos.auth`: credentials, roles and tokens.
    pub mod v1 {
        pub use crate::generated::grimos::auth::v1::*;
    }
}

/// The `grimos.user` API.
pub mod user {
    /// Version 1 of `grimos.user`: user profiles.
    pub mod v1 {
        pub use crate::generated::grimos::user::v1::*;
    }
}

/// The googleapis packages the API's runtime uses.
pub mod google {
    /// `google.rpc`: the error model of gRPC statuses and their details.
    pub mod rpc {
        pub use crate::generated_rpc::google::rpc::*;
    }
}
