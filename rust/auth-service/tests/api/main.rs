//! Black-box tests of auth-service: the real server on a random loopback port with a fresh
//! SQLite file, driven through the generated tonic client.

// A panic in a test or its helpers is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod credentials;
mod expiry;
mod helpers;
mod login;
mod operations;
mod postgres;
mod restart;
mod throttling;
mod tls;
mod tokens;
