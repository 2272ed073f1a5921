"""PID files that cannot lie: ``.agentd/run/<role>[.<instance>].pid``.

The running daemon holds an exclusive flock on its PID file for its whole life, so "running" means "the lock is
held" — never "a process with that number exists". The file is rewritten in place (never renamed over), only its
owner removes it (on a clean exit, still holding the lock), and whoever takes the lock re-checks that the path still
names the inode it locked. The content (JSON: pid, host, boot id, the process's start time, argv, start time) is for
people and for ``stop``, which signals the PID only while the lock is held and the start time still matches.

A held lock proves the process exists, not that it works: a SIGSTOPped daemon holds its lock too. So the daemon beats:
every ``beat_every`` seconds its heartbeat thread rewrites ``beat_at`` (wall clock) and ``beat_boot`` (boot clock,
compared only within the same ``boot_id``); :func:`silence` says how long a running daemon has not beaten. The file is
padded to a fixed size so a beat never shortens it (a reader never sees an old tail).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from datetime import datetime

from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.errors import AgentdError, ExitCode, FileAccessError, display_path
from agentd.store.base import PidInfo as PidInfo  # (re-exported)
from agentd.store.base import Probe as Probe
from agentd.store.base import stale_reason as stale_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class AlreadyRunning(AgentdError, RuntimeError):
    """Another daemon holds this PID file."""

    exit_code = ExitCode.CONFLICT

    def __init__(self, name: str, pid: int | None, path: Path) -> None:
        self.name = name
        self.pid = pid
        self.path = path
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"{name} is already running{who}; run another with --instance NAME, or stop it first")


UNUSABLE_HINT = "a daemon of another user may hold it: look (ls -l), and remove it if none does"


class PidFileUnusable(AgentdError, PermissionError):
    """The PID file exists but cannot be opened: nothing proves its daemon stopped."""

    exit_code = ExitCode.BAD_DATA

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{display_path(path)}: {reason}; {UNUSABLE_HINT}")


def pid_path(run_dir: Path, role: str, instance: str | None = None) -> Path:
    """``.agentd/run/<role>[.<instance>].pid``."""
    return run_dir / (role + (f".{instance}" if instance else "") + ".pid")


def pid_file(run_folder: str, role: str, instance: str | None = None) -> str:
    """:func:`pid_path` as a string (`agentd status` looks without importing pathlib)."""
    return os.path.join(run_folder, role + (f".{instance}" if instance else "") + ".pid")


def _parse(raw: bytes) -> PidInfo | None:
    """The PID file's content, or None when it is not agentd's (empty, garbage, a bare number, wrong types)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or isinstance(data.get("pid"), bool):
        return None
    if not isinstance(data.get("role"), str) or not isinstance(data.get("host"), str):
        return None
    try:
        parse_timestamp(str(data.get("started_at")))
    except ValueError:
        return None
    try:
        return PidInfo.from_mapping(data)
    except TypeError:
        return None


NOT_RESPONDING_BEATS = 3  # beats missed before a running daemon is "not responding"
NOT_RESPONDING_MIN = 5.0  # s, at least


def silence(info: PidInfo, now: datetime, boot: float, this_boot: str | None) -> float | None:
    """Seconds the daemon of a held PID file has not beaten, when past ``NOT_RESPONDING_BEATS`` beats (else None).

    Judged on the boot clock when the daemon runs on this boot (no wall-clock step moves it), else on the wall clock.
    A file without beats (an older agentd) says nothing."""
    if info.beat_every is None:
        return None
    if info.beat_boot is not None and info.boot_id is not None and info.boot_id == this_boot:
        age = boot - info.beat_boot
    elif info.beat_at is not None:
        try:
            age = (now - parse_timestamp(info.beat_at)).total_seconds()
        except ValueError:
            return None
    else:
        return None
    limit = max(NOT_RESPONDING_MIN, NOT_RESPONDING_BEATS * info.beat_every)
    return age if age > limit else None


