"""What runs on the test's hosts: PostgreSQL, auth-service and user-service replicas (the release
binaries) and nginx, each in its network namespace, each a child of this process with its log in
the run's folder, each stopped the way an operator stops it.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from net import Net, in_ns

AUTH_PORT = 50051
USER_PORT = 8080
PG_PORT = 5432
HTTP_PORT = 80  # nginx: HTTP/JSON
GRPC_PORT = 81  # nginx: gRPC (HTTP/2 cleartext)
AUTH_NAME = "auth.grimos.test"
ADMIN_EMAIL = "admin@topology.grimos.test"


class HostError(Exception):
    """A process did not start, or died."""


def wait_for(what: str, ready: Callable[[], bool], within: float, alive: Callable[[], bool] | None = None) -> float:
    """Waits until `ready()`; how long it took. Fails after `within` seconds, or at once if
    `alive()` says the process it waits for has died."""
    start = time.monotonic()
    while not ready():
        if alive is not None and not alive():
            raise HostError(f"{what}: the process died")
        if time.monotonic() - start > within:
            raise HostError(f"{what}: not within {within:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - start


@dataclass
class Process:
    """One long-running child in a namespace."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise HostError(f"{self.name} did not exit within {timeout:.0f} s") from e

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text[-lines:])


def spawn(name: str, argv: list[str], env: dict[str, str], folder: Path) -> Process:
    log_path = folder / f"{name}.log"
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # Ctrl-C reaches only the test, which stops them all
        )
    return Process(name, popen, log_path)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


class Postgres:
    """Debian's PostgreSQL server, listening on its host's address only."""

    def __init__(self, net: Net, host: str, folder: Path):
        self.net, self.host, self.folder = net, host, folder
        self.data = folder / "pgdata"
        self.address = net.hosts[host]
        self.process: Process | None = None
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not bins:
            raise HostError("no PostgreSQL server is installed (Debian: postgresql; tools/test-postgres.sh installs it)")
        self.bin = Path(bins[-1]).parent

    @property
    def url(self) -> str:
        return f"postgres://grimos:grimos@{self.address}:{PG_PORT}/grimos"

    def init(self) -> None:
        self.data.mkdir()
        shutil.chown(self.data, "postgres", "postgres")
        self.as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"])
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.213.0.0/24 scram-sha-256\n")
        self.start()
        self.psql("CREATE ROLE grimos LOGIN PASSWORD 'grimos'")
        self.psql("CREATE DATABASE grimos OWNER grimos")

    def as_postgres(self, argv: list[str]) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              check=False, cwd="/")
        if done.returncode != 0:
            raise HostError(f"{argv[0]}: {done.stderr.strip()}")

    def psql(self, sql: str) -> None:
        self.as_postgres([str(self.bin / "psql"), "-h", str(self.data), "-p", str(PG_PORT), "-U", "postgres",
                          "-d", "postgres", "-qc", sql])

    def start(self) -> float:
        """Starts the server; how long until it accepted connections."""
        # setpriv execs the server (runuser would stay its parent and handle the signals).
        argv = in_ns(self.net.namespace(self.host), "setpriv", "--reuid=postgres", "--regid=postgres",
                     "--init-groups", str(self.bin / "postgres"), "-D", str(self.data),
                     "-c", f"listen_addresses={self.address}", "-c", f"port={PG_PORT}",
                     "-c", f"unix_socket_directories={self.data}", "-c", "max_connections=300")
        self.process = spawn("postgres", argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, self.folder)
        process = self.process
        return wait_for("PostgreSQL accepts connections", self.accepts, 30, process.alive)

    def accepts(self) -> bool:
        done = subprocess.run(in_ns(self.net.namespace(self.host), str(self.bin / "pg_isready"), "-q",
                                    "-h", self.address, "-p", str(PG_PORT)), check=False)
        return done.returncode == 0

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, what is committed stays."""
        if self.process is not None:
            self.process.signal(signal.SIGINT)
            self.process.wait(30)


class Replica:
    """One auth-service or user-service process on its host."""

    def __init__(self, kind: str, host: str, net: Net, bins: Path, folder: Path, env: dict[str, str]):
        self.kind, self.host, self.net, self.bins, self.folder, self.env = kind, host, net, bins, folder, env
        self.address = net.hosts[host]
        self.process: Process | None = None
        self.starts = 0

    @property
    def port(self) -> int:
        return AUTH_PORT if self.kind == "auth-service" else USER_PORT

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> None:
        self.starts += 1
        argv = in_ns(self.net.namespace(self.host), str(self.bins / self.kind))
        self.process = spawn(f"{self.host}-{self.starts}", argv, self.env, self.folder)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 30) -> None:
        """Stops it (SIGTERM: drain, then stop) and waits until it has exited cleanly."""
        if self.process is None:
            return
        self.process.signal(sig)
        code = self.process.wait(within)
        if code != 0:
            raise HostError(f"{self.host} exited with {code}:\n{self.process.tail()}")

    def tail(self) -> str:
        return self.process.tail() if self.process else "    (never started)"


def service_env(**settings: str) -> dict[str, str]:
    """The environment of a service: PATH and these settings, nothing inherited."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "info"}
    env.update(settings)
    return env


