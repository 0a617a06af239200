"""`just test-image`: the image of deploy/Containerfile, built with buildah and started the way
a container runtime starts it, serves the system as a non-root user on a read-only root.

1. Build: deploy/build-image.sh, as `just image` runs it: the release binaries (`cargo build
   --release`, which the benchmark stages of CI have already done), the context, the runtime
   base and the image, with buildah on a storage of this test's own under target/image/ (vfs
   driver, chroot isolation) that it removes at the end.
2. The image: a numeric non-root user, the exposed ports, the volume and the entrypoint in its
   config; in its files no shell and no package manager, the CA bundle, and nothing but the two
   binaries, the libraries they load and a few /etc files.
3. Start: auth-service and user-service each run from the container's root filesystem (`buildah
   from` + `buildah mount`) as a runtime runs it: in a mount namespace of its own, where the root
   is read-only, the data volume (/var/lib/grimos) a fresh folder, /tmp a tmpfs, /proc, /dev,
   /etc/hosts and /etc/resolv.conf the host's and the service token a read-only file under
   /run/secrets; chrooted into it, with the image's user, working directory and environment
   plus this test's settings, running the image's entrypoint (auth-service with the entrypoint
   /usr/local/bin/auth-service, as deploy/compose.yaml and deploy/k8s do). The network is the
   host's (loopback only): each service listens on port 0 of 127.0.0.1 and the test reads the
   port from its "listening" log line; user-service finds auth-service at dns:///localhost:PORT,
   through the image's glibc name resolution.
4. Proof: a write to the root fails with EROFS inside the container, as its user; /readyz,
   sign-up, login and /v1/users/me answer; both processes run as the image's uid with no
   capabilities; the data lands in the volumes; the health-check commands of compose.yaml
   exit 0; SIGTERM stops both cleanly.

`--enter SPEC` is the inside half of step 3 (run by `unshare`): mount, chroot, drop to the
user, exec the entrypoint.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/grimos-services:test"
EMAIL = "image-test@example.com"
PASSWORD = "image-test-password"
LISTENING = re.compile(r"listening.*?\baddr=(127\.0\.0\.1:\d+)")
METRICS = re.compile(r"metrics on HTTP addr=(127\.0\.0\.1:\d+)")
# Names that must not be anywhere in the image: shells and package managers.
FORBIDDEN = {"sh", "bash", "dash", "ash", "busybox", "apt", "apt-get", "dpkg", "rpm", "apk", "yum", "dnf"}
BINARIES = {"usr/local/bin/auth-service", "usr/local/bin/user-service"}
# Every file the image holds besides the binaries and the libraries `ldd` names for them.
ETC_FILES = {"etc/group", "etc/nsswitch.conf", "etc/passwd", "etc/ssl/certs/ca-certificates.crt"}


class Failed(Exception):
    """A check of the image failed."""


def log(message: str) -> None:
    print(f"test-image: {message}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Runs argv and returns its stdout; fails with its output if it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise Failed(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def target_dir() -> Path:
    out = run(["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"])
    return Path(json.loads(out)["target_directory"])


class Buildah:
    """buildah on a storage of its own (vfs driver, chroot isolation, through the environment
    deploy/build-image.sh runs in too): nothing outside `home` is touched, and removing `home`
    removes every image and container."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        conf = home / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{home / "storage"}"\nrunroot = "{home / "run"}"\n'
        )
        self.env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}

    def __call__(self, *argv: str) -> str:
        return run(["buildah", *argv], env=self.env)

    def build(self) -> None:
        run([str(ROOT / "deploy" / "build-image.sh"), IMAGE], env=self.env, timeout=3600)

    def remove_all(self) -> None:
        for argv in (["rm", "--all"], ["rmi", "--all", "--force"]):
            subprocess.run(["buildah", *argv], env=self.env, capture_output=True, check=False, timeout=120)
        shutil.rmtree(self.home / "storage", ignore_errors=True)
        shutil.rmtree(self.home / "run", ignore_errors=True)


@dataclass
class ImageConfig:
    user: tuple[int, int]
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str


