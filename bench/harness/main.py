"""The command line: options, the run's settings, the binaries copied into a temporary
directory, the run, the report files (Markdown, JSON, perf text) and the exit status. Every
exit path, Ctrl-C included, stops the children and drops a PostgreSQL database it made."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import __doc__ as overview
from .common import BIN_NAMES, BenchError, Interrupted, Settings
from .processes import build, cargo_target_dir
from .report import build_report
from .scenarios import run_bench
from .workloads import Bench


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(overview or "").split("\n\n")[0])
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
    parser.add_argument("--no-tracing-check", action="store_true",
                        help="skip the span export comparison (off, 100 %%, 1 %% sampling)")
    parser.add_argument("--perf", action="store_true",
                        help="perf record both services during GET /v1/users/me (1k) and save the top symbols")
    parser.add_argument("--bad-token", choices=["grpc", "http"],
                        help="self-test: load ValidateToken (grpc) or GET /v1/users/me (http) with "
                        "a garbage token; the run must fail")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--revocation-samples", type=int, default=None,
                        help="revocations per path of the latency probe (default 200, 20 quick)")
    parser.add_argument("--postgres", metavar="URL",
                        help="run both services on PostgreSQL: a new database on the server of "
                        "this postgres:// URL (its role needs CREATEDB), dropped at the end; "
                        "the report goes to target/bench/report-postgres.md")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    return Settings(
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


def copy_binaries(target_dir: Path, bins: Path) -> None:
    """The release binaries, under their run names, into `bins` (one build for the whole run)."""
    bins.mkdir()
    for name, copy in BIN_NAMES.items():
        source = target_dir / "release" / name
        if not source.exists():
            raise BenchError(f"{source} is missing: build it (drop --no-build)")
        shutil.copy2(source, bins / copy)


def write_reports(
    out_md: Path, report: str, bench: Bench, phases: dict[str, Any],
    targets: list[tuple[str, bool, str]],
) -> Path:
    """The Markdown report, the raw JSON beside it and perf's text; the JSON's path."""
    out_md.write_text(report + "\n")
    raw = {
        "settings": bench.s.__dict__,
        "results": [r.__dict__ for r in bench.loads.results],
        "argon2": phases.get("argon2"),
        "processes": phases["procs"],
        "targets": [{"target": t, "pass": ok, "measured": m} for t, ok, m in targets],
        "perf": phases.get("perf"),
        "tracing": {label: {"workload": r.name, "spans_received": spans}
                    for label, (r, spans) in (phases.get("tracing_check") or {}).items()},
    }
    for name, text in (phases.get("perf") or {}).items():
        (out_md.parent / f"perf-{name}.txt").write_text(text + "\n")
    out_json = out_md.with_suffix(".json")
    out_json.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return out_json


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
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
        copy_binaries(target_dir, bins)
        bench = Bench(settings, workdir, bins, args.postgres)
        phases = run_bench(bench, args)
        report, targets = build_report(bench, phases)
        print(report)
        out_json = write_reports(out_md, report, bench, phases, targets)
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
            bench.stop()
            try:
                bench.store.close()
            except BenchError as e:
                print(f"bench: could not drop the benchmark database: {e}", file=sys.stderr)
        if args.keep:
            print(f"data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
