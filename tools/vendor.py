"""Copies the third-party files the repository commits, byte for byte, from pinned packages.

`just vendor` (and so `just generate`) runs it; `just check-generated` then fails if the
committed copies differ from what it wrote, so a copy can only change with its pin.

- third_party/googleapis/: the googleapis protos the API imports (`google.api.http`, field
  behaviour) and the `google.rpc` error model, from the PyPI wheel googleapis-common-protos
  pinned in requirements-dev.txt. Each file must match the sha256 the wheel's RECORD gives
  for it, so a copy from a modified installation is refused.
- rust/user-service/assets/swagger-ui/: the Swagger UI bundle that `GET /docs` serves, from
  the npm package swagger-ui-dist pinned in package.json (npm ci checks the tarball's
  integrity against package-lock.json).

Each destination folder belongs to this script: files it does not list are deleted.
"""

import base64
import csv
import hashlib
import importlib.metadata
import json
import pathlib
import re
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

GOOGLEAPIS = "googleapis-common-protos"
GOOGLEAPIS_FILES = [
    "google/api/annotations.proto",
    "google/api/field_behavior.proto",
    "google/api/http.proto",
    "google/rpc/code.proto",
    "google/rpc/error_details.proto",
    "google/rpc/status.proto",
]
GOOGLEAPIS_DEST = ROOT / "third_party" / "googleapis"

SWAGGER_UI = "swagger-ui-dist"
SWAGGER_UI_FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"]
SWAGGER_UI_DEST = ROOT / "rust" / "user-service" / "assets" / "swagger-ui"


def fail(message: str) -> None:
    sys.exit(f"vendor: {message}")


def pinned_pypi(name: str) -> str:
    """The version requirements-dev.txt pins `name` to."""
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        match = re.fullmatch(rf"{re.escape(name)}==(\S+)", line.strip())
        if match:
            return match.group(1)
    fail(f"requirements-dev.txt pins no {name}")
    raise AssertionError


def record_sha256(dist: importlib.metadata.Distribution) -> dict[str, str]:
    """The wheel's RECORD: file path to its urlsafe-base64 sha256, as the wheel shipped it."""
    record = dist.read_text("RECORD")
    if record is None:
        fail(f"{dist.metadata['Name']} has no RECORD")
    hashes = {}
    for row in csv.reader(record.splitlines()):
        if len(row) >= 2 and row[1].startswith("sha256="):
            hashes[row[0]] = row[1].removeprefix("sha256=")
    return hashes


def copy_tree(dest: pathlib.Path, files: dict[str, bytes]) -> None:
    """Makes `dest` hold exactly `files` (relative path to content)."""
    if dest.exists():
        for path in sorted(dest.rglob("*"), reverse=True):
            relative = path.relative_to(dest).as_posix()
            if path.is_file() and relative not in files:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for relative, content in files.items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)


def googleapis() -> dict[str, bytes]:
    version = pinned_pypi(GOOGLEAPIS)
    try:
        dist = importlib.metadata.distribution(GOOGLEAPIS)
    except importlib.metadata.PackageNotFoundError:
        fail(f"{GOOGLEAPIS} is not installed in this Python: run `just setup`")
    if dist.version != version:
        fail(f"{GOOGLEAPIS} {dist.version} is installed, requirements-dev.txt pins {version}: run `just setup`")
    hashes = record_sha256(dist)
    license_path = f"googleapis_common_protos-{version}.dist-info/licenses/LICENSE"
    files = {}
    for source, target in [(name, name) for name in GOOGLEAPIS_FILES] + [(license_path, "LICENSE")]:
        content = pathlib.Path(str(dist.locate_file(source))).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        if hashes.get(source) != digest:
            fail(f"{source} of the installed {GOOGLEAPIS} {version} does not match the wheel's RECORD")
        files[target] = content
    return files


def swagger_ui() -> dict[str, bytes]:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"].get(SWAGGER_UI)
    if pinned is None or not re.fullmatch(r"\d+\.\d+\.\d+", pinned):
        fail(f"package.json must pin {SWAGGER_UI} to an exact version")
    package = ROOT / "node_modules" / SWAGGER_UI
    try:
        installed = json.loads((package / "package.json").read_text())["version"]
    except FileNotFoundError:
        fail(f"{SWAGGER_UI} is not in node_modules: run `just setup`")
    if installed != pinned:
        fail(f"{SWAGGER_UI} {installed} is in node_modules, package.json pins {pinned}: run `just setup`")
    return {name: (package / name).read_bytes() for name in SWAGGER_UI_FILES}


def main() -> None:
    copy_tree(GOOGLEAPIS_DEST, googleapis())
    copy_tree(SWAGGER_UI_DEST, swagger_ui())


if __name__ == "__main__":
    main()
