//! Black-box tests of user-service: the real app (with its embedded auth-service, or a
//! separate one) on random loopback ports with fresh SQLite files, driven over HTTP
//! (reqwest), gRPC (the generated client) and gRPC-Web.

// A panic in a test or its helpers is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth_edge;
mod binary;
mod consistency;
mod docs;
mod expiry;
mod health;
mod helpers;
mod http;
mod limits;
mod listing;
mod local_verification;
mod logout;
mod postgres;
mod resilience;
mod signup;
mod tls;
mod tracing;
mod users;
mod validation_cache;
