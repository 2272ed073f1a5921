"""The queue lock: an exclusive flock on a sidecar file that is never deleted, through a descriptor kept open.

filelock (which agentd used here first) opens the lock file read-write on every try and closes it after, and every
close of a writable descriptor is an inotify close-write event in the queue's folder — the folder every daemon
watches. Under contention that is hundreds of events a second that every daemon must read and throw away. This lock
opens the file once, read-only where the filesystem allows it (flock needs no write access), so taking and releasing
it makes no file events at all.

Like filelock it re-checks, once it holds the flock, that the path still names the inode it locked (someone may
have deleted or replaced the lock file: a lock on an orphaned inode excludes nobody), is re-entrant within a thread,
and excludes other threads of the process too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from _thread import RLock  # (what threading.RLock is, without importing threading)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LockTimedOut(Exception):
    """The lock stayed held by someone else for the whole timeout."""


class SidecarLock:
    """``with lock:`` holds an exclusive flock on ``path`` (created if missing, never removed)."""

    def __init__(self, path: str | Path, timeout: float, poll: float = 0.005) -> None:
        self.file = os.fspath(path)
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None
        self._depth = 0
        self._threads = RLock()
        self._writable = False  # opened read-write only where a read-only descriptor cannot be flocked (NFS)

    @property
    def path(self) -> Path:
        """The lock file (``file`` is its name: taking the lock imports no pathlib, see agentd.config.Config)."""
        from pathlib import Path

        return Path(self.file)

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds (LockTimedOut after that)."""
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=max(self.timeout, 0)):
            raise LockTimedOut(str(self.file))
        if self._depth:
            self._depth += 1
            return
        try:
            self._flock(deadline)
        except BaseException:
            self._threads.release()
            raise
        self._depth = 1

    def release(self) -> None:
        """Drop one level of the lock; the flock goes with the last."""
        if self._depth <= 0:
            raise RuntimeError("releasing a queue lock that is not held")
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        """Close the descriptor, unless the lock is held, by this thread or another (the next acquire opens it)."""
        if not self._threads.acquire(blocking=False):  # (another thread holds it, or is taking it)
            return
        try:
            if self._fd is not None and self._depth == 0:
                os.close(self._fd)
                self._fd = None
        finally:
            self._threads.release()

    def __enter__(self) -> SidecarLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the flock -----------------------------------------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is None:
            mode = os.O_RDWR if self._writable else os.O_RDONLY
            self._fd = os.open(self.file, mode | os.O_CREAT | CLOEXEC | NOFOLLOW, 0o644)
        return self._fd

    def _reopen(self, *, writable: bool | None = None) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if writable is not None:
            self._writable = writable

    def _flock(self, deadline: float) -> None:
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimedOut(str(self.file)) from None
                time.sleep(self.poll)
                continue
            except OSError as exc:
                if exc.errno == errno.EBADF and not self._writable:
                    self._reopen(writable=True)  # NFS emulates flock with write locks: they need a writable file
                    continue
                raise
            if self._still_named(fd):
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._reopen()

    def _still_named(self, fd: int) -> bool:
        """Whether the path still names the inode we hold (deleted or replaced lock files are re-created)."""
        try:
            named = os.stat(self.file, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
