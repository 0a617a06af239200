"""The normal client of the hostile-client suite, run as its own process (so that the attack
threads' Python work never delays its timing): `GET /v1/users/me` with a valid token over one
keep-alive HTTP/1.1 connection, RATE times a second, until SIGTERM.

Each request prints one line `<monotonic seconds> <latency ms> <outcome>` on stdout, where the
outcome is the HTTP status or an error word (`timeout`, `reset`, ...). CLOCK_MONOTONIC is
system-wide, so the suite lines these up with its attack windows. A failed connection is
replaced by a new one on the next request.

Usage: probe.py PORT TOKEN RATE
"""

from __future__ import annotations

import http.client
import signal
import socket
import sys
import time

TIMEOUT_S = 5.0


def main() -> int:
    port, token, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    headers = {"authorization": f"Bearer {token}"}
    conn: http.client.HTTPConnection | None = None
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
            continue
        next_at = max(next_at + interval, now)
        start = time.monotonic()
        outcome: str
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.request("GET", "/v1/users/me", headers=headers)
            response = conn.getresponse()
            response.read()
            outcome = str(response.status)
            if response.will_close:
                conn.close()
                conn = None
        except TimeoutError:
            outcome = "timeout"
        except ConnectionResetError:
            outcome = "reset"
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionAbortedError):
            outcome = "closed"
        except (OSError, http.client.HTTPException) as e:
            outcome = type(e).__name__
        if outcome != "200" and conn is not None:
            conn.close()
            conn = None
        elapsed_ms = (time.monotonic() - start) * 1000
        print(f"{start:.6f} {elapsed_ms:.3f} {outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
