//! The connection watchdog against clients that hold a connection without using it, on a
//! bare `Server` with a one-route router: a client that connects and sends nothing (not even
//! the HTTP/2 preface), and one that floods PINGs without reading the answers, so that the
//! server's writes block.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use grimos_server::{Limits, Server};
use grimos_test_support::wire;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpSocket};

const SHORT: Duration = Duration::from_millis(300);
const WITHIN: Duration = Duration::from_secs(5);

async fn serve(limits: Limits, http2_only: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let mut server = Server::new("test", limits);
    if http2_only {
        server = server.http2_only();
    }
    tokio::spawn(server.serve(listener, router, std::future::pending()));
    addr
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_at_the_header_read_timeout() {
    for http2_only in [false, true] {
        let limits = Limits {
            header_read_timeout: SHORT,
            ..Limits::default()
        };
        let addr = serve(limits, http2_only).await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            wire::closed_within(&mut tcp, WITHIN).await,
            "http2_only: {http2_only}"
        );
    }
}

#[tokio::test]
async fn a_client_that_floods_pings_and_reads_nothing_is_cut_off_at_the_send_timeout() {
    let limits = Limits {
        send_timeout: SHORT,
        ..Limits::default()
    };
    let addr = serve(limits, true).await;
    let socket = TcpSocket::new_v4().unwrap();
    // A small receive buffer, so that the server's PING answers fill it soon.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame, then PING frames (type 6, length 8, stream 0).
    flood.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    tcp.write_all(&flood).await.unwrap();
    let started = std::time::Instant::now();
    // Write until the server stops reading (its writes are blocked), or it closes. How long
    // that takes depends on how fast a loaded machine fills the server's send buffer (the
    // kernel grows it to megabytes), so the guard against a server that reads for ever is
    // generous; the send timeout under test is what the next step measures.
    loop {
        let written = tokio::time::timeout(Duration::from_millis(500), tcp.write_all(&batch)).await;
        match written {
            Ok(Ok(())) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the server never stopped reading"
                );
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // Whatever the client does now, the connection is ended: writes fail.
    let ended = tokio::time::timeout(WITHIN, async {
        loop {
            if tcp.write_all(&ping).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the server still holds a connection it cannot write to"
    );
}

#[tokio::test]
async fn a_graceful_stop_sends_goaway_finishes_streams_in_flight_and_refuses_new_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    let in_handler = entered.clone();
    let router = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            let entered = in_handler.clone();
            async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(
            Server::new("test", Limits::default()).serve(listener, router, async {
                let _ = stopped.await;
            }),
        );
    let request = || {
        http::Request::get(format!("http://{addr}/slow"))
            .body(())
            .unwrap()
    };
    let mut h2 = wire::h2(addr, None).await;
    let (in_flight, _) = h2.send.send_request(request(), true).unwrap();
    entered.notified().await;
    stop.send(()).unwrap();

    // The stream in flight gets its whole answer...
    let response = tokio::time::timeout(WITHIN, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let data = body.data().await.unwrap().unwrap();
    assert_eq!(&data[..], b"done");
    // ... and the GOAWAY that preceded it tells the client that a stream it opens now is not
    // processed: h2 fails it with the server's GOAWAY, which a client may retry elsewhere.
    let refused = match h2.send.clone().ready().await {
        Err(error) => error,
        Ok(mut send) => match send.send_request(request(), true) {
            Err(error) => error,
            Ok((response, _)) => response.await.unwrap_err(),
        },
    };
    assert!(refused.is_go_away() && refused.is_remote(), "{refused:?}");

    tokio::time::timeout(WITHIN, server)
        .await
        .expect("the server stops once its streams are done")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a stopped server accepts no connection"
    );
}

#[tokio::test]
async fn a_stream_that_keeps_sending_outlives_the_send_timeout() {
    // A server stream, as gRPC's are: a chunk every 50 ms for eight send timeouts.
    const CHUNKS: usize = 48;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/stream",
        axum::routing::get(|| async {
            let chunks = futures_util::stream::unfold(0, |sent| async move {
                if sent == CHUNKS {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"tick")),
                    sent + 1,
                ))
            });
            axum::body::Body::from_stream(chunks)
        }),
    );
    let limits = Limits {
        send_timeout: SHORT,
        ..Limits::default()
    };
    tokio::spawn(Server::new("test", limits).serve(listener, router, std::future::pending()));
    let mut h2 = wire::h2(addr, None).await;
    let request = http::Request::get(format!("http://{addr}/stream"))
        .body(())
        .unwrap();
    let (response, _) = h2.send.send_request(request, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let mut received = 0;
    while let Some(data) = body.data().await {
        let data = data.expect("the stream is not cut off");
        received += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    assert_eq!(received, CHUNKS * 4);
}
