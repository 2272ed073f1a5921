"""Facts about this host and its kernel that leases, PID files and recovery record and compare."""

from __future__ import annotations

import socket
from pathlib import Path


def hostname() -> str:
    """This host's name, as leases record it."""
    return socket.gethostname()


def boot_id() -> str | None:
    """The kernel's boot id where there is one (a PID from another boot means nothing)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), to tell a PID from a reused one."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return int(fields[19])
