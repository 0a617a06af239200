#!/usr/bin/env python3
"""The multi-host topology test (issue 11): `just test-topology`, as root.

Builds the release binaries (a no-op after the bench stage), then makes hosts with their own
addresses: Linux network namespaces on 10.213.0.0/24, joined by veth links to a bridge (net.py).
On them: PostgreSQL (Debian's), three auth-service replicas, two user-service replicas that find
auth-service as `dns:///auth.grimos.test:50051` (the name served by each user host's
`/etc/netns/<ns>/hosts`, as a headless Kubernetes Service serves it: every replica's address,
changed mid-test), and nginx in front of both user-services for HTTP/JSON and gRPC (hosts.py).
Every setting is the shipped default except the ports, the addresses and a drain grace of 2 s.

A steady mixed load runs through nginx the whole time (load.py: sign-ups, logins, `/v1/users/me`
over HTTP/JSON and gRPC `GetCurrentUser`, 40 a second), while the scenarios run in turn:

1. spread: every auth-service and user-service replica takes calls (their shares, from the
   user-services' `/metrics`: requests served, and auth calls per endpoint);
2. rolling restart of every auth replica (SIGTERM: it drains, then stops; started again), then
   of every user replica (taken out of nginx's upstream and reloaded, as an ingress controller
   does, then SIGTERM, started again, put back): 0 failed requests;
3. one auth replica cut off by an iptables DROP rule in its namespace: failed requests only
   among those sent before it was ejected (each within its 2 s deadline), then none; the time
   to eject it, and to take it back once the rule is gone;
4. scale-up, a fourth address under the name: it gets calls within 10 s;
5. scale-down, an address removed, then its process stopped: 0 failed requests;
6. PostgreSQL restarted (fast shutdown, down 3 s): 503s during the outage only, recovery by
   itself, and at the end every account whose sign-up succeeded still exists.

It prints a table of the figures, writes target/topology/report.json (and, when it fails, every
process's log to target/topology/logs/) and fails if a bound does not hold. Everything it made (namespaces, links, /etc/netns entries, processes, the run's
folder) is removed on every exit path, also after Ctrl-C or SIGTERM; a run killed outright is
cleaned up by the next one. About two minutes; every wait is bounded and the run aborts after
five.

`.venv/bin/python tests/topology/topology.py [--no-build] [--bins DIR] [--keep]`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness.probes import Metrics, grpc_health_ok, http_ok, scrape_samples  # noqa: E402
from hosts import (  # noqa: E402
    ADMIN_EMAIL, AUTH_NAME, AUTH_PORT, GRPC_PORT, HTTP_PORT, HostError, Nginx, Postgres, Replica,
    new_token, service_env, wait_for,
)
from load import Client, Load, Record, Seen  # noqa: E402
from net import Net, NetError  # noqa: E402

ADDRESSES = {
    "pg": "10.213.0.10",
    "auth1": "10.213.0.21",
    "auth2": "10.213.0.22",
    "auth3": "10.213.0.23",
    "auth4": "10.213.0.24",
    "user1": "10.213.0.31",
    "user2": "10.213.0.32",
    "lb": "10.213.0.40",
}
DRAIN_GRACE = "2s"
DEADLINE_S = 2.0  # AUTH_CLIENT_DEADLINE, the shipped default
HEALTH_INTERVAL_S = 1.0  # AUTH_HEALTH_CHECK_INTERVAL, the shipped default
SCALE_UP_BOUND_S = 10.0  # the bound for a new replica to get calls
EJECT_BOUND_S = HEALTH_INTERVAL_S + DEADLINE_S + 3.0  # one check round, its deadline, and slack
PG_OUTAGE_S = 3.0
RECOVERY_BOUND_S = 10.0
RUN_BOUND_S = 300


def log(message: str) -> None:
    print(f"[topology {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    scenario: str
    requests: int = 0
    failed: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))
        if not ok:
            log(f"FAILED: {self.scenario}: {what}")


def total(samples: Metrics | None, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    if samples is None:
        return 0.0
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


class Run:
    def __init__(self, workdir: Path, bins: Path):
        self.workdir, self.bins = workdir, bins
        self.net = Net()
        self.token = new_token()
        self.rows: list[Row] = []
        self.seen = Seen()
        self.pg: Postgres | None = None
        self.auth: dict[str, Replica] = {}
        self.user: dict[str, Replica] = {}
        self.nginx: Nginx | None = None
        self.client: Client | None = None
        self.load: Load | None = None

    # --- the system ---

    def setup(self) -> None:
        started = time.monotonic()
        self.net.create()
        for host, address in ADDRESSES.items():
            self.net.add_host(host, address)
        self.pg = Postgres(self.net, "pg", self.workdir)
        self.pg.init()
        for host in ("auth1", "auth2", "auth3", "auth4"):
            self.auth[host] = Replica("auth-service", host, self.net, self.bins, self.workdir, service_env(
                AUTH_LISTEN_ADDR=f"{ADDRESSES[host]}:{AUTH_PORT}",
                AUTH_DATABASE_URL=self.pg.url,
                AUTH_SIGNING_KEY_FILE=str(self.workdir / "auth-signing-key.pem"),
                GRIMOS_SERVICE_TOKEN=self.token,
                GRIMOS_ADMIN_EMAILS=ADMIN_EMAIL,
                GRIMOS_DRAIN_GRACE=DRAIN_GRACE,
                # The load logs the same accounts in again and again, at times at once.
                AUTH_LOGIN_MAX_ATTEMPTS="1000000",
            ))
        for host in ("user1", "user2"):
            self.user[host] = Replica("user-service", host, self.net, self.bins, self.workdir, service_env(
                USER_LISTEN_ADDR=f"{ADDRESSES[host]}:8080",
                USER_DATABASE_URL=self.pg.url,
                AUTH_SERVICE_ADDRESS=f"dns:///{AUTH_NAME}:{AUTH_PORT}",
                GRIMOS_SERVICE_TOKEN=self.token,
                GRIMOS_DRAIN_GRACE=DRAIN_GRACE,
            ))
        self.publish("auth1", "auth2", "auth3")
        # The first replica creates the schema and the signing key; the others find them.
        self.start_auth("auth1")
        for host in ("auth2", "auth3"):
            self.auth[host].start()
        for host in ("auth2", "auth3"):
            self.wait_auth_serving(host)
        for replica in self.user.values():
            replica.start()
        for host in self.user:
            self.wait_user_ready(host)
        self.nginx = Nginx(self.net, "lb", self.workdir)
        self.nginx.start([r.endpoint for r in self.user.values()])
        self.client = Client(ADDRESSES["lb"], HTTP_PORT, GRPC_PORT)
        admin = self.client.sign_up(ADMIN_EMAIL)
        if isinstance(admin, str):
            raise HostError(f"the admin cannot sign up through nginx: {admin}")
        self.admin_token = admin.token
        self.load = Load(self.client, self.seen)
        self.load.start()
        log(f"the system is up in {time.monotonic() - started:.1f} s; the load runs")

    def publish(self, *hosts: str) -> None:
        """`auth.grimos.test` names these auth hosts, as each user host resolves it."""
        addresses = [ADDRESSES[h] for h in hosts]
        for host in ("user1", "user2"):
            self.net.set_hosts(host, {AUTH_NAME: addresses})

    def start_auth(self, host: str) -> None:
        self.auth[host].start()
        self.wait_auth_serving(host)

    def wait_auth_serving(self, host: str) -> None:
        replica = self.auth[host]
        wait_for(f"{host} SERVING", lambda: grpc_health_ok(replica.endpoint, 1), 30, replica.alive)

    def wait_user_ready(self, host: str) -> None:
        replica = self.user[host]
        wait_for(f"{host} /readyz 200", lambda: http_ok(f"http://{replica.endpoint}/readyz", 1), 30,
                 replica.alive)

    def scrape(self, host: str) -> Metrics | None:
        return scrape_samples(f"http://{self.user[host].endpoint}", timeout=2)

    def in_rotation(self, auth_host: str) -> list[bool]:
        """Whether each user-service has `auth_host` in its balancer's rotation."""
        endpoint = self.auth[auth_host].endpoint
        return [total(self.scrape(h), "auth_client_endpoint_in_rotation", endpoint=endpoint) == 1.0
                for h in self.user]

    def auth_calls(self) -> dict[str, list[float]]:
        """Calls each user-service has sent to each auth host, so far."""
        samples = [self.scrape(h) for h in self.user]
        return {host: [total(s, "auth_client_endpoint_calls_total", endpoint=r.endpoint) for s in samples]
                for host, r in self.auth.items()}

    def user_requests(self) -> dict[str, float]:
        """Requests each user-service has served so far (not counting these scrapes)."""
        out = {}
        for host in self.user:
            samples = self.scrape(host) or {}
            http = sum(v for (n, ls), v in samples.items() if n == "http_requests_total"
                       and dict(ls).get("route") not in ("/metrics", "/readyz"))
            out[host] = http + total(samples, "grpc_server_requests_total")
        return out

    # --- scenarios ---

    @contextmanager
    def scenario(self, name: str) -> Iterator[Row]:
        """A row of the table for the requests that start while the block runs."""
        log(f"scenario: {name}")
        row = Row(name)
        start = time.monotonic()
        yield row
        end = time.monotonic()
        records = self.seen.between(start, end)
        failed = [r for r in records if not r.ok]
        row.requests, row.failed = len(records), len(failed)
        row.figures.setdefault("seconds", round(end - start, 1))
        for record in failed[:5]:
            log(f"  failed: {record.kind} after {record.start - start:.2f} s: {record.detail}")
        self.rows.append(row)

    def steady(self, seconds: float) -> None:
        """Lets the load run (the scenario's observation time)."""
        time.sleep(seconds)

    def spread(self) -> None:
        with self.scenario("spread over every replica") as row:
            auth_before, user_before = self.auth_calls(), self.user_requests()
            self.steady(8)
            auth_after, user_after = self.auth_calls(), self.user_requests()
            auth = {h: sum(auth_after[h]) - sum(auth_before[h]) for h in ("auth1", "auth2", "auth3")}
            user = {h: user_after[h] - user_before[h] for h in self.user}
            row.figures["auth calls"] = {h: int(v) for h, v in auth.items()}
            row.figures["user requests"] = {h: int(v) for h, v in user.items()}
            row.check("every auth replica takes at least 10% of the calls",
                      all(v >= 0.1 * sum(auth.values()) > 0 for v in auth.values()))
            row.check("every user replica serves at least 25% of the requests",
                      all(v >= 0.25 * sum(user.values()) > 0 for v in user.values()))
        self.rows[-1].check("no failed request", self.rows[-1].failed == 0)

    def rolling_restart_auth(self) -> None:
        with self.scenario("rolling restart: auth-service x3") as row:
            for host in ("auth1", "auth2", "auth3"):
                took = time.monotonic()
                self.auth[host].stop()  # SIGTERM: NOT_SERVING, the 2 s grace, then the stop
                self.start_auth(host)
                wait_for(f"{host} back in rotation", lambda: all(self.in_rotation(host)), 15)
                row.figures[f"{host} s"] = round(time.monotonic() - took, 1)
            self.steady(1)
        self.rows[-1].check("no failed request", self.rows[-1].failed == 0)

    def rolling_restart_user(self) -> None:
        assert self.nginx is not None
        with self.scenario("rolling restart: user-service x2") as row:
            for host in self.user:
                took = time.monotonic()
                others = [r.endpoint for h, r in self.user.items() if h != host]
                self.nginx.upstream(others)  # out of the proxy first, as a controller does
                self.user[host].stop()  # SIGTERM: /readyz 503, the 2 s grace, then the stop
                self.user[host].start()
                self.wait_user_ready(host)
                self.nginx.upstream([r.endpoint for r in self.user.values()])
                row.figures[f"{host} s"] = round(time.monotonic() - took, 1)
            self.steady(1)
        self.rows[-1].check("no failed request", self.rows[-1].failed == 0)

    def cut_off(self) -> None:
        host = "auth2"
        with self.scenario(f"cut off: {host} (iptables DROP)") as row:
            cut = time.monotonic()
            self.net.cut_off(host)
            ejected = wait_for(f"{host} out of rotation", lambda: not any(self.in_rotation(host)), 15)
            row.figures["time to eject s"] = round(ejected, 1)
            self.steady(DEADLINE_S + 1)  # the calls it held end at their deadline
            quiet_from = time.monotonic()
            self.steady(2)
            healed = time.monotonic()
            self.net.heal(host)
            rejoined = wait_for(f"{host} back in rotation", lambda: all(self.in_rotation(host)), 15)
            row.figures["time to rejoin s"] = round(rejoined, 1)
            before = sum(self.auth_calls()[host])
            wait_for(f"{host} takes calls again", lambda: sum(self.auth_calls()[host]) > before, 10)
            self.steady(1)
        row = self.rows[-1]
        failed = [r for r in self.seen.between(cut, healed + rejoined) if not r.ok]
        last_start = max((r.start for r in failed), default=cut) - cut
        last_end = max((r.end for r in failed), default=cut) - cut
        row.figures["failures from s"] = round(min((r.start for r in failed), default=cut) - cut, 1)
        row.figures["last failure sent s"] = round(last_start, 1)
        row.check(f"ejected within {EJECT_BOUND_S:.0f} s", ejected <= EJECT_BOUND_S)
        row.check("failed requests only among those sent before the ejection (+0.5 s)",
                  last_start <= ejected + 0.5)
        # A sign-up whose CreateCredential got no answer then undoes it (DeleteCredential)
        # before answering, so that a retry finds the email free: up to a second deadline.
        row.check("each failure within one deadline (+1 s; a sign-up's undo, one more)",
                  all(r.end - r.start <= DEADLINE_S * (2 if r.kind == "sign-up" else 1) + 1.0
                      for r in failed))
        row.check("none once the held calls ended", last_end <= quiet_from - cut)
        row.check("no failure after the heal", not [r for r in failed if r.start >= healed])

    def scale_up(self) -> None:
        host = "auth4"
        with self.scenario(f"scale-up: {host} added to the name") as row:
            self.start_auth(host)
            before = self.auth_calls()[host]
            self.publish("auth1", "auth2", "auth3", host)
            took = wait_for(f"{host} gets calls from every user-service",
                            lambda: all(a > b for a, b in zip(self.auth_calls()[host], before)), 30)
            row.figures["time to first calls s"] = round(took, 1)
            row.check(f"the new replica gets calls within {SCALE_UP_BOUND_S:.0f} s", took <= SCALE_UP_BOUND_S)
            self.steady(1)
        self.rows[-1].check("no failed request", self.rows[-1].failed == 0)

    def scale_down(self) -> None:
        host = "auth1"
        with self.scenario(f"scale-down: {host} removed, then stopped") as row:
            self.publish("auth2", "auth3", "auth4")
            took = wait_for(f"{host} out of every balancer", lambda: not any(self.in_rotation(host)), 30)
            row.figures["time to leave s"] = round(took, 1)
            self.auth[host].stop()
            self.steady(1)
        self.rows[-1].check("no failed request", self.rows[-1].failed == 0)

    def postgres_restart(self) -> None:
        assert self.pg is not None
        with self.scenario("PostgreSQL restart") as row:
            down = time.monotonic()
            self.pg.stop()
            self.steady(PG_OUTAGE_S)
            self.pg.start()
            up = time.monotonic()
            self.steady(RECOVERY_BOUND_S)
        row = self.rows[-1]
        records = self.seen.between(down, up + RECOVERY_BOUND_S)
        failed = [r for r in records if not r.ok]
        # Recovered from the start of the first request after the restart from which every
        # request succeeded.
        last_failure = max((r.start for r in failed), default=down)
        recovered = max(0.0, last_failure - up)
        row.figures["outage s"] = round(up - down, 1)
        row.figures["recovered after restart s"] = round(recovered, 1)
        row.figures["503 or UNAVAILABLE"] = sum(1 for r in failed if unavailable(r))
        row.check("only 503 / UNAVAILABLE", all(unavailable(r) for r in failed))
        row.check(f"recovered within {RECOVERY_BOUND_S - 3:.0f} s of the restart, then no failure",
                  recovered <= RECOVERY_BOUND_S - 3)
        row.check("every service process still runs",
                  all(r.alive() for r in self.user.values()) and all(self.auth[h].alive() for h in ("auth2", "auth3", "auth4")))

    def verify_data(self) -> None:
        assert self.client is not None and self.load is not None
        self.load.stop()
        with self.scenario("no data lost") as row:
            listed: set[str] = set()
            page = ""
            for _ in range(100):
                query = f"pageSize=1000&pageToken={page}" if page else "pageSize=1000"
                status, body = self.client.http("GET", f"/v1/users?{query}", token=self.admin_token)
                if status != 200:
                    row.check(f"ListUsers answers (HTTP {status})", False)
                    return
                users = body.get("users")
                for user in users if isinstance(users, list) else []:
                    if isinstance(user, dict):
                        listed.add(str(user.get("id")))
                page = str(body.get("nextPageToken") or "")
                if not page:
                    break
            created = [a.user_id for a in self.seen.accounts]
            missing = [u for u in created if u not in listed]
            row.figures["accounts signed up"] = len(created)
            row.figures["missing"] = len(missing)
            row.check("every account whose sign-up succeeded exists", not missing and bool(created))

    # --- the end ---

    def teardown(self) -> None:
        if self.load is not None:
            self.load.stop()
        if self.client is not None:
            self.client.close()
        if self.nginx is not None:
            self.nginx.stop()
        for replica in [*self.user.values(), *self.auth.values()]:
            if replica.process is not None:
                replica.process.kill()
        if self.pg is not None and self.pg.process is not None:
            self.pg.process.signal(signal.SIGQUIT)
            try:
                self.pg.process.wait(10)
            except HostError:
                self.pg.process.kill()
        Net.remove()

    def logs(self) -> str:
        parts = []
        for replica in [*self.auth.values(), *self.user.values()]:
            if replica.process is not None:
                parts.append(f"--- {replica.host} (last lines)\n{replica.tail()}")
        return "\n".join(parts)


