//! The services' real binaries in tests: starting one with its log collected, stopping it
//! with a signal as an operator or an orchestrator would, and scanning what it logged.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every line a binary wrote to stderr so far.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Starts `command` with stderr collected line by line and waits for the line that contains
/// `listening` (`"user-service listening"`) and ` addr=`; returns the child, that address,
/// the log, and the thread that keeps collecting it (so the child never blocks on a full
/// pipe), which ends when the child's stderr does.
pub fn start_logging(
    mut command: Command,
    listening: &str,
) -> (Child, String, Log, JoinHandle<()>) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the binary logs its address").unwrap();
        log.lock().unwrap().push(line.clone());
        if line.contains(listening)
            && let Some(rest) = line.split(" addr=").nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, addr, log, reader)
}

/// Kills `child` and returns every line it logged, up to the end of its stderr (`reader` has
/// collected it all), so that a scan of the log misses nothing.
pub async fn kill_and_read_log(mut child: Child, reader: JoinHandle<()>, log: &Log) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    log.lock().unwrap().join("\n")
}

/// Asserts that `log` contains none of `secrets`.
#[track_caller]
pub fn assert_none_logged(log: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!log.contains(secret.as_str()), "{secret:?} was logged");
    }
}

/// The signature part of a JWT: what a log must never hold of an access token.
pub fn jwt_signature(jwt: &str) -> String {
    jwt.rsplit('.').next().unwrap().to_owned()
}

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`) to `child`, without waiting for it to exit.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

/// Waits for `child` to exit; its exit status.
pub async fn exited(mut child: Child) -> ExitStatus {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
}

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`) to `child` and waits for it to exit; its exit
/// status, so a test can assert a clean stop.
pub async fn stop_with(child: Child, signal: &str) -> ExitStatus {
    self::signal(&child, signal);
    exited(child).await
}

/// How long a binary may take to exit once it should.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// Waits for `child`, sent SIGTERM at `signalled`, to exit cleanly once its drain `grace` has
/// passed, and not long after.
pub async fn exits_after_the_grace(child: Child, signalled: Instant, grace: Duration) {
    let exit = exited(child).await;
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let took = signalled.elapsed();
    assert!(
        took >= grace && took < grace + EXIT_WITHIN,
        "exited {took:?} after SIGTERM, with a drain grace of {grace:?}"
    );
}

/// Sends SIGINT (Ctrl-C) to `child` and asserts that it exits cleanly at once, whatever its
/// drain grace.
pub async fn stops_at_once_on_sigint(child: Child) {
    let start = Instant::now();
    let exit = stop_with(child, "-INT").await;
    assert!(exit.success(), "clean exit on SIGINT: {exit:?}");
    assert!(
        start.elapsed() < EXIT_WITHIN,
        "SIGINT took {:?}",
        start.elapsed()
    );
}
