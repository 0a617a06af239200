"""The attacks of the hostile-client suite (issue 12), each bounded in time and count.

Every attack opens its own connections to 127.0.0.1, returns what it observed (numbers for the
JSON report and a one-line summary for the table) and its checks: the behaviour the limits
promise (streams refused past the advertised cap, abusive connections closed, slow or idle
connections closed within their timeout, oversized input refused with the right status, the
413 readable). RSS and the normal client's latency are measured around each attack by the
runner, not here.
"""

from __future__ import annotations

import errno
import functools
import json
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from h2raw import (
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    PING,
    RST_STREAM,
    SETTINGS,
    H2Conn,
    frame,
    grpc_headers,
    grpc_message,
    header_block,
)

# The limits the fixes promise (issue 12; the planned GRIMOS_* defaults). The system runs with
# these defaults except GRIMOS_MAX_CONNECTIONS, which the runner lowers to keep the idle pile
# cheap (CONNECTION_CAP).
MAX_STREAMS = 200  # GRIMOS_HTTP2_MAX_CONCURRENT_STREAMS
HEADER_READ_TIMEOUT = 10.0  # GRIMOS_HEADER_READ_TIMEOUT
BODY_READ_TIMEOUT = 10.0  # GRIMOS_BODY_READ_TIMEOUT
IDLE_TIMEOUT = 30.0  # GRIMOS_IDLE_TIMEOUT (and HTTP/2 keepalive 20 s + 10 s)
SEND_TIMEOUT = 10.0  # GRIMOS_SEND_TIMEOUT
CONNECTION_CAP = 200  # GRIMOS_MAX_CONNECTIONS as the runner sets it
MAX_BODY = 64 * 1024
# How late a timeout may fire and still count as on time: the attack's own polling, a loaded
# 2-core machine.
SLACK = 3.0

LOGIN_PATH = "/grimos.auth.v1.AuthService/Login"
HEALTH_PATH = "/grpc.health.v1.Health/Check"
CURRENT_USER_PATH = "/grimos.user.v1.UserService/GetCurrentUser"
CREATE_CREDENTIAL_PATH = "/grimos.auth.v1.AuthService/CreateCredential"

Check = tuple[str, bool, str]
T = TypeVar("T")


@dataclass
class Outcome:
    """What one attack saw."""

    summary: str
    checks: list[Check] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)


def parallel(jobs: list[Callable[[], T]]) -> list[T]:
    """Runs `jobs` on threads of their own; their results in order (an exception re-raised)."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], T]) -> None:
        try:
            results[i] = job()
        except BaseException as e:  # noqa: BLE001 - re-raised below in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def spread(values: list[float]) -> dict[str, float] | None:
    """min, median and max of `values` (None if empty): per-connection figures of an attack
    that opened thousands of connections, without listing each."""
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "p50": ordered[len(ordered) // 2], "max": ordered[-1]}


def connection_stats(conns: list[dict[str, Any]], amount: str) -> dict[str, Any]:
    """What the report keeps of a persistent attacker's connections."""
    return {
        "connections": len(conns),
        "closed_by_server": sum(1 for c in conns if c["closed_by_server"]),
        "stalled": sum(1 for c in conns if c["stalled"]),
        "goaway_codes": sorted({c["goaway"] for c in conns if c["goaway"] is not None}),
        amount: spread([c[amount] for c in conns]),
        "lifetime_s": spread([c["lifetime_s"] for c in conns]),
    }


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of `sock` (tcp_info.tcpi_state): 1 ESTABLISHED, 7 CLOSE (reset),
    8 CLOSE_WAIT (the peer sent FIN). Tells whether the server closed the connection without
    reading from it, which would drain what the server is blocked on."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 7


def peer_closed(sock: socket.socket) -> bool:
    return tcp_state(sock) in (7, 8, 9)  # CLOSE, CLOSE_WAIT, LAST_ACK


# ---------------------------------------------------------------------------------------------
# HTTP/2


