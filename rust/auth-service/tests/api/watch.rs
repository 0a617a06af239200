//! What a service that verifies tokens itself gets from auth-service: the verification keys
//! and role table (GetVerificationKeys), and the revocations as they commit
//! (WatchRevocations): the whole set or a resume, each revocation at once, on this replica or
//! another, heartbeats, a reset for a stream that falls behind, the bound on streams, and a
//! clean end when the server stops.
//!
//! Each test stops its apps before it ends: their database is dropped then, and on
//! PostgreSQL a connection an app was still opening would hold the drop up.

use std::time::Duration;

use grimos_proto::auth::v1 as pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use grimos_test_support::app::TestData;
use grimos_test_support::backend::Backend;
use grimos_token::{Jwk, KeySet, RoleTable, Verifier};
use tokio::time::{Instant, timeout};
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Endpoint;

use crate::helpers::{
    SERVICE_TOKEN, TestApp, bearer, expect_code, spawn_app, spawn_app_with, spawn_in,
};

/// How long a revocation may take to reach a stream of the replica that made it: the issue's
/// p99 target is 100 ms; this leaves room for a loaded test machine.
const SAME_REPLICA: Duration = Duration::from_millis(500);
/// Through PostgreSQL's NOTIFY, from another replica. (On SQLite, replicas see each other's
/// commits by asking the database's `data_version` every 25 ms: [`SAME_REPLICA`] there.)
const OTHER_REPLICA_NOTIFY: Duration = Duration::from_millis(200);

async fn get_keys(app: &TestApp) -> pb::GetVerificationKeysResponse {
    app.client
        .clone()
        .get_verification_keys(bearer(pb::GetVerificationKeysRequest {}, SERVICE_TOKEN))
        .await
        .unwrap()
        .into_inner()
}

/// Opens a stream on `client` from `cursor`, with the service credential.
async fn watch_on(
    mut client: AuthServiceClient<tonic::transport::Channel>,
    cursor: &str,
) -> Streaming<pb::WatchRevocationsResponse> {
    let request = pb::WatchRevocationsRequest {
        cursor: cursor.into(),
    };
    client
        .watch_revocations(bearer(request, SERVICE_TOKEN))
        .await
        .unwrap()
        .into_inner()
}

async fn watch(app: &TestApp, cursor: &str) -> Streaming<pb::WatchRevocationsResponse> {
    watch_on(app.client.clone(), cursor).await
}

/// The next message, within `within`.
async fn next(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
    within: Duration,
) -> pb::WatchRevocationsResponse {
    timeout(within, stream.message())
        .await
        .expect("a message in time")
        .unwrap()
        .expect("the stream goes on")
}

/// The next message with revocations (heartbeats skipped), before `deadline`.
async fn next_revocations(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
    deadline: Instant,
) -> pb::WatchRevocationsResponse {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = next(stream, left).await;
        if !message.revocations.is_empty() || message.reset {
            return message;
        }
    }
}

fn subjects(message: &pb::WatchRevocationsResponse) -> Vec<&str> {
    message
        .revocations
        .iter()
        .map(|r| r.subject.as_str())
        .collect()
}

/// Revokes a fresh session of a new user `email`; its session id.
async fn revoke_a_session(app: &TestApp, email: &str) -> String {
    let login = app.signed_in(email).await;
    revoke(app, &login.access_token).await
}

/// RevokeToken; the id of the session it ended.
async fn revoke(app: &TestApp, token: &str) -> String {
    let request = pb::RevokeTokenRequest {
        token: token.into(),
    };
    app.client
        .clone()
        .revoke_token(request)
        .await
        .unwrap()
        .into_inner()
        .session_id
}

#[tokio::test]
async fn the_published_keys_verify_the_tokens_auth_service_issues() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    let published = get_keys(&app).await;
    assert_eq!(published.issuer, "grimos-auth");
    assert_eq!(published.audience, "grimos");
    let leeway = published.leeway.unwrap();
    assert_eq!((leeway.seconds, leeway.nanos), (5, 0));
    let key = &published.keys[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );

    let jwks: Vec<Jwk> = published.keys.into_iter().map(Jwk::from).collect();
    let verifier = Verifier::new(KeySet::from_jwks(&jwks).unwrap());
    let claims = verifier.verify(&login.access_token).unwrap();
    assert_eq!(claims.sub, login.user_id);
    let roles = RoleTable::from(published.roles);
    assert!(roles.allows(&claims.roles, "users.read.self"));
    assert!(!roles.allows(&claims.roles, "users.list"));
    assert!(roles.allows(&["admin"], "users.list"));
    app.stop().await;
}

