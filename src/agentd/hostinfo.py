"""Facts about this host and its kernel that leases, PID files and recovery record and compare."""

from __future__ import annotations

import functools
import os


def hostname() -> str:
    """This host's name, as leases record it: the kernel's node name, what ``socket.gethostname()`` returns (without
    importing socket)."""
    return os.uname().nodename


@functools.cache
def boot_id() -> str | None:
    """The kernel's boot id where there is one: the same in every container on one kernel, new at each boot. It
    decides "same kernel" (a PID or a boot-clock reading from another kernel means nothing here)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), to tell a PID from a reused one."""
    try:  # (os.read, not Path.read_text: a fifth of the cost, and this is read at every task's start)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def running(pid: int) -> bool:
    """Whether a process with this pid exists here (one this process may not signal does); False for a number no pid
    can be (a file name's digits, say)."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


_own_start: tuple[int, int | None] | None = None  # (pid, its start time): this process's, read once


def own_start() -> int | None:
    """This process's :func:`process_start`, read from /proc once per process (a forked child reads its own): a
    daemon records it in every lease it takes."""
    global _own_start
    pid = os.getpid()
    known = _own_start
    if known is None or known[0] != pid:
        known = _own_start = (pid, process_start(pid))
    return known[1]


@functools.cache
def pid_namespace() -> int | None:
    """This process's PID namespace (the inode of ``/proc/self/ns/pid``): a pid means something only within it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def process_name(pid: int) -> str:
    """A process's command name (``comm``), or ``?``."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or "?"
    except OSError:
        return "?"


def flock_holders(dev: int, ino: int) -> list[int]:
    """The processes holding an ``flock`` on the file (``dev``, ``ino``) through a descriptor they have open: every
    process sharing the locked open file, inherited ones included (Linux /proc; those of other users are not seen).

    ``/proc/locks`` names only the process that took the lock, which may be long gone while a descendant that
    inherited the descriptor keeps the lock held."""
    return _holders(dev, ino, locked=True)


def open_holders(dev: int, ino: int) -> list[int]:
    """The processes with a descriptor open on the file (``dev``, ``ino``), a pipe too (Linux /proc; those of other
    users are not seen)."""
    return _holders(dev, ino, locked=False)


def _holders(dev: int, ino: int, *, locked: bool) -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return sorted(int(name) for name in names if name.isdigit() and holds(int(name), dev, ino, locked=locked))


def holds(pid: int, dev: int, ino: int, *, locked: bool = False) -> bool:
    """Whether process ``pid`` has the file (``dev``, ``ino``) open (``locked``: and an ``flock`` held through that
    descriptor); False when its descriptors cannot be looked at (Linux /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
            if info.st_ino != ino or info.st_dev != dev:
                continue
            if not locked:
                return True
            with open(f"/proc/{pid}/fdinfo/{fd}", encoding="utf-8") as f:
                if any(line.startswith("lock:") and "FLOCK" in line for line in f):
                    return True
        except OSError:
            continue
    return False


def process_tree(root: int) -> dict[int, int]:
    """``root``'s live descendants: {pid: start time}, ``root`` excluded (Linux /proc; {} elsewhere).

    A process belongs when its parent does, or when it is in a process group or session a member leads, so what
    left the group (``setsid``) is found too. (The task supervisor keeps its own copy: it imports nothing.)"""
    procs: dict[int, tuple[int, int, int, int]] = {}  # pid: (ppid, pgrp, session, start)
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rfind(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):
                continue
            procs[int(name)] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
        except (OSError, IndexError, ValueError):
            continue
    members = {root}
    grown = True
    while grown:
        grown = False
        for pid, (ppid, pgrp, sid, _start) in procs.items():
            if pid not in members and (ppid in members or pgrp in members or sid in members):
                members.add(pid)
                grown = True
    return {pid: procs[pid][3] for pid in members if pid != root and pid in procs}