def stream_flood(port: int, conns: int = 4, streams: int = 15_000, send_for: float = 10.0, hold: float = 5.0) -> Outcome:
    """`conns` attackers each open `streams` Login streams (HEADERS, no body, never ended)
    within `send_for` s, on a new connection whenever the server ends theirs, then hold what
    they have open for `hold` s."""

    def one() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        sent_total = 0
        deadline = time.monotonic() + send_for
        held: list[H2Conn] = []
        while sent_total < streams and time.monotonic() < deadline:
            try:
                c = H2Conn(port, send_timeout=2.0)
            except OSError as e:
                records.append({"connect_error": str(e)})
                time.sleep(0.1)
                continue
            c.wait_settings(3)
            block = header_block(grpc_headers(c.authority, LOGIN_PATH))
            sent = 0
            while sent_total < streams and time.monotonic() < deadline and not c.server_ended and not c.stalled:
                batch = [frame(HEADERS, END_HEADERS, c.new_stream_id(), block) for _ in range(min(250, streams - sent_total))]
                if c.send(b"".join(batch)):
                    sent += len(batch)
                    sent_total += len(batch)
                c.pump(0)
            c.pump(0.05)
            records.append({"conn": c, "sent": sent})
            held.append(c)
        hold_until = time.monotonic() + hold
        while time.monotonic() < hold_until:
            for c in held:
                c.pump(0)
            time.sleep(0.1)
        out = []
        for record in records:
            c = record.pop("conn", None)
            if c is None:
                out.append(record)
                continue
            sent = record["sent"]
            last = c.goaway.last_stream_id if c.goaway is not None else 1 << 31
            resets = {sid for sid, s in c.streams.items() if s.reset is not None}
            out.append(
                {
                    "advertised_max_streams": c.max_streams(),
                    "streams_sent": sent,
                    "streams_reset": len(resets),
                    # Streams the server still holds on a connection it kept open: those it
                    # neither refused nor put past its GOAWAY. (Once it has closed one, nothing
                    # is held; the reset may also have discarded its last frames unread.)
                    "streams_held": 0
                    if c.closed
                    else sum(1 for sid in range(1, 2 * sent, 2) if sid <= last and sid not in resets),
                    "goaway": None if c.goaway is None else c.goaway.error_code,
                    "closed_by_server": c.server_ended,
                    "stalled": c.stalled,
                }
            )
            c.close()
        return out

    per_conn = [r for lineage in parallel([one for _ in range(conns)]) for r in lineage if "streams_sent" in r]
    advertised = [r["advertised_max_streams"] for r in per_conn]
    held = [r["streams_held"] for r in per_conn] or [0]
    limit = min((a for a in advertised if a is not None), default=None)
    checks: list[Check] = [
        (
            f"advertises SETTINGS_MAX_CONCURRENT_STREAMS <= {MAX_STREAMS}",
            bool(advertised) and all(a is not None and a <= MAX_STREAMS for a in advertised),
            f"advertised {sorted(set(advertised), key=str)}",
        ),
        (
            f"holds at most the advertised cap (<= {MAX_STREAMS}) of streams on any connection it keeps open",
            max(held) <= min(limit or MAX_STREAMS, MAX_STREAMS),
            f"held {max(held)} on the busiest of {len(per_conn)} connections",
        ),
    ]
    closed = sum(1 for r in per_conn if r["closed_by_server"])
    summary = (
        f"max_streams={limit if limit is not None else 'none'}; {len(per_conn)} conns, "
        f"{sum(r['streams_sent'] for r in per_conn)} streams, held/conn max {max(held)}; "
        f"{closed} conns ended by server"
    )
    return Outcome(summary, checks, {"connections": per_conn})


