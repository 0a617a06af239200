"""The Markdown report and the performance targets, from a finished run's results and phases.
Every table goes through `table`; a section is a heading, its intro paragraphs and one table.
Nothing here measures or runs anything."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from .common import (
    LOGIN_USERS,
    SERVICES,
    TARGET_CURRENT_USER_RATIO,
    TARGET_LOCAL_CURRENT_USER_RATIO,
    TARGET_LOCAL_ME_RATIO,
    TARGET_REVOCATION_P99_MS,
    TARGET_HALF_PEAK_P99_MS,
    TARGET_IDLE_RSS_MIB,
    TARGET_LOAD_RSS_MIB,
    TARGET_ME_RATIO,
    TARGET_READY_MS,
    TARGET_SCALING,
    TARGET_VALIDATE_RATIO,
    Result,
)
from .workloads import Bench

# One target: what it asks, whether the run met it, what was measured.
Target = tuple[str, bool, str]


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> list[str]:
    """A Markdown table: the first `left` columns are text (left-aligned), the rest numbers
    (right-aligned)."""
    align = ["---"] * left + ["---:"] * (len(header) - left)
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def section(
    title: str, intro: Sequence[str], header: Sequence[str], rows: Iterable[Sequence[str]],
    left: int = 1,
) -> list[str]:
    """`## title`, each intro paragraph, then the table, each followed by a blank line."""
    lines = [f"## {title}", ""]
    for paragraph in intro:
        lines += [paragraph, ""]
    return lines + table(header, rows, left) + [""]


def build_report(bench: Bench, phases: dict[str, Any]) -> tuple[str, list[Target]]:
    results = {r.name: r for r in bench.loads.results}
    s = bench.s
    lines = [
        "# grimOS services benchmark",
        "",
        f"{'Quick (smoke) run' if s.quick else 'Full run'}: {s.duration:g} s per workload after "
        f"a {s.warmup:g} s warm-up run; gRPC: h2load -t1 -c{s.grpc_clients} -m{s.grpc_streams}; "
        f"HTTP: wrk -t{s.http_threads} -c{s.http_conns}; Argon2-bound: wrk -t1 -c{s.argon_conns}. "
        f"Loopback, {os.cpu_count()} CPUs, services with RUST_LOG=warn, "
        f"databases on {bench.store.name}. "
        f"CPU = utime+stime of the process per 1,000 requests; RSS = VmRSS after the run.",
        "",
    ]
    lines += section("Throughput and latency", [], [
        "workload", "tool", "req/s", "floor req/s", "ratio", "p50 ms", "p99 ms",
        "CPU s/1k: auth", "CPU s/1k: user", "CPU s/1k: floor", "CPU s/1k: load tool",
        "context switches/req auth/user (floor)", "RSS MiB auth/user", "errors",
    ], (throughput_row(r, results) for r in bench.loads.results), left=2)

    argon = phases.get("argon2")
    if argon:
        one = argon["one_thread"]["per_second"]
        allc = argon["all_cores"]["per_second"]
        slots = max(1, (os.cpu_count() or 1) - 1)
        hashed = [results[n] for n in ("POST /v1/auth/login", "POST /v1/users (sign-up)")
                  if n in results]
        lines += section("Argon2-bound workloads", [
            f"Raw Argon2id (m=19456 KiB, t=2, p=1) in this run: {one:.1f} hashes/s on 1 thread, "
            f"{allc:.1f} hashes/s on {argon['cores']} threads. auth-service hashes at most "
            f"AUTH_HASH_CONCURRENCY at once (default CPUs-1 = {slots} here), so its ceiling is "
            f"about {one * slots:.1f}/s."
        ], [
            "workload", "req/s", "÷ raw 1-thread rate", "÷ raw all-cores rate",
            "÷ ceiling (slots × 1-thread)", "p50 ms", "p99 ms",
        ], ([r.name, fmt(r.req_s, 1), fmt(r.req_s / one), fmt(r.req_s / allc),
             fmt(r.req_s / (one * slots)), fmt(r.p50_ms), fmt(r.p99_ms)] for r in hashed))

    scaling = phases.get("scaling")
    if scaling:
        lines += section("Scaling: 1k vs 100k users stored", [], [
            "read", "req/s 1k", "req/s 100k", "change", "CPU s/1k 1k (auth+user)",
            "CPU s/1k 100k", "change",
        ], (compare_row(name, a, b) for name, (a, b) in scaling.items()))

    lists = phases.get("lists")
    if lists:
        lines += section("ListUsers deep pages (HTTP, 50 users per page, fixed page token)", [], [
            "users stored", "position (rows before page)", "req/s", "p99 ms",
            "CPU s/1k (user-service)", "vs start",
        ], (list_row(size, pos, r, by_pos["start"])
            for size, by_pos in lists.items() for pos, r in by_pos.items()), left=2)

    logs = phases.get("log_check")
    if logs:
        lines += section("Logging: RUST_LOG=info (the default) vs warn", [
            "Both services restarted with RUST_LOG=info; compared with the last warn run of the "
            "same workload. CPU per request is the steadier figure on a busy machine."
        ], [
            "workload", "req/s warn", "req/s info", "change", "CPU s/1k warn (auth+user)",
            "CPU s/1k info", "change", "log bytes per request (info)",
        ], ([*compare_row(name, warn, info), fmt(per_req, 1)]
            for name, (warn, info, per_req) in logs.items()))

    local = phases.get("local_check")
    if local:
        lines += section(
            "Local verification without the validation cache (AUTH_VALIDATION_CACHE_TTL=0s)",
            ["Both services restarted with the validation cache off; user-service verifies every "
             "token itself (AUTH_LOCAL_VERIFICATION=true, the default) and asks auth-service "
             "nothing."],
            ["workload", "req/s (defaults)", "ratio to floor", "req/s local, no cache",
             "ratio to floor", "p99 ms", "CPU s/1k (auth / user)"],
            restart_rows(local))

    revocation = phases.get("revocation")
    if revocation:
        lines += section(
            "Revocation latency: from the revocation returning to the first refused request",
            ["Each sample a fresh session, logged out once through the first user-service, "
             "then GET /v1/users/me in a loop until 401 on the user-service of the path: the "
             "same one; a second one on the same auth-service (it learns from its "
             "WatchRevocations stream); a third whose stream comes from a second auth-service "
             "on the same database (PostgreSQL NOTIFY, or SQLite's data_version)."],
            ["path", "samples", "p50 ms", "p99 ms", "max ms"],
            ([name, str(int(v["samples"])), fmt(v["p50_ms"]), fmt(v["p99_ms"]), fmt(v["max_ms"])]
             for name, v in revocation.items()))

    cache = phases.get("cache_check")
    if cache:
        lines += section(
            "A ValidateToken round trip per request: local verification and the cache off",
            ["Both services restarted with AUTH_VALIDATION_CACHE_TTL=0s and "
             "AUTH_LOCAL_VERIFICATION=false, so every request makes "
             "the ValidateToken round trip to auth-service."],
            ["workload", "req/s cached", "ratio to floor", "req/s uncached", "ratio to floor",
             "p99 ms uncached", "CPU s/1k uncached (auth / user)"],
            restart_rows(cache))

    tracing = phases.get("tracing_check")
    if tracing:
        off = tracing["off"][0]
        lines += section("Tracing: span export off vs on", [
            "GET /v1/users/me with both services restarted for each setting: no "
            "OTEL_EXPORTER_OTLP_ENDPOINT (off), then spans exported over OTLP/gRPC to the span "
            "sink (`otlp-sink`, the tracing tests' receiver, counting; on the same cores) with "
            "OTEL_TRACES_SAMPLER=parentbased_traceidratio at 1.0 and 0.01. Spans received include "
            "the warm-up's."
        ], [
            "sampling", "req/s", "vs off", "p99 ms", "CPU s/1k services (auth+user)", "vs off",
            "CPU s/1k sink", "spans received",
        ], (tracing_row(label, r, spans, off) for label, (r, spans) in tracing.items()))

    perf = phases.get("perf")
    if perf:
        lines += ["## perf: where the services spend CPU under GET /v1/users/me (1k users)", "",
                  "`perf record -e cpu-clock -g` on each service for one measured run "
                  "(files perf-*.txt beside this report have more).", ""]
        for text in perf.values():
            lines += ["```", text, "```", ""]

    lines += section("Processes", [], [
        "process", "ready ms (spawn → first healthy)", "idle RSS MiB (after ready)",
        f"RSS MiB after seeding ({2 + LOGIN_USERS} sign-ups + 2 logins)",
        "peak RSS MiB through the reads", "peak RSS MiB at the end (VmHWM)",
    ], ([name, fmt(info.get("ready_ms"), 0), fmt(info.get("idle_rss_mib"), 1),
         fmt(info.get("rss_after_seed_mib"), 1), fmt(info.get("peak_rss_reads_mib"), 1),
         fmt(info.get("peak_rss_mib"), 1)] for name, info in phases["procs"].items()))

    met = targets(bench, phases, results)
    lines += section("Targets", [], ["target", "result", "measured"],
                     ([name, mark(ok), measured] for name, ok, measured in met), left=3)
    return "\n".join(lines), met


def throughput_row(r: Result, results: dict[str, Result]) -> list[str]:
    """A workload beside its floor: rate, latency, CPU, switches, RSS."""
    floor = results.get(r.floor) if r.floor else None
    ratio = r.req_s / floor.req_s if floor and floor.req_s else None
    floor_cpu = next((v for k, v in r.cpu_per_1k.items() if k.startswith("floor")), None)
    rss = "/".join(fmt(r.rss_mib.get(k), 1) for k in SERVICES if k in r.rss_mib) or "-"
    switches = "/".join(fmt(v, 2) for v in r.switches_per_req.values()) or "-"
    return [
        r.name, r.tool, fmt(r.req_s, 0), fmt(floor.req_s, 0) if floor else "-", fmt(ratio),
        fmt(r.p50_ms), fmt(r.p99_ms), fmt(r.cpu_per_1k.get("auth-service"), 3),
        fmt(r.cpu_per_1k.get("user-service"), 3), fmt(floor_cpu, 3),
        fmt(r.loadgen_cpu_per_1k, 3), switches, rss, str(r.errors),
    ]


def tracing_row(label: str, r: Result, spans: int, off: Result) -> list[str]:
    """One sampling setting of the tracing workloads, with its ratios to span export off."""
    def services(x: Result) -> float:
        return sum(v for k, v in x.cpu_per_1k.items() if k in SERVICES)

    return [
        label, fmt(r.req_s, 0), f"{r.req_s / off.req_s:.2f}×", fmt(r.p99_ms),
        fmt(services(r), 3), f"{services(r) / services(off):.2f}×" if services(off) else "-",
        fmt(r.cpu_per_1k.get("otlp-sink"), 3), f"{spans:,}",
    ]


def compare_row(name: str, a: Result, b: Result) -> list[str]:
    """The same workload in two runs: req/s and total CPU per 1k of each, and the changes."""
    ca = sum(a.cpu_per_1k.values())
    cb = sum(b.cpu_per_1k.values())
    return [name, fmt(a.req_s, 0), fmt(b.req_s, 0), f"{b.req_s / a.req_s - 1:+.1%}",
            fmt(ca, 3), fmt(cb, 3), f"{(cb / ca - 1) if ca else 0:+.1%}"]


def list_row(size: str, pos: str, r: Result, start: Result) -> list[str]:
    """One ListUsers page position, its user-service CPU against the page at the start."""
    cpu = r.cpu_per_1k.get("user-service")
    base = start.cpu_per_1k.get("user-service")
    return [size, f"{pos} ({r.extra['rows_before_page']})", fmt(r.req_s, 0), fmt(r.p99_ms),
            fmt(cpu, 3), f"{(cpu / base - 1) if cpu and base else 0:+.1%}"]


def restart_rows(checked: dict[str, Any]) -> list[list[str]]:
    """The rows of a restart comparison: each read with the defaults and after the restart,
    both as ratios to the floor, with the restarted run's p99 and CPU."""
    return [[name, fmt(before.req_s, 0), f"{before.req_s / floor.req_s:.2f}",
             fmt(after.req_s, 0), f"{after.req_s / floor.req_s:.2f}", fmt(after.p99_ms),
             f"{fmt(after.cpu_per_1k.get('auth-service'), 3)} / "
             f"{fmt(after.cpu_per_1k.get('user-service'), 3)}"]
            for name, (before, after, floor) in checked.items()]