class Nginx:
    """nginx in front of the user-service replicas: HTTP/JSON on port 80 (HTTP/1.1 to the
    upstream) and gRPC on port 81 (HTTP/2 cleartext, `grpc_pass`). Which replicas are upstream is
    a file of its own, rewritten and reloaded (SIGHUP) as an ingress controller would."""

    def __init__(self, net: Net, host: str, folder: Path):
        self.net, self.host = net, host
        self.folder = folder / "nginx"
        self.folder.mkdir()
        self.address = net.hosts[host]
        self.process: Process | None = None
        if shutil.which("nginx") is None:
            raise HostError("nginx is not installed (Debian: nginx)")

    def configure(self, upstream: list[str]) -> None:
        servers = "".join(f"        server {endpoint} max_fails=0;\n" for endpoint in upstream)
        (self.folder / "upstreams.conf").write_text(
            "upstream users_http {\n" + servers + "}\n"
            "upstream users_grpc {\n" + servers + "        keepalive 16;\n}\n")
        f = self.folder
        (f / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {f}/nginx.pid;
error_log {f}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {f}/client_body;
    proxy_temp_path {f}/proxy;
    fastcgi_temp_path {f}/fastcgi;
    uwsgi_temp_path {f}/uwsgi;
    scgi_temp_path {f}/scgi;
    include {f}/upstreams.conf;
    server {{
        listen {self.address}:{HTTP_PORT};
        location / {{
            proxy_pass http://users_http;
            proxy_next_upstream error timeout;
            proxy_read_timeout 30s;
        }}
    }}
    server {{
        listen {self.address}:{GRPC_PORT} http2;
        location / {{
            grpc_pass grpc://users_grpc;
            grpc_next_upstream error timeout;
            grpc_read_timeout 30s;
        }}
    }}
}}
""")

    def start(self, upstream: list[str]) -> None:
        self.configure(upstream)
        argv = in_ns(self.net.namespace(self.host), "nginx", "-p", str(self.folder), "-c",
                     str(self.folder / "nginx.conf"), "-e", str(self.folder / "error.log"))
        self.process = spawn("nginx", argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, self.folder.parent)
        process = self.process
        wait_for("nginx answers", lambda: http_status(f"http://{self.address}:{HTTP_PORT}/healthz") is not None,
                 15, process.alive)

    def upstream(self, endpoints: list[str]) -> None:
        """Sends requests to `endpoints` from now on (a graceful reload: old workers finish)."""
        self.configure(endpoints)
        if self.process is not None:
            self.process.signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(10)
            except HostError:
                self.process.kill()


def new_token() -> str:
    return secrets.token_urlsafe(32)
