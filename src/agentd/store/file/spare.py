"""The queue version a daemon's write replaces, kept and written again as the file of a later version.

Every write of the queue is a new file renamed over the old one. On this project's test machine (ext4 without a
journal, mounted with ``discard``) that costs three things a pass, all in the kernel:

- a new inode (found past every inode freed in the last minute or more, see :mod:`agentd.store.file.unnamed`);
- its blocks allocated at the fsync, which then also writes the block bitmap and group descriptor it changed;
- the old version's blocks freed by the rename, each range discarded on the disk (a thread's work for a big queue,
  see ``queuefile._Retirer``; the renaming call's for a small one).

A process that writes the queue again and again (a daemon, from its second write on) therefore gives the version it
replaces a second name first (:func:`keep`, a hard link, as ``queuefile._Retirer`` does), and writes its next version
into that same file (:func:`take`): its blocks are overwritten where they are, nothing is allocated or freed, and the
fsync writes data and the inode only. In a microbenchmark on the test machine (``/tmp``), a 6 MB version written
(a megabyte at a time, its write-out started as in :mod:`agentd.store.file.writeback`), fsynced and renamed in:
3.5 ms into the kept file, its fsync 0.2 ms; 7.5 ms into a new one, its fsync 1.9 ms and the old version's removal
1.8 ms (a thread's, for a queue that big). A 120 KB one: 0.67 against 0.81 ms.

The promise kept: **a reader never sees a version change under it.** A file is written again only when

- it has no other name (``st_nlink`` 1): a hard link a person made to the queue (a backup) keeps its content;
- no other process has it open, for reading or writing, nor mapped: a write lease (``F_SETLEASE`` with ``F_WRLCK``)
  is granted only then. The lease is held while the file is written and synced, and given back (the descriptor
  closed) before it is renamed over the queue: an ``open`` of it that raced the check, or comes meanwhile, waits for
  the kernel to take the lease back (``/proc/sys/fs/lease-break-time``; here, until the write is over) and then
  reads the new version, whole. The kernel checks again for a conflicting open after granting the lease
  (``generic_add_lease`` in fs/locks.c), so an open under way when the lease is asked for is never missed. The
  lease holder's notice of such an open is ``SIGURG``, which a process ignores by default (``SIGIO``, the default
  notice, would end it).

Otherwise the kept file is removed (as before) and the write makes a new one. Where leases are not to be had (not
Linux, ``fs.leases-enable`` 0, a file system without them) the process stops keeping versions.

**Only what changed is written.** The kept file still holds the version it was when it was replaced, and a
daemon's next version of a big queue differs from it in a few tasks. Written whole, each version is copied into the
page cache and every page of it dirtied and written out again: in a microbenchmark on the test machine, 6 MB versions
differing in their last 120 KB (finished tasks first, as a sprint's file grows) took 1.6 ms to write and sync whole,
0.63 ms from the first byte that differs, 0.43 ms of it finding that byte (:func:`common_prefix`; 0.9 ms when compared
by copies). So the store writes the new version into the kept file from the first byte where the two differ (its
longer tail cut first), and only when it knows the kept file's bytes. A daemon's writes are edits of the version it
wrote last, so that byte is known without a look: the kept version, the one written over it and the new one agree up
to the first edit of either write (``queuefile._first_change``); the two are compared only when the version edited is
not the one written last. The kept file's bytes are known when:

- they are the bytes a read or write of this store found or left, and the file's identity (inode, size, mtime,
  ctime: ``agentd.store.file.stamps``) proved them the queue's up to the rename that replaced it, on a file system
  that stamps every change finely (Linux 6.13 and later), where any change after a ``stat`` shows in the next one;
- the kept file's identity taken after that rename is the one :func:`take` finds under the lease, when nobody else
  can have it open, so nothing changed its bytes between the two.

Anything else (an editor that wrote the queue or the kept file in place meanwhile, a file system that stamps
coarsely) writes the whole file, as before. A crash during the write leaves the kept file, never the
queue, half written, as before.

A kept file lives in agentd's state folder (``.agentd``, which a project keeps out of git as it does the journal and
the logs), not beside the queue, where it would show in ``git status`` for as long as a daemon runs and could be
committed by an agent's ``git add -A``: the rename that makes it the queue again moves it across folders, on the same
file system (where the two are on different ones, no version is kept). It is named ``.NAME.spare-PID-N`` +
``TMP_MARK``. Only a store asked to (``QueueStore.keep_versions``: a daemon's, before its first pass) keeps any. The
process removes its own when its store closes, or at exit; one that dies leaves it to the next daemon, which removes
those of processes that no longer run as it starts (:func:`sweep`).

A power cut between the link and the rename, or before the folders are written back, may leave a kept name behind
(on a file system without a journal, one more name of the queue itself, once ``fsck`` has counted its links again):
it is never written again (it has another name), and the sweep removes the name only.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import sys

MARK = ".spare-"
AVAILABLE = sys.platform == "linux"  # (write leases: Linux only)
# What fcntl(F_SETLEASE) says where leases are not to be had at all (EAGAIN, a conflicting open, and EACCES, a file
# of another owner, are about one file).
_UNSUPPORTED = {errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.ENOTTY}
_numbers = itertools.count(1)
_BLOCK = 1 << 18  # bytes compared at a time by common_prefix


class Unsupported(Exception):
    """Leases are not to be had here: stop keeping versions."""


def name_for(target: str, folder: str, mark: str) -> str:
    """A new name in ``folder`` for a kept version of the queue ``target`` (``mark``: the temporary files' suffix)."""
    return os.path.join(folder, f".{os.path.basename(target)}{MARK}{os.getpid()}-{next(_numbers)}{mark}")


def sweep(folder: str, mark: str) -> None:
    """Remove the kept versions in ``folder`` whose process no longer runs (``mark``: the temporary files' suffix)."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.path for entry in entries if entry.name.startswith(".")]
    except OSError:
        return
    for name in names:
        if gone(owner(name, mark)):
            with contextlib.suppress(OSError):
                os.unlink(name)


def owner(name: str, mark: str = "") -> int | None:
    """The pid in the name of a file kept for reuse, ``...MARK<pid>-<n>`` + ``mark`` (a kept queue version's, with
    the temporary files' suffix; a spare lease file's, ``.spare-<pid>-<n>``, with none); None for any other name."""
    base = os.path.basename(name)
    if not base.endswith(mark):
        return None
    at = base.rfind(MARK, 0, len(base) - len(mark))
    if at < 0:
        return None
    pid, _, number = base[at + len(MARK) : len(base) - len(mark)].partition("-")
    return int(pid) if pid.isdigit() and number.isdigit() else None


def gone(pid: int | None) -> bool:
    """Whether the process that kept a file (its pid, from :func:`owner`) is another one that no longer runs here:
    its file is then to be removed. False for no pid, this process's own, and one that runs."""
    from agentd import hostinfo

    return pid is not None and pid != os.getpid() and not hostinfo.running(pid)


def keep(target: str, name: str) -> bool:
    """Give ``target``'s current file the second name ``name`` (before it is replaced), when it is a regular file with
    no other name; whether it was given."""
    try:
        info = os.lstat(target)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return False
        os.link(target, name, follow_symlinks=False)
    except OSError:
        return False
    return True


def take(name: str) -> tuple[int, os.stat_result] | None:
    """The kept file ``name``, open for writing and leased (see the module's note), with its ``fstat`` taken under the
    lease; None when it is not to be written again: gone, linked elsewhere meanwhile, open in another process (or
    leased by one). Its descriptor's close gives the lease back. :class:`Unsupported` where leases are not to be
    had."""
    import fcntl
    import signal

    setlease = getattr(fcntl, "F_SETLEASE", None)
    if setlease is None:
        raise Unsupported
    try:
        # O_NONBLOCK: a file another process holds a lease on (a file server's) fails at once instead of waiting.
        fd = os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            return None
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, setlease, fcntl.F_WRLCK)
        info = os.fstat(fd)  # (again, leased: what it tells stands until the close, see the module's note)
    except OSError as exc:
        os.close(fd)
        if exc.errno in _UNSUPPORTED:
            raise Unsupported from None
        return None
    if info.st_nlink != 1:  # (linked elsewhere since the first look)
        os.close(fd)
        return None
    return fd, info


def common_prefix(old: bytes, new: bytes) -> int:
    """How many bytes ``old`` and ``new`` share from their start (compared in place, without copies: 0.2-0.4 ms for
    two 6 MB versions)."""
    size = min(len(old), len(new))
    view = memoryview(new)
    low = 0
    while low < size:  # a block at a time to the first one that differs,
        high = min(size, low + _BLOCK)
        if old.startswith(view[low:high], low):
            low = high
            continue
        while high - low > 1:  # then halved down to its first byte that differs (old[low:high] always does)
            middle = (low + high) // 2
            if old.startswith(view[low:middle], low):
                low = middle
            else:
                high = middle
        return low
    return size
