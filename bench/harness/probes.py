"""Single requests to the system, for set-up and checks only (the load comes from h2load and
wrk): JSON over HTTP, one raw gRPC call, the gRPC health check, a TCP connect, and
user-service's Prometheus counters with the errors they show between two scrapes."""

from __future__ import annotations

import json
import re
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

import grpc  # the generated package's dependency; used for probes and health checks only

from .common import BenchError

# user-service's /metrics counters: (name, sorted labels) -> value.
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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


def http_ok(url: str, timeout: float) -> bool:
    """GET `url` answers 200 (False on any error: for readiness polling)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


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


def scrape_metrics(base: str) -> Metrics | None:
    """user-service's Prometheus counters, or None if /metrics is not there."""
    samples = scrape_samples(base)
    if samples is None:
        return None
    return {key: value for key, value in samples.items() if key[0].endswith("_total")}


def scrape_samples(base: str, timeout: float = 10) -> Metrics | None:
    """Every sample of a service's /metrics (counters, gauges, histogram series), or None if
    /metrics does not answer."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    out: Metrics = {}
    pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or "")))
        try:
            out[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            continue
    return out


def metrics_errors(
    before: Metrics | None, after: Metrics | None, rpc: str | None, route: str | None
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
        if label.get("server", "user") != "user" and name != "auth_client_requests_total":
            # The embedded auth-service counts its in-process calls under server="auth".
            continue
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
