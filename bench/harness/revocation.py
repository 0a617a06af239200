"""Revocation latency: from a revocation returning to the first request refused by user-service.

Each sample is one session (a login), revoked once, then `GET /v1/users/me` is asked with its
access token in a tight loop until it is 401. Two paths:

- "same user-service": logout through user-service (`POST /v1/auth/logout`), which applies the
  revocation to its own set before it answers;
- "another replica": `RevokeToken` at auth-service directly, which user-service only learns of
  from its `WatchRevocations` stream: what every user-service replica other than the one that
  served the logout sees.

A token still accepted more than a second after its revocation ends the run (the contract's
bound); any status other than 200 or 401 too."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from grimos.auth.v1 import auth_pb2

from .common import BenchError, log
from .probes import grpc_probe, http

REVOKE_PATH = "/grimos.auth.v1.AuthService/RevokeToken"
# The contract's bound: a revoked token is refused within 1 s.
REFUSED_WITHIN_S = 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def me_status(me_url: str, token: str) -> int:
    request = urllib.request.Request(me_url, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.read()
        return int(e.code)
    except (urllib.error.URLError, OSError) as e:
        raise BenchError(f"GET {me_url}: {e}") from e


def refused_after(me_url: str, token: str, revoked: float) -> float:
    """Seconds from `revoked` (a perf_counter reading) to the first 401 for `token`."""
    while True:
        status = me_status(me_url, token)
        if status not in (200, 401):
            raise BenchError(f"GET {me_url} while waiting for a revocation: HTTP {status}")
        now = time.perf_counter()
        if status == 401:
            return now - revoked
        if now - revoked > REFUSED_WITHIN_S:
            raise BenchError(f"a token revoked {now - revoked:.3f} s ago is still accepted")


def revocation_latency(bench: Any, samples: int) -> dict[str, dict[str, float]]:
    """p50/p99/max in milliseconds, over `samples` revocations per path."""
    users, system = bench.users, bench.system
    me_url = f"{system.user_base}/v1/users/me"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        emails = users.login_emails
        tokens = list(pool.map(lambda i: users.login(emails[i % len(emails)]), range(2 * samples)))
    log(f"revocation latency: {2 * samples} logins in {time.perf_counter() - t0:.1f} s")

    def through_user_service(token: str) -> None:
        http("POST", f"{system.user_base}/v1/auth/logout", token=token, expect=(204,))

    def at_auth_service(token: str) -> None:
        grpc_probe(system.auth_addr, REVOKE_PATH,
                   auth_pb2.RevokeTokenRequest(token=token).SerializeToString())

    out: dict[str, dict[str, float]] = {}
    for name, revoke, batch in (("same user-service", through_user_service, tokens[:samples]),
                                ("another replica", at_auth_service, tokens[samples:])):
        latencies = []
        for token in batch:
            http("GET", me_url, token=token)  # accepted before: the worst case is a warm token
            revoke(token)
            latencies.append(refused_after(me_url, token, time.perf_counter()))
        ms = [x * 1000 for x in latencies]
        out[name] = {"samples": len(ms), "p50_ms": percentile(ms, 0.5),
                     "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}
        log(f"revocation latency ({name}): p50 {out[name]['p50_ms']:.2f} ms, "
            f"p99 {out[name]['p99_ms']:.2f} ms over {len(ms)}")
    return out
