"""A real Prometheus (Debian's `prometheus`) scraping a real system: two auth-service replicas
with their metrics ports (AUTH_METRICS_LISTEN_ADDR) and a user-service balancing over them,
the release's rule files loaded. After a short load (sign-ups, logins, `/me`, errors, a
throttled login, a replica stopped mid-run), Prometheus's HTTP API must show every metric
the rules and the dashboard name, and a value for every recording rule: a rule or a panel
that names a metric the services do not export fails here.

Everything is bounded: the system starts within 30 s, Prometheus within 20 s, the load takes
about 15 s and the rules get 45 s to produce their values. `just test-observability` builds the
binaries first (GRIMOS_BIN_DIR: where they are; default target/debug).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promql import dashboard_exprs, metric_names

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/hostile"))
from system import Service, System  # noqa: E402  (the one launcher of the split system)

RULES = sorted((ROOT / "deploy/observability").glob("*.rules.yml"))
DASHBOARD = ROOT / "deploy/observability/grafana-dashboard.json"
METRICS_PORT = re.compile(r"metrics on HTTP.*?\baddr=127\.0\.0\.1:(\d+)")
PASSWORD = "observability-password-0123"


@dataclass
class Running:
    system: System
    second_auth: Service
    metrics_ports: list[int]
    prometheus: str
    recorded: set[str]
    queries: dict[str, str]


def metrics_port(service: Service) -> int:
    deadline = time.monotonic() + 10
    while True:
        match = METRICS_PORT.search(service.log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        assert service.alive() and time.monotonic() < deadline, service.log_tail()
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def start_prometheus(workdir: Path, targets: dict[str, list[int]]) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus on a free loopback port, scraping `targets` (job: ports) every second,
    evaluating the rules every second, its data in `workdir`."""
    scrape = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
        for job, ports in targets.items()
    ]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": scrape,
    }
    # JSON is YAML: no YAML library needed.
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    popen = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return popen, base
        except OSError:
            pass
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            raise AssertionError("Prometheus did not start:\n" + (workdir / "prometheus.log").read_text())
        time.sleep(0.1)


def wait_until_scraped(base: str, targets: int) -> None:
    """Until Prometheus has scraped every target once (it starts scraping targets a few
    seconds after it is ready), at most 20 s."""
    deadline = time.monotonic() + 20
    while True:
        active = api(base, "targets", state="active")["activeTargets"]
        if len(active) == targets and all(t["health"] == "up" for t in active):
            return
        assert time.monotonic() < deadline, f"targets not all scraped within 20 s: {active}"
        time.sleep(0.2)


