//! Raw Argon2id throughput with auth-service's parameters (m = 19456 KiB, t = 2, p = 1):
//! hashes per second on one thread and on every core, each for a fixed time. Prints one JSON
//! object, the yardstick for the Argon2-bound workloads (login, sign-up).
//!
//! Usage: `argon2-rate [SECONDS]` (default 3; per measurement).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};

/// auth-service's parameters (rust/auth-service/src/passwords.rs).
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Hashes on `threads` threads for `duration`; returns (hashes, seconds).
fn measure(threads: usize, duration: Duration) -> Result<(u64, f64), String> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(32))
        .map_err(|e| format!("argon2 parameters: {e}"))?;
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                let params = params.clone();
                scope.spawn(move || -> Result<u64, String> {
                    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                    let mut out = [0u8; 32];
                    let mut n: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // A fresh salt per hash, as in a real hash; the cost does not depend on it.
                        let mut salt = [0u8; 16];
                        salt[..8].copy_from_slice(&n.to_le_bytes());
                        salt[8..].copy_from_slice(&(t as u64).to_le_bytes());
                        argon2
                            .hash_password_into(b"correct horse battery staple", &salt, &mut out)
                            .map_err(|e| format!("argon2 hash: {e}"))?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("worker panicked".to_owned()))
            })
            .collect::<Result<Vec<u64>, String>>()
    })?;
    Ok((counts.iter().sum(), start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), String> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(raw) => raw
            .parse()
            .map_err(|e| format!("invalid SECONDS {raw:?}: {e}"))?,
        None => 3.0,
    };
    if !(seconds > 0.0 && seconds <= 600.0) {
        return Err(format!("SECONDS must be in (0, 600], got {seconds}"));
    }
    let duration = Duration::from_secs_f64(seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one_hashes, one_secs) = measure(1, duration)?;
    let (all_hashes, all_secs) = measure(cores, duration)?;
    let report = serde_json::json!({
        "algorithm": "argon2id",
        "memory_kib": MEMORY_KIB,
        "iterations": ITERATIONS,
        "parallelism": PARALLELISM,
        "cores": cores,
        "one_thread": {"hashes": one_hashes, "seconds": one_secs, "per_second": one_hashes as f64 / one_secs},
        "all_cores": {"threads": cores, "hashes": all_hashes, "seconds": all_secs, "per_second": all_hashes as f64 / all_secs},
    });
    println!("{report}");
    Ok(())
}
