"""The steady load through nginx, and what it saw.

`Load` runs a fixed number of worker threads that together make RATE requests a second (fewer
when requests are slow: every worker waits for its answer), each one of: a sign-up
(`POST /v1/users`), a login (`POST /v1/auth/login`), `GET /v1/users/me`, or gRPC
`UserService.GetCurrentUser`, by weight. Every request is recorded with its start and end and
whether it failed (an HTTP status other than the success one, a gRPC status other than OK, or
no answer), so a scenario reads the failures of its own time window. Sign-ups that succeeded
are remembered: at the end every one of them must still exist.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc
from grimos.user.v1 import user_pb2, user_pb2_grpc

PASSWORD = "topology-password-0123"
RATE = 40.0  # requests a second, all workers together
WORKERS = 8
TIMEOUT = 10.0  # seconds, per request
WEIGHTS = {"sign-up": 1, "login": 1, "me (HTTP)": 5, "me (gRPC)": 5}


@dataclass
class Record:
    kind: str
    start: float
    end: float
    ok: bool
    detail: str = ""


@dataclass
class Account:
    email: str
    user_id: str
    token: str


@dataclass
class Seen:
    records: list[Record] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)  # every sign-up that succeeded
    signed_in: list[Account] = field(default_factory=list)  # those with a token
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)

    def between(self, start: float, end: float) -> list[Record]:
        """The requests that started in [start, end)."""
        with self.lock:
            return [r for r in self.records if start <= r.start < end]


class Client:
    """HTTP/JSON and gRPC through nginx."""

    def __init__(self, address: str, http_port: int, grpc_port: int):
        self.address, self.http_port = address, http_port
        self.channel = grpc.insecure_channel(f"{address}:{grpc_port}")
        self.users = user_pb2_grpc.UserServiceStub(self.channel)

    def http(self, method: str, path: str, body: object | None = None, token: str | None = None) -> tuple[int, dict[str, object]]:
        """One request on a connection of its own; (status, JSON body)."""
        connection = http.client.HTTPConnection(self.address, self.http_port, timeout=TIMEOUT)
        headers = {"connection": "close"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {"raw": raw[:200].decode(errors="replace")}
            return response.status, parsed if isinstance(parsed, dict) else {}
        finally:
            connection.close()

    def sign_up(self, email: str) -> Account | str:
        """An account, or why not."""
        status, body = self.http("POST", "/v1/users", {"email": email, "password": PASSWORD, "displayName": "Topology"})
        if status != 201:
            return f"sign-up: HTTP {status} {body.get('message', '')}"
        user = body.get("user")
        user_id = user.get("id") if isinstance(user, dict) else None
        token = self.login(email)
        if token.startswith("login:"):
            return token
        return Account(email, str(user_id), token)

    def login(self, email: str) -> str:
        """The access token, or why not (prefixed `login:`)."""
        status, body = self.http("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
        token = body.get("accessToken")
        if status != 200 or not isinstance(token, str):
            return f"login: HTTP {status} {body.get('message', '')}"
        return token

    def close(self) -> None:
        self.channel.close()


class Load:
    """The workers, started by `start` and stopped by `stop`."""

    def __init__(self, client: Client, seen: Seen, rate: float = RATE, workers: int = WORKERS):
        self.client, self.seen, self.rate, self.workers = client, seen, rate, workers
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.slot_lock = threading.Lock()
        self.next_slot = 0.0
        kinds = list(WEIGHTS)
        self.kinds = [k for k in kinds for _ in range(WEIGHTS[k])]

    def start(self) -> None:
        self.next_slot = time.monotonic()
        for i in range(self.workers):
            thread = threading.Thread(target=self.work, args=(random.Random(i),), daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT + 5)

    def slot(self) -> float:
        with self.slot_lock:
            slot = max(self.next_slot, time.monotonic())
            self.next_slot = slot + 1.0 / self.rate
            return slot

    def work(self, rng: random.Random) -> None:
        while not self.stopping.is_set():
            delay = self.slot() - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            kind = rng.choice(self.kinds)
            start = time.monotonic()
            try:
                detail = self.one(kind, rng)
            except Exception as e:  # no answer (or a bug here): a failed request either way
                detail = f"{type(e).__name__}: {e}"
            self.seen.add(Record(kind, start, time.monotonic(), detail == "", detail))

    def one(self, kind: str, rng: random.Random) -> str:
        """Makes one request of `kind`; "" when it succeeded, else what went wrong. A login
        signs in an account that signed up; the `me` requests use signed-in accounts."""
        with self.seen.lock:
            if kind == "login" or not self.seen.signed_in:
                pool = self.seen.accounts
            else:
                pool = self.seen.signed_in
            account = rng.choice(pool) if pool else None
        if kind == "sign-up" or account is None:
            email = f"load-{uuid.uuid4()}@topology.grimos.test"
            status, body = self.client.http("POST", "/v1/users",
                                            {"email": email, "password": PASSWORD, "displayName": "Load"})
            if status != 201:
                return f"HTTP {status} {body.get('message', '')}"
            user = body.get("user")
            user_id = str(user.get("id")) if isinstance(user, dict) else ""
            with self.seen.lock:
                self.seen.accounts.append(Account(email, user_id, ""))
            return ""
        if kind == "login" or not account.token:
            token = self.client.login(account.email)
            if token.startswith("login:"):
                return token
            with self.seen.lock:
                if not account.token:
                    self.seen.signed_in.append(account)
                account.token = token
            return ""
        if kind == "me (HTTP)":
            status, body = self.client.http("GET", "/v1/users/me", token=account.token)
            return "" if status == 200 else f"HTTP {status} {body.get('message', '')}"
        try:
            self.client.users.GetCurrentUser(user_pb2.GetCurrentUserRequest(), timeout=TIMEOUT,
                                             metadata=(("authorization", f"Bearer {account.token}"),))
            return ""
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call):
                return f"gRPC {e.code().name} {e.details()}"
            return f"gRPC {e}"
