//! auth-service: owns credentials, roles and tokens, and serves `grimos.auth.v1.AuthService`
//! over gRPC.
//!
//! It never stores a password or a refresh token in the clear, never logs a secret, and never
//! reads the database to validate an access token. user-service reaches it only through gRPC.
//!
//! Start it with [`App::build`] and [`App::run_until_stopped`]; `main` adds nothing but
//! tracing, the environment and the shutdown signal.

pub mod api;
pub mod config;
pub mod error;
pub mod feed;
pub mod keys;
pub mod passwords;
pub mod roles;
pub mod service;
pub mod startup;
pub mod store;
pub mod tokens;

pub use config::{Cli, Config};
pub use startup::App;
