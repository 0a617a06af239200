//! What both services share and nothing else, one module per job: bearer tokens
//! ([`bearer`]), the status shape of bad input ([`status`]), logging ([`telemetry`]), the
//! shutdown signal ([`shutdown`]), the TLS files ([`tls`]), the contract's input rules
//! ([`validate`]) and opening SQLite and PostgreSQL databases ([`db`]).
//!
//! This crate never knows about either service's API or tables; each service owns its own
//! schema, errors and status mapping.

pub mod bearer;
pub mod db;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod validate;
