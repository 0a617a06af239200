//! The signing key file as operators handle it: the file auth-service generates is the
//! RFC 8410 `PrivateKeyInfo` (PKCS#8 v1) that `openssl genpkey -algorithm ed25519` writes,
//! readable by `openssl pkey` and Python's `cryptography`; a key made by `openssl genpkey`
//! signs tokens; and a file in the PKCS#8 v2 form (RFC 5958, with the public key), which
//! earlier versions wrote, still loads.
//!
//! These tests need the `openssl` binary and Python with `cryptography` (`.venv/bin/python`
//! after `cargo xtask setup`, else `python3`); CI has both, and a missing one fails the test
//! with a message saying so rather than skipping it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use auth_service::keys::KeyRing;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use grimos_test_support::app::TestData;

use crate::helpers::{TestApp, spawn_in};

/// The DER of an Ed25519 `PrivateKeyInfo` (RFC 8410, section 7) up to the 32 key bytes:
/// SEQUENCE, version 0 (v1), the id-Ed25519 algorithm, and the key in an OCTET STRING.
const V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The DER inside the one `PRIVATE KEY` block of `pem`.
fn private_key_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|line| *line != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|line| *line != "-----END PRIVATE KEY-----")
        .collect();
    STANDARD.decode(body).expect("a base64 PRIVATE KEY block")
}

fn public_key_hex(pem: &str) -> String {
    let key = SigningKey::from_pkcs8_pem(pem).unwrap();
    key.verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `program` with `args`, failing the test with `missing` if it cannot be started.
fn run(program: &Path, args: &[&str], missing: &str) -> Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(error) => panic!("cannot run {}: {error}. {missing}", program.display()),
    }
}

fn openssl(args: &[&str]) -> Output {
    run(
        Path::new("openssl"),
        args,
        "This test needs the `openssl` binary (CI's .ci/run installs it; `apt-get install openssl`)",
    )
}

/// `.venv/bin/python` of the checkout when there is one, else `python3`.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn stdout_of(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Starts auth-service on `dir`, whose key file (if any) is already in place; checks that a
/// login's access token validates and was signed by the key in the file.
async fn assert_signs_with_the_key_file(dir: Arc<TestData>, email: &str) -> TestApp {
    let app = spawn_in(dir, |_| {}).await;
    let login = app.signed_in(email).await;
    app.validate(&login.access_token).await.unwrap();
    let header = jsonwebtoken::decode_header(&login.access_token).unwrap();
    let file_kid = KeyRing::from_pem(&app.signing_key_pem())
        .unwrap()
        .signing_kid;
    assert_eq!(header.kid, Some(file_kid), "signed by the key in the file");
    app
}

#[tokio::test]
async fn the_generated_key_file_is_pkcs8_v1_and_read_by_openssl_and_python_cryptography() {
    let dir = TestData::new();
    let app = assert_signs_with_the_key_file(dir, "ada@example.com").await;
    let path = app.dir.path().join("auth-signing-key.pem");
    let pem = app.signing_key_pem();
    let public = public_key_hex(&pem);

    // openssl reads it, and finds the same key.
    let path_arg = path.to_str().unwrap();
    let text = stdout_of(
        openssl(&["pkey", "-in", path_arg, "-noout", "-text"]),
        "openssl pkey -in <generated key file>",
    );
    assert!(text.contains("ED25519 Private-Key"), "{text}");
    let public_der = openssl(&["pkey", "-in", path_arg, "-pubout", "-outform", "DER"]);
    assert!(public_der.status.success());
    let public_from_openssl: String = public_der.stdout[public_der.stdout.len() - 32..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(public_from_openssl, public);

    // So does Python's `cryptography`.
    let script = r#"
import sys
try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
except ImportError as error:
    sys.exit(f"Python's cryptography is missing ({error}); run `cargo xtask setup` (requirements-dev.txt pins it)")
key = load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
assert isinstance(key, Ed25519PrivateKey), type(key)
print(key.public_key().public_bytes_raw().hex())
"#;
    let python = python();
    let output = run(
        &python,
        &["-c", script, path_arg],
        "This test needs Python 3 with `cryptography` (`cargo xtask setup` installs it into .venv)",
    );
    let from_python = stdout_of(
        output,
        &format!("{} reading the key file", python.display()),
    );
    assert_eq!(from_python.trim(), public);

    // Exactly the form `openssl genpkey` writes.
    let der = private_key_der(&pem);
    assert_eq!(der.len(), 48, "PrivateKeyInfo v1 without the public key");
    assert_eq!(der[..16], V1_PREFIX);
}

#[tokio::test]
async fn a_key_made_by_openssl_genpkey_signs_tokens_that_validate() {
    let dir = TestData::new();
    let path = dir.path().join("auth-signing-key.pem");
    stdout_of(
        openssl(&[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            path.to_str().unwrap(),
        ]),
        "openssl genpkey -algorithm ed25519",
    );
    let made = std::fs::read_to_string(&path).unwrap();

    let app = assert_signs_with_the_key_file(dir, "ada@example.com").await;

    assert_eq!(app.signing_key_pem(), made, "the file is used as it is");
}

#[tokio::test]
async fn a_key_file_in_the_pkcs8_v2_form_still_loads_and_signs() {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;

    let dir = TestData::new();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let v2 = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let der = private_key_der(&v2);
    // The RFC 5958 OneAsymmetricKey: version 1 (v2), and the public key after the private one.
    assert_eq!(der[4], 1, "the sample is PKCS#8 v2");
    assert!(der.len() > 48);
    std::fs::write(dir.path().join("auth-signing-key.pem"), &v2).unwrap();

    let app = assert_signs_with_the_key_file(dir, "ada@example.com").await;

    assert_eq!(
        app.signing_key_pem(),
        v2,
        "an existing file is never rewritten"
    );
    // And it still loads after a restart.
    let dir = app.stop().await;
    assert_signs_with_the_key_file(dir, "bob@example.com").await;
}
