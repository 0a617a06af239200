//! Password hashing: Argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1), computed on
//! blocking threads behind a small pool so a burst of logins cannot starve the async
//! workers that validate tokens.
//!
//! A plaintext password lives only as long as one call and is never logged. Unknown emails
//! are checked against a dummy hash, so a wrong email costs as much as a wrong password.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
}

/// What unknown emails are checked against: the hash of a random password nobody kept, with
/// the current parameters, so checking it costs what a real check costs. A constant rather
/// than computed at start, which would take 19 MiB and 30 ms before the service is ready.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$iMtgjaaNEtQrWD4DWfrqMw$YERZ4eQmVJoiA24/T2uzgLA/WJj5DoHkICnrErslfig";

impl Passwords {
    /// A pool running at most `concurrency` hashes at once.
    pub async fn new(concurrency: usize) -> anyhow::Result<Self> {
        let concurrency = concurrency.max(1);
        Ok(Self {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency * QUEUE_PER_SLOT)),
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
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
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
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            metrics::counter!("auth_password_hash_rejections_total").increment(1);
            return Err(Error::Busy);
        };
        let _admitted = Admitted::new(admitted);
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

/// A hash admitted to the queue (waiting or running): counted in
/// `auth_password_hash_queue_depth` while held.
struct Admitted {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Admitted {
    fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!("auth_password_hash_queue_depth").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::gauge!("auth_password_hash_queue_depth").decrement(1.0);
    }
}

fn params() -> anyhow::Result<Params> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))
}

/// Argon2's working memory (19 MiB a hash), kept for reuse. At most `concurrency` hashes run
/// at once, so at most that many buffers ever exist: allocating a fresh 19 MiB per hash left
/// every blocking thread that ever hashed holding its own copy in the allocator (600 MB
/// after a burst of logins on two cores).
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `f` with at least `blocks` blocks of working memory from [`MEMORY`].
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let mut memory = MEMORY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop()
        .unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let result = f(&mut memory[..blocks]);
    MEMORY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(memory);
    result
}

/// `Argon2::hash_password`, with the working memory from [`MEMORY`].
fn hash_with<'a>(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = with_memory(params.block_count(), |memory| {
        Output::init_with(output_len, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, memory)?)
        })
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

fn hash_blocking(password: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = hash_with(
        Algorithm::Argon2id,
        Version::V0x13,
        &params()?,
        password.expose_secret().as_bytes(),
        salt.as_salt(),
    )
    .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
    Ok(hash.to_string())
}

/// Verifies with the algorithm and parameters recorded in the hash itself. A malformed
/// stored hash verifies nothing.
fn verify_blocking(password: &SecretString, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!("stored password hash is not a PHC string");
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .unwrap_or(Version::V0x13);
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    hash_with(
        algorithm,
        version,
        &params,
        password.expose_secret().as_bytes(),
        salt,
    )
    .ok()
    .and_then(|computed| computed.hash)
    // `Output` compares in constant time.
    .is_some_and(|computed| computed == expected)
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
        assert!(!pool.verify(secret("correct horse"), None).await.unwrap());
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let (stored, current) = (Params::try_from(&dummy).unwrap(), params().unwrap());
        let costs = |p: &Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(costs(&stored), costs(&current));
        assert_eq!(dummy.algorithm, Algorithm::Argon2id.ident());
    }

    #[test]
    fn hashes_made_by_the_argon2_crate_itself_verify() {
        use argon2::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let other = Params::new(8 * 1024, 1, 1, None).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, other)
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking(&secret("old password"), &hash));
        assert!(!verify_blocking(&secret("old passworD"), &hash));
        assert!(!verify_blocking(
            &secret("old password"),
            "$argon2id$garbage"
        ));
    }
}
