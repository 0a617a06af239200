"""The processes of a run: building and copying the release binaries, bounded tool runs, and
the system under test (the floor servers, auth-service and user-service as separate children
on free loopback ports), with readiness, death reports and stopping.

Every child runs in its own session, so Ctrl-C reaches only the harness, which stops them all
(SIGTERM, then SIGKILL) on every exit path."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .common import (
    ADMIN_EMAIL,
    BIN_NAMES,
    REPLICAS,
    ROOT,
    SERVICES,
    BenchError,
    log,
)
from .probes import grpc_health_ok, http_ok, tcp_accepts
from .sampling import cpu_ticks, proc_status


@dataclass
class Proc:
    """A long-running child (a service or a floor server) with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float
    ready_ms: float | None = None
    idle_rss_kib: int | None = None
    peak_hwm_kib: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(self.death())

    def death(self) -> str:
        code = self.popen.returncode
        how = (
            f"was killed by signal {-code} ({signal.Signals(-code).name})"
            if code < 0
            else "exited with status 0 (a clean shutdown: something sent it SIGTERM or SIGINT)"
            if code == 0
            else f"exited with status {code}"
        )
        return f"{self.name} (pid {self.pid}) {how}; last log lines:\n{tail(self.log_path)}"

    def cpu_ticks(self) -> int:
        return cpu_ticks(self.pid)

    def status(self) -> dict[str, int]:
        fields = proc_status(self.pid)
        self.peak_hwm_kib = max(self.peak_hwm_kib, fields.get("VmHWM", 0))
        return fields

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                self.status()
            except BenchError:
                pass
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_tool(argv: list[str], timeout: float, what: str) -> str:
    """Runs a bounded tool; its stdout, or BenchError with its output."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from e
    except FileNotFoundError as e:
        raise BenchError(f"{what}: {argv[0]} is not installed") from e
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")
        raise BenchError(f"{what}: {' '.join(argv[:3])}... exited {done.returncode}:\n{out}\n{err}")
    return out


def cargo_target_dir() -> Path:
    out = run_tool(["cargo", "metadata", "--format-version", "1", "--no-deps"], 120, "cargo metadata")
    return Path(json.loads(out)["target_directory"])


def build() -> None:
    argv = ["cargo", "build", "--release", "--locked", "-p", "auth-service", "-p", "user-service",
            "-p", "grimos-bench"]
    log(" ".join(argv))
    try:
        done = subprocess.run(argv, cwd=ROOT, timeout=3600, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError("cargo build did not finish within an hour") from e
    if done.returncode != 0:
        raise BenchError(f"cargo build failed (exit {done.returncode})")


class System:
    """The children of one run: the floors and both services, with the settings the services
    get (ports, data, the shared service token) and their readiness."""

    def __init__(self, workdir: Path, bins: Path, database_urls: dict[str, str]):
        self.dir = workdir
        self.bins = bins
        self.database_urls = database_urls
        self.procs: dict[str, Proc] = {}
        self.service_token = secrets.token_urlsafe(32)
        self.auth_port = free_port()
        self.user_port = free_port()
        self.replica_bases: list[str] = []

    @property
    def auth_addr(self) -> str:
        return f"127.0.0.1:{self.auth_port}"

    @property
    def user_addr(self) -> str:
        return f"127.0.0.1:{self.user_port}"

    @property
    def user_base(self) -> str:
        return f"http://{self.user_addr}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.dir / f"{name}.log"
        log_file = log_path.open("ab")
        spawned_at = time.perf_counter()
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            # The floors and the span sink print their address.
            stdout=subprocess.PIPE if name.startswith(("floor", "otlp-sink")) else log_file,
            stderr=log_file,
            start_new_session=True,  # Ctrl-C reaches only this script, which stops them
        )
        log_file.close()
        proc = Proc(name, popen, log_path, spawned_at)
        self.procs[name] = proc
        return proc

    def service_env(self, rust_log: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTH_", "USER_", "GRIMOS_", "RUST_LOG", "OTEL_"))
        }
        env.update(
            {
                "RUST_LOG": rust_log,
                "AUTH_LISTEN_ADDR": self.auth_addr,
                "AUTH_SIGNING_KEY_FILE": str(self.dir / "auth-signing-key.pem"),
                # The run takes longer than the default 15 min token lifetime.
                "AUTH_ACCESS_TOKEN_TTL": "24h",
                # Successful logins reset the per-email count, but parallel attempts on one
                # email are all counted first (and slowed past half the limit): set it high so
                # the login workload measures logins, not throttling.
                "AUTH_LOGIN_MAX_ATTEMPTS": "1000000000",
                # Stopped with SIGTERM between workloads: no balancer here to drain from.
                "GRIMOS_DRAIN_GRACE": "0s",
                "GRIMOS_SERVICE_TOKEN": self.service_token,
                "GRIMOS_ADMIN_EMAILS": ADMIN_EMAIL,
                "USER_LISTEN_ADDR": self.user_addr,
                "AUTH_SERVICE_ADDRESS": f"http://{self.auth_addr}",
            }
        )
        env.update(self.database_urls)
        env.update(extra or {})
        return env

    def wait_ready(self, proc: Proc, ready: Callable[[], bool]) -> None:
        """Polls `ready` for up to 20 s; records spawn → ready as the process's ready time."""
        deadline = time.perf_counter() + 20
        while True:
            proc.check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"{proc.name} not ready after 20 s:\n{tail(proc.log_path)}")
            if ready():
                break
            time.sleep(0.002)
        proc.ready_ms = (time.perf_counter() - proc.spawned_at) * 1000

    def start_auth(self, name: str, env: dict[str, str], port: int) -> Proc:
        """An auth-service on `port`, once it answers gRPC health."""
        auth = self.spawn(name, [str(self.bins / BIN_NAMES["auth-service"])], env)
        self.wait_ready(auth, lambda: tcp_accepts("127.0.0.1", port)
                        and grpc_health_ok(f"127.0.0.1:{port}", 2))
        return auth

    def start_user(self, name: str, env: dict[str, str], base: str) -> Proc:
        """A user-service serving `base`, once it is ready."""
        user = self.spawn(name, [str(self.bins / BIN_NAMES["user-service"])], env)
        self.wait_ready(user, lambda: http_ok(f"{base}/readyz", 2))
        return user

    def start_services(self, rust_log: str = "warn", extra: dict[str, str] | None = None) -> None:
        env = self.service_env(rust_log, extra)
        auth = self.start_auth("auth-service", env, self.auth_port)
        user = self.start_user("user-service", env, self.user_base)
        time.sleep(0.5)  # let start-up work settle before reading the idle RSS
        for proc in (auth, user):
            proc.idle_rss_kib = proc.status().get("VmRSS")
        log(
            f"services ready (RUST_LOG={rust_log}): auth-service {auth.ready_ms:.0f} ms, "
            f"user-service {user.ready_ms:.0f} ms; idle RSS "
            f"{auth.idle_rss_kib} / {user.idle_rss_kib} KiB"
        )

    def start_replicas(self) -> None:
        """Two more user-services for the revocation probe: one on the same auth-service, and
        one on a second auth-service replica (same database and signing key), which learns of
        the first one's revocations through PostgreSQL NOTIFY or SQLite's `data_version`. The
        two user-services' base URLs are `replica_bases`; `stop_replicas` stops all three."""
        auth_port, second_port, third_port = free_port(), free_port(), free_port()
        self.start_auth(REPLICAS[0],
                        self.service_env("warn", {"AUTH_LISTEN_ADDR": f"127.0.0.1:{auth_port}"}),
                        auth_port)
        bases = []
        for name, port, auth_addr in ((REPLICAS[1], second_port, self.auth_addr),
                                      (REPLICAS[2], third_port, f"127.0.0.1:{auth_port}")):
            env = self.service_env("warn", {"USER_LISTEN_ADDR": f"127.0.0.1:{port}",
                                            "AUTH_SERVICE_ADDRESS": f"http://{auth_addr}"})
            base = f"http://127.0.0.1:{port}"
            self.start_user(name, env, base)
            bases.append(base)
        self.replica_bases = bases

    def stop_replicas(self) -> None:
        for name in reversed(REPLICAS):
            proc = self.procs.pop(name, None)
            if proc:
                proc.stop()

    def stop_services(self) -> None:
        for name in reversed(SERVICES):
            proc = self.procs.get(name)
            if proc:
                proc.stop()

    def restart_services(self, rust_log: str, extra: dict[str, str] | None = None) -> None:
        """Both services stopped and started afresh (same ports and data) with these settings."""
        self.stop_services()
        for name in SERVICES:
            self.procs.pop(name)
        self.start_services(rust_log, extra)

    def start_floor(self, name: str, args: list[str] | None = None) -> str:
        """A floor server (or the span sink, with its `args`) on a free port: its address."""
        argv = [str(self.bins / BIN_NAMES[name]), "127.0.0.1:0", *(args or [])]
        proc = self.spawn(name, argv, dict(os.environ))
        assert proc.popen.stdout is not None
        line = proc.popen.stdout.readline().decode().strip()
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if not match:
            proc.check_alive()
            raise BenchError(f"{name} did not print its address (got {line!r})")
        proc.idle_rss_kib = proc.status().get("VmRSS")
        return match.group(1)

    def start_sink(self) -> tuple[str, Path]:
        """The OTLP span sink: the endpoint to export to, and the file it keeps its count in."""
        count_file = self.dir / "otlp-spans"
        return f"http://{self.start_floor('otlp-sink', [str(count_file)])}", count_file

    def check_all_alive(self) -> None:
        for proc in self.procs.values():
            proc.check_alive()

    def guarded(self, run: Callable[[], Any]) -> Any:
        """Runs `run`; if it fails and a process died meanwhile, says so in the error."""
        try:
            return run()
        except BenchError as e:
            dead = [p.death() for p in self.procs.values() if not p.alive()]
            if dead:
                raise BenchError(f"{e}\n" + "\n".join(dead)) from e
            raise

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
