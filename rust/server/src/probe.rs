//! `--health-check`: a service's binary asks its own port for `grpc.health.v1.Health/Check` of
//! the overall status (`""`), the question Kubernetes' `grpc:` probes ask, prints the answer and
//! exits 0 when it is SERVING, 1 otherwise. A container image without a shell runs this as its
//! health check (`deploy/compose.yaml`).
//!
//! It speaks plaintext HTTP/2 only: a port that serves TLS is reported as not probed, never as
//! healthy. It must never start anything or write anywhere: it runs beside the live service.

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use grimos_common::tls::TlsSettings;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long one probe may take, connecting included.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// The address that reaches a service listening on `listen`: the same, with an unspecified
/// IP (`0.0.0.0`, `[::]`, as in a container) replaced by the loopback address of its family.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks `addr` (plaintext) for its overall health within `deadline`: `Ok` when SERVING, else
/// what went wrong (`status NOT_SERVING`, a refused connection, a timeout).
pub async fn probe(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(deadline)
        .timeout(deadline);
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {}", chain(&e)))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|status| format!("{addr} answered {:?}: {}", status.code(), status.message()))?
            .into_inner();
        match ServingStatus::try_from(response.status) {
            Ok(ServingStatus::Serving) => Ok(()),
            Ok(other) => Err(format!("{addr}: status {}", other.as_str_name())),
            Err(_) => Err(format!("{addr}: unknown status {}", response.status)),
        }
    };
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(format!("{addr} did not answer within {deadline:?}")))
}

/// What `--health-check` does for a service listening on `listen` with `tls`: probes it,
/// prints the verdict (stdout when SERVING, stderr otherwise) and returns the exit code.
pub async fn health_check(service: &str, listen: SocketAddr, tls: &TlsSettings) -> ExitCode {
    if tls.identity().is_some() {
        eprintln!(
            "{service}: --health-check speaks plaintext gRPC and this port serves TLS \
             (GRIMOS_TLS_CERT); probe it with a TLS client instead"
        );
        return ExitCode::FAILURE;
    }
    let addr = probe_address(listen);
    match probe(addr, PROBE_DEADLINE).await {
        Ok(()) => {
            println!("{service} at {addr}: SERVING");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{service}: not serving: {why}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its sources, `: `-separated (tonic's transport error says only "transport
/// error"; the cause is in its sources).
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback_of_its_family() {
        let cases = [
            ("0.0.0.0:50051", "127.0.0.1:50051"),
            ("[::]:8080", "[::1]:8080"),
            ("10.1.2.3:8080", "10.1.2.3:8080"),
            ("127.0.0.1:9", "127.0.0.1:9"),
        ];
        for (listen, probed) in cases {
            assert_eq!(
                probe_address(listen.parse().unwrap()),
                probed.parse().unwrap(),
                "{listen}"
            );
        }
    }
}
