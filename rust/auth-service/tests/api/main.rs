//! Black-box tests of auth-service: the real server on a random loopback port with a fresh
//! SQLite file, driven through the generated tonic client.

mod credentials;
mod helpers;
mod login;
mod operations;
mod restart;
mod throttling;
mod tokens;
