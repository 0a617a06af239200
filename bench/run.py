#!/usr/bin/env python3
"""grimOS services benchmark: `just bench` (full) and `just bench-quick` (CI smoke).

Builds release binaries, starts auth-service and user-service as separate processes on free
loopback ports with a fresh data directory, seeds users (real ones through the HTTP API, bulk
rows straight into the databases: SQLite files, or with `--postgres URL` a new PostgreSQL
database), then loads every workload on loopback with standard tools: h2load for gRPC unary
calls (pre-encoded request frames) and HTTP/1.1 at a fixed rate, wrk for HTTP. Each workload is paired with a floor (a minimal tonic or axum server from the
`grimos-bench` crate answering the same shapes and sizes) loaded with the same tool and
settings, and reported as a ratio to it, with req/s, p50/p99 latency, CPU seconds per 1,000
requests and the RSS of every process involved.

Every run is bounded in time, and every response is checked: h2load must report every
request done and 2xx, and, because gRPC errors are trailers-only responses (HTTP 200, no
DATA frame), the DATA bytes received must equal succeeded x the size of a success frame (taken
from one real call first); wrk must report no socket errors and no non-2xx responses. Where
user-service's /metrics counters exist they are compared before and after as a second check.
Any failed request, crashed service or tool error makes the script exit non-zero with a clear
message. Missed performance targets are printed (and recorded) but do not fail the run.

Runs with Python 3.11's standard library plus the generated `grimos-proto` package (and its
grpcio dependency): `.venv/bin/python bench/run.py [--quick] [--out target/bench/report.md]`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import grpc  # the generated package's dependency; used for probes and health checks only
from grimos.auth.v1 import auth_pb2
from grimos.user.v1 import user_pb2

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The bench user: the same email and display name as the floor servers' fixed user
# (rust/bench/src/lib.rs), so real and floor responses have the same size.
BENCH_EMAIL = "bench-user@example.com"
BENCH_NAME = "Bench User"
ADMIN_EMAIL = "bench-admin@example.com"
PASSWORD = "bench-password-0123"
LOGIN_USERS = 32

GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]
VALIDATE_PATH = "/grimos.auth.v1.AuthService/ValidateToken"
CURRENT_USER_PATH = "/grimos.user.v1.UserService/GetCurrentUser"

# Performance targets (reported, never fatal).
TARGET_VALIDATE_RATIO = 0.6
TARGET_CURRENT_USER_RATIO = 0.3
TARGET_ME_RATIO = 0.3
TARGET_HALF_PEAK_P99_MS = 5.0
TARGET_IDLE_RSS_MIB = 20.0
TARGET_LOAD_RSS_MIB = 64.0
TARGET_READY_MS = 500.0
TARGET_SCALING = 0.10


# The release binaries are copied into the run's directory under these names: the whole run
# (including restarts) uses one consistent build even if target/release is rebuilt meanwhile,
# and tools that stop other people's "auth-service" or "user-service" processes by name on a
# shared machine leave the benchmark's alone.
BIN_NAMES = {
    "auth-service": "grimos-authd",
    "user-service": "grimos-userd",
    "floor-grpc": "floor-grpc",
    "floor-http": "floor-http",
    "argon2-rate": "argon2-rate",
}


class BenchError(Exception):
    """A failed request, a crashed service or a broken tool: the run is invalid."""


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop, clean up, exit non-zero."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


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


def cpu_ticks(pid: int) -> int:
    """utime + stime of `pid`, in clock ticks."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/stat: {e}") from e
    fields = raw[raw.rindex(")") + 2 :].split()
    # Fields after the command: state is index 0, so utime (14th) is 11 and stime 12.
    return int(fields[11]) + int(fields[12])


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of `pid` so far."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError as e:
        raise BenchError(f"cannot list /proc/{pid}/task: {e}") from e
    for task in tasks:
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM ... of `pid`, in KiB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Vm"):
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0])
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/status: {e}") from e
    return out


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


# ---------------------------------------------------------------------------------------------
# HTTP and gRPC helpers (set-up and probes only; the load comes from h2load and wrk)


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    expect: tuple[int, ...] = (200,),
    timeout: float = 30,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise BenchError(f"{method} {url}: {e}") from e
    if status not in expect:
        raise BenchError(f"{method} {url}: HTTP {status}: {raw[:500]!r}")
    return json.loads(raw) if raw else None


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_probe(addr: str, path: str, message: bytes, token: str | None = None) -> bytes:
    """One real unary call; the response message, or BenchError with the gRPC status."""
    with grpc.insecure_channel(addr) as channel:
        call: Any = channel.unary_unary(
            path, request_serializer=None, response_deserializer=None
        )
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        try:
            return bytes(call(message, metadata=metadata, timeout=10, wait_for_ready=True))
        except grpc.RpcError as e:
            raise BenchError(f"probe {path} on {addr}: {e.code().name}: {e.details()}") from e


def grpc_health_ok(addr: str, timeout: float) -> bool:
    """grpc.health.v1.Health/Check for the whole server answers SERVING (1)."""
    try:
        with grpc.insecure_channel(addr) as channel:
            call: Any = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=None,
                response_deserializer=None,
            )
            return bytes(call(b"", timeout=timeout, wait_for_ready=True)) == b"\x08\x01"
    except grpc.RpcError:
        return False


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def scrape_metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    """user-service's Prometheus counters, or None if /metrics is not there."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if not match or not match.group(1).endswith("_total"):
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or "")))
        try:
            out[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            continue
    return out


def metrics_errors(
    before: dict[Any, float] | None, after: dict[Any, float] | None, rpc: str | None, route: str | None
) -> tuple[str, list[tuple[int, str, str]]]:
    """Errors user-service's own counters saw between two scrapes: a summary, and
    (count, what, code) for each kind of failure: what is "grpc", "http" or "auth"."""
    if before is None or after is None:
        return ("n/a (no /metrics)", [])
    errors: list[tuple[int, str, str]] = []
    ok = 0.0
    for (name, labels), value in after.items():
        delta = int(value - before.get((name, labels), 0.0))
        if delta <= 0:
            continue
        label = dict(labels)
        if name == "grpc_server_requests_total" and rpc and label.get("rpc") == rpc:
            if label.get("code") == "0":
                ok += delta
            else:
                errors.append((delta, "grpc", label.get("code", "?")))
        elif name == "http_requests_total" and route and label.get("route") == route:
            if label.get("status", "").startswith("2"):
                ok += delta
            else:
                errors.append((delta, "http", label.get("status", "?")))
        elif name == "auth_client_requests_total" and label.get("code") != "Ok":
            errors.append((delta, "auth", f"{label.get('rpc')} {label.get('code')}"))
    return (f"{int(ok)} ok in /metrics", errors)


def describe(errors: list[tuple[int, str, str]]) -> str:
    names = {"grpc": "gRPC code", "http": "HTTP", "auth": "auth-service call"}
    return ", ".join(f"{n} x {names[what]} {code}" for n, what, code in errors)


# ---------------------------------------------------------------------------------------------
# Load tools and their output


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise BenchError(f"cannot parse a wrk duration {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def secs(duration: float) -> str:
    """Whole seconds (at least 1) for the tools' duration options."""
    return str(max(1, round(duration)))


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def parse_h2load(out: str, what: str) -> dict[str, Any]:
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    reqs = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    traffic = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data", out)
    if not (finished and reqs and codes and traffic):
        raise BenchError(f"{what}: cannot parse h2load output:\n{out}")
    return {
        "seconds": float(finished.group(1)),
        "req_s": float(finished.group(2)),
        "total": int(reqs.group(1)),
        "started": int(reqs.group(2)),
        "done": int(reqs.group(3)),
        "succeeded": int(reqs.group(4)),
        "failed": int(reqs.group(5)),
        "errored": int(reqs.group(6)),
        "timeout": int(reqs.group(7)),
        "2xx": int(codes.group(1)),
        "non2xx": int(codes.group(2)) + int(codes.group(3)) + int(codes.group(4)),
        "data_bytes": int(traffic.group(3)),
    }