def drive_load(system: System, second_auth: Service) -> None:
    """About 15 s of traffic a user would make, with the errors operators watch for."""
    tokens = []
    for i in range(12):
        email = f"obs-{i}@example.com"
        status, _ = system.http("POST", "/v1/users", {"email": email, "password": PASSWORD, "displayName": f"User {i}"})
        assert status in (200, 201), status
        status, body = system.http("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
        assert status == 200 and isinstance(body, dict), (status, body)
        tokens.append(str(body["accessToken"]))
    # Errors: no token, a bad token, an unknown route, and wrong passwords until throttled.
    assert system.http("GET", "/v1/users/me")[0] == 401
    assert system.http("GET", "/v1/users/me", token="not-a-token")[0] == 401
    assert system.http("GET", "/v1/no-such-route")[0] == 404
    statuses = [
        system.http("POST", "/v1/auth/login", {"email": "guessed@example.com", "password": "wrong password!"})[0]
        for _ in range(7)
    ]
    assert 429 in statuses, statuses
    # One auth-service replica stops: the balancer ejects it and retries on the other.
    second_auth.popen.send_signal(signal.SIGKILL)
    second_auth.popen.wait(timeout=10)
    end = time.monotonic() + 12
    i = 0
    while time.monotonic() < end:
        for token in tokens:
            assert system.http("GET", "/v1/users/me", token=token)[0] == 200
        email = f"obs-{i % 12}@example.com"
        assert system.http("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})[0] == 200
        i += 1
        time.sleep(0.05)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    bins = Path(os.environ.get("GRIMOS_BIN_DIR", ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"))
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.fail("prometheus and promtool are needed (Debian: apt-get install prometheus)")
    with tempfile.TemporaryDirectory(prefix="grimos-observability.") as tmp:
        workdir = Path(tmp)
        system = System(
            bins,
            workdir,
            {
                "AUTH_METRICS_LISTEN_ADDR": "127.0.0.1:0",
                # Long enough that the stopped replica is found by a call (an ejection and a
                # retry), not by a health check first.
                "AUTH_HEALTH_CHECK_INTERVAL": "30s",
                "AUTH_LOGIN_SLOWDOWN": "10ms",
            },
        )
        prometheus: subprocess.Popen[bytes] | None = None
        second_auth: Service | None = None
        try:
            env = system.env()
            first = system.spawn("auth-service", "auth-service", env)
            second_auth = system.spawn("auth-service-2", "auth-service", env)
            auth_urls = ",".join(f"http://127.0.0.1:{s.port}" for s in (first, second_auth))
            system.spawn("user-service", "user-service", {**env, "AUTH_SERVICE_ADDRESS": auth_urls})
            deadline = time.monotonic() + 30
            while system.http("GET", "/readyz")[0] != 200:
                system.check_alive()
                assert time.monotonic() < deadline, system.user.log_tail()
                time.sleep(0.05)
            ports = [metrics_port(first), metrics_port(second_auth)]
            prometheus, base = start_prometheus(
                workdir, {"grimos-user": [system.user.port], "grimos-auth": ports}
            )
            wait_until_scraped(base, 1 + len(ports))
            drive_load(system, second_auth)
            rules = api(base, "rules")
            recorded = {r["name"] for g in rules["groups"] for r in g["rules"] if r["type"] == "recording"}
            queries = {
                f"rule {r['name']}": r["query"] for g in rules["groups"] for r in g["rules"]
            }
            queries |= {f"panel {title!r}": expr for title, expr in dashboard_exprs(DASHBOARD)}
            yield Running(system, second_auth, ports, base, recorded, queries)
        finally:
            if prometheus is not None:
                prometheus.terminate()
                try:
                    prometheus.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    prometheus.kill()
            system.stop()
            if second_auth is not None and second_auth.alive():
                second_auth.popen.kill()


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = subprocess.run(["promtool", "check", "rules", *map(str, RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "tests.yml"],
        cwd=ROOT / "deploy/observability",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_loaded_rule_is_healthy(running: Running) -> None:
    rules = api(running.prometheus, "rules")
    files = {Path(g["file"]).name for g in rules["groups"]}
    assert files == {p.name for p in RULES}
    deadline = time.monotonic() + 20
    while True:
        unhealthy = [
            (r["name"], r.get("health"), r.get("lastError"))
            for g in api(running.prometheus, "rules")["groups"]
            for r in g["rules"]
            if r.get("health") != "ok"
        ]
        if not unhealthy or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not unhealthy, unhealthy


def test_every_metric_the_rules_and_dashboard_name_is_exported(running: Running) -> None:
    wanted: dict[str, list[str]] = {}
    for where, expr in running.queries.items():
        for name in metric_names(expr):
            if name not in running.recorded:
                wanted.setdefault(name, []).append(where)
    assert len(wanted) >= 20, sorted(wanted)
    start = str(time.time() - 600)
    missing = {
        name: places
        for name, places in sorted(wanted.items())
        if not api(running.prometheus, "series", **{"match[]": name, "start": start})
    }
    assert not missing, "named by the rules or the dashboard, but not exported by the services:\n" + "\n".join(
        f"  {name}: {', '.join(places)}" for name, places in missing.items()
    )


def test_a_made_up_name_is_caught(running: Running) -> None:
    # The check above can fail: a name no service exports has no series.
    assert api(running.prometheus, "series", **{"match[]": "grimos_no_such_metric_total"}) == []


def test_every_recording_rule_yields_a_value(running: Running) -> None:
    assert len(running.recorded) >= 10
    deadline = time.monotonic() + 45
    while True:
        empty = sorted(
            name for name in running.recorded if not api(running.prometheus, "query", query=name)["result"]
        )
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not empty, f"recording rules without a value: {empty}"


def test_every_server_and_both_auth_replicas_were_scraped(running: Running) -> None:
    info = api(running.prometheus, "query", query="grimos_build_info")["result"]
    assert {(s["metric"]["job"], s["metric"]["server"]) for s in info} >= {
        ("grimos-user", "user"),
        ("grimos-auth", "auth"),
    }, info
    # Both replicas, the one killed during the load too, within the last minutes.
    scraped = api(running.prometheus, "query", query='count_over_time(grimos_build_info{job="grimos-auth"}[5m])')
    assert {s["metric"]["instance"] for s in scraped["result"]} == {f"127.0.0.1:{p}" for p in running.metrics_ports}


def test_the_killed_replica_was_ejected_and_is_unhealthy(running: Running) -> None:
    killed = f"127.0.0.1:{running.second_auth.port}"

    def value(query: str) -> float | None:
        result = api(running.prometheus, "query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    assert (value(f'sum(auth_client_endpoint_ejections_total{{endpoint="{killed}"}})') or 0) >= 1
    assert value(f'auth_client_endpoint_healthy{{endpoint="{killed}"}}') == 0
    assert value(f'auth_client_endpoint_in_rotation{{endpoint="{killed}"}}') == 0
    assert value('sum(auth_client_endpoint_healthy)') == 1
    assert (value("sum(auth_client_retries_total)") or 0) >= 1
