"""Loading one workload: the tool's warm-up run, the measured run with CPU, context-switch and
RSS accounting of every process involved, and the checks that turn any failed request into a
BenchError. Three shapes: h2load on a gRPC unary call, wrk on an HTTP route, h2load over
HTTP/1.1 at a fixed rate. Which workloads to run is the caller's business."""

from __future__ import annotations

import resource
import secrets
import time
from pathlib import Path
from typing import Any, Callable

from .common import GRPC_HEADERS, BenchError, Result, Settings, log
from .processes import System, run_tool
from .probes import Metrics, describe, grpc_frame, grpc_probe, metrics_errors, scrape_metrics
from .sampling import CLK_TCK, context_switches
from .tools import h2load_log_latencies, p50_p99, parse_h2load, parse_wrk, secs, slug


class Loads:
    """Runs workloads against `system` with `settings`; every measured result, in order."""

    def __init__(self, system: System, settings: Settings):
        self.system = system
        self.s = settings
        self.dir = system.dir
        self.results: list[Result] = []

    def measured(self, procs: list[str], run: Callable[[], Result]) -> Result:
        """Runs `run` with CPU and RSS accounting of `procs` and the load tool."""
        all_procs = self.system.procs
        before = {name: all_procs[name].cpu_ticks() for name in procs}
        switches = {name: context_switches(all_procs[name].pid) for name in procs}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result: Result = self.system.guarded(run)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for name in procs:
            proc = all_procs[name]
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
        self.system.check_all_alive()
        return result

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
            return with_headers(argv, headers, log_file) + [url]

        # The warm-up runs for a time and gives the rate; the measured run then makes a fixed
        # number of calls (about `duration` seconds' worth), so that none is in flight when it
        # ends and every check below is exact.
        warm = max(s.warmup, 1.0)
        warm_out = self.system.guarded(
            lambda: run_tool(h2load(["-D", secs(warm)], None), warm + 60, f"{name} warm-up")
        )
        rate = parse_h2load(warm_out, f"{name} warm-up")["req_s"]
        calls = max(s.grpc_clients * s.grpc_streams, int(rate * s.duration))
        time.sleep(0.2)  # calls the warm-up abandoned at its deadline settle before counting
        metrics_before = scrape_metrics(self.system.user_base) if metrics else None
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
            return checked_result(
                name, group, f"h2load -c{s.grpc_clients} -m{s.grpc_streams}", addr, r, calls,
                p50_p99(latencies), f"{calls} x 2xx, DATA = {calls} x {frame_size} B",
                {"frame_bytes": frame_size, "warm_up_req_s": rate},
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
        user_base = self.system.user_base

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

        counted: list[Metrics | None] = [None]  # /metrics before the current wrk run

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
                    _, errors = metrics_errors(counted[0], scrape_metrics(user_base), None, route)
                    if errors:
                        problems.append(f"user-service /metrics counted {describe(errors)}")
                raise BenchError(f"{what}: " + "; ".join(problems))
            return r

        if s.warmup > 0:
            counted[0] = scrape_metrics(user_base) if route else None
            self.system.guarded(
                lambda: check(
                    run_tool(wrk(s.warmup), s.warmup + 60, f"{name} warm-up"), f"{name} warm-up"
                )
            )
            time.sleep(0.2)  # requests the warm-up left in flight settle before counting
        metrics_before = scrape_metrics(user_base) if route else None
        counted[0] = metrics_before

        def run() -> Result:
            r = check(run_tool(wrk(s.duration), s.duration + 60, name), name)
            return checked_result(
                name, group, f"wrk -t{threads} -c{conns}", url, r, r["requests"],
                (r["p50_ms"], r["p99_ms"]), f"{r['requests']} x 2xx, no socket errors",
            )

        return self.finish(name, procs, run, route is not None, metrics_before, None, route)

    def finish(
        self,
        name: str,
        procs: list[str],
        run: Callable[[], Result],
        check_metrics: bool,
        metrics_before: Metrics | None,
        rpc: str | None,
        route: str | None,
    ) -> Result:
        """Runs the measured load; with `check_metrics`, fails on any error user-service's
        /metrics counted for `rpc` or `route` since `metrics_before`."""
        result = self.measured(procs, run)
        if check_metrics:
            time.sleep(0.2)
            summary, errors = metrics_errors(
                metrics_before, scrape_metrics(self.system.user_base), rpc, route
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
            return with_headers(a, headers, log_path) + [url]

        if s.warmup > 0:
            self.system.guarded(
                lambda: run_tool(argv(s.warmup, None), s.warmup + 60, f"{name} warm-up"))

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
            return checked_result(
                name, group, f"h2load --h1 -c{clients} --rps {per_client:.1f}/client", url, r,
                r["succeeded"], p50_p99(latencies), f"{r['succeeded']} x 2xx",
                {"target_rate": rate, "achieved_fraction": r["req_s"] / rate if rate else 0},
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


def checked_result(
    name: str,
    group: str,
    tool: str,
    target: str,
    r: dict[str, Any],
    requests: int,
    p50_p99_ms: tuple[float | None, float | None],
    check: str,
    extra: dict[str, Any] | None = None,
) -> Result:
    """A measured run that passed its checks (so no errors): the tool's duration and rate."""
    return Result(
        name=name,
        group=group,
        tool=tool,
        target=target,
        requests=requests,
        seconds=r["seconds"],
        req_s=r["req_s"],
        p50_ms=p50_p99_ms[0],
        p99_ms=p50_p99_ms[1],
        errors=0,
        check=check,
        extra=extra or {},
    )


def with_headers(argv: list[str], headers: list[str], log_file: Path | None) -> list[str]:
    """An h2load command line with `-H` for each header and `--log-file` when given."""
    for h in headers:
        argv += ["-H", h]
    if log_file:
        argv += ["--log-file", str(log_file)]
    return argv