#[tokio::test]
async fn every_key_of_the_key_file_is_published_so_rotated_tokens_verify() {
    let app = spawn_app().await;
    let old = app.signed_in("ada@example.com").await;
    let dir = app.stop().await;
    let path = dir.path().join("auth-signing-key.pem");
    let old_key = std::fs::read_to_string(&path).unwrap();
    let new_key = auth_service::keys::generate_pem().unwrap();
    std::fs::write(&path, format!("{new_key}{old_key}")).unwrap();
    let app = spawn_in(dir, |_| {}).await;
    let new = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();

    let published = get_keys(&app).await;
    assert_eq!(published.keys.len(), 2);
    let jwks: Vec<Jwk> = published.keys.into_iter().map(Jwk::from).collect();
    let verifier = Verifier::new(KeySet::from_jwks(&jwks).unwrap());
    verifier.verify(&old.access_token).unwrap();
    verifier.verify(&new.access_token).unwrap();
    app.stop().await;
}

#[tokio::test]
async fn both_rpcs_need_the_service_credential() {
    let app = spawn_app().await;
    let login = app.signed_in("ada@example.com").await;
    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some("not-the-service-token"), Code::Unauthenticated),
        (Some(login.access_token.as_str()), Code::PermissionDenied),
    ] {
        let keys = match token {
            Some(token) => bearer(pb::GetVerificationKeysRequest {}, token),
            None => tonic::Request::new(pb::GetVerificationKeysRequest {}),
        };
        expect_code(app.client.clone().get_verification_keys(keys).await, code);
        let watch = match token {
            Some(token) => bearer(pb::WatchRevocationsRequest::default(), token),
            None => tonic::Request::new(pb::WatchRevocationsRequest::default()),
        };
        expect_code(app.client.clone().watch_revocations(watch).await, code);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stream_starts_with_the_whole_set_then_gets_each_revocation_as_it_commits() {
    let app = spawn_app().await;
    let earlier = revoke_a_session(&app, "ada@example.com").await;
    let mut stream = watch(&app, "").await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert!(first.reset);
    assert_eq!(subjects(&first), [earlier.as_str()]);
    let kind = first.revocations[0].kind();
    assert_eq!(kind, pb::revocation::Kind::Session);
    let heartbeat = first.heartbeat_interval.unwrap();
    assert_eq!((heartbeat.seconds, heartbeat.nanos), (0, 250_000_000));
    assert!(!first.cursor.is_empty());

    for n in 0..3 {
        let login = app.signed_in(&format!("user{n}@example.com")).await;
        let session = revoke(&app, &login.access_token).await;
        let revoked = Instant::now();
        let message = next_revocations(&mut stream, revoked + SAME_REPLICA).await;
        assert!(!message.reset);
        assert_eq!(subjects(&message), [session.as_str()]);
        assert_ne!(message.cursor, first.cursor);
    }
    app.stop().await;
}

#[tokio::test]
async fn heartbeats_come_at_the_interval_with_the_cursor() {
    let app = spawn_app_with(|c| c.revocation_heartbeat = Duration::from_millis(100)).await;
    let mut stream = watch(&app, "").await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    let started = Instant::now();
    for _ in 0..5 {
        // Each well within a verifier's 1 s bound; 100 ms apart.
        let heartbeat = next(&mut stream, Duration::from_millis(500)).await;
        assert!(heartbeat.revocations.is_empty() && !heartbeat.reset);
        assert_eq!(heartbeat.cursor, first.cursor);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_resumes_from_its_cursor_with_only_the_later_revocations() {
    let app = spawn_app().await;
    let seen = revoke_a_session(&app, "ada@example.com").await;
    let mut stream = watch(&app, "").await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(subjects(&first), [seen.as_str()]);
    drop(stream);

    // Made while the client was away.
    let missed = revoke_a_session(&app, "bob@example.com").await;
    let mut resumed = watch(&app, &first.cursor).await;
    let message = next(&mut resumed, Duration::from_secs(5)).await;
    assert!(!message.reset, "resumed, not reset");
    assert_eq!(subjects(&message), [missed.as_str()]);
    assert!(message.heartbeat_interval.is_some());
    // And it goes on from there.
    let live = revoke_a_session(&app, "cy@example.com").await;
    let message = next_revocations(&mut resumed, Instant::now() + SAME_REPLICA).await;
    assert_eq!(subjects(&message), [live.as_str()]);

    // A cursor this server cannot resume from gets the whole set.
    let (_, seq) = first.cursor.rsplit_once('.').unwrap();
    for cursor in [
        "garbage".to_owned(),
        format!("another-database.{seq}"),
        format!("{}.999999", first.cursor.rsplit_once('.').unwrap().0),
        format!("{}.-1", first.cursor.rsplit_once('.').unwrap().0),
    ] {
        let mut stream = watch(&app, &cursor).await;
        let message = next(&mut stream, Duration::from_secs(5)).await;
        assert!(message.reset, "{cursor}");
        assert_eq!(message.revocations.len(), 3, "{cursor}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_cursor_of_one_replica_resumes_on_another() {
    let a = spawn_app().await;
    let b = spawn_in(a.dir.clone(), |_| {}).await;
    revoke_a_session(&a, "ada@example.com").await;
    let first = next(&mut watch(&a, "").await, Duration::from_secs(5)).await;
    let missed = revoke_a_session(&a, "bob@example.com").await;
    // B may not have read A's latest row yet: it catches up rather than start over.
    let message = next(&mut watch(&b, &first.cursor).await, Duration::from_secs(5)).await;
    assert!(!message.reset);
    assert_eq!(subjects(&message), [missed.as_str()]);
    b.stop().await;
    a.stop().await;
}

/// Two replicas on one database of `backend`, polling every `poll`: a subscriber of the
/// first gets a revocation made on the second within `within` of it being made.
async fn another_replicas_revocation_arrives(backend: Backend, poll: Duration, within: Duration) {
    let data = TestData::on(backend);
    let a = spawn_in(data.clone(), |c| c.revocation_sync_interval = poll).await;
    let b = spawn_in(data, |c| c.revocation_sync_interval = poll).await;
    let mut stream = watch(&a, "").await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert!(first.revocations.is_empty());
    for n in 0..3 {
        let login = b.signed_in(&format!("user{n}@example.com")).await;
        let session = revoke(&b, &login.access_token).await;
        let revoked = Instant::now();
        let message = next_revocations(&mut stream, revoked + within).await;
        assert_eq!(subjects(&message), [session.as_str()], "revocation {n}");
        // Replica A refuses the token as soon as its stream has it.
        expect_code(a.validate(&login.access_token).await, Code::Unauthenticated);
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn another_replicas_revocation_reaches_subscribers_at_once_through_postgres_notify() {
    // Polling once a minute: only the notification can bring it in time.
    another_replicas_revocation_arrives(
        Backend::Postgres,
        Duration::from_secs(60),
        OTHER_REPLICA_NOTIFY,
    )
    .await;
}

#[tokio::test]
async fn another_replicas_revocation_reaches_subscribers_at_once_through_sqlite_data_version() {
    // Polling once a minute: only the database's change counter can bring it in time.
    another_replicas_revocation_arrives(Backend::Sqlite, Duration::from_secs(60), SAME_REPLICA)
        .await;
}

#[tokio::test]
async fn a_stream_that_falls_behind_gets_the_whole_set_again() {
    let app = spawn_app_with(|c| {
        c.revocation_watch_backlog = 1;
        c.revocation_heartbeat = Duration::from_secs(60);
    })
    .await;
    // A client that takes at most a few hundred bytes before it reads: the server cannot send
    // while it does not read, and stops taking messages from the feed.
    let channel = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(300)
        .connect()
        .await
        .unwrap();
    let mut stream = watch_on(AuthServiceClient::new(channel), "").await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert!(first.reset);

    let mut sessions = Vec::new();
    for n in 0..8 {
        sessions.push(revoke_a_session(&app, &format!("user{n}@example.com")).await);
    }
    // Reading again: what the window held, then the whole set, since the entries in
    // between were dropped from its backlog.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut delivered: Vec<String> = Vec::new();
    let reset = loop {
        let message = next_revocations(&mut stream, deadline).await;
        if message.reset {
            break message;
        }
        delivered.extend(subjects(&message).into_iter().map(str::to_owned));
    };
    assert!(delivered.len() < sessions.len(), "{delivered:?}");
    let mut all: Vec<&str> = subjects(&reset);
    all.sort_unstable();
    let mut expected: Vec<&str> = sessions.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(all, expected);
    // And it goes on live after the reset (after, perhaps, a repeat of the last of those,
    // which the set already had when its cursor was not yet past it).
    let live = revoke_a_session(&app, "late@example.com").await;
    let deadline = Instant::now() + SAME_REPLICA;
    loop {
        let message = next_revocations(&mut stream, deadline).await;
        if subjects(&message) == [live.as_str()] {
            break;
        }
        assert!(
            subjects(&message).iter().all(|s| expected.contains(s)),
            "{message:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn streams_are_bounded_and_a_closed_one_frees_its_place() {
    let app = spawn_app_with(|c| c.max_revocation_watchers = 1).await;
    let mut first = watch(&app, "").await;
    next(&mut first, Duration::from_secs(5)).await;
    let request = bearer(pb::WatchRevocationsRequest::default(), SERVICE_TOKEN);
    expect_code(
        app.client.clone().watch_revocations(request).await,
        Code::ResourceExhausted,
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let request = bearer(pb::WatchRevocationsRequest::default(), SERVICE_TOKEN);
        match app.client.clone().watch_revocations(request).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    Instant::now() < deadline,
                    "the closed stream's place is not freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stream_ends_cleanly_when_the_server_stops() {
    let app = spawn_app().await;
    let mut stream = watch(&app, "").await;
    next(&mut stream, Duration::from_secs(5)).await;
    let stopping = Instant::now();
    let stopped = tokio::spawn(app.stop());
    let end = loop {
        match timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(heartbeat))) => assert!(heartbeat.revocations.is_empty()),
            Ok(end) => break end,
            Err(_) => panic!("the stream did not end within 5 s of the stop"),
        }
    };
    assert!(matches!(end, Ok(None)), "a clean end: {end:?}");
    timeout(Duration::from_secs(5), stopped)
        .await
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_password_change_answers_the_cursor_at_which_streams_have_the_sessions_it_ended() {
    let app = spawn_app().await;
    let caller = app.signed_in("ada@example.com").await;
    let other = app
        .login("ada@example.com", grimos_test_support::PASSWORD)
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for token in [&caller.access_token, &other.access_token] {
        sessions.push(app.validate(token).await.unwrap().session_id);
    }
    let mut stream = watch(&app, "").await;
    let first = next(&mut stream, SAME_REPLICA).await;
    assert!(first.reset);

    let request = pb::ChangePasswordRequest {
        current_password: grimos_test_support::PASSWORD.into(),
        new_password: "a brand new passphrase".into(),
    };
    let response = app
        .client
        .clone()
        .change_password(bearer(request, &caller.access_token))
        .await
        .unwrap();
    let cursor = response
        .metadata()
        .get(grimos_token::CURSOR_HEADER)
        .expect("the cursor header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!grimos_token::reached(&first.cursor, &cursor), "{cursor}");

    // Every message up to the cursor: the ended sessions are among them.
    let deadline = Instant::now() + SAME_REPLICA;
    let mut revoked = Vec::new();
    loop {
        let message = next_revocations(&mut stream, deadline).await;
        revoked.extend(subjects(&message).into_iter().map(str::to_owned));
        if grimos_token::reached(&message.cursor, &cursor) {
            break;
        }
    }
    for session in &sessions {
        assert!(revoked.contains(session), "{session} not in {revoked:?}");
    }
    // The new session is not.
    let fresh = response.into_inner();
    let fresh_session = app.validate(&fresh.access_token).await.unwrap().session_id;
    assert!(!revoked.contains(&fresh_session));
    app.stop().await;
}
