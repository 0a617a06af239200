"""What every part of the harness shares: the fixed names and targets, the run's settings, one
workload's result, the two exceptions that end a run, and the progress log line.

Nothing here starts a process or touches the network."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The checkout: bench/harness/common.py is three levels below it.
ROOT = Path(__file__).resolve().parent.parent.parent

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
TARGET_LOCAL_CURRENT_USER_RATIO = 0.55
TARGET_LOCAL_ME_RATIO = 0.45
TARGET_REVOCATION_P99_MS = 100.0

# The two services, in the order they start (auth-service first: user-service calls it).
SERVICES = ("auth-service", "user-service")

# The replicas the revocation probe adds, in the order they start: a second auth-service on the
# same database, a second user-service on the first auth-service, and a third on the second.
REPLICAS = ("auth-service-2", "user-service-2", "user-service-3")

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
    "otlp-sink": "otlp-sink",
}

# The tracing workloads' sampling settings, by label: spans off (no endpoint), and exported to
# the span sink with every trace sampled and with 1 % (OTEL_TRACES_SAMPLER's ratio sampler).
TRACING = {
    "off": None,
    "100 %": "1.0",
    "1 %": "0.01",
}


class BenchError(Exception):
    """A failed request, a crashed service or a broken tool: the run is invalid."""


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop, clean up, exit non-zero."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Settings:
    """How hard and how long every workload is loaded (the command line's choices)."""

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
    """One measured workload: the tool's figures and what the harness sampled around it."""

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
