//! Waiting on the wall clock, for tests of behaviour that changes at a point in time (a
//! token's expiry): the services compare against the system clock, so the tests do too,
//! instead of sleeping for a guessed duration.

use std::time::{Duration, SystemTime};

/// Sleeps until the system clock reads `at` or later (at once if it already does).
pub async fn wait_until(at: SystemTime) {
    loop {
        match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => {
                // Woken a little early at most: the loop checks the clock again.
                tokio::time::sleep(left.min(Duration::from_millis(200))).await;
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_clock_reads_the_moment() {
        let at = SystemTime::now() + Duration::from_millis(300);
        wait_until(at).await;
        assert!(SystemTime::now() >= at);
        let past = SystemTime::now() - Duration::from_secs(1);
        let start = std::time::Instant::now();
        wait_until(past).await;
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
