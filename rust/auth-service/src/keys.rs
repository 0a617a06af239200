//! The JWT signing keys: an Ed25519 key ring read from one PEM file.
//!
//! The file holds PKCS#8 private keys (`BEGIN PRIVATE KEY`) and, optionally, SPKI public keys
//! (`BEGIN PUBLIC KEY`). A new key is written in the RFC 8410 `PrivateKeyInfo` form (PKCS#8
//! v1, the private key only), which is what `openssl genpkey -algorithm ed25519` writes and
//! what every tool reads (OpenSSL 3.0 and Python's `cryptography` refuse the RFC 5958 v2
//! form with the public key attached). Both forms are read, so files written by earlier
//! versions keep working. The first private key signs; every key verifies, which is how keys
//! rotate: put a new key first and keep the old one below it until the tokens it signed have
//! expired. Each key is named by its `kid`, a digest of the public key
//! ([`grimos_token::key_id`]); the verifying keys are a [`KeySet`], what the shared verifier
//! checks tokens with and what `GetVerificationKeys` publishes.
//!
//! When the file does not exist it is created with one fresh key, mode 0600, atomically: two
//! replicas starting at once end up using the same key. This module never logs key material.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use grimos_token::{KeySet, key_id};
use jsonwebtoken::EncodingKey;

/// The key that signs new tokens, and every key that verifies them, by `kid`.
pub struct KeyRing {
    /// The `kid` of the signing key, written in every token header.
    pub signing_kid: String,
    /// The signing key.
    pub signing_key: EncodingKey,
    /// Verification keys by `kid`, the signing key's included.
    pub verifying: KeySet,
}

impl KeyRing {
    /// Reads the key file, creating it with a new key if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            create_key_file(path)?;
        }
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the signing key file {}", path.display()))?;
        Self::from_pem(&pem).with_context(|| format!("invalid signing key file {}", path.display()))
    }

    /// Parses a key ring from PEM text.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let mut signing = None;
        let mut verifying = KeySet::new();
        for (label, block) in pem_blocks(pem) {
            let public = match label.as_str() {
                "PRIVATE KEY" => {
                    let key = SigningKey::from_pkcs8_pem(&block)
                        .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
                    let public = key.verifying_key();
                    if signing.is_none() {
                        signing = Some(key);
                    }
                    public
                }
                "PUBLIC KEY" => VerifyingKey::from_public_key_pem(&block)
                    .map_err(|e| anyhow::anyhow!("not an Ed25519 public key: {e}"))?,
                other => bail!("unexpected PEM block {other:?}"),
            };
            verifying.insert(key_id(&public), public);
        }
        let Some(signing) = signing else {
            bail!("no PRIVATE KEY block");
        };
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
        Ok(Self {
            signing_kid: key_id(&signing.verifying_key()),
            signing_key: EncodingKey::from_ed_der(der.as_bytes()),
            verifying,
        })
    }
}

/// A new Ed25519 private key in PKCS#8 v1 PEM (RFC 8410 `PrivateKeyInfo`, no public key), as
/// written to a new key file.
pub fn generate_pem() -> anyhow::Result<String> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    // `SigningKey::to_pkcs8_pem` would attach the public key, making it v2.
    let private_only = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let pem = private_only
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode a new key: {e}"))?;
    Ok(pem.to_string())
}

/// Writes a new key to a temporary file beside `path`, then links it into place. The link
/// fails if another process got there first; then its key is used and ours discarded.
fn create_key_file(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the key folder {}", dir.display()))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).context("cannot create a temporary key file")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(generate_pem()?.as_bytes())?;
    tmp.as_file().sync_all()?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
            tracing::info!(path = %path.display(), "generated a new signing key");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// The `(label, block)` pairs of the PEM blocks in `text`, each block with its armour.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_owned(), format!("{line}\n")));
        } else if let Some((label, mut block)) = current.take() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.push((label, block));
            } else {
                current = Some((label, block));
            }
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_private_key_signs_and_every_key_verifies() {
        let (old, new) = (generate_pem().unwrap(), generate_pem().unwrap());
        let first = KeyRing::from_pem(&old).unwrap();
        let rotated = KeyRing::from_pem(&format!("{new}{old}")).unwrap();
        assert_ne!(rotated.signing_kid, first.signing_kid);
        assert!(rotated.verifying.contains(&first.signing_kid));
        assert_eq!(rotated.verifying.len(), 2);
    }

    #[test]
    fn a_new_key_is_pkcs8_v1_and_a_v2_key_still_loads() {
        let pem = generate_pem().unwrap();
        let (label, der) =
            ed25519_dalek::pkcs8::spki::der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(label, "PRIVATE KEY");
        // SEQUENCE { INTEGER 0, id-Ed25519, OCTET STRING { OCTET STRING (32 bytes) } }.
        assert_eq!(der.len(), 48);
        assert_eq!(der[..5], [0x30, 0x2e, 0x02, 0x01, 0x00]);

        let v1 = KeyRing::from_pem(&pem).unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        let v2 = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let (_, v2_der) = ed25519_dalek::pkcs8::spki::der::pem::decode_vec(v2.as_bytes()).unwrap();
        assert_eq!(v2_der[4], 1, "the sample is v2");
        assert_eq!(KeyRing::from_pem(&v2).unwrap().signing_kid, v1.signing_kid);
    }

    #[test]
    fn garbage_and_keyless_files_are_rejected() {
        assert!(KeyRing::from_pem("").is_err());
        assert!(
            KeyRing::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn a_missing_file_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pem");
        let a = KeyRing::load_or_create(&path).unwrap();
        let b = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(a.signing_kid, b.signing_kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