def rapid_reset(port: int, conns: int = 4, duration: float = 6.0, survive: float = 3.0) -> Outcome:
    """HEADERS + DATA (a complete health check) then RST_STREAM(CANCEL) in a loop, 100 streams
    per write, on `conns` connections for `duration` s; a connection the server ends is
    replaced (a persistent attacker)."""

    def one() -> list[dict[str, Any]]:
        lineage: list[dict[str, Any]] = []
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline - 0.2:
            try:
                c = H2Conn(port, send_timeout=2.0)
            except OSError as e:
                lineage.append({"connect_error": str(e)})
                time.sleep(0.1)
                continue
            c.wait_settings(2)
            block = header_block(grpc_headers(c.authority, HEALTH_PATH))
            body = grpc_message(b"")
            sent = 0
            while time.monotonic() < deadline and not c.server_ended and not c.stalled:
                batch = []
                for _ in range(100):
                    sid = c.new_stream_id()
                    batch.append(frame(HEADERS, END_HEADERS, sid, block))
                    batch.append(frame(DATA, END_STREAM, sid, body))
                    batch.append(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
                if c.send(b"".join(batch)):
                    sent += 100
                c.pump(0)
            c.pump(0.05)
            ended = c.ended_at()
            lifetime = (ended if ended is not None else time.monotonic()) - c.opened_at
            lineage.append(
                {
                    "streams": sent,
                    "lifetime_s": round(lifetime, 3),
                    "goaway": None if c.goaway is None else c.goaway.error_code,
                    "closed_by_server": c.server_ended,
                    "stalled": c.stalled,
                }
            )
            c.close()
        return lineage

    lineages = parallel([one for _ in range(conns)])
    all_conns = [c for lineage in lineages for c in lineage if "streams" in c]
    survivors = [c for c in all_conns if not c["closed_by_server"] and c["lifetime_s"] >= survive]
    stalled = [c for c in all_conns if c["stalled"] and not c["closed_by_server"]]
    closed = [c for c in all_conns if c["closed_by_server"]]
    codes = sorted({c["goaway"] for c in closed if c["goaway"] is not None})
    streams_to_close = sorted(c["streams"] for c in closed)
    checks: list[Check] = [
        (
            f"closes every rapid-reset connection within {survive:.0f} s (GOAWAY or close)",
            not survivors and not stalled and bool(all_conns),
            f"{len(closed)} of {len(all_conns)} connections closed by the server, "
            f"{len(survivors)} survived >= {survive:.0f} s, {len(stalled)} stalled",
        )
    ]
    median = streams_to_close[len(streams_to_close) // 2] if streams_to_close else None
    summary = (
        f"{len(all_conns)} conns, {sum(c['streams'] for c in all_conns)} streams; "
        f"closed {len(closed)} (GOAWAY {codes or '-'}), median {median} streams each"
    )
    return Outcome(summary, checks, connection_stats(all_conns, "streams"))


def continuation_flood(port: int, conns: int = 2, duration: float = 6.0, survive: float = 3.0) -> Outcome:
    """HEADERS without END_HEADERS, then 16 KB CONTINUATION frames without end, by `conns`
    attackers for `duration` s, each on a new connection whenever the server ends its last."""

    def one() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline - 0.2:
            try:
                c = H2Conn(port, send_timeout=2.0)
            except OSError as e:
                records.append({"connect_error": str(e)})
                time.sleep(0.1)
                continue
            c.wait_settings(2)
            sid = c.new_stream_id()
            c.send(frame(HEADERS, 0, sid, header_block(grpc_headers(c.authority, LOGIN_PATH))))
            chunk = frame(CONTINUATION, 0, sid, header_block([("x-flood", "a" * 16_000)]))
            sent = 0
            while time.monotonic() < deadline and not c.server_ended and not c.stalled:
                if c.send(chunk * 8):
                    sent += 8 * len(chunk)
                c.pump(0)
            c.pump(0.05)
            ended = c.ended_at()
            records.append(
                {
                    "bytes_sent": sent,
                    "closed_by_server": c.server_ended,
                    "goaway": None if c.goaway is None else c.goaway.error_code,
                    "lifetime_s": round((ended if ended is not None else time.monotonic()) - c.opened_at, 3),
                    "stalled": c.stalled,
                }
            )
            c.close()
        return records

    per_conn = [r for lineage in parallel([one for _ in range(conns)]) for r in lineage if "bytes_sent" in r]
    closed = [r for r in per_conn if r["closed_by_server"]]
    survivors = [r for r in per_conn if not r["closed_by_server"] and r["lifetime_s"] >= survive]
    stalled = [r for r in per_conn if r["stalled"] and not r["closed_by_server"]]
    sizes = sorted(r["bytes_sent"] for r in closed)
    median_kib = sizes[len(sizes) // 2] // 1024 if sizes else None
    codes = sorted({r["goaway"] for r in closed if r["goaway"] is not None})
    checks: list[Check] = [
        (
            f"closes every CONTINUATION-flood connection within {survive:.0f} s (GOAWAY or close)",
            bool(per_conn) and not survivors and not stalled,
            f"{len(closed)} of {len(per_conn)} closed by the server (median {median_kib} KiB accepted first); "
            f"{len(survivors)} survived >= {survive:.0f} s, {len(stalled)} stalled",
        )
    ]
    summary = f"{len(per_conn)} conns, closed {len(closed)} (GOAWAY {codes or '-'}) after median {median_kib} KiB"
    return Outcome(summary, checks, connection_stats(per_conn, "bytes_sent"))


def control_flood(port: int, kind: str, conns: int = 2, duration: float = 8.0) -> Outcome:
    """PING or SETTINGS frames as fast as the server takes them, never reading its ACKs (and
    with a 4 KiB receive buffer), on `conns` connections until the server stops reading or
    `duration` s pass; then, still without reading, until the server closes the connection
    (watched for up to IDLE_TIMEOUT + SLACK s from the opening). A server that buffers every
    ACK grows without bound; one that stops reading (TCP back-pressure, once its ~4 MiB socket
    send buffer is full) holds memory bounded, and must still close the connection: at once
    (flood protection, GOAWAY) or, since it asks for nothing, as idle."""
    one_frame = (
        frame(PING, 0, 0, b"hostile!")
        if kind == "ping"
        else frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 65_535))
    )
    batch = one_frame * 1000
    limit = IDLE_TIMEOUT + SLACK

    def one() -> dict[str, Any]:
        c = H2Conn(port, send_timeout=1.0, rcvbuf=4096)
        c.wait_settings(2)
        start = time.monotonic()
        sent = 0
        while time.monotonic() < start + duration and not c.stalled and not c.closed:
            if c.send(batch):
                sent += 1000
            if peer_closed(c.sock):
                break
        flood_end = time.monotonic()
        closed_at = None
        while time.monotonic() < c.opened_at + limit + 1:
            if c.closed or peer_closed(c.sock):
                closed_at = time.monotonic()
                break
            time.sleep(0.1)
        result = {
            "frames_sent": sent,
            "stalled_after_frames": sent if c.stalled else None,
            "flood_s": round(flood_end - start, 3),
            "closed_s_after_open": None if closed_at is None else round(closed_at - c.opened_at, 3),
        }
        c.close()
        return result

    per_conn = parallel([one for _ in range(conns)])
    closes = [r["closed_s_after_open"] for r in per_conn]

    def said(r: dict[str, Any]) -> str:
        return (
            f"{r['frames_sent']} frames"
            + (", server stopped reading" if r["stalled_after_frames"] is not None else "")
            + (f", closed {r['closed_s_after_open']:.1f}s after opening" if r["closed_s_after_open"] is not None else f", open {limit + 1:.0f}s after opening")
        )

    checks: list[Check] = [
        (
            f"closes every {kind}-flood connection (GOAWAY, or as idle within {IDLE_TIMEOUT:.0f} s + {SLACK:.0f} s)",
            all(t is not None and t <= limit for t in closes),
            "; ".join(said(r) for r in per_conn),
        )
    ]
    summary = "; ".join(
        f"{r['frames_sent']} frames, "
        + ("stopped reading, " if r["stalled_after_frames"] is not None else "")
        + (f"closed at {r['closed_s_after_open']:.1f}s" if r["closed_s_after_open"] is not None else f"open at {limit + 1:.0f}s")
        for r in per_conn
    )
    return Outcome(summary, checks, {"connections": per_conn})


def zero_window(port: int, conns: int = 2, streams: int = 50) -> Outcome:
    """SETTINGS_INITIAL_WINDOW_SIZE=0, then `streams` health checks per connection whose
    response DATA can never be sent; how long the server holds each stream."""

    def one() -> dict[str, Any]:
        c = H2Conn(port, settings={INITIAL_WINDOW_SIZE: 0}, auto_window=False, send_timeout=2.0)
        c.wait_settings(2)
        sent_at: dict[int, float] = {}
        for _ in range(streams):
            sid = c.request(grpc_headers(c.authority, HEALTH_PATH), grpc_message(b""))
            sent_at[sid] = time.monotonic()
        deadline = time.monotonic() + SEND_TIMEOUT + 5

        def released(sid: int) -> bool:
            s = c.streams[sid]
            return s.reset is not None or s.ended

        c.wait(lambda: c.server_ended or all(released(sid) for sid in sent_at), deadline - time.monotonic())
        ended = c.ended_at()
        holds = []
        for sid, at in sent_at.items():
            s = c.streams[sid]
            end = s.reset_at if s.reset_at is not None else ended
            holds.append(None if end is None else end - at)
        c.close()
        return {
            "streams": len(sent_at),
            "responses_started": sum(1 for sid in sent_at if c.streams[sid].headers),
            "released": sum(1 for h in holds if h is not None),
            "max_hold_s": None if any(h is None for h in holds) else round(max(h for h in holds if h is not None), 3),
            "goaway": None if c.goaway is None else c.goaway.error_code,
        }

    per_conn = parallel([one for _ in range(conns)])
    total = sum(r["streams"] for r in per_conn)
    released = sum(r["released"] for r in per_conn)
    holds = [r["max_hold_s"] for r in per_conn]
    worst = None if any(h is None for h in holds) else max(h for h in holds if h is not None)
    checks: list[Check] = [
        (
            f"releases every zero-window stream within the send timeout ({SEND_TIMEOUT:.0f} s + {SLACK:.0f} s)",
            worst is not None and worst <= SEND_TIMEOUT + SLACK,
            f"{released} of {total} released; longest hold "
            + (f"{worst:.1f} s" if worst is not None else f">= {SEND_TIMEOUT + 5:.0f} s (still held)"),
        )
    ]
    summary = f"{released}/{total} streams released, longest hold " + (
        f"{worst:.1f}s" if worst is not None else f">={SEND_TIMEOUT + 5:.0f}s"
    )
    return Outcome(summary, checks, {"connections": per_conn})


# ---------------------------------------------------------------------------------------------
# HTTP/1.1


@dataclass
class RawResponse:
    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None


def parse_response(data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, body
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def read_response(sock: socket.socket, timeout: float) -> RawResponse:
    """Reads one HTTP/1.1 response (to the end of its Content-Length, or of the connection)."""
    data = b""
    deadline = time.monotonic() + timeout
    error = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            error = "timeout"
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            error = "timeout"
            break
        except OSError as e:
            error = errno.errorcode.get(e.errno or 0, str(e))
            break
        if not chunk:
            break
        data += chunk
        status, headers, body = parse_response(data)
        if status is not None and b"\r\n\r\n" in data:
            length = headers.get("content-length")
            if length is not None and len(body) >= int(length):
                break
    status, headers, body = parse_response(data)
    return RawResponse(status, headers, body, error if status is None else None)


def http1(port: int, raw: bytes, timeout: float = 10.0) -> RawResponse:
    """One request as raw bytes on a new connection; its response (read even if sending
    failed part-way: a server may answer and close before it has read everything)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(raw)
        except OSError:
            pass
        return read_response(sock, timeout)
    finally:
        sock.close()


def slow_http1(port: int, conns: int = 8) -> dict[str, Outcome]:
    """Slowloris in four shapes at once, `conns` connections each: a request line trickled a
    byte a second; complete request line, header bytes trickled; a Content-Length body
    trickled; a chunked body that never ends (a chunk every 0.5 s). Each is watched for up to
    its timeout + 5 s."""
    head = f"Host: 127.0.0.1:{port}\r\n"
    shapes: dict[str, tuple[bytes, bytes, float, float]] = {
        # name: (sent at once, trickled forever in order, seconds between trickles, timeout)
        "slow request line": (b"", b"GET /v1/users/me HTTP/1.1\r\nx-slow: " + b"a" * 1000, 1.0, HEADER_READ_TIMEOUT),
        "slow headers": (f"GET /healthz HTTP/1.1\r\n{head}".encode(), b"x-slow: " + b"a" * 1000, 1.0, HEADER_READ_TIMEOUT),
        "slow body": (
            f"POST /v1/users HTTP/1.1\r\n{head}content-type: application/json\r\ncontent-length: 1000\r\n\r\n".encode(),
            b"{" + b" " * 998 + b"}",
            1.0,
            BODY_READ_TIMEOUT,
        ),
        "endless chunked body": (
            f"POST /v1/users HTTP/1.1\r\n{head}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".encode(),
            b"1\r\n \r\n" * 1000,
            0.5,
            BODY_READ_TIMEOUT,
        ),
    }

    def run(initial: bytes, trickle: bytes, every: float, timeout: float) -> Outcome:
        step = 7 if trickle.startswith(b"1\r\n") else 1
        socks = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if initial:
                s.sendall(initial)
            socks.append(s)
        start = time.monotonic()
        closed_at: dict[int, float] = {}
        replies: dict[int, bytes] = {i: b"" for i in range(conns)}
        pos = 0
        next_trickle = start
        deadline = start + timeout + 5
        while time.monotonic() < deadline and len(closed_at) < conns:
            now = time.monotonic()
            if now >= next_trickle:
                piece = trickle[pos : pos + step]
                pos += step
                next_trickle += every
                for i, s in enumerate(socks):
                    if i in closed_at:
                        continue
                    try:
                        s.send(piece)
                    except OSError:
                        closed_at[i] = time.monotonic()
            open_socks = [s for i, s in enumerate(socks) if i not in closed_at]
            ready, _, _ = select.select(open_socks, [], [], max(0.0, min(0.1, next_trickle - time.monotonic())))
            for s in ready:
                i = socks.index(s)
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data:
                    replies[i] += data
                else:
                    closed_at[i] = time.monotonic()
        for s in socks:
            s.close()
        times = [closed_at[i] - start for i in range(conns) if i in closed_at]
        statuses = sorted({parse_response(r)[0] or 0 for r in replies.values() if r})
        held = conns - len(times)
        worst = max(times) if times and not held else None
        checks: list[Check] = [
            (
                f"closes every connection within the timeout ({timeout:.0f} s + {SLACK:.0f} s)",
                worst is not None and worst <= timeout + SLACK,
                f"{len(times)} of {conns} closed"
                + (f", the last after {max(times):.1f} s" if times else "")
                + (f"; {held} still open after {timeout + 5:.0f} s" if held else ""),
            ),
            (
                "answers nothing, or 408",
                all(status == 408 for status in statuses),
                f"answers: {statuses or 'none'}",
            ),
        ]
        summary = (
            f"{len(times)}/{conns} closed" + (f", last {max(times):.1f}s" if times else "")
            + (f", {held} open at {timeout + 5:.0f}s" if held else "")
            + (f"; answered {statuses}" if statuses else "")
        )
        return Outcome(summary, checks, {"closed_after_s": [round(t, 3) for t in times], "still_open": held, "statuses": statuses})

    names = list(shapes)
    results = parallel([functools.partial(run, *shapes[n]) for n in names])
    return dict(zip(names, results))


def idle_pile(user_port: int, auth_port: int, per_port: int = CONNECTION_CAP + 50) -> dict[str, Outcome]:
    """`per_port` connections on each port, more than the connection cap: on user-service's
    port a mix of idle keep-alive HTTP/1.1 (one request answered), idle HTTP/2 (one health
    check answered, server PINGs never answered) and silent TCP connections; on auth-service's
    port idle HTTP/2 and silent ones. Those past the cap must get the overload answer (503 with
    `connection: close`, or closed at once); the rest must be closed by the server within the
    idle timeout."""

    @dataclass
    class Idle:
        kind: str
        sock: socket.socket
        h2: H2Conn | None = None
        last_activity: float = 0.0  # when it was opened and sent its request: idle since then
        answer: str = ""  # served | overload-503 | closed | no answer | error ...
        closed_at: float | None = None
        buf: bytes = b""

    def open_pile(port: int, kinds: list[str]) -> list[Idle]:
        pile: list[Idle] = []
        for i in range(per_port):
            kind = kinds[i % len(kinds)]
            try:
                if kind == "http/2":
                    c = H2Conn(port, answer_pings=False, send_timeout=2.0)
                    c.request(grpc_headers(c.authority, HEALTH_PATH), grpc_message(b""))
                    pile.append(Idle(kind, c.sock, c, time.monotonic()))
                    continue
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                if kind == "http/1.1":
                    s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                pile.append(Idle(kind, s, None, time.monotonic()))
            except OSError as e:
                pile.append(Idle(kind, socket.socket(), None, time.monotonic(), answer=f"connect {e.strerror}"))
        return pile

    def first_answers(pile: list[Idle]) -> None:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for idle in pile:
                if idle.answer:
                    continue
                if idle.h2 is not None:
                    c = idle.h2
                    c.pump(0)
                    done = [s for s in c.streams.values() if s.ended or s.reset is not None]
                    if done:
                        code = done[0].grpc_status()
                        # A refused connection's call may be answered UNAVAILABLE (14), the
                        # gRPC form of the 503, before the server closes it.
                        idle.answer = "served" if code == "0" else f"grpc {code}" if code else "reset"
                    elif c.closed or c.goaway is not None:
                        idle.answer = "closed"
                        idle.closed_at = time.monotonic()
                    continue
                try:
                    idle.sock.setblocking(False)
                    data = idle.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    idle.answer = "closed"
                    idle.closed_at = time.monotonic()
                    continue
                idle.buf += data
                status, headers, _ = parse_response(idle.buf)
                if status == 200:
                    idle.answer = "served"
                elif status is not None:
                    close = headers.get("connection", "").lower() == "close"
                    idle.answer = f"{status}" + (" close" if close else "")
            time.sleep(0.02)
        for idle in pile:
            if not idle.answer:
                # Silent connections get no answer by design; they are held if still open.
                idle.answer = "held" if idle.kind == "silent" else "no answer"

    def watch_close(pile: list[Idle], deadline: float) -> None:
        while time.monotonic() < deadline:
            waiting = [i for i in pile if i.closed_at is None and i.answer in ("served", "held")]
            if not waiting:
                return
            for idle in waiting:
                if peer_closed(idle.sock) or (idle.h2 is not None and idle.h2.closed):
                    idle.closed_at = time.monotonic()
            time.sleep(0.2)

    piles: dict[str, list[Idle]] = {}
    for name, port, kinds in (
        ("user-service", user_port, ["http/1.1", "http/2", "http/1.1", "http/2", "silent"]),
        ("auth-service", auth_port, ["http/2", "http/2", "http/2", "http/2", "silent"]),
    ):
        piles[name] = open_pile(port, kinds)
        first_answers(piles[name])
    opened = time.monotonic()
    watch_close([i for p in piles.values() for i in p], opened + IDLE_TIMEOUT + 10)

    out: dict[str, Outcome] = {}
    for name, pile in piles.items():
        kept = [i for i in pile if i.answer in ("served", "held")]
        overload_ok = [i for i in pile if i.answer in ("503 close", "grpc 14", "closed")]
        other = [i for i in pile if i not in kept and i not in overload_ok]
        over_cap = per_port - CONNECTION_CAP
        idle_for = [(i.closed_at - i.last_activity) for i in kept if i.closed_at is not None]
        still_open = [i for i in kept if i.closed_at is None]
        by_kind: dict[str, dict[str, int]] = {}
        for i in pile:
            by_kind.setdefault(i.kind, {}).setdefault(i.answer, 0)
            by_kind[i.kind][i.answer] += 1
        checks: list[Check] = [
            (
                f"keeps at most the cap ({CONNECTION_CAP}) of connections",
                len(kept) <= CONNECTION_CAP,
                f"{len(kept)} of {per_port} connections accepted and kept",
            ),
            (
                "answers connections past the cap with 503 + connection: close (gRPC: UNAVAILABLE), or closes them at once",
                len(overload_ok) >= over_cap and not other,
                f"{len(overload_ok)} got the overload answer (at least {over_cap} should); other answers: "
                + (", ".join(sorted({i.answer for i in other})) or "none"),
            ),
            (
                f"closes every idle connection within the idle timeout ({IDLE_TIMEOUT:.0f} s + {SLACK:.0f} s)",
                not still_open and bool(kept) and max(idle_for, default=0) <= IDLE_TIMEOUT + SLACK,
                f"{len(idle_for)} of {len(kept)} closed"
                + (f", the last after {max(idle_for):.1f} s idle" if idle_for else "")
                + (f"; {len(still_open)} still open after {IDLE_TIMEOUT + 10:.0f} s" if still_open else "")
                + (f" ({', '.join(sorted({i.kind for i in still_open}))})" if still_open else ""),
            ),
        ]
        summary = (
            f"{len(kept)}/{per_port} kept, {len(overload_ok)} refused"
            + (f", {len(other)} other" if other else "")
            + f"; {len(idle_for)} closed idle"
            + (f" (last {max(idle_for):.1f}s)" if idle_for else "")
            + (f", {len(still_open)} open at {IDLE_TIMEOUT + 10:.0f}s" if still_open else "")
        )
        open_by_kind: dict[str, int] = {}
        for i in still_open:
            open_by_kind[i.kind] = open_by_kind.get(i.kind, 0) + 1
        out[name] = Outcome(
            summary,
            checks,
            {
                "answers_by_kind": by_kind,
                "still_open_by_kind": open_by_kind,
                "idle_seconds_to_close": spread([round(t, 2) for t in idle_for]),
            },
        )
        for i in pile:
            try:
                i.sock.close()
            except OSError:
                pass
    return out


# ---------------------------------------------------------------------------------------------
# Oversized input and the early 413


def oversized(user_port: int, auth_port: int, min_duration: float = 5.0) -> Outcome:
    """A ~70 KB bearer token on the three endpoints of finding 2 (HTTP/JSON), on gRPC over
    both ports, and oversized headers and URLs in general; all of them again and again for
    `min_duration` s (so that the normal client is timed over a useful window). A case passes
    if every round of it did."""
    big = "A" * 70_000
    host = f"Host: 127.0.0.1:{user_port}\r\n"
    results: list[dict[str, Any]] = []
    checks: list[Check] = []

    def http_case(
        name: str, raw: bytes, allowed: set[int], want_code: int | None = None, may_close: bool = False
    ) -> None:
        label = f"{name}: " + "/".join(str(s) for s in sorted(allowed)) + (" or closed" if may_close else "") + " (never 500)"
        r = http1(user_port, raw)
        if r.status is None and may_close:
            # A client that keeps sending a megabyte of headers after the answer may see the
            # connection reset before it reads the answer; refused either way.
            results.append({"case": name, "status": None, "error": r.error})
            checks.append((label, True, f"closed ({r.error or 'EOF'})"))
            return
        code = None
        if r.body:
            try:
                code = json.loads(r.body).get("code")
            except (ValueError, AttributeError):
                code = None
        ok = r.status in allowed and (r.status != 401 or want_code is None or code == want_code)
        results.append({"case": name, "status": r.status, "code": code, "error": r.error, "body": r.body[:160].decode(errors="replace")})
        checks.append(
            (
                label,
                ok,
                f"{r.status}" + (f" code {code}" if code is not None else "") + (f" ({r.error})" if r.error else "")
                + ("" if ok or not r.body else f": {r.body[:100].decode(errors='replace')}"),
            )
        )

    bearer = f"authorization: Bearer {big}\r\n"

    def http_cases() -> None:
        http_case("70KB token GET /v1/users/me", f"GET /v1/users/me HTTP/1.1\r\n{host}{bearer}connection: close\r\n\r\n".encode(), {401, 431}, 16)
        http_case("70KB token GET /v1/users", f"GET /v1/users HTTP/1.1\r\n{host}{bearer}connection: close\r\n\r\n".encode(), {401, 431}, 16)
        http_case(
            "70KB token POST /v1/auth/logout",
            f"POST /v1/auth/logout HTTP/1.1\r\n{host}{bearer}content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}".encode(),
            {401, 431},
            16,
        )
        http_case("100KB header", f"GET /healthz HTTP/1.1\r\n{host}x-junk: {big}{big[:30_000]}\r\nconnection: close\r\n\r\n".encode(), {400, 431})
        http_case(
            "500 headers x 200B",
            (f"GET /healthz HTTP/1.1\r\n{host}" + "".join(f"x-h{i}: {'b' * 200}\r\n" for i in range(500)) + "connection: close\r\n\r\n").encode(),
            {400, 431},
        )
        http_case("100KB URL", f"GET /v1/users/{'c' * 100_000} HTTP/1.1\r\n{host}connection: close\r\n\r\n".encode(), {400, 414, 431})
        http_case("1MB of headers", (f"GET /healthz HTTP/1.1\r\n{host}" + f"x-junk: {'d' * 8000}\r\n" * 128 + "\r\n").encode(), {400, 431}, may_close=True)

    def grpc_case(name: str, port: int, path: str) -> None:
        c = H2Conn(port, send_timeout=5.0)
        c.wait_settings(2)
        sid = c.request(grpc_headers(c.authority, path, [("authorization", f"Bearer {big}")]), grpc_message(b""))
        c.wait(lambda: c.streams[sid].ended or c.streams[sid].reset is not None or c.server_ended, 10)
        s = c.streams[sid]
        grpc_status = s.grpc_status()
        http_status = s.status()
        if s.reset is not None:
            answer, ok = f"RST_STREAM {s.reset}", True
        elif http_status == "431":
            answer, ok = "HTTP 431", True
        elif grpc_status is not None:
            answer, ok = f"grpc-status {grpc_status} (HTTP {http_status})", grpc_status == "16" and http_status == "200"
        elif c.server_ended:
            answer, ok = "connection closed" + (f" (GOAWAY {c.goaway.error_code})" if c.goaway is not None else ""), True
        else:
            answer, ok = f"no answer (HTTP {http_status})", False
        c.close()
        results.append({"case": name, "answer": answer})
        checks.append((f"{name}: UNAUTHENTICATED (16), 431 or a refused stream", ok, answer))

    start = time.monotonic()
    rounds = 0
    while rounds == 0 or time.monotonic() < start + min_duration:
        http_cases()
        grpc_case("70KB token gRPC user port", user_port, CURRENT_USER_PATH)
        grpc_case("70KB token gRPC auth port", auth_port, CREATE_CREDENTIAL_PATH)
        rounds += 1
    # One check per case over all rounds: failed if any round failed; every distinct answer.
    merged: dict[str, tuple[bool, list[str]]] = {}
    first_result: dict[str, dict[str, Any]] = {}
    for (name, ok, detail), result in zip(checks, results):
        seen_ok, details = merged.get(name, (True, []))
        merged[name] = (seen_ok and ok, details if detail in details else [*details, detail])
        first_result.setdefault(str(result["case"]), result)
    cases = list(first_result)
    final = [(name, ok, " | ".join(details)) for name, (ok, details) in merged.items()]
    failed = [(c, case) for c, case in zip(final, cases) if not c[1]]
    summary = f"{len(final) - len(failed)}/{len(final)} as expected ({rounds} rounds)" + (
        "; " + ", ".join(f"{case} -> {c[2].split(':')[0][:24]}" for c, case in failed) if failed else ""
    )
    return Outcome(summary, final, {"rounds": rounds, "cases": list(first_result.values())})


def early_413(port: int, senders: int = 4, attempts: int = 5, min_duration: float = 5.0) -> Outcome:
    """`senders` clients at once, `attempts` times each and on for `min_duration` s: POST
    /v1/users with a 256 KiB body
    (4x the 64 KiB limit) sent in 8 KiB chunks 10 ms apart, reading nothing until all of it is
    sent (as Python `requests` does), then reading the answer. Every other attempt is chunked
    instead of declaring Content-Length; every other pair sends the body in one write."""
    body = b"{" + b" " * (256 * 1024 - 2) + b"}"

    def attempt(n: int) -> str:
        chunked = n % 2 == 1
        slow = n % 4 < 2
        head = f"POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        head += "transfer-encoding: chunked\r\n\r\n" if chunked else f"content-length: {len(body)}\r\n\r\n"
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        send_error = ""
        try:
            sock.sendall(head.encode())
            step = 8192 if slow else len(body)
            for i in range(0, len(body), step):
                piece = body[i : i + step]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                if slow:
                    time.sleep(0.01)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as e:
            send_error = errno.errorcode.get(e.errno or 0, str(e))
        r = read_response(sock, 10)
        sock.close()
        if r.status is not None:
            return str(r.status)
        return f"lost ({r.error or 'EOF'}" + (f", send {send_error}" if send_error else "") + ")"

    start = time.monotonic()

    def sender(first: int) -> list[str]:
        out: list[str] = []
        while len(out) < attempts or time.monotonic() < start + min_duration:
            out.append(attempt(first + len(out)))
        return out

    outcomes = [o for batch in parallel([functools.partial(sender, i) for i in range(senders)]) for o in batch]
    got = sum(1 for o in outcomes if o == "413")
    total = len(outcomes)
    checks: list[Check] = [
        (
            "every slow over-limit sender reads its 413",
            got == total,
            f"{got} of {total} read the 413; " + ", ".join(sorted(set(outcomes))),
        )
    ]
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    summary = ", ".join(f"{k} x{v}" for k, v in counts.items())
    return Outcome(summary, checks, {"answers": counts})
