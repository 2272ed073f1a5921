"""Facts about this host and its kernel that leases, PID files and recovery record and compare."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


def hostname() -> str:
    """This host's name, as leases record it."""
    return socket.gethostname()


@functools.cache
def boot_id() -> str | None:
    """The kernel's boot id where there is one: the same in every container on one kernel, new at each boot. It
    decides "same kernel" (a PID or a boot-clock reading from another kernel means nothing here)."""
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


@functools.cache
def pid_namespace() -> int | None:
    """This process's PID namespace (the inode of ``/proc/self/ns/pid``): a pid means something only within it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
