//! Helpers for gRPC calls in tests: requests with a bearer token, the codes and details of
//! error statuses, and a health check that cannot hang.

use std::time::Duration;

use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `message` with `authorization: Bearer <token>` metadata.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Asserts the code of an error result and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The field paths of the `google.rpc.BadRequest` violations in a status.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// A health check over a new connection to `url` (with `tls`, if given), bounded so that a
/// failure cannot hang: it panics if the call takes over 5 seconds. The error describes the
/// status and its cause.
pub async fn health(url: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let mut endpoint = Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let mut health = HealthClient::new(endpoint.connect_lazy());
    let call = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => Ok(()),
        // The debug form carries the cause (the TLS alert or certificate error).
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => panic!("the call hung"),
    }
}

/// Waits until the gRPC health of `service` (`""` for the overall status) on `channel` is
/// `expected`; panics, with the last status seen, if it is not within `within`.
pub async fn wait_for_health(
    channel: tonic::transport::Channel,
    service: &str,
    expected: ServingStatus,
    within: Duration,
) {
    let mut health = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let seen = match tokio::time::timeout(Duration::from_secs(1), health.check(request)).await {
            Ok(Ok(response)) if response.get_ref().status() == expected => return,
            Ok(Ok(response)) => format!("{:?}", response.into_inner().status()),
            Ok(Err(status)) => format!("{status:?}"),
            Err(_) => "no answer within 1 s".to_owned(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "health of {service:?} is {seen}, not {expected:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::{bearer, expect_code, health, violated_fields};

    #[test]
    fn bearer_sets_the_authorization_metadata() {
        let request = bearer((), "abc");
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer abc"
        );
    }

    #[test]
    fn expect_code_returns_the_status_of_the_expected_code() {
        let result: Result<(), Status> = Err(Status::not_found("gone"));
        assert_eq!(expect_code(result, Code::NotFound).message(), "gone");
    }

    #[test]
    #[should_panic(expected = "expected NotFound, got Ok(())")]
    fn expect_code_panics_on_success() {
        expect_code(Ok(()), Code::NotFound);
    }

    #[test]
    #[should_panic(expected = "unexpected status")]
    fn expect_code_panics_on_another_code() {
        expect_code::<()>(Err(Status::internal("boom")), Code::NotFound);
    }

    #[test]
    fn violated_fields_lists_the_bad_request_fields_or_nothing() {
        let status = grimos_common::status::invalid_argument_status(vec![
            tonic_types::FieldViolation::new("email", "required"),
            tonic_types::FieldViolation::new("password", "too short"),
        ]);
        assert_eq!(violated_fields(&status), ["email", "password"]);
        assert!(violated_fields(&Status::invalid_argument("plain")).is_empty());
    }

    #[tokio::test]
    async fn health_reports_a_refused_connection_as_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        health(format!("http://{addr}"), None).await.unwrap_err();
    }
}
