"""Revocation latency: from a revocation returning to the first request refused by user-service.

Each sample is one session (a login), logged out once through the first user-service
(`POST /v1/auth/logout`), then `GET /v1/users/me` is asked with its access token in a tight
loop, on one of three user-services, until it is 401:

- "same user-service": the one that served the logout, which applies the revocation to its
  own set before it answers;
- "another user-service replica": a second user-service on the same auth-service, which learns
  of it from its `WatchRevocations` stream;
- "another auth-service replica's subscribers": a user-service whose stream comes from a second
  auth-service on the same database, which learns of the first one's commit through PostgreSQL
  `LISTEN/NOTIFY` or, on SQLite, the database's `data_version` (asked every 25 ms).

The token is accepted by the probed user-service just before it is revoked, so its claims are
warm there (the worst case), and the logout comes after a random pause, so that the samples
spread over the SQLite check's interval instead of following its ticks. A token still accepted
more than a second after its revocation ends the run (the contract's bound); any status other
than 200 or 401 too."""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .common import BenchError, log
from .probes import http

# The contract's bound: a revoked token is refused within 1 s.
REFUSED_WITHIN_S = 1.0
# The longest random pause before each logout.
PAUSE_S = 0.1

SAME = "same user-service"
OTHER_USER = "another user-service replica"
OTHER_AUTH = "another auth-service replica's subscribers"


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
            raise BenchError(f"a token revoked {now - revoked:.3f} s ago is still accepted "
                             f"by {me_url}")


def revocation_latency(bench: Any, samples: int) -> dict[str, dict[str, float]]:
    """p50/p99/max in milliseconds, over `samples` revocations per path."""
    system = bench.system
    system.start_replicas()
    try:
        out: dict[str, dict[str, float]] = system.guarded(lambda: measure(bench, samples))
        return out
    finally:
        system.stop_replicas()


def measure(bench: Any, samples: int) -> dict[str, dict[str, float]]:
    users, system = bench.users, bench.system
    bases = system.replica_bases
    paths = ((SAME, system.user_base), (OTHER_USER, bases[0]), (OTHER_AUTH, bases[1]))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        emails = users.login_emails
        tokens = list(pool.map(lambda i: users.login(emails[i % len(emails)]),
                               range(len(paths) * samples)))
    log(f"revocation latency: {len(tokens)} logins in {time.perf_counter() - t0:.1f} s")

    out: dict[str, dict[str, float]] = {}
    for i, (name, base) in enumerate(paths):
        me_url = f"{base}/v1/users/me"
        latencies = []
        for token in tokens[i * samples:(i + 1) * samples]:
            http("GET", me_url, token=token)  # accepted before: the worst case is a warm token
            # Back to back, each logout would follow the previous refusal, so a tick of the
            # SQLite check, by the same time: every sample would wait a whole interval.
            time.sleep(random.uniform(0, PAUSE_S))
            http("POST", f"{system.user_base}/v1/auth/logout", token=token, expect=(204,))
            latencies.append(refused_after(me_url, token, time.perf_counter()))
        ms = [x * 1000 for x in latencies]
        out[name] = {"samples": len(ms), "p50_ms": percentile(ms, 0.5),
                     "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}
        log(f"revocation latency ({name}): p50 {out[name]['p50_ms']:.2f} ms, "
            f"p99 {out[name]['p99_ms']:.2f} ms over {len(ms)}")
    return out
