//! Black-box tests of auth-service: the real server on a random loopback port with a fresh
//! SQLite file, driven through the generated tonic client.

// A panic in a test or its helpers is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod credentials;
mod expiry;
mod health;
mod helpers;
mod keyfile;
mod lifetimes;
mod limits;
mod login;
mod operations;
mod postgres;
mod restart;
mod sessions;
mod throttling;
mod tls;
mod tokens;
mod watch;
