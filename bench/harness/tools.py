"""The load tools' output, parsed: h2load's summary and per-request log, wrk's summary. A
summary that does not parse is a BenchError quoting it. Nothing here runs a tool."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .common import BenchError

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


def p50_p99(sorted_values: list[float]) -> tuple[float, float]:
    return percentile(sorted_values, 50), percentile(sorted_values, 99)


def parse_h2load(out: str, what: str) -> dict[str, Any]:
    # h2load prints the time in the largest fitting unit: "finished in 973.07ms" under 1 s.
    finished = re.search(r"finished in ([\d.]+(?:us|ms|s|m)), ([\d.]+) req/s", out)
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
        "seconds": duration_ms(finished.group(1)) / 1000.0,
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
