//! user-service: owns profiles; serves `grimos.user.v1.UserService` over gRPC and gRPC-Web and
//! the contract's HTTP/JSON routes, all on one port. It authenticates every call by asking
//! auth-service (`ValidateToken`) and never reads auth-service's database.
//!
//! Start it with [`App::build`] and [`App::run_until_stopped`].

pub mod api;
pub mod auth_client;
pub mod auth_edge;
pub mod config;
pub mod error;
pub mod http;
pub mod page_token;
pub mod service;
pub mod startup;
pub mod store;

pub use config::{Cli, Config};
pub use startup::App;