def unavailable(record: Record) -> bool:
    return "HTTP 503" in record.detail or "gRPC UNAVAILABLE" in record.detail


def table(rows: list[Row]) -> str:
    lines = [f"{'scenario':<40} {'requests':>8} {'failed':>6}  figures", "-" * 110]
    for row in rows:
        figures = ", ".join(f"{k}: {v}" for k, v in row.figures.items())
        verdict = "" if all(ok for _, ok in row.checks) else "  FAILED"
        lines.append(f"{row.scenario:<40} {row.requests:>8} {row.failed:>6}  {figures}{verdict}")
    return "\n".join(lines)


def build() -> None:
    argv = ["cargo", "build", "--release", "--locked", "-p", "auth-service", "-p", "user-service"]
    log(" ".join(argv))
    subprocess.run(argv, cwd=ROOT, check=True, timeout=3600)


def target_dir() -> Path:
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return Path(json.loads(out)["target_directory"])


class Aborted(Exception):
    """SIGTERM, SIGINT or the run's time bound."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    parser.add_argument("--bins", type=Path, help="folder with auth-service and user-service (default: target/release)")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, data)")
    args = parser.parse_args()
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(name, None)  # every address here is the test's own

    if not args.no_build and not args.bins:
        build()
    target = target_dir()
    workdir = Path(tempfile.mkdtemp(prefix="grimos-topology-"))
    workdir.chmod(0o755)  # PostgreSQL's user reads its data folder below it
    bins = workdir / "bin"
    bins.mkdir()
    for name in ("auth-service", "user-service"):
        shutil.copy2((args.bins or target / "release") / name, bins / name)

    def abort(signum: int, _frame: FrameType | None) -> None:
        raise Aborted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, abort)
    signal.signal(signal.SIGINT, abort)
    signal.signal(signal.SIGALRM, abort)
    signal.alarm(RUN_BOUND_S)
    started = time.monotonic()
    run = Run(workdir, bins)
    failed = True
    try:
        run.setup()
        steps: list[Callable[[], None]] = [
            run.spread, run.rolling_restart_auth, run.rolling_restart_user, run.cut_off,
            run.scale_up, run.scale_down, run.postgres_restart, run.verify_data,
        ]
        for step in steps:
            step()
        failed = any(not ok for row in run.rows for _, ok in row.checks)
    except (HostError, NetError, Aborted) as e:
        log(f"the run stopped: {type(e).__name__}: {e}")
        log(run.logs())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run.teardown()
        logs = target / "topology" / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        if failed:
            logs.mkdir(parents=True)
            for path in [*workdir.glob("*.log"), *workdir.glob("nginx/*.log")]:
                shutil.copy2(path, logs / path.name)
            log(f"every process's log: {logs}")
        if args.keep:
            log(f"the run's folder (logs, data): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(run.rows))
    report = target / "topology" / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"seconds": round(time.monotonic() - started, 1),
                                  "rows": [asdict(r) for r in run.rows]}, indent=2) + "\n")
    print(f"topology: {'FAILED' if failed else 'passed'} in {time.monotonic() - started:.0f} s; report in {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
