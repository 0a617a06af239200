"""What the kernel says about a running process: CPU time, context switches and memory, read
from /proc. Linux only; an unreadable file is a BenchError (the process is gone)."""

from __future__ import annotations

import os
from pathlib import Path

from .common import BenchError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of `pid`, in clock ticks."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/stat: {e}") from e
    fields = raw[raw.rindex(")") + 2 :].split()
    # Fields after the command: state is index 0, so utime (14th) is 11 and stime 12.
    return int(fields[11]) + int(fields[12])


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of `pid` so far."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError as e:
        raise BenchError(f"cannot list /proc/{pid}/task: {e}") from e
    for task in tasks:
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM ... of `pid`, in KiB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Vm"):
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0])
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/status: {e}") from e
    return out
