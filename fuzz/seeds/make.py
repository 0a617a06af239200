#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/seeds/<target>/ (run from anywhere).

The seeds are committed; run this again only to change them. Each target's input format is
described at the top of its fuzz_targets/<target>.rs. Tokens and key files are made with
openssl from fuzz/fixtures/signing-key.pem (the fuzz targets' own Ed25519 key), so the
signed tokens here are ones the access_token target's key ring accepts.
"""

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent.parent
SEEDS = FUZZ / "seeds"
KEY = FUZZ / "fixtures" / "signing-key.pem"
# The page-token key of fuzz_targets/page_token.rs.
PAGE_KEY = b"the fuzz targets' page-token key"
MAX_BODY_BYTES = 64 * 1024
# 2100-01-01 and 2023-11-14, Unix seconds: a token valid for the life of these seeds, and times
# long past.
FUTURE, PAST = 4102444800, 1700000000


def write(target: str, name: str, data: bytes | str) -> None:
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, check=True, capture_output=True
    ).stdout


def json_body() -> None:
    def body(name: str, route: int, text: str, delivery: int = 0) -> None:
        write("json_body", name, bytes([route, delivery]) + text.encode())

    sign_up = '{"email":"ada@example.com","password":"correct horse","displayName":"Ada"}'
    body("create-user", 0, sign_up)
    body("create-user-streamed", 0, sign_up, 3)
    body("create-user-snake-case", 0, '{"email":"a@x.io","password":"12345678","display_name":"A"}')
    body("create-user-unknown-field", 0, '{"email":"a@x.io","admin":true}')
    body("create-user-wrong-type", 0, '{"email":1,"password":null}')
    body("create-user-duplicate-key", 0, '{"email":"a@x.io","email":"b@x.io"}')
    body("create-user-truncated", 0, '{"email":"')
    body("create-user-escapes", 0, '{"displayName":"\\ud83d\\ude00 \\u0041","email":"\\ud800"}')
    body("create-user-deep", 0, "[" * 200 + "]" * 200)
    body("empty", 0, "")
    body("blank", 0, " \r\n\t")
    body("null", 0, "null")
    # 64 KiB less 2 bytes of white space, then the JSON.
    body("exactly-64-kib", 0, "{}", 0x70)
    body("over-64-kib", 0, "{}  ", 0x70)
    body("over-64-kib-streamed", 0, "{}  ", 0x7F)
    body("patch-display-name", 1, '{"displayName":"Ada Lovelace"}')
    body("patch-snake-case", 1, '{"display_name":"Ada"}')
    body("patch-with-id", 1, '{"id":"u1","displayName":"Ada"}')
    body("patch-email", 1, '{"email":"x@example.com"}')
    body("patch-blank-name", 1, '{"displayName":"   "}')
    body("patch-control-name", 1, '{"displayName":"Ada\\u0007"}')
    body("patch-time", 1, '{"createTime":"2026-01-02T03:04:05.123Z","displayName":"A"}')
    body("patch-time-out-of-range", 1, '{"updateTime":"9999-12-31T23:59:59.999999999-01:00"}')
    body("patch-roles", 1, '{"roles":["admin"],"displayName":"A"}')
    body("patch-not-an-object", 1, '"Ada"')
    body("login", 2, '{"email":"ada@example.com","password":"correct horse"}')
    body("refresh", 3, '{"refreshToken":"grt_' + "A" * 43 + '"}')
    body("logout", 4, '{"token":"grt_' + "A" * 43 + '"}')
    body("logout-empty", 4, "")


def page_token() -> None:
    def encode(create_time: int, user_id: str) -> str:
        payload = create_time.to_bytes(8, "big", signed=True) + user_id.encode()
        mac = hmac.new(PAGE_KEY, payload, hashlib.sha256).digest()[:16]
        return b64(payload + mac)

    uuid = "01936f7e-8a2b-7c3d-9e4f-0a1b2c3d4e5f"
    token = encode(1_700_000_000_123_456, uuid)
    write("page_token", "token", token)
    write("page_token", "token-negative-time", encode(-1, "u"))
    write("page_token", "token-empty-id", encode(0, ""))
    write("page_token", "token-changed-last-character", token[:-1] + ("A" if token[-1] != "A" else "B"))
    write("page_token", "token-padded", token + "==")
    write("page_token", "token-standard-alphabet", token.replace("-", "+").replace("_", "/"))
    write("page_token", "token-without-mac", b64((5).to_bytes(8, "big") + uuid.encode()))
    write("page_token", "too-short", b64(bytes(23)))
    write("page_token", "not-base64", "!!!")
    write("page_token", "cursor", b"\x00" + (1_700_000_000_123_456).to_bytes(8, "big") + uuid.encode())
    write("page_token", "cursor-unicode-id", b"\x00" + bytes(8) + "é😀".encode())


def field_mask() -> None:
    def mask(name: str, text: str, display_name: str | None = None, paths: str | None = None) -> None:
        parts = [text.encode()]
        if display_name is not None or paths is not None:
            parts.append((display_name or "").encode())
        if paths is not None:
            parts.append(paths.encode())
        write("field_mask", name, b"\xff".join(parts))

    mask("display-name", "displayName", "Ada Lovelace", "display_name")
    mask("display-name-blank", "displayName", "   ", "display_name")
    mask("display-name-too-long", "displayName", "é" * 101)
    mask("two-paths", "displayName,email", "Ada", "display_name\nemail")
    mask("nested", "user.displayName,user.createTime", "Ada", "user.display_name\nuser.create_time")
    mask("empty", "", "Ada", "")
    mask("snake-case-in-json", "display_name", "Ada")
    mask("empty-entry", "a,,b", "Ada", "a\n\nb")
    mask("empty-segment", "a..b", "Ada", "a..b")
    mask("trailing-comma", "displayName,", "Ada", "display_name,email")
    mask("capital", "DisplayName", "Ada", "Display")
    mask("double-underscore", "aB", "Ada", "a__b\na_1")
    mask("unicode", "dÉ.ñame", "Ada", "é_x")


def access_token() -> None:
    der = openssl("pkey", "-in", str(KEY), "-pubout", "-outform", "DER")
    kid = b64(hashlib.sha256(der[-32:]).digest())[:16]
    header = {"typ": "JWT", "alg": "EdDSA", "kid": kid}
    claims = {
        "iss": "grimos-auth", "aud": "grimos", "sub": "u1", "exp": FUTURE, "nbf": PAST,
        "iat": PAST, "jti": "j1", "sid": "s1", "roles": ["user"],
    }

    def signed(head: bytes, body: bytes, key: Path = KEY) -> str:
        message = f"{b64(head)}.{b64(body)}"
        with tempfile.NamedTemporaryFile() as file:
            file.write(message.encode())
            file.flush()
            signature = openssl("pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", file.name)
        return f"{message}.{b64(signature)}"

    def structured(name: str, head: dict | bytes, body: dict | bytes) -> None:
        head = head if isinstance(head, bytes) else json.dumps(head, separators=(",", ":")).encode()
        body = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        write("access_token", f"signed-{name}", head + b"\xff" + body)

    structured("valid", header, claims)
    structured("alg-none", {**header, "alg": "none"}, claims)
    structured("alg-hs256", {**header, "alg": "HS256"}, claims)
    structured("unknown-kid", {**header, "kid": "AAAAAAAAAAAAAAAA"}, claims)
    structured("no-kid", {"alg": "EdDSA"}, claims)
    structured("expired", header, {**claims, "exp": PAST + 900})
    structured("not-yet-valid", header, {**claims, "nbf": FUTURE - 10})
    structured("other-issuer", header, {**claims, "iss": "evil"})
    structured("audience-list", header, {**claims, "aud": ["grimos"]})
    structured("no-jti", header, {k: v for k, v in claims.items() if k != "jti"})
    structured("exp-string", header, {**claims, "exp": str(FUTURE)})
    structured("exp-fraction", header, {**claims, "exp": FUTURE + 0.5})
    structured("extra-claim", header, {**claims, "admin": True})
    structured("duplicate-iss", header, json.dumps(claims)[:-1].encode() + b',"iss":"evil"}')
    structured("not-json", header, b"\x00\x01")
    # Extra members the typed decoding skips: the claims are not JSON text all the same.
    extra = json.dumps(claims, separators=(",", ":"))[:-1].encode()
    structured("extra-claim-not-utf8", header, extra + b',"x":"\xa6\xa6"}')
    structured("extra-claim-lone-surrogate", header, extra + b',"x":"\\ud800"}')
    structured("extra-claim-out-of-range", header, extra + b',"x":1e400}')

    head = json.dumps(header, separators=(",", ":")).encode()
    body = json.dumps(claims, separators=(",", ":")).encode()
    token = signed(head, body)
    write("access_token", "token", token)
    h, p, s = token.split(".")
    write("access_token", "token-unsigned", f"{h}.{p}.")
    none = b64(b'{"alg":"none"}')
    write("access_token", "token-alg-none", f"{none}.{p}.")
    write("access_token", "token-tampered", f"{h}.{b64(body.replace(b'u1', b'u2'))}.{s}")
    write("access_token", "token-padded", f"{token}==")
    write("access_token", "token-four-parts", f"{token}.{s}")
    write("access_token", "token-oversized", token + "A" * (9 * 1024))
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other.pem"
        openssl("genpkey", "-algorithm", "ed25519", "-out", str(other))
        write("access_token", "token-other-key", signed(head, body, other))
    write("access_token", "refresh-token", "grt_" + "A" * 43)
    write("access_token", "garbage", "not.a.jwt")


def key_file() -> None:
    pem = KEY.read_text()
    der = openssl("pkey", "-in", str(KEY), "-outform", "DER")
    seed = der[-32:]
    public = openssl("pkey", "-in", str(KEY), "-pubout", "-outform", "DER")
    # PKCS#8 v2 (RFC 5958 OneAsymmetricKey): version 1, the seed, then the public key.
    v2 = bytes.fromhex("3051020101300506032b657004220420") + seed + bytes.fromhex("812100") + public[-32:]

    def armour(label: str, data: bytes) -> str:
        text = base64.b64encode(data).decode()
        lines = [text[i:i + 64] for i in range(0, len(text), 64)]
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"

    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other.pem"
        openssl("genpkey", "-algorithm", "ed25519", "-out", str(other))
        other_pem = other.read_text()
        p256 = Path(tmp) / "p256.pem"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(p256))
        write("key_file", "p256-private-key", p256.read_text())
    public_pem = armour("PUBLIC KEY", public)
    write("key_file", "pkcs8-v1", pem)
    write("key_file", "pkcs8-v2", armour("PRIVATE KEY", v2))
    write("key_file", "rotated", other_pem + pem)
    write("key_file", "private-and-public", pem + public_pem)
    write("key_file", "public-only", public_pem)
    write("key_file", "crlf", pem.replace("\n", "\r\n"))
    write("key_file", "comments", "# the signing key\n" + pem + "trailing text\n")
    write("key_file", "truncated", pem[:60] + "\n-----END PRIVATE KEY-----\n")
    write("key_file", "no-end", pem.split("-----END")[0])
    write("key_file", "other-label", pem.replace("PRIVATE KEY", "EC PRIVATE KEY"))
    write("key_file", "empty", "")


def auth_address() -> None:
    for i, text in enumerate([
        "http://auth:50051",
        "https://auth.example.com:443",
        "http://127.0.0.1:50051/",
        "http://[::1]:50051",
        "http://a:1, http://b:2 ,https://c:3",
        "dns:///auth.svc:50051",
        "dns:auth:50051",
        "DNS:///localhost:1",
        "dns:///[::1]:50051",
        "dns:///auth",
        "dns:///auth:0",
        "dns:///auth:65536",
        "dns:///::1:50051",
        "dns://8.8.8.8/auth:50051",
        "dns:///auth/x:50051",
        "dns:///[fe80::1%eth0]:1",
        "",
        "auth:50051",
        "grpc://auth:50051",
        "http://auth",
        "http://auth:50051/v1",
        "http://auth:50051?x=1",
        "http://user@auth:50051",
        "http://a:1,,http://b:2",
        "http://a:1 http://b:2",
        "http://[fe80::1%25eth0]:1",
    ]):
        write("auth_address", f"{i:02}", text)


def main() -> None:
    for target in ["json_body", "page_token", "field_mask", "access_token", "key_file", "auth_address"]:
        shutil.rmtree(SEEDS / target, ignore_errors=True)
    json_body()
    page_token()
    field_mask()
    access_token()
    key_file()
    auth_address()


if __name__ == "__main__":
    main()
