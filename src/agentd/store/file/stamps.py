"""Whether ``stat`` alone tells that a file changed since it was last looked at.

A file's identity here is its device, inode, size, mtime and ctime (:func:`identity`). The kernel sets the ctime on
every change to a file (a write, a truncation, a chmod, a ``touch`` of its times, a rename of it), and nothing can set
it back but a clock step. Whether two versions can still share it depends on the timestamps' grain: a file system that
stamps coarsely (the time of the last clock tick, up to 10 ms; whole seconds on some) gives a change made within the
same tick as the last one the same ctime, so an equal identity proves nothing. Linux 6.13 and later stamp a change
finely when the previous ctime was looked at (*multigrain timestamps*, on ext4, XFS, Btrfs and tmpfs): then a change
made after a ``stat`` always shows in the next one, and an identity taken by ``stat`` after reading (or writing) the
file stands for that very content for as long as ``stat`` gives it back.

:func:`fine_timestamps` finds out which kind a folder's file system is, once per device and process, by changing a
scratch file right after looking at it, several times: a coarse clock gives the same ctime back at least once. The
queue store (:mod:`agentd.store.file.queuefile`) skips reading the queue when its identity is the one it read or wrote
last only on a file system found fine; elsewhere it reads and compares the bytes as before.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

Identity = tuple[int, int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)
ROUNDS = 8  # changes right after a look that must each get a new ctime
_FINE: dict[int, bool] = {}  # st_dev -> what the probe found


def identity(path: Path | str) -> Identity | None:
    """What tells one version of a file from another: its inode (a rename brings a new one), size and times; None
    when it cannot be looked at."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return of(info)


def of(info: os.stat_result) -> Identity:
    """The identity in a ``stat`` or ``fstat`` result."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def fine_timestamps(folder: str | Path, scratch: str) -> bool:
    """Whether a change to a file in ``folder`` made right after a ``stat`` of it always gets a new ctime (probed
    once per device with a scratch file named ``scratch.format(unique)``, removed after; False when it cannot be
    probed)."""
    try:
        device = os.stat(folder).st_dev
    except OSError:
        return False
    known = _FINE.get(device)
    if known is None:
        known = _FINE[device] = _probe(folder, scratch)
    return known


def _probe(folder: str | Path, name: str) -> bool:
    scratch = os.path.join(folder, name.format(f"{os.getpid()}.{os.urandom(4).hex()}"))
    try:
        fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        mode = 0o600
        for _ in range(ROUNDS):
            seen = os.fstat(fd).st_ctime_ns
            mode ^= 0o040
            os.fchmod(fd, mode)
            if os.fstat(fd).st_ctime_ns == seen:
                return False
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(scratch)
