//! What the test suites of auth-service and user-service share, so that it is written once:
//!
//! - [`pki`]: a throwaway certificate authority, and the certificates it signs, as PEM text and
//!   as files in a temporary folder, for the TLS and mutual TLS tests;
//! - [`app`]: what a service's `spawn_app()` shares with the other's: the data an app keeps
//!   (a folder, and its databases on the suite's backend), stopping it, and its database seen
//!   directly;
//! - [`backend`]: which database a test runs on (`GRIMOS_TEST_BACKEND` for the API suites, both
//!   for a store's scenarios with [`on_both_backends!`]);
//! - [`clock`]: waiting until the wall clock reads a given moment;
//! - [`grpc`]: small helpers for calls and their statuses (bearer metadata, expected codes,
//!   `BadRequest` field violations, a bounded health check);
//! - [`metrics`]: samples read from Prometheus text;
//! - [`otlp`]: a real OTLP/gRPC receiver keeping the spans the services export;
//! - [`ports`]: loopback ports kept between a service's stop and its restart;
//! - [`postgres`]: a fresh PostgreSQL database per test, when a server is configured;
//! - [`process`]: a service's real binary started with its log collected, stopped with a signal,
//!   and its log scanned for secrets;
//! - [`sqlite`]: another process's write lock on a service's SQLite file;
//! - [`wire`]: raw HTTP/1.1 and HTTP/2 clients that stall, trickle or starve the server, for
//!   the tests of its limits;
//! - [`start_error`]: the error of a start that must fail;
//! - [`shipped_duration`]: a service's default for a setting, for the tests of the contract's
//!   bounds at the defaults;
//! - [`init_logs`]: the services' logs in test output when `TEST_LOG` is set.
//!
//! What touches a service's own `Config` or starts its `App` stays in that service's tests.
//! This crate is a dev-dependency only; it is never part of a service binary.

// A panic in test support is a failed test, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod backend;
pub mod clock;
pub mod grpc;
pub mod metrics;
pub mod otlp;
pub mod pki;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod sqlite;
pub mod wire;

/// A password that passes the input rules: the one the services' tests sign users up with.
pub const PASSWORD: &str = "correct horse battery";

/// The `rcgen` the PKI is made with, for tests that build certificates of their own.
pub use rcgen;

/// The error of a start that must fail, in its `{:#}` form (with its causes); panics, naming
/// `what` (`"auth-service started"`), if it started instead.
#[track_caller]
pub fn start_error<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> String {
    match result {
        Ok(_) => panic!("{what} started"),
        Err(error) => format!("{error:#}"),
    }
}

/// The default a service ships for the duration setting `--long` (`"revocation-sync-interval"`),
/// read from its command line's definition (`<Config as clap::CommandFactory>::command()`), so
/// that neither the environment nor a test's settings change it.
#[track_caller]
pub fn shipped_duration(command: &clap::Command, long: &str) -> std::time::Duration {
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .unwrap_or_else(|| panic!("no setting --{long}"));
    let default = arg.get_default_values();
    let text = default
        .first()
        .and_then(|value| value.to_str())
        .unwrap_or_else(|| panic!("--{long} has no default"));
    humantime::parse_duration(text).unwrap()
}

/// Sets up the services' log output when `TEST_LOG` is set (`TEST_LOG=1 cargo test …`).
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        grimos_common::telemetry::init_tracing();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{shipped_duration, start_error};

    #[test]
    fn shipped_duration_reads_the_default_of_the_command_line() {
        let command = clap::Command::new("x")
            .arg(clap::Arg::new("every").long("every").default_value("2s"))
            .arg(clap::Arg::new("name").long("name"));
        assert_eq!(shipped_duration(&command, "every"), Duration::from_secs(2));
    }

    #[test]
    #[should_panic(expected = "--name has no default")]
    fn shipped_duration_panics_without_a_default() {
        let command = clap::Command::new("x").arg(clap::Arg::new("name").long("name"));
        shipped_duration(&command, "name");
    }

    #[test]
    fn start_error_is_the_error_text() {
        let error = std::fmt::Error;
        let result: Result<(), _> = Err(error);
        assert_eq!(start_error(result, "x"), error.to_string());
    }

    #[test]
    #[should_panic(expected = "auth-service started")]
    fn start_error_panics_if_it_started() {
        start_error::<_, std::fmt::Error>(Ok(()), "auth-service");
    }
}
