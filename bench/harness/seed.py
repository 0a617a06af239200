"""The data a run loads against: the databases (SQLite files, or a PostgreSQL database made for
the run) and the users in them. Real users go through the HTTP API (an admin, the bench user,
the login users); bulk users go straight into both databases, sharing one real Argon2 hash."""

from __future__ import annotations

import csv
import io
import re
import secrets
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from .common import (
    ADMIN_EMAIL,
    BENCH_EMAIL,
    BENCH_NAME,
    LOGIN_USERS,
    PASSWORD,
    BenchError,
    log,
)
from .probes import http


class SqliteStore:
    """The default: each service's SQLite file in the bench's data directory."""

    name = "SQLite"

    def __init__(self, workdir: Path):
        self.dir = workdir

    def urls(self) -> dict[str, str]:
        return {
            "AUTH_DATABASE_URL": f"sqlite://{self.dir}/auth.db",
            "USER_DATABASE_URL": f"sqlite://{self.dir}/user.db",
        }

    def scalar(self, service: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with sqlite3.connect(self.dir / f"{service}.db", timeout=30) as db:
            return db.execute(sql, params).fetchone()[0]

    def insert(self, service: str, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        db = sqlite3.connect(self.dir / f"{service}.db", timeout=60)
        try:
            db.execute("PRAGMA busy_timeout = 60000")
            marks = ", ".join("?" for _ in columns)
            with db:
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        pass


class PostgresStore:
    """`--postgres URL`: a new database on that server for this run (dropped at the end), which
    both services share, each in its own schema (auth_service, user_service). Direct access goes
    through `psql`."""

    name = "PostgreSQL"

    def __init__(self, server_url: str):
        if not re.match(r"^postgres(ql)?://[^/]+/", server_url):
            raise BenchError("--postgres wants a postgres://user:password@host:port/database URL")
        self.server_url = server_url
        base, _, query = server_url.partition("?")
        self.database = f"grimos_bench_{secrets.token_hex(6)}"
        self.url = base.rsplit("/", 1)[0] + "/" + self.database + (f"?{query}" if query else "")
        self.psql(self.server_url, f"CREATE DATABASE {self.database}")
        self.created = True

    @staticmethod
    def psql(url: str, sql: str, data: str | None = None) -> str:
        argv = ["psql", url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]
        try:
            done = subprocess.run(argv, input=(data or "").encode(), capture_output=True,
                                  timeout=600, check=False)
        except FileNotFoundError as e:
            raise BenchError("psql is not installed (apt-get install postgresql-client)") from e
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"psql did not finish within 600 s: {sql[:80]}") from e
        if done.returncode != 0:
            raise BenchError(f"psql failed on {sql[:80]!r}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def urls(self) -> dict[str, str]:
        return {"AUTH_DATABASE_URL": self.url, "USER_DATABASE_URL": self.url}

    def scalar(self, service: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        # Only the bench's own constant strings are substituted here (no quotes in them).
        for param in params:
            if "'" in str(param):
                raise BenchError(f"unexpected quote in {param!r}")
            sql = sql.replace("?", f"'{param}'", 1)
        out = self.psql(self.url, f"SET search_path TO {service}_service; {sql}").strip()
        return out.splitlines()[-1] if out else None

    def insert(self, service: str, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        self.psql(self.url, f"COPY {service}_service.{table} ({', '.join(columns)}) FROM STDIN "
                  "WITH (FORMAT csv)", buffer.getvalue())
        self.psql(self.url, f"ANALYZE {service}_service.{table}")

    def close(self) -> None:
        if self.created:
            self.created = False
            self.psql(self.server_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


Store = SqliteStore | PostgresStore


def open_store(postgres_url: str | None, workdir: Path) -> Store:
    """PostgreSQL on that server when a URL is given, else SQLite files in `workdir`."""
    return PostgresStore(postgres_url) if postgres_url else SqliteStore(workdir)


def uuid7(ms: int) -> str:
    """A UUID v7 text id for the Unix time `ms`, like `uuid::Uuid::now_v7()`."""
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= secrets.randbits(12) << 64
    value |= 0b10 << 62
    value |= secrets.randbits(62)
    return str(uuid.UUID(int=value))


class Seeder:
    """The users of a run, and the tokens the workloads send (after `seed_real_users`)."""

    admin: dict[str, Any]
    bench_user: dict[str, Any]
    login_emails: list[str]
    admin_token: str
    user_token: str

    def __init__(self, user_base: str, store: Store):
        self.user_base = user_base
        self.store = store

    def sign_up(self, email: str, name: str) -> dict[str, Any]:
        body = {"email": email, "password": PASSWORD, "displayName": name}
        reply = http("POST", f"{self.user_base}/v1/users", body, expect=(200, 201))
        return cast(dict[str, Any], reply["user"])

    def login(self, email: str) -> str:
        body = {"email": email, "password": PASSWORD}
        reply = http("POST", f"{self.user_base}/v1/auth/login", body)
        return str(reply["accessToken"])

    def seed_real_users(self) -> None:
        t0 = time.perf_counter()
        self.admin = self.sign_up(ADMIN_EMAIL, "Bench Admin")
        self.bench_user = self.sign_up(BENCH_EMAIL, BENCH_NAME)
        self.login_emails = [f"login-{i:02d}@example.com" for i in range(LOGIN_USERS)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda e: self.sign_up(e, "Login User"), self.login_emails))
        self.admin_token = self.login(ADMIN_EMAIL)
        self.user_token = self.login(BENCH_EMAIL)
        if "admin" not in self.admin.get("roles", []):
            raise BenchError(f"{ADMIN_EMAIL} did not get the admin role: {self.admin}")
        log(f"seeded {2 + LOGIN_USERS} users through the API in {time.perf_counter() - t0:.1f} s")

    def active_users(self) -> int:
        return int(self.store.scalar("user", "SELECT count(*) FROM users WHERE state = 'active'"))

    def bulk_seed(self, total: int) -> None:
        """Inserts rows straight into both databases until `total` active users exist."""
        have = self.active_users()
        missing = total - have
        if missing <= 0:
            return
        t0 = time.perf_counter()
        password_hash = str(self.store.scalar(
            "auth", "SELECT password_hash FROM credentials WHERE email = ?", (self.login_emails[0],)))
        # Earlier than the real users, one per millisecond, so the real ones stay at the end.
        start_ms = int(time.time() * 1000) - 30 * 24 * 3600 * 1000
        first = have
        users, creds = [], []
        for i in range(first, first + missing):
            ms = start_ms + i
            micros = ms * 1000 + (i * 7919) % 1000
            uid = uuid7(ms)
            email = f"bulk-{i:07d}@example.com"
            users.append((uid, email, f"Bulk User {i}", "user", "active", micros, micros))
            creds.append((uid, email, password_hash, "user", micros // 1_000_000))
        self.store.insert("user", "users", ["id", "email", "display_name", "roles", "state",
                                             "create_time", "update_time"], users)
        self.store.insert("auth", "credentials", ["user_id", "email", "password_hash", "roles",
                                                  "create_time"], creds)
        count = self.active_users()
        if count != total:
            raise BenchError(f"bulk seeding left {count} active users, wanted {total}")
        log(f"bulk-inserted {missing} users (now {total}) in {time.perf_counter() - t0:.1f} s")

    def page_token_after(self, rows: int) -> str:
        """The ListUsers page token that continues after the first `rows` users."""
        token, done = "", 0
        while done < rows:
            size = min(1000, rows - done)
            query = f"pageSize={size}" + (f"&pageToken={token}" if token else "")
            reply = http("GET", f"{self.user_base}/v1/users?{query}", token=self.admin_token)
            got = len(reply.get("users", []))
            if got != size:
                raise BenchError(f"ListUsers returned {got} users, expected {size}")
            done += got
            token = reply.get("nextPageToken", "")
            if not token:
                raise BenchError(f"ListUsers ended after {done} users, wanted {rows}")
        return token
