"""The order of a run: floors and services up, users seeded, the reads at 1k (and, in a full
run, 100k) users, the fixed-rate latency run, ListUsers pages, the Argon2-bound workloads, in
a full run the restarts that compare RUST_LOG=info and the validation cache turned off, and
the restarts that compare span export off, at 100 % and at 1 % sampling. Returns the phases
the report is built from."""

from __future__ import annotations

import argparse
import re
import secrets
import time
from typing import Any

from grimos.auth.v1 import auth_pb2
from grimos.user.v1 import user_pb2

from .common import CURRENT_USER_PATH, SERVICES, TRACING, VALIDATE_PATH, BenchError, log
from .processes import run_tool
from .revocation import revocation_latency
from .workloads import BOTH, Bench


def run_bench(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    s = bench.s
    system, users, loads = bench.system, bench.users, bench.loads
    phases: dict[str, Any] = {}
    floors = {"grpc": system.start_floor("floor-grpc"), "http": system.start_floor("floor-http")}
    log(f"floors: gRPC {floors['grpc']}, HTTP {floors['http']}")
    system.start_services("warn")
    first_ready = {n: (system.procs[n].ready_ms, system.procs[n].idle_rss_kib) for n in SERVICES}
    users.seed_real_users()
    snapshots: dict[str, dict[str, int]] = {"after_seed": {}, "after_reads": {}}
    for name in SERVICES:
        snapshots["after_seed"][name] = system.procs[name].status().get("VmRSS", 0)

    if args.bad_token:
        self_test(bench, args.bad_token)

    users.bulk_seed(1000)
    reads_1k = bench.reads("1k users", floors)
    phases["reads_1k"] = reads_1k

    if args.perf:
        perf_seconds = s.duration
        bench.perf_record(perf_seconds)
        loads.wrk_load("GET /v1/users/me (1k users, under perf)", "perf",
                       f"{system.user_base}/v1/users/me", BOTH,
                       token=users.user_token, route="/v1/users/me")
        for p in bench.perf_procs:
            p.wait(timeout=perf_seconds + 60)
        phases["perf"] = perf_reports(bench)

    me = reads_1k["GET /v1/users/me"]
    half = loads.rate_load("GET /v1/users/me at half peak (1k users)", "latency",
                           f"{system.user_base}/v1/users/me", me.req_s / 2, users.user_token,
                           BOTH)
    phases["half_peak"] = half
    lists = {"1k": bench.list_pages("1k users")}

    if not s.quick:
        users.bulk_seed(100_000)
        reads_100k = bench.reads("100k users", None)
        phases["scaling"] = {k: (reads_1k[k], reads_100k[k]) for k in reads_100k}
        lists["100k"] = bench.list_pages("100k users")
    phases["lists"] = lists
    for name in SERVICES:
        snapshots["after_reads"][name] = system.procs[name].status().get("VmHWM", 0)

    samples = args.revocation_samples or (20 if s.quick else REVOCATION_SAMPLES)
    phases["revocation"] = revocation_latency(bench, samples)
    phases["argon2"] = bench.argon2_rate()
    bench.login_load()
    bench.signup_load()

    procs: dict[str, dict[str, Any]] = {}
    for name, proc in system.procs.items():
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
        phases["local_check"] = cache_check(bench, phases, LOCAL_NO_CACHE, "local-no-cache")
        phases["cache_check"] = cache_check(bench, phases, ROUND_TRIP, "no-cache")
    if not args.no_tracing_check:
        phases["tracing_check"] = tracing_check(bench)
    return phases


def self_test(bench: Bench, kind: str) -> None:
    """Loads with a garbage token: the checks must turn the errors into a failed run."""
    garbage = "garbage." + secrets.token_urlsafe(240)
    log(f"self-test ({kind}): loading with a garbage token; the harness must fail")
    if kind == "grpc":
        good = auth_pb2.ValidateTokenRequest(access_token=bench.users.user_token).SerializeToString()
        bad = auth_pb2.ValidateTokenRequest(access_token=garbage).SerializeToString()
        # The probe uses the real token (so it passes and gives the success frame size); the
        # load sends the garbage one: every call is a trailers-only UNAUTHENTICATED, HTTP 200.
        bench.loads.grpc_load("ValidateToken (garbage token)", "self-test", bench.system.auth_addr,
                              VALIDATE_PATH, bad, ["auth-service"], probe=(good, None))
    else:
        bench.loads.wrk_load("GET /v1/users/me (garbage token)", "self-test",
                             f"{bench.system.user_base}/v1/users/me", BOTH,
                             token=garbage, route="/v1/users/me")
    raise BenchError("self-test: the garbage token was NOT detected")


def log_check(bench: Bench, phases: dict[str, Any]) -> dict[str, Any]:
    """Restarts both services with RUST_LOG=info and repeats two reads."""
    system, loads = bench.system, bench.loads
    system.restart_services("info")

    def log_sizes() -> dict[str, int]:
        return {n: (bench.dir / f"{n}.log").stat().st_size for n in SERVICES}

    def grown_since(sizes: dict[str, int]) -> int:
        return sum(size - sizes[n] for n, size in log_sizes().items())

    validate_msg = auth_pb2.ValidateTokenRequest(access_token=bench.users.user_token).SerializeToString()
    out: dict[str, Any] = {}
    scaling = phases.get("scaling") or {}
    warm_v = scaling.get("ValidateToken", (None, phases["reads_1k"]["ValidateToken"]))[1]
    warm_me = scaling.get("GET /v1/users/me", (None, phases["reads_1k"]["GET /v1/users/me"]))[1]
    sizes = log_sizes()
    r = loads.grpc_load("ValidateToken (RUST_LOG=info)", "logging", system.auth_addr,
                        VALIDATE_PATH, validate_msg, BOTH)
    out["ValidateToken"] = (warm_v, r, grown_since(sizes) / max(1, r.requests))
    sizes = log_sizes()
    r = loads.wrk_load("GET /v1/users/me (RUST_LOG=info)", "logging",
                       f"{system.user_base}/v1/users/me", BOTH, token=bench.users.user_token,
                       route="/v1/users/me")
    out["GET /v1/users/me"] = (warm_me, r, grown_since(sizes) / max(1, r.requests))
    return out


# Revocations timed per path in a full run (a quick run times 20).
REVOCATION_SAMPLES = 200
# user-service verifying tokens itself, without the validation cache.
LOCAL_NO_CACHE = {"AUTH_VALIDATION_CACHE_TTL": "0s"}
# A ValidateToken round trip on every request.
ROUND_TRIP = {"AUTH_VALIDATION_CACHE_TTL": "0s", "AUTH_LOCAL_VERIFICATION": "false"}


def cache_check(bench: Bench, phases: dict[str, Any], env: dict[str, str],
                label: str) -> dict[str, Any]:
    """Restarts both services with `env` (the validation cache off, and local verification on
    or off) and repeats the two reads that validate a token."""
    system, loads, token = bench.system, bench.loads, bench.users.user_token
    system.restart_services("warn", env)
    current_msg = user_pb2.GetCurrentUserRequest().SerializeToString()
    reads = phases["reads_1k"]
    out: dict[str, Any] = {}
    r = loads.grpc_load(f"GetCurrentUser gRPC ({label})", label,
                        system.user_addr, CURRENT_USER_PATH, current_msg, BOTH,
                        token=token, metrics=True)
    out["GetCurrentUser"] = (reads["GetCurrentUser"], r, reads["floor GetCurrentUser"])
    r = loads.wrk_load(f"GET /v1/users/me ({label})", label,
                       f"{system.user_base}/v1/users/me", BOTH, token=token,
                       route="/v1/users/me")
    out["GET /v1/users/me"] = (reads["GET /v1/users/me"], r, reads["floor GET /v1/users/me"])
    return out


def tracing_check(bench: Bench) -> dict[str, Any]:
    """GET /v1/users/me with span export off, then on to the OTLP span sink with every trace
    sampled and with 1 %, both services restarted for each with those settings (a restart
    flushes the spans of the run before, so the sink's count covers each run whole)."""
    system, loads, token = bench.system, bench.loads, bench.users.user_token
    endpoint, count_file = system.start_sink()

    def spans() -> int:
        time.sleep(0.3)  # the sink rewrites its count every 100 ms
        deadline = time.monotonic() + 5
        while not count_file.exists():
            if time.monotonic() > deadline:
                raise BenchError("the span sink wrote no count")
            time.sleep(0.05)
        return int(count_file.read_text() or "0")

    out: dict[str, Any] = {}
    pending: tuple[str, Any, int] | None = None
    for label, ratio in [*TRACING.items(), ("end", None)]:
        extra = {} if ratio is None else {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": ratio,
        }
        # Stopped, the services export what is left of the run before.
        system.restart_services("warn", extra)
        if pending:
            done, r, before = pending
            out[done] = (r, spans() - before)
        if label == "end":
            break
        before = spans()
        r = loads.wrk_load(f"GET /v1/users/me (tracing {label})", "tracing",
                           f"{system.user_base}/v1/users/me", [*SERVICES, "otlp-sink"],
                           token=token, route="/v1/users/me")
        pending = (label, r, before)
    sampled = out["100 %"][1]
    if out["off"][1] or not sampled:
        raise BenchError(f"spans received: {out['off'][1]} with export off, {sampled} at 100 %")
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
