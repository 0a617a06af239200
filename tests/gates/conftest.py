"""Shared fixtures for the gate tests: where the repository and its pinned tools are."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
BASELINE = ROOT / "gen" / "baseline" / "grimos-v1.binpb"


def run(args: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command, capturing its output for assertions and failure messages."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def module_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """A scratch copy of the buf workspace (buf.yaml, proto/ and the vendored googleapis
    module it imports) to break on purpose."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copytree(ROOT / "third_party", tmp_path / "third_party")
    return tmp_path


@pytest.fixture
def repo_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """A scratch git clone of the working tree (tracked and new files, as they are now),
    sharing the pinned tools and the cargo target directory with the real checkout."""
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT).stdout
    copy = tmp_path / "repo"
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for tool in ("node_modules", ".venv"):
        (copy / tool).symlink_to(ROOT / tool)
    git = ["git", "-c", "user.name=gate-test", "-c", "user.email=gate-test@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        result = run(git + args, copy)
        assert result.returncode == 0, result.stderr
    return copy


def just_env() -> dict[str, str]:
    """The environment for `just` in a scratch copy: the real checkout's cargo target dir."""
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target"))
    return env