def h2load_log_latencies(path: Path) -> tuple[list[float], int]:
    """Elapsed ms of every logged request, and how many were not 2xx."""
    latencies: list[float] = []
    bad = 0
    with path.open() as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) < 3:
                continue
            if not cols[1].startswith("2"):
                bad += 1
            latencies.append(int(cols[2]) / 1000.0)
    latencies.sort()
    return latencies, bad


def parse_wrk(out: str, what: str) -> dict[str, Any]:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (total and rate):
        raise BenchError(f"{what}: cannot parse wrk output:\n{out}")
    lat = {
        p: duration_ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, flags=re.M)
    }
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(total.group(1)),
        "seconds": duration_ms(total.group(2) + total.group(3)) / 1000.0,
        "req_s": float(rate.group(1)),
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
        "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
        "socket_detail": sock.group(0) if sock else "none",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


# ---------------------------------------------------------------------------------------------
# The bench


@dataclass
class Settings:
    duration: float
    warmup: float
    grpc_clients: int
    grpc_streams: int
    http_conns: int
    http_threads: int
    argon_conns: int
    argon_seconds: float
    quick: bool


@dataclass
class Result:
    name: str
    group: str
    tool: str
    target: str
    requests: int
    seconds: float
    req_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    check: str
    cpu_per_1k: dict[str, float] = field(default_factory=dict)
    switches_per_req: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    loadgen_cpu_per_1k: float | None = None
    floor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SqliteStore:
    """The default: each service's SQLite file in the bench's data directory."""

    name = "SQLite"

    def __init__(self, workdir: Path):
        self.dir = workdir

    def urls(self) -> dict[str, str]:
        return {
            "AUTH_DATABASE_URL": f"sqlite://{self.dir}/auth.db",
            "USER_DATABASE_URL": f"sqlite://{self.dir}/user.db",
        }

    def scalar(self, service: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with sqlite3.connect(self.dir / f"{service}.db", timeout=30) as db:
            return db.execute(sql, params).fetchone()[0]

    def insert(self, service: str, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        db = sqlite3.connect(self.dir / f"{service}.db", timeout=60)
        try:
            db.execute("PRAGMA busy_timeout = 60000")
            marks = ", ".join("?" for _ in columns)
            with db:
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        pass


class PostgresStore:
    """`--postgres URL`: a new database on that server for this run (dropped at the end), which
    both services share, each in its own schema (auth_service, user_service). Direct access goes
    through `psql`."""

    name = "PostgreSQL"

    def __init__(self, server_url: str):
        if not re.match(r"^postgres(ql)?://[^/]+/", server_url):
            raise BenchError("--postgres wants a postgres://user:password@host:port/database URL")
        self.server_url = server_url
        base, _, query = server_url.partition("?")
        self.database = f"grimos_bench_{secrets.token_hex(6)}"
        self.url = base.rsplit("/", 1)[0] + "/" + self.database + (f"?{query}" if query else "")
        self.psql(self.server_url, f"CREATE DATABASE {self.database}")
        self.created = True

    @staticmethod
    def psql(url: str, sql: str, data: str | None = None) -> str:
        argv = ["psql", url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]
        try:
            done = subprocess.run(argv, input=(data or "").encode(), capture_output=True,
                                  timeout=600, check=False)
        except FileNotFoundError as e:
            raise BenchError("psql is not installed (apt-get install postgresql-client)") from e
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"psql did not finish within 600 s: {sql[:80]}") from e
        if done.returncode != 0:
            raise BenchError(f"psql failed on {sql[:80]!r}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def urls(self) -> dict[str, str]:
        return {"AUTH_DATABASE_URL": self.url, "USER_DATABASE_URL": self.url}

    def scalar(self, service: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        # Only the bench's own constant strings are substituted here (no quotes in them).
        for param in params:
            if "'" in str(param):
                raise BenchError(f"unexpected quote in {param!r}")
            sql = sql.replace("?", f"'{param}'", 1)
        out = self.psql(self.url, f"SET search_path TO {service}_service; {sql}").strip()
        return out.splitlines()[-1] if out else None

    def insert(self, service: str, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        self.psql(self.url, f"COPY {service}_service.{table} ({', '.join(columns)}) FROM STDIN "
                  "WITH (FORMAT csv)", buffer.getvalue())
        self.psql(self.url, f"ANALYZE {service}_service.{table}")

    def close(self) -> None:
        if self.created:
            self.created = False
            self.psql(self.server_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings, workdir: Path, bins: Path):
        self.args = args
        self.s = settings
        self.dir = workdir
        self.bins = bins
        self.procs: dict[str, Proc] = {}
        self.results: list[Result] = []
        self.info: dict[str, Any] = {"settings": settings.__dict__}
        self.service_token = secrets.token_urlsafe(32)
        self.auth_port = free_port()
        self.user_port = free_port()
        self.frames: dict[str, Path] = {}
        self.perf: dict[str, str] = {}
        self.perf_procs: list[subprocess.Popen[bytes]] = []
        self.store: SqliteStore | PostgresStore = (
            PostgresStore(args.postgres) if args.postgres else SqliteStore(workdir)
        )

    # -- processes ------------------------------------------------------------------------

    @property
    def auth_addr(self) -> str:
        return f"127.0.0.1:{self.auth_port}"

    @property
    def user_base(self) -> str:
        return f"http://127.0.0.1:{self.user_port}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.dir / f"{name}.log"
        log_file = log_path.open("ab")
        spawned_at = time.perf_counter()
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if name.startswith("floor") else log_file,
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
            if not k.startswith(("AUTH_", "USER_", "GRIMOS_", "RUST_LOG"))
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
                "GRIMOS_SERVICE_TOKEN": self.service_token,
                "GRIMOS_ADMIN_EMAILS": ADMIN_EMAIL,
                "USER_LISTEN_ADDR": f"127.0.0.1:{self.user_port}",
                "AUTH_SERVICE_ADDRESS": f"http://{self.auth_addr}",
            }
        )
        env.update(self.store.urls())
        env.update(extra or {})
        return env

    def start_services(self, rust_log: str = "warn", extra: dict[str, str] | None = None) -> None:
        env = self.service_env(rust_log, extra)
        auth = self.spawn("auth-service", [str(self.bins / BIN_NAMES["auth-service"])], env)
        deadline = time.perf_counter() + 20
        while True:
            auth.check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"auth-service not ready after 20 s:\n{tail(auth.log_path)}")
            if tcp_accepts("127.0.0.1", self.auth_port) and grpc_health_ok(self.auth_addr, 2):
                break
            time.sleep(0.002)
        auth.ready_ms = (time.perf_counter() - auth.spawned_at) * 1000

        user = self.spawn("user-service", [str(self.bins / BIN_NAMES["user-service"])], env)
        deadline = time.perf_counter() + 20
        while True:
            user.check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"user-service not ready after 20 s:\n{tail(user.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.user_base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.002)
        user.ready_ms = (time.perf_counter() - user.spawned_at) * 1000
        time.sleep(0.5)  # let start-up work settle before reading the idle RSS
        for proc in (auth, user):
            proc.idle_rss_kib = proc.status().get("VmRSS")
        log(
            f"services ready (RUST_LOG={rust_log}): auth-service {auth.ready_ms:.0f} ms, "
            f"user-service {user.ready_ms:.0f} ms; idle RSS "
            f"{auth.idle_rss_kib} / {user.idle_rss_kib} KiB"
        )

    def stop_services(self) -> None:
        for name in ("user-service", "auth-service"):
            proc = self.procs.get(name)
            if proc:
                proc.stop()

    def start_floor(self, name: str) -> str:
        proc = self.spawn(name, [str(self.bins / BIN_NAMES[name]), "127.0.0.1:0"], dict(os.environ))
        assert proc.popen.stdout is not None
        line = proc.popen.stdout.readline().decode().strip()
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if not match:
            proc.check_alive()
            raise BenchError(f"{name} did not print its address (got {line!r})")
        proc.idle_rss_kib = proc.status().get("VmRSS")
        return match.group(1)

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

    # -- measuring ------------------------------------------------------------------------

    def measured(self, procs: list[str], run: Callable[[], Result]) -> Result:
        """Runs `run` with CPU and RSS accounting of `procs` and the load tool."""
        before = {name: self.procs[name].cpu_ticks() for name in procs}
        switches = {name: context_switches(self.procs[name].pid) for name in procs}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = self.guarded(run)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for name in procs:
            proc = self.procs[name]
            proc.check_alive()
            ticks = proc.cpu_ticks() - before[name]
            if result.requests > 0:
                result.cpu_per_1k[name] = ticks / CLK_TCK / result.requests * 1000
                result.switches_per_req[name] = (
                    context_switches(proc.pid) - switches[name]
                ) / result.requests
            result.rss_mib[name] = proc.status().get("VmRSS", 0) / 1024
        tool_cpu = (children_after.ru_utime - children.ru_utime) + (
            children_after.ru_stime - children.ru_stime
        )
        if result.requests > 0:
            result.loadgen_cpu_per_1k = tool_cpu / result.requests * 1000
        self.check_all_alive()
        return cast(Result, result)

    def grpc_load(
        self,
        name: str,
        group: str,
        addr: str,
        path: str,
        message: bytes,
        procs: list[str],
        token: str | None = None,
        metrics: bool = False,
        probe: tuple[bytes, str | None] | None = None,
    ) -> Result:
        """h2load on one unary rpc: warm-up, probe, measured run, checks. `probe` (message,
        token) overrides what the one real call sends (the self-test probes with a good token
        and then loads a bad one)."""
        frame_file = self.dir / f"frame-{slug(name)}.bin"
        frame_file.write_bytes(grpc_frame(message))
        headers = list(GRPC_HEADERS)
        if token:
            headers.append(f"authorization: Bearer {token}")
        # One real call: fails loudly with the gRPC status, and gives the success frame size.
        probe_message, probe_token = probe or (message, token)
        reply = grpc_probe(addr, path, probe_message, probe_token)
        frame_size = 5 + len(reply)
        url = f"http://{addr}{path}"
        s = self.s

        def h2load(limit: list[str], log_file: Path | None) -> list[str]:
            argv = ["h2load", *limit, "-t", "1", "-c", str(s.grpc_clients)]
            argv += ["-m", str(s.grpc_streams), "-d", str(frame_file)]
            for h in headers:
                argv += ["-H", h]
            if log_file:
                argv += ["--log-file", str(log_file)]
            return argv + [url]

        # The warm-up runs for a time and gives the rate; the measured run then makes a fixed
        # number of calls (about `duration` seconds' worth), so that none is in flight when it
        # ends and every check below is exact.
        warm = max(s.warmup, 1.0)
        warm_out = self.guarded(
            lambda: run_tool(h2load(["-D", secs(warm)], None), warm + 60, f"{name} warm-up")
        )
        rate = parse_h2load(warm_out, f"{name} warm-up")["req_s"]
        calls = max(s.grpc_clients * s.grpc_streams, int(rate * s.duration))
        time.sleep(0.2)  # calls the warm-up abandoned at its deadline settle before counting
        metrics_before = scrape_metrics(self.user_base) if metrics else None
        log_file = self.dir / f"h2load-{slug(name)}.log"
        bound = max(60.0, s.duration * 10)

        def run() -> Result:
            out = run_tool(h2load(["-n", str(calls)], log_file), bound, name)
            r = parse_h2load(out, name)
            latencies, bad_log = h2load_log_latencies(log_file)
            problems = []
            if r["failed"] or r["errored"] or r["timeout"]:
                problems.append(
                    f"{r['failed']} failed, {r['errored']} errored, {r['timeout']} timed out"
                )
            if r["done"] != calls or r["succeeded"] != calls:
                problems.append(f"{r['succeeded']} of {calls} calls succeeded")
            if r["2xx"] != calls or r["non2xx"] or bad_log or len(latencies) != calls:
                problems.append(f"{calls - r['2xx']} of {calls} responses not HTTP 2xx")
            expected = calls * frame_size
            if r["data_bytes"] != expected:
                problems.append(
                    f"gRPC errors: received {r['data_bytes']} DATA bytes, expected "
                    f"{calls} x {frame_size} = {expected}: about "
                    f"{max(0, expected - r['data_bytes']) // frame_size} calls ended without a "
                    f"message (a trailers-only error status)"
                )
            if problems:
                raise BenchError(f"{name}: " + "; ".join(problems))
            return Result(
                name=name,
                group=group,
                tool=f"h2load -c{s.grpc_clients} -m{s.grpc_streams}",
                target=addr,
                requests=calls,
                seconds=r["seconds"],
                req_s=r["req_s"],
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                errors=0,
                check=f"{calls} x 2xx, DATA = {calls} x {frame_size} B",
                extra={"frame_bytes": frame_size, "warm_up_req_s": rate},
            )

        return self.finish(name, procs, run, metrics, metrics_before, path, None)

    def wrk_load(
        self,
        name: str,
        group: str,
        url: str,
        procs: list[str],
        token: str | None = None,
        route: str | None = None,
        script: Callable[[], str] | None = None,
        conns: int | None = None,
        threads: int | None = None,
    ) -> Result:
        """wrk on one HTTP route: warm-up, measured run, checks."""
        s = self.s
        conns = conns or s.http_conns
        threads = min(threads or s.http_threads, conns)

        def wrk(duration: float) -> list[str]:
            argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{secs(duration)}s"]
            argv += ["--latency", "--timeout", "10s"]
            if token:
                argv += ["-H", f"authorization: Bearer {token}"]
            if script:
                lua = self.dir / f"wrk-{slug(name)}-{secrets.token_hex(4)}.lua"
                lua.write_text(script())
                argv += ["-s", str(lua)]
            return argv + [url]

        counted: list[dict[Any, float] | None] = [None]  # /metrics before the current wrk run

        def check(out: str, what: str) -> dict[str, Any]:
            r = parse_wrk(out, what)
            problems = []
            if r["socket_errors"]:
                problems.append(f"socket errors ({r['socket_detail']})")
            if r["non2xx"]:
                problems.append(f"{r['non2xx']} of {r['requests']} responses not HTTP 2xx")
            if r["requests"] == 0:
                problems.append("no request completed")
            if problems:
                # Say which statuses, from user-service's own counters when it has them.
                if route and counted[0] is not None:
                    _, errors = metrics_errors(
                        counted[0], scrape_metrics(self.user_base), None, route
                    )
                    if errors:
                        problems.append(f"user-service /metrics counted {describe(errors)}")
                raise BenchError(f"{what}: " + "; ".join(problems))
            return r

        if s.warmup > 0:
            counted[0] = scrape_metrics(self.user_base) if route else None
            self.guarded(
                lambda: check(
                    run_tool(wrk(s.warmup), s.warmup + 60, f"{name} warm-up"), f"{name} warm-up"
                )
            )
            time.sleep(0.2)  # requests the warm-up left in flight settle before counting
        metrics_before = scrape_metrics(self.user_base) if route else None
        counted[0] = metrics_before

        def run() -> Result:
            r = check(run_tool(wrk(s.duration), s.duration + 60, name), name)
            return Result(
                name=name,
                group=group,
                tool=f"wrk -t{threads} -c{conns}",
                target=url,
                requests=r["requests"],
                seconds=r["seconds"],
                req_s=r["req_s"],
                p50_ms=r["p50_ms"],
                p99_ms=r["p99_ms"],
                errors=0,
                check=f"{r['requests']} x 2xx, no socket errors",
            )

        return self.finish(name, procs, run, route is not None, metrics_before, None, route)

    def finish(
        self,
        name: str,
        procs: list[str],
        run: Callable[[], Result],
        check_metrics: bool,
        metrics_before: dict[Any, float] | None,
        rpc: str | None,
        route: str | None,
    ) -> Result:
        """Runs the measured load; with `check_metrics`, fails on any error user-service's
        /metrics counted for `rpc` or `route` since `metrics_before`."""
        result = self.measured(procs, run)
        if check_metrics:
            time.sleep(0.2)
            summary, errors = metrics_errors(
                metrics_before, scrape_metrics(self.user_base), rpc, route
            )
            if errors:
                raise BenchError(f"{name}: user-service /metrics counted errors: {describe(errors)}")
            result.check += f"; {summary}"
        self.record(result)
        return result

    def rate_load(self, name: str, group: str, url: str, rate: float, token: str, procs: list[str]) -> Result:
        """h2load over HTTP/1.1 at a fixed total rate; latency percentiles from its log."""
        s = self.s
        clients = s.http_conns
        per_client = max(rate / clients, 0.1)
        headers = [f"authorization: Bearer {token}"]
        log_file = self.dir / f"h2load-{slug(name)}.log"

        def argv(duration: float, log_path: Path | None) -> list[str]:
            a = ["h2load", "--h1", "-D", secs(duration), "-t", "1", "-c", str(clients)]
            a += ["--rps", f"{per_client:.3f}"]
            for h in headers:
                a += ["-H", h]
            if log_path:
                a += ["--log-file", str(log_path)]
            return a + [url]

        if s.warmup > 0:
            self.guarded(lambda: run_tool(argv(s.warmup, None), s.warmup + 60, f"{name} warm-up"))

        def run() -> Result:
            r = parse_h2load(run_tool(argv(s.duration, log_file), s.duration + 60, name), name)
            latencies, bad_log = h2load_log_latencies(log_file)
            if r["failed"] or r["errored"] or r["timeout"] or r["non2xx"] or bad_log:
                raise BenchError(
                    f"{name}: {r['failed']} failed, {r['errored']} errored, {r['timeout']} timed "
                    f"out, {r['non2xx']} not 2xx"
                )
            if r["done"] == 0:
                raise BenchError(f"{name}: no request completed")
            return Result(
                name=name,
                group=group,
                tool=f"h2load --h1 -c{clients} --rps {per_client:.1f}/client",
                target=url,
                requests=r["succeeded"],
                seconds=r["seconds"],
                req_s=r["req_s"],
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                errors=0,
                check=f"{r['succeeded']} x 2xx",
                extra={"target_rate": rate, "achieved_fraction": r["req_s"] / rate if rate else 0},
            )

        result = self.measured(procs, run)
        self.record(result)
        return result

    def record(self, result: Result) -> None:
        self.results.append(result)
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in result.cpu_per_1k.items())
        p50 = f"{result.p50_ms:.2f}" if result.p50_ms is not None else "-"
        p99 = f"{result.p99_ms:.2f}" if result.p99_ms is not None else "-"
        log(
            f"{result.name}: {result.req_s:,.0f} req/s, p50 {p50} ms, p99 {p99} ms, "
            f"CPU s/1k req: {cpu}; switches/req: "
            + ", ".join(f"{v:.2f}" for v in result.switches_per_req.values())
            + f" [{result.check}]"
        )

    # -- seeding --------------------------------------------------------------------------

    def sign_up(self, email: str, name: str) -> dict[str, Any]:
        body = {"email": email, "password": PASSWORD, "displayName": name}
        reply = http("POST", f"{self.user_base}/v1/users", body, expect=(200, 201))
        return cast(dict[str, Any], reply["user"])

    def login(self, email: str) -> str:
        body = {"email": email, "password": PASSWORD}
        reply = http("POST", f"{self.user_base}/v1/auth/login", body)
        return str(reply["accessToken"])

    def seed_real_users(self) -> None:
        t0 = time.perf_counter()
        self.admin = self.sign_up(ADMIN_EMAIL, "Bench Admin")
        self.bench_user = self.sign_up(BENCH_EMAIL, BENCH_NAME)
        self.login_emails = [f"login-{i:02d}@example.com" for i in range(LOGIN_USERS)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda e: self.sign_up(e, "Login User"), self.login_emails))
        self.admin_token = self.login(ADMIN_EMAIL)
        self.user_token = self.login(BENCH_EMAIL)
        if "admin" not in self.admin.get("roles", []):
            raise BenchError(f"{ADMIN_EMAIL} did not get the admin role: {self.admin}")
        log(f"seeded {2 + LOGIN_USERS} users through the API in {time.perf_counter() - t0:.1f} s")

    def active_users(self) -> int:
        return int(self.store.scalar("user", "SELECT count(*) FROM users WHERE state = 'active'"))

    def bulk_seed(self, total: int) -> None:
        """Inserts rows straight into both databases until `total` active users exist."""
        have = self.active_users()
        missing = total - have
        if missing <= 0:
            return
        t0 = time.perf_counter()
        password_hash = str(self.store.scalar(
            "auth", "SELECT password_hash FROM credentials WHERE email = ?", (self.login_emails[0],)))
        # Earlier than the real users, one per millisecond, so the real ones stay at the end.
        start_ms = int(time.time() * 1000) - 30 * 24 * 3600 * 1000
        first = have
        users, creds = [], []
        for i in range(first, first + missing):
            ms = start_ms + i
            micros = ms * 1000 + (i * 7919) % 1000
            uid = uuid7(ms)
            email = f"bulk-{i:07d}@example.com"
            users.append((uid, email, f"Bulk User {i}", "user", "active", micros, micros))
            creds.append((uid, email, password_hash, "user", micros // 1_000_000))
        self.store.insert("user", "users", ["id", "email", "display_name", "roles", "state",
                                             "create_time", "update_time"], users)
        self.store.insert("auth", "credentials", ["user_id", "email", "password_hash", "roles",
                                                  "create_time"], creds)
        count = self.active_users()
        if count != total:
            raise BenchError(f"bulk seeding left {count} active users, wanted {total}")
        log(f"bulk-inserted {missing} users (now {total}) in {time.perf_counter() - t0:.1f} s")

    def page_token_after(self, rows: int) -> str:
        """The ListUsers page token that continues after the first `rows` users."""
        token, done = "", 0
        while done < rows:
            size = min(1000, rows - done)
            query = f"pageSize={size}" + (f"&pageToken={token}" if token else "")
            reply = http("GET", f"{self.user_base}/v1/users?{query}", token=self.admin_token)
            got = len(reply.get("users", []))
            if got != size:
                raise BenchError(f"ListUsers returned {got} users, expected {size}")
            done += got
            token = reply.get("nextPageToken", "")
            if not token:
                raise BenchError(f"ListUsers ended after {done} users, wanted {rows}")
        return token

    # -- workloads ------------------------------------------------------------------------

    def reads(self, group: str, floors: dict[str, str] | None) -> dict[str, Result]:
        """The read workloads (each after its floor when `floors` is given)."""
        out: dict[str, Result] = {}
        validate_msg = auth_pb2.ValidateTokenRequest(access_token=self.user_token).SerializeToString()
        current_msg = user_pb2.GetCurrentUserRequest().SerializeToString()
        user_addr = f"127.0.0.1:{self.user_port}"
        both = ["auth-service", "user-service"]
        me = f"{self.user_base}/v1/users/me"
        by_id = f"{self.user_base}/v1/users/{self.bench_user['id']}"

        if floors:
            f = self.grpc_load("floor ValidateToken", "floor", floors["grpc"], VALIDATE_PATH,
                               validate_msg, ["floor-grpc"])
            out["floor ValidateToken"] = f
        r = self.grpc_load(f"ValidateToken ({group})", group, self.auth_addr, VALIDATE_PATH,
                           validate_msg, both)
        r.floor = "floor ValidateToken"
        out["ValidateToken"] = r

        if floors:
            out["floor GetCurrentUser"] = self.grpc_load(
                "floor GetCurrentUser", "floor", floors["grpc"], CURRENT_USER_PATH,
                current_msg, ["floor-grpc"])
        r = self.grpc_load(f"GetCurrentUser gRPC ({group})", group, user_addr, CURRENT_USER_PATH,
                           current_msg, both, token=self.user_token, metrics=True)
        r.floor = "floor GetCurrentUser"
        out["GetCurrentUser"] = r

        if floors:
            out["floor GET /v1/users/me"] = self.wrk_load(
                "floor GET /v1/users/me", "floor", f"http://{floors['http']}/v1/users/me",
                ["floor-http"], token=self.user_token)
        r = self.wrk_load(f"GET /v1/users/me ({group})", group, me, both, token=self.user_token,
                          route="/v1/users/me")
        r.floor = "floor GET /v1/users/me"
        out["GET /v1/users/me"] = r

        if floors:
            out["floor GET /v1/users/{id}"] = self.wrk_load(
                "floor GET /v1/users/{id}", "floor",
                f"http://{floors['http']}/v1/users/{self.bench_user['id']}",
                ["floor-http"], token=self.admin_token)
        r = self.wrk_load(f"GET /v1/users/{{id}} as admin ({group})", group, by_id, both,
                          token=self.admin_token, route="/v1/users/{user_id}")
        r.floor = "floor GET /v1/users/{id}"
        out["GET /v1/users/{id}"] = r
        return out

    def list_pages(self, group: str) -> dict[str, Result]:
        """ListUsers (HTTP, 50 per page) from a fixed token at the start, middle and end."""
        n = self.active_users()
        out = {}
        positions = {"start": 50, "middle": n // 2, "end": n - 51}
        for label, after in positions.items():
            token = self.page_token_after(after)
            url = f"{self.user_base}/v1/users?pageSize=50&pageToken={token}"
            reply = http("GET", url, token=self.admin_token)
            if len(reply.get("users", [])) != 50:
                raise BenchError(f"ListUsers at {label} returned {len(reply.get('users', []))} users")
            r = self.wrk_load(f"ListUsers page at {label} ({group})", group, url,
                              ["auth-service", "user-service"], token=self.admin_token,
                              route="/v1/users")
            r.extra["rows_before_page"] = after
            out[label] = r
        return out

    def argon2_rate(self) -> dict[str, Any]:
        out = run_tool(
            [str(self.bins / BIN_NAMES["argon2-rate"]), f"{self.s.argon_seconds:g}"],
            self.s.argon_seconds * 2 + 120,
            "argon2-rate",
        )
        rate = json.loads(out)
        log(
            f"raw Argon2id: {rate['one_thread']['per_second']:.1f} hashes/s on 1 thread, "
            f"{rate['all_cores']['per_second']:.1f} on {rate['cores']} cores"
        )
        return cast(dict[str, Any], rate)

    def login_load(self) -> Result:
        emails = ", ".join(json.dumps(e) for e in self.login_emails)

        def script() -> str:
            return LOGIN_LUA.replace("@EMAILS@", emails).replace("@PASSWORD@", PASSWORD)

        return self.wrk_load("POST /v1/auth/login", "argon2", f"{self.user_base}/v1/auth/login",
                             ["auth-service", "user-service"], route="/v1/auth/login",
                             script=script, conns=self.s.argon_conns, threads=1)

    def signup_load(self) -> Result:
        def script() -> str:
            return SIGNUP_LUA.replace("@NONCE@", secrets.token_hex(4)).replace(
                "@PASSWORD@", PASSWORD)

        return self.wrk_load("POST /v1/users (sign-up)", "argon2", f"{self.user_base}/v1/users",
                             ["auth-service", "user-service"], route="/v1/users", script=script,
                             conns=self.s.argon_conns, threads=1)

    def perf_record(self, seconds: float) -> None:
        """perf samples of both services while the last workload's load runs again."""
        for name in ("auth-service", "user-service"):
            data = self.dir / f"perf-{name}.data"
            argv = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(data),
                    "-p", str(self.procs[name].pid), "--", "sleep", f"{seconds:g}"]
            self.perf[name] = str(data)
            self.perf_procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL))


