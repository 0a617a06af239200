//! Password hashing: Argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1), computed on
//! blocking threads behind a small pool so a burst of logins cannot starve the async
//! workers that validate tokens.
//!
//! A plaintext password lives only as long as one call and is never logged. Unknown emails
//! are checked against a dummy hash, so a wrong email costs as much as a wrong password.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Memory cost in KiB (19 MiB), time cost and parallelism: OWASP's Argon2id minimum.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// How many hash requests may wait for a slot, per slot, before new ones are shed with
/// RESOURCE_EXHAUSTED (bounds memory and latency under a flood of logins).
const QUEUE_PER_SLOT: usize = 64;

/// Hashes and verifies passwords on a bounded pool of blocking threads.
#[derive(Clone)]
pub struct Passwords {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// A pool running at most `concurrency` hashes at once. Computes the dummy hash.
    pub async fn new(concurrency: usize) -> anyhow::Result<Self> {
        let concurrency = concurrency.max(1);
        let dummy = SecretString::from("grimos-dummy-password".to_owned());
        let dummy_hash = tokio::task::spawn_blocking(move || hash_blocking(&dummy))
            .await
            .context("dummy hash task")??;
        Ok(Self {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency * QUEUE_PER_SLOT)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The Argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: SecretString) -> Result<String> {
        self.run(move || hash_blocking(&password).map_err(Error::Internal))
            .await
    }

    /// Whether `password` matches `hash`. With no hash (unknown account) it checks against
    /// the dummy hash and answers false, taking the same time as a real check.
    pub async fn verify(&self, password: SecretString, hash: Option<String>) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .run(move || Ok(verify_blocking(&password, &hash)))
            .await?;
        Ok(known && matches)
    }

    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Busy)?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(running);
            result
        })
        .await
        .map_err(|join| Error::Internal(anyhow::anyhow!("password task failed: {join}")))?
    }
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2()?
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
    Ok(hash.to_string())
}

/// Verifies with the parameters recorded in the hash itself. A malformed stored hash
/// verifies nothing.
fn verify_blocking(password: &SecretString, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!("stored password hash is not a PHC string");
        return false;
    };
    Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let pool = Passwords::new(1).await.unwrap();
        let a = pool.hash(secret("correct horse")).await.unwrap();
        let b = pool.hash(secret("correct horse")).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salts differ");
        assert!(
            pool.verify(secret("correct horse"), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(!pool.verify(secret("wrong horse"), Some(a)).await.unwrap());
        assert!(
            !pool
                .verify(secret("grimos-dummy-password"), None)
                .await
                .unwrap()
        );
    }
}
