"""The benchmark's workloads on one running system: the reads (each after its floor), the deep
ListUsers pages, the Argon2-bound login and sign-up, the raw Argon2 rate and perf sampling.
`Bench` ties a run's parts together: its store, its processes, its users and its loads."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any, cast

from grimos.auth.v1 import auth_pb2
from grimos.user.v1 import user_pb2

from .common import (
    BIN_NAMES,
    CURRENT_USER_PATH,
    PASSWORD,
    SERVICES,
    VALIDATE_PATH,
    BenchError,
    Result,
    Settings,
    log,
)
from .loads import Loads
from .processes import System, run_tool
from .probes import http
from .seed import Seeder, open_store

BOTH = list(SERVICES)


class Bench:
    """One run: the database store, the system's processes, the seeded users and the loads."""

    def __init__(self, settings: Settings, workdir: Path, bins: Path, postgres: str | None):
        self.s = settings
        self.dir = workdir
        self.bins = bins
        self.store = open_store(postgres, workdir)
        self.system = System(workdir, bins, self.store.urls())
        self.loads = Loads(self.system, settings)
        self.users = Seeder(self.system.user_base, self.store)
        self.perf: dict[str, str] = {}
        self.perf_procs: list[subprocess.Popen[bytes]] = []

    def stop(self) -> None:
        """Ends perf and every child; the store is the caller's to close."""
        for p in self.perf_procs:
            if p.poll() is None:
                p.kill()
        self.system.stop_all()

    def reads(self, group: str, floors: dict[str, str] | None) -> dict[str, Result]:
        """The read workloads (each after its floor when `floors` is given)."""
        out: dict[str, Result] = {}
        users, loads, system = self.users, self.loads, self.system
        validate_msg = auth_pb2.ValidateTokenRequest(access_token=users.user_token).SerializeToString()
        current_msg = user_pb2.GetCurrentUserRequest().SerializeToString()
        me = f"{system.user_base}/v1/users/me"
        by_id = f"{system.user_base}/v1/users/{users.bench_user['id']}"

        if floors:
            f = loads.grpc_load("floor ValidateToken", "floor", floors["grpc"], VALIDATE_PATH,
                                validate_msg, ["floor-grpc"])
            out["floor ValidateToken"] = f
        r = loads.grpc_load(f"ValidateToken ({group})", group, system.auth_addr, VALIDATE_PATH,
                            validate_msg, BOTH)
        r.floor = "floor ValidateToken"
        out["ValidateToken"] = r

        if floors:
            out["floor GetCurrentUser"] = loads.grpc_load(
                "floor GetCurrentUser", "floor", floors["grpc"], CURRENT_USER_PATH,
                current_msg, ["floor-grpc"])
        r = loads.grpc_load(f"GetCurrentUser gRPC ({group})", group, system.user_addr,
                            CURRENT_USER_PATH, current_msg, BOTH, token=users.user_token,
                            metrics=True)
        r.floor = "floor GetCurrentUser"
        out["GetCurrentUser"] = r

        if floors:
            out["floor GET /v1/users/me"] = loads.wrk_load(
                "floor GET /v1/users/me", "floor", f"http://{floors['http']}/v1/users/me",
                ["floor-http"], token=users.user_token)
        r = loads.wrk_load(f"GET /v1/users/me ({group})", group, me, BOTH, token=users.user_token,
                           route="/v1/users/me")
        r.floor = "floor GET /v1/users/me"
        out["GET /v1/users/me"] = r

        if floors:
            out["floor GET /v1/users/{id}"] = loads.wrk_load(
                "floor GET /v1/users/{id}", "floor",
                f"http://{floors['http']}/v1/users/{users.bench_user['id']}",
                ["floor-http"], token=users.admin_token)
        r = loads.wrk_load(f"GET /v1/users/{{id}} as admin ({group})", group, by_id, BOTH,
                           token=users.admin_token, route="/v1/users/{user_id}")
        r.floor = "floor GET /v1/users/{id}"
        out["GET /v1/users/{id}"] = r
        return out

    def list_pages(self, group: str) -> dict[str, Result]:
        """ListUsers (HTTP, 50 per page) from a fixed token at the start, middle and end."""
        users = self.users
        n = users.active_users()
        out = {}
        positions = {"start": 50, "middle": n // 2, "end": n - 51}
        for label, after in positions.items():
            token = users.page_token_after(after)
            url = f"{self.system.user_base}/v1/users?pageSize=50&pageToken={token}"
            reply = http("GET", url, token=users.admin_token)
            if len(reply.get("users", [])) != 50:
                raise BenchError(f"ListUsers at {label} returned {len(reply.get('users', []))} users")
            r = self.loads.wrk_load(f"ListUsers page at {label} ({group})", group, url, BOTH,
                                    token=users.admin_token, route="/v1/users")
            r.extra["rows_before_page"] = after
            out[label] = r
        return out

    def argon2_rate(self) -> dict[str, Any]:
        out = run_tool(
            [str(self.bins / BIN_NAMES["argon2-rate"]), f"{self.s.argon_seconds:g}"],
            self.s.argon_seconds * 2 + 120,
            "argon2-rate",
        )
        rate = json.loads(out)
        log(
            f"raw Argon2id: {rate['one_thread']['per_second']:.1f} hashes/s on 1 thread, "
            f"{rate['all_cores']['per_second']:.1f} on {rate['cores']} cores"
        )
        return cast(dict[str, Any], rate)

    def login_load(self) -> Result:
        emails = ", ".join(json.dumps(e) for e in self.users.login_emails)

        def script() -> str:
            return LOGIN_LUA.replace("@EMAILS@", emails).replace("@PASSWORD@", PASSWORD)

        return self.loads.wrk_load("POST /v1/auth/login", "argon2",
                                   f"{self.system.user_base}/v1/auth/login", BOTH,
                                   route="/v1/auth/login", script=script,
                                   conns=self.s.argon_conns, threads=1)

    def signup_load(self) -> Result:
        def script() -> str:
            return SIGNUP_LUA.replace("@NONCE@", secrets.token_hex(4)).replace(
                "@PASSWORD@", PASSWORD)

        return self.loads.wrk_load("POST /v1/users (sign-up)", "argon2",
                                   f"{self.system.user_base}/v1/users", BOTH, route="/v1/users",
                                   script=script, conns=self.s.argon_conns, threads=1)

    def perf_record(self, seconds: float) -> None:
        """perf samples of both services while the last workload's load runs again."""
        for name in SERVICES:
            data = self.dir / f"perf-{name}.data"
            argv = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(data),
                    "-p", str(self.system.procs[name].pid), "--", "sleep", f"{seconds:g}"]
            self.perf[name] = str(data)
            self.perf_procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL))


# wrk's per-thread state: `setup` runs once per thread in the main Lua state and hands each
# thread its id; `counter` counts that thread's requests.
THREAD_LUA = """
local counter = 0
local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end
"""

LOGIN_LUA = """
-- POST /v1/auth/login cycling through the seeded users, so that no email has many attempts
-- in flight at once.
local emails = { @EMAILS@ }""" + THREAD_LUA + """function init(args)
  counter = (thread_id or 0) * 7
end
function request()
  counter = counter + 1
  local email = emails[(counter % #emails) + 1]
  local body = '{"email":"' .. email .. '","password":"@PASSWORD@"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""

SIGNUP_LUA = """
-- POST /v1/users with a unique email per request: run nonce, thread id, per-thread counter.""" + THREAD_LUA + """function request()
  counter = counter + 1
  local email = "su-@NONCE@-" .. (thread_id or 0) .. "-" .. counter .. "@example.com"
  local body = '{"email":"' .. email .. '","password":"@PASSWORD@","displayName":"Sign Up"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""
