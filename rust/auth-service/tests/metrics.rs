//! `AUTH_METRICS_LISTEN_ADDR`: auth-service's `/metrics`, in a test binary of its own (the
//! Prometheus recorder is global to a process, so here the only traffic is this test's and
//! the counts can be exact).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use auth_service::{App, Config};
use grimos_proto::auth::v1 as pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_test_support::metrics::{sample, sum, undescribed};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `GET /metrics` over plain HTTP/1.1: the status line and the body.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: auth\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn every_rpc_is_counted_by_code_on_the_metrics_port() {
    grimos_test_support::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path(), "127.0.0.1:0".parse().unwrap());
    config.metrics_listen_addr = Some("127.0.0.1:0".parse().unwrap());
    config.login_slowdown = std::time::Duration::from_millis(1);
    config.revocation_sync_interval = std::time::Duration::from_millis(100);
    config.service_token = Some(secrecy::SecretString::from("metrics-token".to_owned()));
    let app = App::build(config).await.unwrap();
    let (grpc_addr, metrics_addr) = (app.local_addr(), app.metrics_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let mut client = AuthServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    for _ in 0..3 {
        let status = client
            .validate_token(pb::ValidateTokenRequest {
                access_token: "not.a.token".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    // Five attempts are allowed per email and window; the sixth is throttled.
    for attempt in 1..=6 {
        let status = client
            .login(pb::LoginRequest {
                email: "nobody@example.com".into(),
                password: "wrong password".into(),
            })
            .await
            .unwrap_err();
        let expected = if attempt == 6 {
            tonic::Code::ResourceExhausted
        } else {
            tonic::Code::Unauthenticated
        };
        assert_eq!(status.code(), expected, "attempt {attempt}");
    }
    // A valid token validated twice: its signature is verified once, then found in the cache.
    let credential = pb::CreateCredentialRequest {
        user_id: "u-metrics".into(),
        email: "ada@example.com".into(),
        password: "a long enough password".into(),
    };
    client
        .create_credential(grimos_test_support::grpc::bearer(
            credential,
            "metrics-token",
        ))
        .await
        .unwrap();
    let login = pb::LoginRequest {
        email: "ada@example.com".into(),
        password: "a long enough password".into(),
    };
    let token = client.login(login).await.unwrap().into_inner().access_token;
    for _ in 0..2 {
        let request = pb::ValidateTokenRequest {
            access_token: token.clone(),
        };
        client.validate_token(request).await.unwrap();
    }

    // The revocation sync has run (every 100 ms here).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (status_line, text) = scrape(metrics_addr).await;
    assert_eq!(
        sample(&text, "auth_login_throttled_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "auth_password_hash_queue_depth", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "auth_revocations", &[]), Some(0.0), "{text}");
    assert!(
        sample(&text, "auth_revocation_last_sync_timestamp_seconds", &[])
            .is_some_and(|t| t > 1.7e9),
        "{text}"
    );
    assert_eq!(
        sample(&text, "grimos_build_info", &[("server", "auth")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    assert_eq!(undescribed(&text), Vec::<&str>::new(), "{text}");
    // Each of the three malformed tokens missed the cache, as did the valid one the first
    // time; the second time it was found there.
    for (result, count) in [("miss", 4.0), ("hit", 1.0)] {
        assert_eq!(
            sample(
                &text,
                "auth_verified_token_cache_lookups_total",
                &[("result", result)]
            ),
            Some(count),
            "{result}: {text}"
        );
    }
    let pool = [("server", "auth"), ("pool", "main")];
    assert_eq!(
        sample(&text, "db_pool_max_connections", &pool),
        Some(8.0),
        "{text}"
    );
    let open = sum(&text, "db_pool_connections", &pool);
    assert!((1.0..=8.0).contains(&open), "{text}");
    assert_eq!(
        sample(&text, "db_up", &[("server", "auth")]),
        Some(1.0),
        "{text}"
    );
    let rpc = "/grimos.auth.v1.AuthService/ValidateToken";
    assert_eq!(
        sample(
            &text,
            "grpc_server_requests_total",
            &[("server", "auth"), ("rpc", rpc), ("code", "16")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_requests_total",
            &[("server", "auth"), ("rpc", rpc), ("code", "0")]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "grpc_server_request_duration_seconds_count",
            &[("server", "auth"), ("rpc", rpc)]
        ) == Some(5.0),
        "{text}"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The metrics port stops with the service.
    assert!(tokio::net::TcpStream::connect(metrics_addr).await.is_err());
}