def image_config(buildah: Buildah) -> ImageConfig:
    """The OCI config of the image, checked for what the deployment relies on."""
    config = json.loads(buildah("inspect", "--type", "image", IMAGE))["OCIv1"]["config"]
    user = str(config.get("User", ""))
    match = re.fullmatch(r"(\d+):(\d+)", user)
    check(match is not None, f"the image's user is {user!r}, not a numeric uid:gid")
    assert match is not None
    uid, gid = int(match.group(1)), int(match.group(2))
    check(uid != 0 and gid != 0, f"the image runs as root ({user})")
    ports = set(config.get("ExposedPorts", {}))
    check(ports == {"8080/tcp", "50051/tcp", "9090/tcp"}, f"exposed ports {sorted(ports)}")
    volumes = set(config.get("Volumes", {}))
    check(volumes == {"/var/lib/grimos"}, f"volumes {sorted(volumes)}")
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    for name in ("AUTH_DATABASE_URL", "USER_DATABASE_URL", "AUTH_SIGNING_KEY_FILE"):
        check("/var/lib/grimos/" in env.get(name, ""), f"{name} is {env.get(name)!r}, not under the volume")
    entrypoint = list(config.get("Entrypoint") or [])
    check(entrypoint == ["/usr/local/bin/user-service"], f"entrypoint {entrypoint}")
    log(f"config: user {user}, ports {sorted(ports)}, volume {sorted(volumes)}, entrypoint {entrypoint}")
    return ImageConfig((uid, gid), env, entrypoint, list(config.get("Cmd") or []), config.get("WorkingDir") or "/")


def libraries(binary: Path) -> set[str]:
    """The shared libraries and the loader `ldd` names for binary, as paths in the image."""
    found = set()
    for line in run(["ldd", str(binary)]).splitlines():
        words = line.split()
        path = words[2] if len(words) > 2 and words[1] == "=>" else words[0]
        if path.startswith("/"):
            found.add(path.lstrip("/"))
    return found


