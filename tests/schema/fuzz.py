"""`just test-schema`: schemathesis fuzzes the live system's HTTP/JSON API from the OpenAPI
document it serves (GET /openapi.json), as a signed-in user and then as an admin.

Run against a running system (USER_SERVICE_URL, and GRIMOS_ADMIN_EMAILS as the system was
started with); `just test-schema` starts a private one with tools/with-system.sh. Every
operation of the document is called with at most --max-examples cases per phase (default 25)
under a time bound, and every check in CHECKS must pass: no 5xx, every status, content type,
header and body as the document says, requests that break the schema refused, credentials
required where the document requires them. The seed is printed; SCHEMA_SEED=N repeats a run.

schemathesis's positive_data_acceptance check (every schema-valid request must succeed) is
not among them: the contract has input rules no schema can state (a page token is valid only
if the server issued it, a password is at most 1024 bytes, an email's lower-case form must
fit too), so a schema-valid request can rightly be a 400, which the document lists.
"""

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PASSWORD = "correct horse battery staple"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
]


def post(base: str, path: str, body: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def session(base: str, email: str) -> str:
    """Signs `email` up (or finds it signed up) and logs in: the access token."""
    status, body = post(base, "/v1/users", {"email": email, "password": PASSWORD, "displayName": "Schema Fuzz"})
    if status not in (201, 409):
        sys.exit(f"test-schema: cannot sign up {email}: {status} {body}")
    status, body = post(base, "/v1/auth/login", {"email": email, "password": PASSWORD})
    if status != 200:
        sys.exit(f"test-schema: cannot log in as {email}: {status} {body}")
    return body["accessToken"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=25, help="cases per operation and phase")
    parser.add_argument("--max-time", type=int, default=70, help="seconds per identity")
    args = parser.parse_args()

    base = os.environ["USER_SERVICE_URL"].rstrip("/")
    admins = [e.strip() for e in os.environ.get("GRIMOS_ADMIN_EMAILS", "").split(",") if e.strip()]
    if not admins:
        sys.exit("test-schema: GRIMOS_ADMIN_EMAILS must name the admin the system was started with")
    seed = int(os.environ.get("SCHEMA_SEED") or random.randrange(2**32))
    print(f"test-schema: seed {seed} (SCHEMA_SEED={seed} repeats this run)", flush=True)
    run = f"{seed:x}"
    identities = [("user", f"schema-user-{run}@example.com"), ("admin", admins[0])]
    failed = []
    for identity, email in identities:
        env = dict(
            os.environ,
            SCHEMA_FUZZ_TOKEN=session(base, email),
            SCHEMATHESIS_HOOKS="hooks",
            PYTHONPATH=str(HERE),
        )
        command = [
            str(ROOT / ".venv" / "bin" / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--seed",
            str(seed),
            "--checks",
            ",".join(CHECKS),
            # One worker: with two, hypothesis describes strategies by parsing source in both
            # threads at once, which CPython 3.11's ast module does not survive ("AST
            # constructor recursion depth mismatch"), and the run errors out.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ]
        start = time.monotonic()
        print(f"== test-schema: as {identity} ({email})", flush=True)
        status = subprocess.run(command, env=env, cwd=ROOT, timeout=args.max_time + 120).returncode
        print(f"== test-schema: as {identity}: exit {status} after {time.monotonic() - start:.0f} s", flush=True)
        if status != 0:
            failed.append(identity)
    if failed:
        print(f"test-schema: FAILED as {', '.join(failed)} (seed {seed})", file=sys.stderr)
        return 1
    print(f"test-schema: passed as {', '.join(i for i, _ in identities)} (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
