"""The system under attack: auth-service and user-service as two processes (split mode), a new
data folder, ports the services bound themselves, and what the suite watches in them.

Each service listens on 127.0.0.1:0 and the suite reads the port from its "listening" log line,
so no port is picked by binding and closing a probe socket first (another process could take
it in between). user-service is started second, with AUTH_SERVICE_ADDRESS pointing at the port
auth-service reported.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EMAIL = "hostile-normal@example.com"
PASSWORD = "hostile-password-0123"

LISTENING = re.compile(r"listening.*?\baddr=(127\.0\.0\.1):(\d+)")


class SystemError_(Exception):
    """The system could not start, or a service died."""


@dataclass
class Service:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_kib(self) -> int | None:
        return proc_field(self.pid, "VmRSS")

    def sockets(self) -> int | None:
        """Open socket descriptors of the process (listeners, clients, its own outgoing ones)."""
        try:
            fds = os.listdir(f"/proc/{self.pid}/fd")
        except OSError:
            return None
        count = 0
        for fd in fds:
            try:
                if os.readlink(f"/proc/{self.pid}/fd/{fd}").startswith("socket:"):
                    count += 1
            except OSError:
                continue
        return count

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text[-lines:])

    def log_lines(self) -> int:
        try:
            with self.log_path.open("rb") as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    def error_lines_since(self, line_no: int) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[line_no:]
        except OSError:
            return []
        return [line for line in lines if " ERROR " in line]


def proc_field(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Sample:
    t: float
    rss_kib: dict[str, int]
    sockets: dict[str, int]


@dataclass
class System:
    bins: Path
    workdir: Path
    extra_env: dict[str, str]
    services: dict[str, Service] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    token: str = ""
    _stop_sampling: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    @property
    def auth(self) -> Service:
        return self.services["auth-service"]

    @property
    def user(self) -> Service:
        return self.services["user-service"]

    @property
    def user_base(self) -> str:
        return f"http://127.0.0.1:{self.user.port}"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTH_", "USER_", "GRIMOS_", "RUST_LOG"))
        }
        env.update(
            {
                # info: the "listening" line carries the bound address; requests log nothing
                # at info, errors do.
                "RUST_LOG": "info",
                "AUTH_LISTEN_ADDR": "127.0.0.1:0",
                "USER_LISTEN_ADDR": "127.0.0.1:0",
                "AUTH_DATABASE_URL": f"sqlite://{self.workdir / 'auth.db'}",
                "USER_DATABASE_URL": f"sqlite://{self.workdir / 'user.db'}",
                "AUTH_SIGNING_KEY_FILE": str(self.workdir / "auth-signing-key.pem"),
                "AUTH_ACCESS_TOKEN_TTL": "1h",
                "GRIMOS_SERVICE_TOKEN": secrets.token_urlsafe(32),
                # Stopped with SIGTERM: no balancer here to drain from.
                "GRIMOS_DRAIN_GRACE": "0s",
            }
        )
        env.update(self.extra_env)
        return env

    def spawn(self, name: str, binary: str, env: dict[str, str]) -> Service:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                [str(self.bins / binary)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        service = Service(name, popen, log_path)
        self.services[name] = service
        deadline = time.monotonic() + 30
        while True:
            match = LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                service.port = int(match.group(2))
                return service
            if not service.alive():
                raise SystemError_(f"{name} exited before listening:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise SystemError_(f"{name} did not log its address within 30 s:\n{service.log_tail()}")
            time.sleep(0.02)

    def start(self) -> None:
        env = self.env()
        auth = self.spawn("auth-service", "auth-service", env)
        self.spawn("user-service", "user-service", {**env, "AUTH_SERVICE_ADDRESS": f"http://127.0.0.1:{auth.port}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = self.http("GET", "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemError_(f"user-service not ready within 30 s:\n{self.user.log_tail()}")
            time.sleep(0.05)
        status, body = self.http(
            "POST", "/v1/users", {"email": EMAIL, "password": PASSWORD, "displayName": "Normal Client"}
        )
        if status not in (200, 201):
            raise SystemError_(f"sign-up: HTTP {status}: {body}")
        status, body = self.http("POST", "/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
        if status != 200 or not isinstance(body, dict) or "accessToken" not in body:
            raise SystemError_(f"login: HTTP {status}: {body}")
        self.token = str(body["accessToken"])
        status, body = self.http("GET", "/v1/users/me", token=self.token)
        if status != 200:
            raise SystemError_(f"GET /v1/users/me: HTTP {status}: {body}")
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self._sampler.start()

    def http(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.user_base + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw[:200]

    def check_alive(self) -> None:
        for service in self.services.values():
            if not service.alive():
                raise SystemError_(
                    f"{service.name} (pid {service.pid}) exited with status {service.popen.returncode}:\n"
                    f"{service.log_tail()}"
                )

    def _sample_loop(self) -> None:
        while not self._stop_sampling.wait(0.1):
            rss: dict[str, int] = {}
            socks: dict[str, int] = {}
            for name, service in self.services.items():
                value = service.rss_kib()
                if value is not None:
                    rss[name] = value
                count = service.sockets()
                if count is not None:
                    socks[name] = count
            self.samples.append(Sample(time.monotonic(), rss, socks))

    def samples_between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]

    def stop(self) -> None:
        self._stop_sampling.set()
        for name in ("user-service", "auth-service"):
            service = self.services.get(name)
            if service is None or not service.alive():
                continue
            service.popen.send_signal(signal.SIGTERM)
            try:
                service.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.popen.kill()
                service.popen.wait(timeout=10)