LOGIN_LUA = """
-- POST /v1/auth/login cycling through the seeded users, so that no email has many attempts
-- in flight at once.
local emails = { @EMAILS@ }
local counter = 0
local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end
function init(args)
  counter = (thread_id or 0) * 7
end
function request()
  counter = counter + 1
  local email = emails[(counter % #emails) + 1]
  local body = '{"email":"' .. email .. '","password":"@PASSWORD@"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""

SIGNUP_LUA = """
-- POST /v1/users with a unique email per request: run nonce, thread id, per-thread counter.
local counter = 0
local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end
function request()
  counter = counter + 1
  local email = "su-@NONCE@-" .. (thread_id or 0) .. "-" .. counter .. "@example.com"
  local body = '{"email":"' .. email .. '","password":"@PASSWORD@","displayName":"Sign Up"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def uuid7(ms: int) -> str:
    """A UUID v7 text id for the Unix time `ms`, like `uuid::Uuid::now_v7()`."""
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= secrets.randbits(12) << 64
    value |= 0b10 << 62
    value |= secrets.randbits(62)
    return str(uuid.UUID(int=value))


# ---------------------------------------------------------------------------------------------
# Report


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def build_report(bench: Bench, phases: dict[str, Any]) -> tuple[str, list[tuple[str, bool, str]]]:
    results = {r.name: r for r in bench.results}
    s = bench.s
    lines: list[str] = []
    add = lines.append
    add("# grimOS services benchmark")
    add("")
    add(
        f"{'Quick (smoke) run' if s.quick else 'Full run'}: {s.duration:g} s per workload after "
        f"a {s.warmup:g} s warm-up run; gRPC: h2load -t1 -c{s.grpc_clients} -m{s.grpc_streams}; "
        f"HTTP: wrk -t{s.http_threads} -c{s.http_conns}; Argon2-bound: wrk -t1 -c{s.argon_conns}. "
        f"Loopback, {os.cpu_count()} CPUs, services with RUST_LOG=warn, "
        f"databases on {bench.store.name}. "
        f"CPU = utime+stime of the process per 1,000 requests; RSS = VmRSS after the run."
    )
    add("")
    add("## Throughput and latency")
    add("")
    add("| workload | tool | req/s | floor req/s | ratio | p50 ms | p99 ms | CPU s/1k: auth | "
        "CPU s/1k: user | CPU s/1k: floor | CPU s/1k: load tool | context switches/req auth/user "
        "(floor) | RSS MiB auth/user | errors |")
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in bench.results:
        floor = results.get(r.floor) if r.floor else None
        ratio = r.req_s / floor.req_s if floor and floor.req_s else None
        floor_cpu = next((v for k, v in r.cpu_per_1k.items() if k.startswith("floor")), None)
        rss = "/".join(fmt(r.rss_mib.get(k), 1) for k in ("auth-service", "user-service")
                       if k in r.rss_mib) or "-"
        switches = "/".join(fmt(v, 2) for v in r.switches_per_req.values()) or "-"
        add(
            f"| {r.name} | {r.tool} | {fmt(r.req_s, 0)} | {fmt(floor.req_s, 0) if floor else '-'} "
            f"| {fmt(ratio)} | {fmt(r.p50_ms)} | {fmt(r.p99_ms)} "
            f"| {fmt(r.cpu_per_1k.get('auth-service'), 3)} | {fmt(r.cpu_per_1k.get('user-service'), 3)} "
            f"| {fmt(floor_cpu, 3)} | {fmt(r.loadgen_cpu_per_1k, 3)} | {switches} | {rss} "
            f"| {r.errors} |"
        )
    add("")

    argon = phases.get("argon2")
    if argon:
        add("## Argon2-bound workloads")
        add("")
        one = argon["one_thread"]["per_second"]
        allc = argon["all_cores"]["per_second"]
        slots = max(1, (os.cpu_count() or 1) - 1)
        add(
            f"Raw Argon2id (m=19456 KiB, t=2, p=1) in this run: {one:.1f} hashes/s on 1 thread, "
            f"{allc:.1f} hashes/s on {argon['cores']} threads. auth-service hashes at most "
            f"AUTH_HASH_CONCURRENCY at once (default CPUs-1 = {slots} here), so its ceiling is "
            f"about {one * slots:.1f}/s."
        )
        add("")
        add("| workload | req/s | ÷ raw 1-thread rate | ÷ raw all-cores rate | ÷ ceiling (slots × 1-thread) | p50 ms | p99 ms |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        for name in ("POST /v1/auth/login", "POST /v1/users (sign-up)"):
            hashed = results.get(name)
            if hashed:
                add(f"| {name} | {fmt(hashed.req_s, 1)} | {fmt(hashed.req_s / one)} "
                    f"| {fmt(hashed.req_s / allc)} | {fmt(hashed.req_s / (one * slots))} "
                    f"| {fmt(hashed.p50_ms)} | {fmt(hashed.p99_ms)} |")
        add("")

    scaling = phases.get("scaling")
    if scaling:
        add("## Scaling: 1k vs 100k users stored")
        add("")
        add("| read | req/s 1k | req/s 100k | change | CPU s/1k 1k (auth+user) | CPU s/1k 100k | change |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        for name, (a, b) in scaling.items():
            ca = sum(a.cpu_per_1k.values())
            cb = sum(b.cpu_per_1k.values())
            add(f"| {name} | {fmt(a.req_s, 0)} | {fmt(b.req_s, 0)} | {b.req_s / a.req_s - 1:+.1%} "
                f"| {fmt(ca, 3)} | {fmt(cb, 3)} | {(cb / ca - 1) if ca else 0:+.1%} |")
        add("")
    lists = phases.get("lists")
    if lists:
        add("## ListUsers deep pages (HTTP, 50 users per page, fixed page token)")
        add("")
        add("| users stored | position (rows before page) | req/s | p99 ms | CPU s/1k (user-service) | vs start |")
        add("|---|---|---:|---:|---:|---:|")
        for size, by_pos in lists.items():
            start = by_pos["start"]
            for pos, r in by_pos.items():
                cpu = r.cpu_per_1k.get("user-service")
                base = start.cpu_per_1k.get("user-service")
                add(f"| {size} | {pos} ({r.extra['rows_before_page']}) | {fmt(r.req_s, 0)} "
                    f"| {fmt(r.p99_ms)} | {fmt(cpu, 3)} | "
                    f"{(cpu / base - 1) if cpu and base else 0:+.1%} |")
        add("")

    logs = phases.get("log_check")
    if logs:
        add("## Logging: RUST_LOG=info (the default) vs warn")
        add("")
        add("Both services restarted with RUST_LOG=info; compared with the last warn run of the "
            "same workload. CPU per request is the steadier figure on a busy machine.")
        add("")
        add("| workload | req/s warn | req/s info | change | CPU s/1k warn (auth+user) | CPU s/1k "
            "info | change | log bytes per request (info) |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, (warn, info, per_req) in logs.items():
            cw = sum(warn.cpu_per_1k.values())
            ci = sum(info.cpu_per_1k.values())
            add(f"| {name} | {fmt(warn.req_s, 0)} | {fmt(info.req_s, 0)} | "
                f"{info.req_s / warn.req_s - 1:+.1%} | {fmt(cw, 3)} | {fmt(ci, 3)} | "
                f"{(ci / cw - 1) if cw else 0:+.1%} | {fmt(per_req, 1)} |")
        add("")

    cache = phases.get("cache_check")
    if cache:
        add("## user-service's validation cache: on (AUTH_VALIDATION_CACHE_TTL=1s, the default) vs off")
        add("")
        add("Both services restarted with AUTH_VALIDATION_CACHE_TTL=0s, so every request makes "
            "the ValidateToken round trip to auth-service.")
        add("")
        add("| workload | req/s cached | ratio to floor | req/s uncached | ratio to floor | "
            "p99 ms uncached | CPU s/1k uncached (auth / user) |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        for name, (cached, uncached, floor) in cache.items():
            cpu = uncached.cpu_per_1k
            add(f"| {name} | {fmt(cached.req_s, 0)} | {cached.req_s / floor.req_s:.2f} | "
                f"{fmt(uncached.req_s, 0)} | {uncached.req_s / floor.req_s:.2f} | "
                f"{fmt(uncached.p99_ms)} | {fmt(cpu.get('auth-service'), 3)} / "
                f"{fmt(cpu.get('user-service'), 3)} |")
        add("")

    perf = phases.get("perf")
    if perf:
        add("## perf: where the services spend CPU under GET /v1/users/me (1k users)")
        add("")
        add("`perf record -e cpu-clock -g` on each service for one measured run "
            "(files perf-*.txt beside this report have more).")
        add("")
        for name, text in perf.items():
            add("```")
            add(text)
            add("```")
            add("")

    add("## Processes")
    add("")
    add("| process | ready ms (spawn → first healthy) | idle RSS MiB (after ready) | RSS MiB after "
        f"seeding ({2 + LOGIN_USERS} sign-ups + 2 logins) | peak RSS MiB through the reads | peak RSS "
        "MiB at the end (VmHWM) |")
    add("|---|---:|---:|---:|---:|---:|")
    for name, info in phases["procs"].items():
        add(f"| {name} | {fmt(info.get('ready_ms'), 0)} | {fmt(info.get('idle_rss_mib'), 1)} "
            f"| {fmt(info.get('rss_after_seed_mib'), 1)} | {fmt(info.get('peak_rss_reads_mib'), 1)} "
            f"| {fmt(info.get('peak_rss_mib'), 1)} |")
    add("")

    # Targets
    targets: list[tuple[str, bool, str]] = []

    def ratio_of(name: str) -> float | None:
        r = results.get(name)
        f = results.get(r.floor) if r and r.floor else None
        return r.req_s / f.req_s if r and f and f.req_s else None

    reads = phases.get("reads_1k", {})
    for key, target in (("ValidateToken", TARGET_VALIDATE_RATIO),
                        ("GetCurrentUser", TARGET_CURRENT_USER_RATIO),
                        ("GET /v1/users/me", TARGET_ME_RATIO)):
        r = reads.get(key)
        ratio = ratio_of(r.name) if r else None
        if ratio is not None:
            targets.append((f"{key} ≥ {target}× its floor", ratio >= target, f"{ratio:.2f}×"))
    errors = sum(r.errors for r in bench.results)
    targets.append(("zero errors", errors == 0, f"{errors} errors"))
    half = phases.get("half_peak")
    if half:
        ok = half.p99_ms is not None and half.p99_ms <= TARGET_HALF_PEAK_P99_MS
        targets.append((
            f"p99 of GET /v1/users/me at half peak ≤ {TARGET_HALF_PEAK_P99_MS:g} ms",
            ok,
            f"{fmt(half.p99_ms)} ms at {half.req_s:,.0f} req/s "
            f"(target rate {half.extra['target_rate']:,.0f})",
        ))
    for name in ("auth-service", "user-service"):
        info = phases["procs"].get(name, {})
        if info.get("idle_rss_mib") is not None:
            targets.append((f"{name} idle RSS ≤ {TARGET_IDLE_RSS_MIB:g} MiB",
                            info["idle_rss_mib"] <= TARGET_IDLE_RSS_MIB,
                            f"{info['idle_rss_mib']:.1f} MiB"))
        if info.get("peak_rss_mib") is not None:
            targets.append((f"{name} RSS under load ≤ {TARGET_LOAD_RSS_MIB:g} MiB",
                            info["peak_rss_mib"] <= TARGET_LOAD_RSS_MIB,
                            f"{info['peak_rss_mib']:.1f} MiB peak (VmHWM)"))
        if info.get("ready_ms") is not None:
            targets.append((f"{name} ready ≤ {TARGET_READY_MS:g} ms", info["ready_ms"] <= TARGET_READY_MS,
                            f"{info['ready_ms']:.0f} ms"))
    if scaling:
        for name, (a, b) in scaling.items():
            change = b.req_s / a.req_s - 1
            targets.append((f"100k users: {name} within 10% of 1k", change >= -TARGET_SCALING,
                            f"{change:+.1%} req/s"))
    if lists:
        for size, by_pos in lists.items():
            base = by_pos["start"].cpu_per_1k.get("user-service") or 0
            worst = max((r.cpu_per_1k.get("user-service") or 0) for r in by_pos.values())
            growth = worst / base - 1 if base else 0
            targets.append((f"ListUsers cost flat across the table ({size}, CPU/req within 10%)",
                            growth <= TARGET_SCALING, f"{growth:+.1%} worst vs start"))

    add("## Targets")
    add("")
    add("| target | result | measured |")
    add("|---|---|---|")
    for name, ok, measured in targets:
        add(f"| {name} | {mark(ok)} | {measured} |")
    add("")
    return "\n".join(lines), targets


# ---------------------------------------------------------------------------------------------
# Main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-2 s per workload, 1k users only")
    parser.add_argument("--out", default=None, help="Markdown report (default target/bench/report.md)")
    parser.add_argument("--duration", type=float, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, help="seconds of the warm-up run before each")
    parser.add_argument("--grpc-clients", type=int, default=4, help="h2load connections (-c)")
    parser.add_argument("--grpc-streams", type=int, default=16, help="h2load streams per connection (-m)")
    parser.add_argument("--http-conns", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument("--http-threads", type=int, default=1, help="wrk threads (-t)")
    parser.add_argument("--argon-conns", type=int, default=4, help="wrk connections for login and sign-up")
    parser.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    parser.add_argument("--no-log-check", action="store_true", help="skip the RUST_LOG=info comparison")
    parser.add_argument("--perf", action="store_true",
                        help="perf record both services during GET /v1/users/me (1k) and save the top symbols")
    parser.add_argument("--bad-token", choices=["grpc", "http"],
                        help="self-test: load ValidateToken (grpc) or GET /v1/users/me (http) with "
                        "a garbage token; the run must fail")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--postgres", metavar="URL",
                        help="run both services on PostgreSQL: a new database on the server of "
                        "this postgres:// URL (its role needs CREATEDB), dropped at the end; "
                        "the report goes to target/bench/report-postgres.md")
    args = parser.parse_args()

    quick = args.quick
    settings = Settings(
        duration=args.duration or (2.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        grpc_clients=args.grpc_clients,
        grpc_streams=args.grpc_streams,
        http_conns=args.http_conns,
        http_threads=args.http_threads,
        argon_conns=args.argon_conns,
        argon_seconds=1.0 if quick else 3.0,
        quick=quick,
    )
    for tool in ("h2load", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (apt-get install nghttp2-client wrk)", file=sys.stderr)
            return 2

    def on_signal(signum: int, _frame: Any) -> None:
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    target_dir = cargo_target_dir()
    default_name = "report-postgres.md" if args.postgres else "report.md"
    out_md = Path(args.out) if args.out else target_dir / "bench" / default_name
    out_md.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="grimos-bench-"))
    bench: Bench | None = None
    try:
        if not args.no_build:
            build()
        bins = workdir / "bin"
        bins.mkdir()
        for name, copy in BIN_NAMES.items():
            source = target_dir / "release" / name
            if not source.exists():
                raise BenchError(f"{source} is missing: build it (drop --no-build)")
            shutil.copy2(source, bins / copy)
        bench = Bench(args, settings, workdir, bins)
        phases = run_bench(bench, args)
        report, targets = build_report(bench, phases)
        print(report)
        out_md.write_text(report + "\n")
        raw = {
            "settings": settings.__dict__,
            "results": [r.__dict__ for r in bench.results],
            "argon2": phases.get("argon2"),
            "processes": phases["procs"],
            "targets": [{"target": t, "pass": ok, "measured": m} for t, ok, m in targets],
            "perf": phases.get("perf"),
        }
        for name, text in (phases.get("perf") or {}).items():
            (out_md.parent / f"perf-{name}.txt").write_text(text + "\n")
        out_json = out_md.with_suffix(".json")
        out_json.write_text(json.dumps(raw, indent=2, default=str) + "\n")
        missed = [t for t, ok, _ in targets if not ok]
        print(f"\nReport: {out_md} (raw results: {out_json})")
        if missed:
            print(f"Targets missed ({len(missed)}; not an error):", *("  - " + t for t in missed), sep="\n")
            if args.postgres:
                print("(The targets are the SQLite system's; docs/BENCHMARKS.md#postgresql says "
                      "what bounds PostgreSQL on one 2-core machine.)")
        else:
            print("All targets met.")
        return 0
    except BenchError as e:
        print(f"\nBENCH FAILED: {e}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"\nbench interrupted ({e}); stopping services", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench:
            for p in bench.perf_procs:
                if p.poll() is None:
                    p.kill()
            for proc in bench.procs.values():
                proc.stop()
            try:
                bench.store.close()
            except BenchError as e:
                print(f"bench: could not drop the benchmark database: {e}", file=sys.stderr)
        if args.keep:
            print(f"data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


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


def run_bench(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    s = bench.s
    phases: dict[str, Any] = {}
    floors = {"grpc": bench.start_floor("floor-grpc"), "http": bench.start_floor("floor-http")}
    log(f"floors: gRPC {floors['grpc']}, HTTP {floors['http']}")
    bench.start_services("warn")
    first_ready = {n: (bench.procs[n].ready_ms, bench.procs[n].idle_rss_kib)
                   for n in ("auth-service", "user-service")}
    bench.seed_real_users()
    snapshots: dict[str, dict[str, int]] = {"after_seed": {}, "after_reads": {}}
    for name in ("auth-service", "user-service"):
        snapshots["after_seed"][name] = bench.procs[name].status().get("VmRSS", 0)

    if args.bad_token:
        self_test(bench, args.bad_token)

    bench.bulk_seed(1000)
    reads_1k = bench.reads("1k users", floors)
    phases["reads_1k"] = reads_1k

    if args.perf:
        perf_seconds = s.duration
        bench.perf_record(perf_seconds)
        bench.wrk_load("GET /v1/users/me (1k users, under perf)", "perf",
                       f"{bench.user_base}/v1/users/me", ["auth-service", "user-service"],
                       token=bench.user_token, route="/v1/users/me")
        for p in bench.perf_procs:
            p.wait(timeout=perf_seconds + 60)
        phases["perf"] = perf_reports(bench)

    me = reads_1k["GET /v1/users/me"]
    half = bench.rate_load("GET /v1/users/me at half peak (1k users)", "latency",
                           f"{bench.user_base}/v1/users/me", me.req_s / 2, bench.user_token,
                           ["auth-service", "user-service"])
    phases["half_peak"] = half
    lists = {"1k": bench.list_pages("1k users")}

    if not s.quick:
        bench.bulk_seed(100_000)
        reads_100k = bench.reads("100k users", None)
        phases["scaling"] = {k: (reads_1k[k], reads_100k[k]) for k in reads_100k}
        lists["100k"] = bench.list_pages("100k users")
    phases["lists"] = lists
    for name in ("auth-service", "user-service"):
        snapshots["after_reads"][name] = bench.procs[name].status().get("VmHWM", 0)

    phases["argon2"] = bench.argon2_rate()
    bench.login_load()
    bench.signup_load()

    procs: dict[str, dict[str, Any]] = {}
    for name, proc in bench.procs.items():
        proc.status()
        ready_ms, idle = first_ready.get(name, (proc.ready_ms, proc.idle_rss_kib))
        procs[name] = {
            "ready_ms": ready_ms,
            "idle_rss_mib": idle / 1024 if idle else None,
            "peak_rss_mib": proc.peak_hwm_kib / 1024,
        }
        if name in snapshots["after_seed"]:
            procs[name]["rss_after_seed_mib"] = snapshots["after_seed"][name] / 1024
            procs[name]["peak_rss_reads_mib"] = snapshots["after_reads"][name] / 1024
    phases["procs"] = procs

    if not s.quick and not args.no_log_check:
        phases["log_check"] = log_check(bench, phases)
    if not s.quick:
        phases["cache_check"] = cache_check(bench, phases)
    return phases


def self_test(bench: Bench, kind: str) -> None:
    """Loads with a garbage token: the checks must turn the errors into a failed run."""
    garbage = "garbage." + secrets.token_urlsafe(240)
    log(f"self-test ({kind}): loading with a garbage token; the harness must fail")
    if kind == "grpc":
        good = auth_pb2.ValidateTokenRequest(access_token=bench.user_token).SerializeToString()
        bad = auth_pb2.ValidateTokenRequest(access_token=garbage).SerializeToString()
        # The probe uses the real token (so it passes and gives the success frame size); the
        # load sends the garbage one: every call is a trailers-only UNAUTHENTICATED, HTTP 200.
        bench.grpc_load("ValidateToken (garbage token)", "self-test", bench.auth_addr,
                        VALIDATE_PATH, bad, ["auth-service"], probe=(good, None))
    else:
        bench.wrk_load("GET /v1/users/me (garbage token)", "self-test",
                       f"{bench.user_base}/v1/users/me", ["auth-service", "user-service"],
                       token=garbage, route="/v1/users/me")
    raise BenchError("self-test: the garbage token was NOT detected")


def log_check(bench: Bench, phases: dict[str, Any]) -> dict[str, Any]:
    """Restarts both services with RUST_LOG=info and repeats two reads."""
    bench.stop_services()
    for name in ("auth-service", "user-service"):
        bench.procs.pop(name)
    bench.start_services("info")
    sizes = {n: (bench.dir / f"{n}.log").stat().st_size for n in ("auth-service", "user-service")}
    validate_msg = auth_pb2.ValidateTokenRequest(access_token=bench.user_token).SerializeToString()
    both = ["auth-service", "user-service"]
    out: dict[str, Any] = {}
    scaling = phases.get("scaling") or {}
    warm_v = scaling.get("ValidateToken", (None, phases["reads_1k"]["ValidateToken"]))[1]
    warm_me = scaling.get("GET /v1/users/me", (None, phases["reads_1k"]["GET /v1/users/me"]))[1]
    r = bench.grpc_load("ValidateToken (RUST_LOG=info)", "logging", bench.auth_addr, VALIDATE_PATH,
                        validate_msg, both)
    grown = sum((bench.dir / f"{n}.log").stat().st_size - sizes[n] for n in sizes)
    out["ValidateToken"] = (warm_v, r, grown / max(1, r.requests))
    sizes = {n: (bench.dir / f"{n}.log").stat().st_size for n in sizes}
    r = bench.wrk_load("GET /v1/users/me (RUST_LOG=info)", "logging", f"{bench.user_base}/v1/users/me",
                       both, token=bench.user_token, route="/v1/users/me")
    grown = sum((bench.dir / f"{n}.log").stat().st_size - sizes[n] for n in sizes)
    out["GET /v1/users/me"] = (warm_me, r, grown / max(1, r.requests))
    return out


def cache_check(bench: Bench, phases: dict[str, Any]) -> dict[str, Any]:
    """Restarts both services with user-service's validation cache off
    (AUTH_VALIDATION_CACHE_TTL=0s: a ValidateToken round trip on every request) and repeats
    the two reads that validate a token, to show what the cache saves."""
    bench.stop_services()
    for name in ("auth-service", "user-service"):
        bench.procs.pop(name)
    bench.start_services("warn", {"AUTH_VALIDATION_CACHE_TTL": "0s"})
    current_msg = user_pb2.GetCurrentUserRequest().SerializeToString()
    both = ["auth-service", "user-service"]
    reads = phases["reads_1k"]
    out: dict[str, Any] = {}
    r = bench.grpc_load("GetCurrentUser gRPC (no validation cache)", "no-cache",
                        f"127.0.0.1:{bench.user_port}", CURRENT_USER_PATH, current_msg, both,
                        token=bench.user_token, metrics=True)
    out["GetCurrentUser"] = (reads["GetCurrentUser"], r, reads["floor GetCurrentUser"])
    r = bench.wrk_load("GET /v1/users/me (no validation cache)", "no-cache",
                       f"{bench.user_base}/v1/users/me", both, token=bench.user_token,
                       route="/v1/users/me")
    out["GET /v1/users/me"] = (reads["GET /v1/users/me"], r, reads["floor GET /v1/users/me"])
    return out


def perf_reports(bench: Bench) -> dict[str, str]:
    """Where each sampled service's CPU went: by thread, by binary/library, top symbols."""
    reports = {}
    for name, data in bench.perf.items():
        parts = []
        for title, sort, limit in (
            ("by thread", "comm", 10),
            ("by binary or library", "dso", 10),
            ("top symbols", "dso,symbol", 25),
        ):
            argv = ["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                    "--sort", sort, "--percent-limit", "0.5"]
            try:
                text = run_tool(argv, 300, "perf report")
            except BenchError as e:
                text = str(e)
            rows = []
            for line in text.splitlines():
                if not line.strip() or line.startswith("#"):
                    continue
                line = re.sub(r"\s+-\s+-\s*$", "", line.rstrip())
                rows.append(re.sub(r"\s{2,}", "  ", line.strip()))
            parts.append(f"{name}, {title}:\n" + "\n".join("  " + r for r in rows[:limit]))
        reports[name] = "\n".join(parts)
    return reports


if __name__ == "__main__":
    sys.exit(main())