def targets(bench: Bench, phases: dict[str, Any], results: dict[str, Result]) -> list[Target]:
    """Every performance target this run can judge, in the report's order."""
    out: list[Target] = []

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
            out.append((f"{key} ≥ {target}× its floor", ratio >= target, f"{ratio:.2f}×"))
    for key, target in (("GetCurrentUser", TARGET_LOCAL_CURRENT_USER_RATIO),
                        ("GET /v1/users/me", TARGET_LOCAL_ME_RATIO)):
        checked = phases.get("local_check", {}).get(key)
        if checked:
            _, local_r, floor = checked
            ratio = local_r.req_s / floor.req_s
            out.append((f"{key} with local verification, no cache ≥ {target}× its floor",
                        ratio >= target, f"{ratio:.2f}×"))
    for path, v in phases.get("revocation", {}).items():
        out.append((f"revocation refused ({path}) p99 ≤ {TARGET_REVOCATION_P99_MS:g} ms",
                    v["p99_ms"] <= TARGET_REVOCATION_P99_MS, f"{v['p99_ms']:.2f} ms"))
    errors = sum(r.errors for r in bench.loads.results)
    out.append(("zero errors", errors == 0, f"{errors} errors"))
    half = phases.get("half_peak")
    if half:
        ok = half.p99_ms is not None and half.p99_ms <= TARGET_HALF_PEAK_P99_MS
        out.append((
            f"p99 of GET /v1/users/me at half peak ≤ {TARGET_HALF_PEAK_P99_MS:g} ms",
            ok,
            f"{fmt(half.p99_ms)} ms at {half.req_s:,.0f} req/s "
            f"(target rate {half.extra['target_rate']:,.0f})",
        ))
    for name in SERVICES:
        info = phases["procs"].get(name, {})
        if info.get("idle_rss_mib") is not None:
            out.append((f"{name} idle RSS ≤ {TARGET_IDLE_RSS_MIB:g} MiB",
                        info["idle_rss_mib"] <= TARGET_IDLE_RSS_MIB,
                        f"{info['idle_rss_mib']:.1f} MiB"))
        if info.get("peak_rss_mib") is not None:
            out.append((f"{name} RSS under load ≤ {TARGET_LOAD_RSS_MIB:g} MiB",
                        info["peak_rss_mib"] <= TARGET_LOAD_RSS_MIB,
                        f"{info['peak_rss_mib']:.1f} MiB peak (VmHWM)"))
        if info.get("ready_ms") is not None:
            out.append((f"{name} ready ≤ {TARGET_READY_MS:g} ms", info["ready_ms"] <= TARGET_READY_MS,
                        f"{info['ready_ms']:.0f} ms"))
    for name, (a, b) in (phases.get("scaling") or {}).items():
        change = b.req_s / a.req_s - 1
        out.append((f"100k users: {name} within 10% of 1k", change >= -TARGET_SCALING,
                    f"{change:+.1%} req/s"))
    for size, by_pos in (phases.get("lists") or {}).items():
        base = by_pos["start"].cpu_per_1k.get("user-service") or 0
        worst = max((r.cpu_per_1k.get("user-service") or 0) for r in by_pos.values())
        growth = worst / base - 1 if base else 0
        out.append((f"ListUsers cost flat across the table ({size}, CPU/req within 10%)",
                    growth <= TARGET_SCALING, f"{growth:+.1%} worst vs start"))
    return out