def check_files(rootfs: Path, uid: int) -> None:
    """Exactly the binaries, the libraries they load and a few /etc files: no shell, no
    package manager; the volume belongs to the user."""
    expected = BINARIES | ETC_FILES
    for binary in BINARIES:
        expected |= libraries(rootfs / binary)
    files = set()
    for path in rootfs.rglob("*"):
        relative = path.relative_to(rootfs).as_posix()
        check(path.name not in FORBIDDEN, f"the image holds {relative}")
        if not path.is_dir():
            files.add(relative)
    check(files == expected, f"unexpected or missing files {sorted(files ^ expected)}")
    check((rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000, "the CA bundle is empty")
    volume = (rootfs / "var/lib/grimos").stat()
    check(volume.st_uid == uid and volume.st_mode & 0o777 == 0o700, "/var/lib/grimos is not the user's own (0700)")
    for parent in ("var", "var/lib", "usr/local/bin"):
        check((rootfs / parent).stat().st_uid == 0, f"/{parent} is not root's")
    size = sum((rootfs / f).stat().st_size for f in files)
    log(f"files: {len(files)} ({size / 1e6:.1f} MB), {len(expected - BINARIES - ETC_FILES)} of them what ldd names; no shell or package manager")


@dataclass
class Mount:
    """One mount of the container: a bind of a host path, or a tmpfs."""

    target: str
    source: str | None = None  # None: a tmpfs
    read_only: bool = False
    recursive: bool = False


class Container:
    """The processes started from one mounted root filesystem."""

    def __init__(self, rootfs: Path, config: ImageConfig, workdir: Path):
        self.rootfs = rootfs
        self.config = config
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spec(self, argv: list[str], env: dict[str, str], mounts: list[Mount]) -> dict[str, Any]:
        runtime = [
            Mount("/proc", "/proc", recursive=True),
            Mount("/dev", "/dev", recursive=True),
            Mount("/etc/hosts", "/etc/hosts", read_only=True),
            Mount("/etc/resolv.conf", "/etc/resolv.conf", read_only=True),
            Mount("/tmp"),
        ]
        return {
            "root": str(self.rootfs),
            "mounts": [vars(m) for m in runtime + mounts],
            "uid": self.config.user[0],
            "gid": self.config.user[1],
            "workdir": self.config.workdir,
            "env": {**self.config.env, **env},
            "argv": argv,
        }

    def command(self, argv: list[str], env: dict[str, str], mounts: list[Mount]) -> list[str]:
        spec = json.dumps(self.spec(argv, env, mounts))
        return ["unshare", "--mount", "--propagation", "private", sys.executable, __file__, "--enter", spec]

    def start(self, name: str, argv: list[str], env: dict[str, str], mounts: list[Mount]) -> tuple[subprocess.Popen[bytes], Path, str]:
        """Starts argv (the entrypoint) and waits for its "listening" line; the process (the
        service itself: unshare and the entering half exec into it), its log and address."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(self.command(argv, env, mounts), stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = LISTENING.search(log_path.read_text(errors="replace"))
            if found:
                return proc, log_path, found.group(1)
            if proc.poll() is not None:
                raise Failed(f"{name} exited {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        raise Failed(f"{name} did not log its address within 30 s:\n{log_path.read_text(errors='replace')}")

    def exec(self, argv: list[str], env: dict[str, str], mounts: list[Mount]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv, env, mounts), capture_output=True, text=True, timeout=30, check=False)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def http(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else {}


def wait_ready(base: str, seconds: float) -> float:
    """Polls /readyz until 200; the time it took."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < seconds:
        try:
            status, _ = http("GET", f"{base}/readyz")
            if status == 200:
                return time.monotonic() - start
            last = status
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise Failed(f"{base}/readyz did not answer 200 within {seconds} s (last: {last})")


def auth_metrics(log_path: Path) -> str:
    """GET /metrics of auth-service's metrics port, whose address it logs once it serves."""
    deadline = time.monotonic() + 10
    while not (found := METRICS.search(log_path.read_text(errors="replace"))):
        check(time.monotonic() < deadline, "auth-service did not log its metrics port within 10 s")
        time.sleep(0.05)
    with urllib.request.urlopen(f"http://{found.group(1)}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def check_process(name: str, pid: int, uid: int, gid: int) -> None:
    status = proc_status(pid)
    uids = status["Uid"].split()
    gids = status["Gid"].split()
    check(uids == [str(uid)] * 4 and gids == [str(gid)] * 4, f"{name} runs as uid {uids}, gid {gids}")
    check(status["CapEff"].strip("0") == "", f"{name} holds capabilities {status['CapEff']}")
    check(status["Groups"] == "", f"{name} has supplementary groups {status['Groups']}")
    root = Path(f"/proc/{pid}/root").resolve()
    log(f"{name}: pid {pid}, uid {uid}, gid {gid}, no capabilities, root {root}")


def serve_and_check(container: Container, workdir: Path) -> None:
    uid, gid = container.config.user
    token_file = workdir / "secrets" / "service-token"
    token_file.parent.mkdir()
    token_file.write_text(secrets.token_hex(32) + "\n")
    token_file.chmod(0o444)
    volumes = {}
    for name in ("auth", "user"):
        volume = workdir / f"{name}-data"
        volume.mkdir(mode=0o700)
        os.chown(volume, uid, gid)
        volumes[name] = volume
    token = {"GRIMOS_SERVICE_TOKEN_FILE": "/run/secrets/service-token"}

    def mounts(name: str) -> list[Mount]:
        return [
            Mount("/var/lib/grimos", str(volumes[name])),
            Mount("/run/secrets/service-token", str(token_file), read_only=True),
        ]

    auth_env = {**token, "AUTH_LISTEN_ADDR": "127.0.0.1:0", "AUTH_METRICS_LISTEN_ADDR": "127.0.0.1:0"}
    auth_argv = ["/usr/local/bin/auth-service"]
    auth, auth_log, auth_addr = container.start("auth-service", auth_argv, auth_env, mounts("auth"))
    port = auth_addr.rsplit(":", 1)[1]
    user_env = {**token, "USER_LISTEN_ADDR": "127.0.0.1:0", "AUTH_SERVICE_ADDRESS": f"dns:///localhost:{port}"}
    user_argv = container.config.entrypoint + container.config.cmd
    user, user_log, user_addr = container.start("user-service", user_argv, user_env, mounts("user"))
    for name, log_path in (("auth-service", auth_log), ("user-service", user_log)):
        check("read-only root filesystem" in log_path.read_text(), f"{name} did not start on a read-only root")
    base = f"http://{user_addr}"
    log(f"auth-service at {auth_addr}, user-service at {base} (auth through dns:///localhost:{port})")

    ready = wait_ready(base, 30)
    log(f"/readyz 200 after {ready:.1f} s")
    status, created = http("POST", f"{base}/v1/users", {"email": EMAIL, "password": PASSWORD, "displayName": "Image"})
    check(status == 201, f"sign-up: {status} {created}")
    status, login = http("POST", f"{base}/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
    check(status == 200 and "accessToken" in login, f"login: {status} {login}")
    status, me = http("GET", f"{base}/v1/users/me", token=login["accessToken"])
    check(status == 200 and me.get("user", {}).get("email") == EMAIL, f"/me: {status} {me}")
    log(f"sign-up 201, login 200, /me 200 ({me['user']['id']})")
    metrics = auth_metrics(auth_log)
    credential_rpc = 'rpc="/grimos.auth.v1.AuthService/CreateCredential"'
    check(any(line.startswith("grpc_server_requests_total{") and credential_rpc in line for line in metrics.splitlines()), f"auth-service's /metrics does not count the CreateCredential call:\n{metrics}")
    log("auth-service's metrics port counts the calls it answered")

    check_process("auth-service", auth.pid, uid, gid)
    check_process("user-service", user.pid, uid, gid)
    for name, files in (("auth", ["auth.db", "auth-signing-key.pem"]), ("user", ["user.db"])):
        for file in files:
            path = volumes[name] / file
            check(path.exists() and path.stat().st_uid == uid, f"{file} is not in the {name} volume, owned by {uid}")
    log("auth.db, auth-signing-key.pem and user.db are in the volumes, owned by the image's user")

    # The health checks of deploy/compose.yaml, run in each service's container.
    probes = [
        ("auth-service", ["/usr/local/bin/auth-service", "--health-check"], {**auth_env, "AUTH_LISTEN_ADDR": auth_addr}, "auth"),
        ("user-service", [*user_argv, "--health-check"], {**user_env, "USER_LISTEN_ADDR": user_addr}, "user"),
    ]
    for name, argv, env, volume_name in probes:
        done = container.exec(argv, env, mounts(volume_name))
        check(done.returncode == 0, f"{name} --health-check exited {done.returncode}: {done.stdout}{done.stderr}")
    log("auth-service --health-check and user-service --health-check exit 0")

    for name, proc in (("user-service", user), ("auth-service", auth)):
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired as error:
            raise Failed(f"{name} did not stop within 40 s of SIGTERM") from error
        check(code == 0, f"{name} exited {code} on SIGTERM")
    log("SIGTERM: both stopped cleanly")


def build_and_check() -> None:
    started = time.monotonic()
    home = target_dir() / "image"
    buildah = Buildah(home)
    buildah.remove_all()  # what an interrupted run left
    buildah.build()
    imaged = time.monotonic()
    log(f"image {IMAGE} built in {imaged - started:.1f} s (cargo build --release included)")
    workdir = Path(tempfile.mkdtemp(prefix="grimos-image-"))
    container = None
    try:
        config = image_config(buildah)
        name = buildah("from", "--pull-never", IMAGE).strip()
        rootfs = Path(buildah("mount", name).strip())
        check_files(rootfs, config.user[0])
        container = Container(rootfs, config, workdir)
        serve_and_check(container, workdir)
    except Failed:
        for log_file in sorted(workdir.glob("*.log")):
            print(f"== {log_file.name}\n{log_file.read_text(errors='replace')[-6000:]}", file=sys.stderr)
        raise
    finally:
        if container is not None:
            container.stop_all()
        buildah.remove_all()
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"passed in {time.monotonic() - started:.1f} s (build {imaged - started:.1f} s, checks {time.monotonic() - imaged:.1f} s)")


def enter(spec: dict[str, Any]) -> None:
    """Inside a new mount namespace: mount what a runtime mounts, make the root read-only,
    chroot, become the image's user, check the root refuses writes, exec the entrypoint."""
    root = spec["root"]
    subprocess.run(["mount", "--bind", root, root], check=True)
    for mount in spec["mounts"]:
        target = root + mount["target"]
        # A runtime creates missing mount points in the container's own layer, as here.
        if mount["source"] is None or Path(mount["source"]).is_dir():
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Path(target).touch(exist_ok=True)
        if mount["source"] is None:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=16m,nosuid,nodev", "tmpfs", target], check=True)
            continue
        bind = "--rbind" if mount["recursive"] else "--bind"
        subprocess.run(["mount", bind, mount["source"], target], check=True)
        if mount["read_only"]:
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", root], check=True)
    os.chroot(root)
    os.chdir(spec["workdir"])
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    try:
        with open("/.grimos-write-test", "w"):
            pass
    except OSError as error:
        if error.errno != errno.EROFS:
            raise
        print("test-image: read-only root filesystem (a write fails with EROFS)", file=sys.stderr, flush=True)
    else:
        sys.exit("test-image: the root filesystem is writable")
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--enter", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enter:
        enter(json.loads(args.enter))
        return 1  # not reached: enter execs
    if os.geteuid() != 0:
        print("test-image: needs root (mount namespaces, chroot)", file=sys.stderr)
        return 1
    if shutil.which("buildah") is None:
        print("test-image: buildah is missing (apt-get install buildah)", file=sys.stderr)
        return 1
    try:
        build_and_check()
    except Failed as error:
        print(f"test-image: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