def probe(path: str | Path) -> Probe:
    """Is the daemon of this PID file running (its lock held), and what does the file say?"""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return Probe(path, False, None)
    except OSError as exc:
        return Probe(path, False, None, error=f"cannot open: {exc.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Probe(path, False, None, error="not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            running = False
        except BlockingIOError:
            running = True
        raw = os.pread(fd, 1 << 16, 0)
        info = _parse(raw)
        if info is None and raw.strip():
            raw = os.pread(fd, 1 << 16, 0)  # a beat being written as we read: read it again
            info = _parse(raw)
    finally:
        os.close(fd)
    return Probe(path, running, info, junk=info is None and bool(raw.strip()))


def _lock_briefly_contended(fd: int, tries: int = 5, pause: float = 0.02) -> bool:
    """Take the exclusive lock, allowing for a status probe that holds a shared lock for a moment."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(pause)
    return False


class PidFile:
    """The PID file of this process, locked for its whole life."""

    def __init__(self, path: Path, role: str, instance: str | None = None) -> None:
        self.path = path
        self.role = role
        self.instance = instance
        self.fd = -1
        self.replaced: PidInfo | None = None  # a stale file found at start, for a one-line notice
        self.info: PidInfo | None = None
        self._size = 0  # the file never shrinks while held: a beat overwrites, padded to at least this size

    def acquire(
        self,
        *,
        started: datetime,
        interval: float | None,
        log: str | None,
        boot: float | None = None,
        beat_every: float | None = None,
    ) -> PidInfo:
        """Take the lock and write who we are; AlreadyRunning when another daemon holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        name = self.role + (f".{self.instance}" if self.instance else "")
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW | os.O_CLOEXEC, 0o644)
            except PermissionError as exc:
                raise PidFileUnusable(self.path, f"cannot open the PID file: {exc.strerror}") from None
            except OSError as exc:  # a read-only or full file system: nobody else's file, just no way to write
                raise FileAccessError(self.path, "cannot open the PID file", exc.strerror or str(exc)) from None
            if not _lock_briefly_contended(fd):
                holder = _parse(os.pread(fd, 1 << 16, 0))
                os.close(fd)
                raise AlreadyRunning(name, holder.pid if holder else None, self.path) from None
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # removed (doctor --fix) between our open and our lock: start over
                os.close(fd)
                continue
            self.fd = fd
            break
        else:
            raise AgentdError(f"{self.path}: the PID file keeps changing under agentd")
        self.replaced = _parse(os.pread(self.fd, 1 << 16, 0))
        info = PidInfo.of_this_process(self.role, self.instance, started, interval, log, boot, beat_every)
        payload = (json.dumps(info.asdict(), indent=2) + "\n").encode("utf-8")
        self._size = -(-len(payload) // 256) * 256 + 256  # room for a beat to grow without shrinking the file
        os.pwrite(self.fd, payload.ljust(self._size), 0)  # over the old content, then cut: never an empty file
        os.ftruncate(self.fd, self._size)
        os.fsync(self.fd)
        self.info = info
        return info

    def beat(self, now: datetime, boot: float) -> None:
        """The daemon's liveness beat: rewrite ``beat_at`` and ``beat_boot`` in place (no fsync: a beat lost to a
        crash says nothing the lock does not)."""
        self.update(beat_at=format_timestamp(now), beat_boot=round(boot, 3))

    def update(self, **fields: Any) -> None:
        """Rewrite some of the file's fields in place (padded: the file never shrinks while held)."""
        if self.fd < 0 or self.info is None:
            return
        self.info = self.info.replace(**fields)
        payload = (json.dumps(self.info.asdict(), indent=2) + "\n").encode("utf-8")
        self._size = max(self._size, len(payload))
        os.pwrite(self.fd, payload.ljust(self._size), 0)

    def release(self) -> None:
        """Remove the file, then drop the lock.

        Removing it while still holding the lock is safe because :meth:`acquire` re-checks, after locking, that the
        path still names the inode it locked: a starter that opened the old file retries with a fresh one.
        """
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1


def all_pid_files(run_dir: Path) -> list[Path]:
    """Every PID file in the run folder."""
    if not run_dir.is_dir():
        return []
    return sorted(path for path in run_dir.iterdir() if path.suffix == ".pid")


def pid_files(run_folder: str) -> list[str]:
    """:func:`all_pid_files` as strings, in the same order."""
    try:
        names = os.listdir(run_folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    # (Path.suffix: the name's last dot-part, so neither ".pid" alone nor a name ending in a dot counts)
    found = [name for name in names if name.endswith(".pid") and name != ".pid"]
    return [os.path.join(run_folder, name) for name in sorted(found)]


def role_of(path: str | Path) -> tuple[str, str | None]:
    """(role, instance) from a PID file name."""
    stem = os.path.basename(os.fspath(path))[: -len(".pid")]
    role, _, instance = stem.partition(".")
    return role, instance or None


def to_json(info: PidInfo | None) -> dict[str, Any] | None:
    return info.asdict() if info else None
