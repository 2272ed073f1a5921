"""Lease files in ``.leases/``: the only code that opens them.

One file per claimed task, ``.leases/<task-id>.json``, created with ``O_EXCL`` under the queue lock and locked with
``flock(LOCK_EX)`` by the daemon that claimed it. A daemon may make its next claims' files ahead, off the claims'
transaction (:meth:`LeaseDir.prepare`): unnamed (``O_TMPFILE``), each is locked and written, then given its name with
``linkat``, which fails as ``O_EXCL`` does when the name exists; such a lease appears locked and whole.

The locked descriptor is inherited by the task's command, so the lock is held exactly as long as the work lives: the
kernel releases it when the last holder dies. The file is never renamed over (a rename would give the path a new inode
the lock does not cover) and is removed only by its holder on release, or under the queue lock once its lock is proven
free (or its holder proven hung and killed); every open re-checks that the path still names the inode it locked.
Heartbeats rewrite the file in place: ``heartbeat_at`` (wall clock) and ``heartbeat_boot`` (the boot clock, judged
only within the same ``boot_id``; see :mod:`agentd.core.clock`).

A daemon keeps the files it releases as *spares* instead of deleting them (:meth:`LeaseDir.reuses`): on release the
holder renames the file to ``.spare-<pid>-<n>`` (the lease path is gone at once, as with an unlink), and a later claim
of that daemon rewrites it and links it to the new lease's name, then removes the spare name. A spare is used only
when a new open of it can take ``LOCK_EX``: proof that no process still holds the old lease's descriptor (its
supervisor, or a grandchild that escaped with it); one still locked is deleted, as before. No inode is made or freed
per task: on ext4 without a journal every new inode is found past each inode of its group freed in the last 60 s (360
s while that inode's table block is not yet written back: ``recently_deleted`` in fs/ext4/ialloc.c), which cost a
daemon's claims, and its supervisors' log files, up to 0.8 ms each on the 2-core test machine (docs/benchmarks.md,
round 22). Spares of a daemon that died are removed by the next daemon that keeps spares in the folder.

Symlinks are never followed: the folder must resolve inside the project, and files are opened with ``O_NOFOLLOW``
relative to the folder's descriptor.
"""

from __future__ import annotations

import _thread  # (threading's Lock, without threading's import: `agentd status`)
import contextlib
import errno
import fcntl
import itertools
import json
import math
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime

from agentd import faults, schema
from agentd.core.clock import Clock, SystemClock, format_timestamp, parse_timestamp
from agentd.core.model import valid_task_id
from agentd.core.scheduler import LeaseObservation
from agentd.errors import AgentdError, FileAccessError, LeaseInvalid, display_path
from agentd.hostinfo import boot_id, flock_holders
from agentd.lazylog import get_logger
from agentd.store.base import LeaseRecord as LeaseRecord  # (re-exported)
from agentd.store.base import new_record as new_record
from agentd.store.file import spare as reuse
from agentd.store.file import stamps, unnamed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

log = get_logger(__name__)

SUFFIX = ".json"
NOT_EMPTY = "is a folder with files in it, not a lease file (agentd never deletes one)"
UNOPENABLE = "cannot open: {} (it may be another user's live lease)"
TOKENS = ".tokens"
SCRATCH = ".stamps-{}.agentd-tmp"  # the scratch file of the folder's timestamps probe (see agentd.store.file.stamps)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
OWN_EVENTS_GRACE = 1.0  # s after a release during which its file events are taken as this process's own
OWN_EVENTS_KEPT = 256  # own leases remembered before the expired ones are dropped
# The token mark is kept open between claims only under a descriptor limit at least this high: under a tiny `ulimit -n`
# (a dozen), the one descriptor it holds is one a pass's queue write may need.
KEEP_MARK_NOFILE = 256
PREPARED_MAX = 8  # unnamed lease files kept ready at most (see LeaseDir.prepare): as many as a pass claims, at most
SPARE_PREFIX = reuse.MARK  # a released lease file kept for the next claim: ``.spare-<pid>-<n>`` (see LeaseDir.reuses)
SPARES_MAX = 8  # released lease files a daemon keeps at most (the others are deleted as before)
REREADS = 8  # times a lease file that does not parse is read again (caught mid-write, or reused meanwhile)


class LeaseDirUnsafe(AgentdError, PermissionError):
    """The lease folder is a symlink out of the project, or not a folder."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"{display_path(path)}: {reason}")
        self.exit_code = LeaseInvalid.exit_code


def _not_json(name: str) -> Any:
    """``json.loads`` takes NaN and Infinity, which JSON has not (a NaN ttl would never run out)."""
    raise ValueError(f"{name} is not a JSON value")


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "an empty folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


# Lease files found valid, by their exact bytes and task id (their records are frozen: safe to share). Bounded: a lease
# file is under 1 KB, and a daemon sees one version per lease and heartbeat.
_VALID_LEASES: dict[tuple[bytes, str], LeaseRecord] = {}
_VALID_LEASES_MAX = 4096


def _remember(raw: bytes, record: LeaseRecord) -> None:
    """Remember ``raw`` as the valid text of ``record``: bytes read and validated, or written by this process from a
    record (:meth:`LeaseRecord.dumps` output validates: tests/integration/test_leases.py), so the daemon never
    re-validates its own claims and heartbeats; a peer's process validates them on its first look."""
    if len(_VALID_LEASES) >= _VALID_LEASES_MAX:
        _VALID_LEASES.clear()
    _VALID_LEASES[raw, record.task_id] = record


class Held:
    """A lease this process holds: the open, locked descriptor and what the file says.

    Thread-safe: the daemon's heartbeat thread renews it while its main loop may release it.
    """

    def __init__(self, folder: LeaseDir, record: LeaseRecord, fd: int, inode: tuple[int, int]) -> None:
        self.folder = folder
        self.record = record
        self.fd = fd
        self.inode = inode
        self._lock = _thread.allocate_lock()

    @property
    def task_id(self) -> str:
        return self.record.task_id

    @property
    def token(self) -> int:
        return self.record.token

    def still_ours(self) -> bool:
        """Whether the lease path still names the inode we locked (nobody broke and re-created it)."""
        current = self.folder.inode_of(self.task_id)
        return current == self.inode

    def update(self, now: datetime, boot: float | None = None, **changes: Any) -> bool | None:
        """Rewrite the file in place (heartbeat at wall time ``now`` and boot-clock time ``boot``, pgid); False when
        the lease is no longer ours, None when it was released meanwhile (nothing to renew)."""
        with self._lock:
            if self.fd < 0:
                return None
            if not self.still_ours():
                return False
            self.record = self.record.replace(heartbeat_at=format_timestamp(now), heartbeat_boot=boot, **changes)
            payload = self.record.dumps()
            os.pwrite(self.fd, payload, 0)
            faults.point("heartbeat.mid-write")  # a reader now may see the new text and the old one's tail
            os.ftruncate(self.fd, len(payload))
            _remember(payload, self.record)
            return True

    def renew(self, now: datetime, boot: float | None = None) -> bool | None:
        """A heartbeat (see :meth:`update`)."""
        return self.update(now, boot)

    def inherit(self) -> tuple[int, ...]:
        """The locked descriptor: the task's supervisor holds it, so the lock lives exactly as long as the work."""
        return (self.fd,) if self.fd >= 0 else ()

    def release(self) -> None:
        """Remove the lease file (if it is still ours: kept as a spare where the folder keeps them, see
        :meth:`LeaseDir.reuses`) and drop the lock."""
        with self._lock:
            if self.fd < 0:
                return
            try:
                if self.still_ours() and not self.folder.keep_spare(self.task_id):
                    self.folder.unlink(self.task_id)
            finally:
                os.close(self.fd)
                self.fd = -1
                self.folder.released(self.task_id)


def descriptors_to_spare() -> bool:
    """Whether this process's descriptor limit lets it keep a descriptor or a few open between transactions: the
    token mark, files made ahead (see KEEP_MARK_NOFILE)."""
    import resource  # (only when a mark is opened: `agentd status` never issues tokens)

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft == resource.RLIM_INFINITY or soft >= KEEP_MARK_NOFILE


def spare_owner(name: str) -> int | None:
    """The pid in a spare lease file's name (``.spare-<pid>-<n>``), None for any other name."""
    return reuse.owner(name) if name.startswith(SPARE_PREFIX) else None


def _raised(mark: int, floors: list[int]) -> list[int]:
    """One token per floor, each above its floor and above the mark and every token before it."""
    tokens = []
    for floor in floors:
        mark = max(mark, floor) + 1
        tokens.append(mark)
    return tokens


class LeaseDir:
    """The lease folder of one project."""

    def __init__(self, folder: str | Path, root: str | Path | None = None, clock: Clock | None = None) -> None:
        # Kept as strings (`agentd status` reads the folder without importing pathlib); ``path`` and ``root`` are made
        # when asked for.
        self.folder = os.fspath(folder)
        self.root_folder = os.fspath(root) if root else (os.path.dirname(self.folder.rstrip(os.sep)) or os.curdir)
        self.clock: Clock = clock or SystemClock()  # its boot clock ages heartbeats written on this boot
        self._fd: int | None = None
        self._reported: set[tuple[str, str]] = set()  # (name, problem) warned about once by this process
        self._own: dict[str, float] = {}  # task id -> until when (monotonic) its file's events are this process's own
        self._born: dict[int, str] = {}  # inode -> task id: the leases this process made unnamed (see own_file_events)
        self._mark: tuple[int, int, int] | None = None  # the token mark kept open: descriptor, device, inode
        self._listed: tuple[tuple[int, int, int, int, int], list[str]] | None = None  # see task_ids
        self._prepared: list[int] = []  # unnamed lease files made ahead (see prepare), for this process
        self._prepared_pid = os.getpid()
        self._unnamed = unnamed.AVAILABLE  # False once the folder refused an unnamed file or its naming
        self._spares: list[str] = []  # released lease files kept for the next claims (see reuses), for this process
        self._spare_numbers = itertools.count(1)  # the <n> of spares' names (next() is atomic: no lock for it)
        self._keeps_spares = False  # whether released files are kept (a daemon's, once it prepares: see reuses)

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.folder)

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self.root_folder)

    # -- the folder ----------------------------------------------------------------------------------------------------

    def _dir_fd(self, create: bool = False) -> int:
        """The folder's descriptor; read paths never create it (FileNotFoundError when it is missing)."""
        if self._fd is not None:
            return self._fd
        if not create and not os.path.lexists(self.folder):
            raise FileNotFoundError(self.folder)
        target = os.path.realpath(self.folder)
        inside = os.path.realpath(self.root_folder)
        if target != inside and not target.startswith(inside.rstrip(os.sep) + os.sep):
            shown = display_path(target)
            how = f"is a symlink to {shown}" if os.path.islink(self.folder) else f"resolves to {shown}"
            raise LeaseDirUnsafe(self.path, f"{how}, outside the project; refusing to use it")
        os.makedirs(self.folder, exist_ok=True)
        try:
            fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | CLOEXEC)
        except OSError as exc:
            raise LeaseDirUnsafe(self.path, f"cannot open the lease folder: {exc.strerror}") from None
        self._fd = fd
        return fd

    def close(self) -> None:
        self._drop_mark()
        self._drop_prepared()
        self._drop_spares()
        self._listed = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def name_for(task_id: str) -> str:
        """The lease file's name; refuses ids that are not safe file names."""
        if not valid_task_id(task_id):
            raise ValueError(f"unsafe task id for a lease file: {task_id!r}")
        return task_id + SUFFIX

    def file_for(self, task_id: str) -> Path:
        return self.path / self.name_for(task_id)

    def inode_of(self, task_id: str) -> tuple[int, int] | None:
        try:
            info = os.stat(self.name_for(task_id), dir_fd=self._dir_fd(), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino)

    def holders(self, task_id: str) -> list[int]:
        """The processes on this host that really hold the lease's lock (the daemon, the task's supervisor, its
        command, any descendant that inherited the descriptor), found in /proc; [] when none or not Linux."""
        inode = self.inode_of(task_id)
        return flock_holders(*inode) if inode is not None else []

    def _open_ro(self, task_id: str) -> int:
        """Open a lease file read-only, never following a symlink, relative to the folder's descriptor."""
        flags = os.O_RDONLY | NOFOLLOW | CLOEXEC | os.O_NONBLOCK
        return os.open(self.name_for(task_id), flags, dir_fd=self._dir_fd())

    def unlink(self, task_id: str) -> None:
        """Remove a lease file; one that cannot be removed (a read-only folder) is reported and left, its lock free
        once its holder closes it, so peers treat it as an orphan."""
        try:
            os.unlink(self.name_for(task_id), dir_fd=self._dir_fd())
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.report(task_id, f"cannot remove it ({exc.strerror})")

    def task_ids(self) -> Iterator[str]:
        """Ids with a lease file (names that are not ``<valid id>.json`` are skipped; doctor reports them).

        The folder is listed again only when its identity changed since the last listing (one ``fstat``: a name
        made, removed or renamed in it gives the folder a new ctime), where its file system stamps a change made
        after a look with a new time (see agentd.store.file.stamps); elsewhere at every call."""
        try:
            fd = self._dir_fd()
            seen = stamps.of(os.fstat(fd))  # (before the listing: a change after it shows in the next fstat)
            listed = self._listed
            if listed is not None and listed[0] == seen:
                names = listed[1]
            else:
                names = sorted(os.listdir(fd))
                self._listed = (seen, names) if stamps.fine_timestamps(self.folder, SCRATCH) else None
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(SUFFIX) and valid_task_id(name[: -len(SUFFIX)]):
                yield name[: -len(SUFFIX)]

    # -- claiming ------------------------------------------------------------------------------------------------------

    def prepare(self, count: int) -> None:
        """Have ``count`` (at most :data:`PREPARED_MAX`) lease files ready for the next claims: unnamed files in the
        folder (``O_TMPFILE``), which :meth:`acquire` locks, writes and names. Making a file is the dear part of a
        claim (a new inode: on ext4 without a journal, found past every inode freed in the last minute or more), and
        a daemon calls this after its starts, so that its next transaction, which holds the queue lock, only names
        them (a spare kept from a release is used first, and none is made for it: see reuses).
        Nothing where the file system makes no unnamed files (then the claims create their files as before), nor
        under a descriptor limit too low to keep them (see KEEP_MARK_NOFILE)."""
        if self._prepared_pid != os.getpid():  # (a forked child: the parent's files are the parent's)
            self._prepared, self._prepared_pid, self._spares = [], os.getpid(), []
        if not self._keeps_spares:
            self.reuses()
        count = min(count, PREPARED_MAX) - len(self._spares)  # (a spare is used first: see acquire)
        if not self._unnamed or len(self._prepared) >= count or not descriptors_to_spare():
            return
        try:
            folder = self._dir_fd(create=True)
            while len(self._prepared) < count:
                self._prepared.append(unnamed.make(".", os.O_RDWR, 0o644, dir_fd=folder))
        except OSError as exc:
            if unnamed.unsupported(exc):
                self._unnamed = False
            # Else (no descriptor or space left, no folder): claims make their files as before.

    def _make_one(self, folder: int) -> bool:
        """One unnamed lease file for the claim under way, when none was made ahead (see :meth:`prepare`): the claim
        then names it once it is locked and written, so that no reader ever finds the lease empty (created by name,
        a lease was seen empty by a reader polling it in 40,096 of 128,694 reads over 46,668 claims and releases, the
        lead's loop). Whether one was made (False where the file system makes none: claims create files by name)."""
        if not self._unnamed:
            return False
        if self._prepared_pid != os.getpid():  # (a forked child: the parent's files are the parent's)
            self._prepared, self._prepared_pid, self._spares = [], os.getpid(), []
        try:
            self._prepared.append(unnamed.make(".", os.O_RDWR, 0o644, dir_fd=folder))
        except OSError as exc:
            if unnamed.unsupported(exc):
                self._unnamed = False
            return False  # (else no descriptor or space: the named creation says what failed)
        return True

    def _drop_prepared(self) -> None:
        prepared, self._prepared = self._prepared, []
        if self._prepared_pid == os.getpid():
            for fd in prepared:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- spares -------------------------------------------------------------------------------------------------------

    def reuses(self) -> None:
        """From now on keep released lease files as spares for this process's next claims (a daemon's: see the
        module's note) instead of deleting them; spares left by processes that are gone are removed now. Spares hold
        no descriptor while they wait; :meth:`close` removes this process's."""
        if self._keeps_spares:
            return
        self._keeps_spares = True
        try:
            names = os.listdir(self._dir_fd(create=True))
        except OSError:
            return
        for name in names:
            if reuse.gone(spare_owner(name)):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=self._dir_fd())

    def keep_spare(self, task_id: str) -> bool:
        """Rename the released lease file of ``task_id`` (still ours, its lock still held) to a spare name; False when
        it is not kept (the caller deletes it as before), True too when its path is gone already."""
        if not self._keeps_spares or self._prepared_pid != os.getpid() or len(self._spares) >= SPARES_MAX:
            return False
        spare = f"{SPARE_PREFIX}{os.getpid()}-{next(self._spare_numbers)}"
        try:
            folder = self._dir_fd()
            os.rename(self.name_for(task_id), spare, src_dir_fd=folder, dst_dir_fd=folder)
        except FileNotFoundError:
            return True  # (its path went meanwhile: nothing left to remove, and nothing to delete after this)
        except OSError:
            return False
        self._spares.append(spare)
        return True

    def _drop_spares(self) -> None:
        spares, self._spares = self._spares, []
        if self._prepared_pid == os.getpid() and self._fd is not None:
            for spare in spares:
                with contextlib.suppress(OSError):
                    os.unlink(spare, dir_fd=self._fd)

    def _acquire_spare(self, record: LeaseRecord, name: str, folder: int) -> tuple[bool, Held | None]:
        """:meth:`acquire` with a spare: opened anew and locked (refused while any process still holds the old lease's
        descriptor: that spare is deleted), written, linked to the lease's name (EEXIST: the lease exists, the spare
        is kept), then its spare name removed. (False, None) when no spare could be used."""
        while self._spares and self._prepared_pid == os.getpid():
            spare = self._spares.pop(0)  # (the one released longest ago: its old holders are the likeliest gone)
            try:
                fd = os.open(spare, os.O_RDWR | NOFOLLOW | CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
            except OSError:
                continue  # (removed by another daemon that took this one for dead, say: a new file is made)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                    raise BlockingIOError  # (not what this process left: not used, its name removed)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (refused: the old lease's descriptor is held)
                payload = record.dumps()
                os.pwrite(fd, payload, 0)
                os.ftruncate(fd, len(payload))
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(spare, dir_fd=folder)
                continue
            try:
                os.link(spare, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
            except FileExistsError:
                os.close(fd)
                self._spares.insert(0, spare)  # (unused: kept for another claim)
                return True, None
            except FileNotFoundError:  # (its name removed meanwhile, by a daemon that took this one for dead)
                os.close(fd)
                continue
            except OSError:  # (a file system that links no file, say: this process keeps no spares from now on)
                os.close(fd)
                self._spares.insert(0, spare)
                self._drop_spares()
                self._keeps_spares = False
                return False, None
            faults.point("lease.spare-linked")  # the lease is whole and locked; the spare name is a second link
            with contextlib.suppress(OSError):
                os.unlink(spare, dir_fd=folder)
            _remember(payload, record)
            self._own[record.task_id] = math.inf
            return True, Held(self, record, fd, (info.st_dev, info.st_ino))
        return False, None

    def _acquire_prepared(self, record: LeaseRecord, name: str, folder: int) -> tuple[bool, Held | None]:
        """:meth:`acquire` with a file made ahead: locked, written, then named (:func:`unnamed.name`, which fails with
        EEXIST as ``O_EXCL`` does). (False, None) when none is ready or it
        could not be used: the caller creates the file by name (and says what failed, if that fails too); a naming
        refused for another reason than EEXIST (no /proc, another file system) ends the use of unnamed files."""
        if not self._prepared or self._prepared_pid != os.getpid():
            return False, None
        fd = self._prepared.pop()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (a new inode nobody else can open: never refused)
            payload = record.dumps()
            os.write(fd, payload)
            info = os.fstat(fd)
        except OSError:
            os.close(fd)  # (a full disk, say: the named creation says so)
            return False, None
        try:
            unnamed.name(fd, name, dir_fd=folder)
        except FileExistsError:
            os.close(fd)  # (its inode goes with it: written for this record, it is of no use to another)
            return True, None
        except OSError:
            os.close(fd)
            self._unnamed = False  # (for this process: named files from now on)
            self._drop_prepared()
            return False, None
        _remember(payload, record)
        self._own[record.task_id] = math.inf
        if len(self._born) >= OWN_EVENTS_KEPT:  # (the oldest first: their tasks' events are long no longer its own)
            for ino in list(self._born)[: OWN_EVENTS_KEPT // 2]:
                del self._born[ino]
        self._born[info.st_ino] = record.task_id
        return True, Held(self, record, fd, (info.st_dev, info.st_ino))

    def acquire(self, record: LeaseRecord) -> Held | None:
        """Create and lock the lease file; None when one exists already (call only under the queue lock)."""
        name = self.name_for(record.task_id)
        folder = self._dir_fd(create=True)  # LeaseDirUnsafe as it is: not a file access error
        done, held = self._acquire_spare(record, name, folder) if self._spares else (False, None)
        if not done:
            done, held = self._acquire_prepared(record, name, folder)
        if not done and self._make_one(folder):  # (none made ahead: one now, named once whole)
            done, held = self._acquire_prepared(record, name, folder)
        if done:
            return held
        # Where no unnamed file is to be had: created by name, then locked and written. A reader may find it empty
        # meanwhile (read again through its path, see observe; its lock tells it is held).
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC
            fd = os.open(name, flags, 0o644, dir_fd=folder)
        except FileExistsError:
            return None
        except OSError as exc:
            raise FileAccessError(self.path / name, "cannot create the lease file", exc.strerror or str(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # No fsync: what makes a lease is its lock, which lives in the kernel. After a power loss the file may be
            # empty, but then its lock is free and its task is recovered like any other.
            payload = record.dumps()
            os.write(fd, payload)
            info = os.fstat(fd)
        except BaseException as exc:
            os.close(fd)
            self.unlink(record.task_id)
            if isinstance(exc, OSError):  # a full disk: name the file (the OSError of a write names none)
                raise FileAccessError(
                    self.path / name, "cannot write the lease file", exc.strerror or str(exc)
                ) from None
            raise
        _remember(payload, record)
        self._own[record.task_id] = math.inf
        return Held(self, record, fd, (info.st_dev, info.st_ino))

    def released(self, task_id: str) -> None:
        """This process released the lease of ``task_id``: the file events of that release are its own."""
        now = self.clock.monotonic()
        if len(self._own) > OWN_EVENTS_KEPT:
            self._own = {key: until for key, until in self._own.items() if until > now}
        self._own[task_id] = now + OWN_EVENTS_GRACE

    def own_events(self, task_id: str) -> bool:
        """Whether file events on the lease of ``task_id`` are this process's own doing: it holds the lease (its
        task's supervisor closing the inherited descriptor), or released it a moment ago. Such events tell this
        process nothing it does not know; a peer's are seen by polling, if ever one falls in that moment."""
        until = self._own.get(task_id)
        return until is not None and self.clock.monotonic() < until

    def own_file_events(self, name: str) -> bool:
        """Whether the close event of a lease file reported under ``name`` is this process's own doing (see
        :meth:`own_events`), for the leases whose file never had the lease's name when its descriptor was opened: the
        kernel reports the close of an open file under the name it was opened by. ``#<inode>``: made unnamed
        (``O_TMPFILE``, see :meth:`prepare`), its own when this process made it for a task whose events are still its
        own; ``.spare-<pid>-<n>``: reused from a spare, its own when the spare was this process's (a process reuses
        only its own spares). Any other process's is a peer's: its holder's end (a death too) wakes the daemon."""
        if name.startswith("#"):
            number = name[1:]
            task = self._born.get(int(number)) if number.isdigit() else None
            return task is not None and self.own_events(task)
        return spare_owner(name) == os.getpid()

    def issue_tokens(self, floors: list[int]) -> list[int]:
        """Fencing tokens, one per floor: each above its floor and above every token this folder ever issued.

        The high-water mark lives in ``.leases/.tokens`` (task ids cannot start with a dot), so a token is never
        reused even when the queue is reverted by hand (a ``git checkout`` of an old queue, say). Call under the
        queue lock.

        Once the mark is a regular file it is rewritten in place (a few bytes at its start, then cut to their length:
        the mark only grows, so the new text covers the old); missing, or anything else at that path (a symlink is
        never written through), it is written to a temporary file and renamed over the path. No fsync either way:
        the queue, fsynced right after in the same transaction, holds each task's lease_token too, and a new token
        is always above both (a mark lost or garbled by a power cut reads as 0: the floors decide).

        The mark's descriptor is kept open from one issue to the next while the path still names its file (one
        ``stat`` under the queue lock tells: a mark replaced, removed or made a symlink meanwhile is opened anew, never
        written through the old descriptor). Opened and closed at every claim, its close for writing was a file event
        for every daemon watching the lease folder (each handled by the watch's threads, for nothing).
        """
        if not floors:
            return []
        folder = self._dir_fd(create=True)
        fd = self._mark_fd(folder)
        if fd is None:
            return self._issue_tokens_anew(floors)  # missing, a symlink, a folder, not ours to write: replaced
        written = False
        try:
            try:
                mark = int(os.pread(fd, 64, 0).decode("ascii").strip() or 0)
            except (OSError, ValueError):
                mark = 0
            tokens = _raised(mark, floors)
            text = f"{tokens[-1]}\n".encode("ascii")
            try:
                if os.pwrite(fd, text, 0) != len(text):
                    raise OSError(errno.EIO, "short write")
                os.ftruncate(fd, len(text))
            except OSError as exc:
                raise FileAccessError(
                    self.path / TOKENS, "cannot write the token mark", exc.strerror or str(exc)
                ) from None
            written = True
        finally:
            if not written or self._mark is None:  # (not kept: a failed write, or a tiny descriptor limit)
                self._mark = None
                os.close(fd)
        faults.point("tokens.after-write")
        return tokens

    def _mark_fd(self, folder: int) -> int | None:
        """The token mark open for reading and writing: the descriptor kept from the last issue while the mark's path
        still names its file, else opened now (and kept); None when the path holds no regular file this process may
        write (missing, a symlink, a folder, a FIFO, another user's)."""
        kept = self._mark
        if kept is not None:
            try:
                info = os.stat(TOKENS, dir_fd=folder, follow_symlinks=False)
            except OSError:
                info = None
            if info is not None and stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == kept[1:]:
                return kept[0]
            self._drop_mark()
        try:
            fd = os.open(TOKENS, os.O_RDWR | NOFOLLOW | CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        if not stat.S_ISREG(info.st_mode):  # (a FIFO or a device opened without blocking)
            os.close(fd)
            return None
        if descriptors_to_spare():
            self._mark = (fd, info.st_dev, info.st_ino)
        return fd

    def _drop_mark(self) -> None:
        """Close the token mark's kept descriptor (if any)."""
        kept, self._mark = self._mark, None
        if kept is not None:
            with contextlib.suppress(OSError):
                os.close(kept[0])

    def _issue_tokens_anew(self, floors: list[int]) -> list[int]:
        """:meth:`issue_tokens` where the mark is not a regular file to rewrite: a new file renamed over its path."""
        self._drop_mark()
        folder = self._dir_fd()
        try:
            fd = os.open(TOKENS, os.O_RDONLY | NOFOLLOW | CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
            try:
                mark = int(os.read(fd, 64).decode("ascii").strip() or 0)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            mark = 0
        tokens = _raised(mark, floors)
        mark = tokens[-1]
        temp = f"{TOKENS}.tmp"  # one name: only the queue lock's holder writes it, and a crash leaves no litter
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW | CLOEXEC, 0o644, dir_fd=folder)
            try:
                os.write(fd, f"{mark}\n".encode("ascii"))
            finally:
                os.close(fd)
            os.replace(temp, TOKENS, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError as exc:
            with contextlib.suppress(OSError):  # (a full disk: the temporary file is not left behind)
                os.unlink(temp, dir_fd=folder)
            raise FileAccessError(self.path / TOKENS, "cannot write the token mark", exc.strerror or str(exc)) from None
        faults.point("tokens.after-write")
        return tokens

    # -- looking -------------------------------------------------------------------------------------------------------

    def observe(self, task_id: str, *, again: int = REREADS) -> LeaseObservation | None:
        """What the lease file of ``task_id`` says and whether its lock is held; None when there is none.

        Something agentd never creates at a lease path (a symlink, a folder, a FIFO) cannot be a holder's lease: it
        is reported with ``locked=False`` when recovery may remove it, and ``locked=None`` (nothing proven, so left
        alone and its task not claimed) when it may not: a folder with files in it, or a file this process may not
        open (another user's lease, say).
        """
        try:
            fd = self._open_ro(task_id)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return LeaseObservation(task_id, locked=False, error="is a symlink (never followed)")
            return LeaseObservation(task_id, locked=None, error=UNOPENABLE.format(exc.strerror))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                if stat.S_ISDIR(info.st_mode) and os.listdir(fd):
                    return LeaseObservation(task_id, locked=None, error=NOT_EMPTY)
                return LeaseObservation(task_id, locked=False, error=f"is {_kind(info.st_mode)}, not a lease file")
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                locked = False
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                locked = True
            raw = os.pread(fd, 1 << 16, 0)
        finally:
            os.close(fd)
        mtime = datetime.fromtimestamp(info.st_mtime, UTC)
        try:
            record = self.parse(raw, task_id)
        except LeaseInvalid as exc:
            if again:
                # Caught mid-rewrite, or released and its file reused for another lease (see reuses) while it was read
                # (the same file may even be this task's again by now): what the path names now is read again.
                return self.observe(task_id, again=again - 1)
            where = f"{exc.json_path}: " if exc.json_path else ""
            return LeaseObservation(task_id, locked=locked, error=where + exc.reason)
        beat = mtime
        if record.heartbeat_at:
            beat = max(beat, parse_timestamp(record.heartbeat_at))
        beat_age = None
        if record.heartbeat_boot is not None and record.boot_id is not None and record.boot_id == boot_id():
            beat_age = self.clock.boottime() - record.heartbeat_boot
        return LeaseObservation(
            task_id,
            token=record.token,
            role=record.role,
            host=record.host,
            pid=record.pid,
            pgid=record.pgid,
            locked=locked,
            heartbeat_at=beat,
            acquired=parse_timestamp(record.acquired),
            ttl=record.ttl,
            boot_id=record.boot_id,
            beat_age=beat_age,
        )

    def parse(self, raw: bytes, task_id: str) -> LeaseRecord:
        """A lease file's bytes as a record; LeaseInvalid with the JSON path when they do not validate.

        Bytes once found valid give the same record again without a second validation (a daemon looks at every lease
        on every pass, and most did not change since the last look); new bytes, a heartbeat's say, are validated.
        """
        known_record = _VALID_LEASES.get((raw, task_id))
        if known_record is not None:
            return known_record
        path = self.file_for(task_id)
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise LeaseInvalid(path, None, f"not valid JSON ({exc})") from None
        problem = schema.first_error(data, "lease")
        if problem is not None:
            raise LeaseInvalid(path, problem[0], problem[1])
        if data["task_id"] != task_id:
            raise LeaseInvalid(path, "$.task_id", f"names task {data['task_id']!r}, not {task_id!r}")
        known = set(LeaseRecord._fields)
        record = LeaseRecord(**{key: value for key, value in data.items() if key in known})
        _remember(raw, record)
        return record

    def read_record(self, task_id: str, *, again: int = REREADS) -> LeaseRecord | None:
        """The parsed record of a lease file (None when absent or unreadable)."""
        try:
            fd = self._open_ro(task_id)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            raw = os.pread(fd, 1 << 16, 0)
        finally:
            os.close(fd)
        try:
            return self.parse(raw, task_id)
        except LeaseInvalid:
            return self.read_record(task_id, again=again - 1) if again else None  # (see observe)

    def observe_all(self) -> dict[str, LeaseObservation]:
        """Every lease file, observed."""
        found = {}
        for task_id in self.task_ids():
            seen = self.observe(task_id)
            if seen is not None:
                found[task_id] = seen
        return found

    # -- breaking ------------------------------------------------------------------------------------------------------

    def break_free(self, task_id: str) -> bool:
        """Remove a lease file whose lock is free (proof its holders are gone); False when it stays (its lock is
        held, or it is something this process may not open or remove). Call under the queue lock."""
        try:
            fd = self._open_ro(task_id)
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink where a lease should be: removing it touches only the link
                return self._remove_entry(task_id)
            self.report(task_id, UNOPENABLE.format(exc.strerror))
            return False  # no proof its holder is gone (it may be another user's live lease)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return self._remove_entry(task_id)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if self.inode_of(task_id) == (info.st_dev, info.st_ino):
                self.unlink(task_id)
            return True
        finally:
            os.close(fd)

    def break_held(self, task_id: str) -> None:
        """Remove a lease file whose holder was judged hung (heartbeat past its TTL) and killed. Under the queue lock.

        The hung holder keeps its lock on the old inode; once the path is gone it no longer names what it locked, so
        its heartbeat finds the lease lost and it stops, and its completion is refused by the fencing token.
        """
        self._remove_entry(task_id)

    def _remove_entry(self, task_id: str) -> bool:
        """Remove whatever is at the lease path (never recursively); False, reported once, when it cannot."""
        name = self.name_for(task_id)
        try:
            try:
                os.unlink(name, dir_fd=self._dir_fd())
            except (IsADirectoryError, PermissionError):
                if not stat.S_ISDIR(os.stat(name, dir_fd=self._dir_fd(), follow_symlinks=False).st_mode):
                    raise
                os.rmdir(name, dir_fd=self._dir_fd())  # an empty folder only: agentd never deletes files in it
        except FileNotFoundError:
            return True
        except OSError as exc:
            full = exc.errno in (errno.ENOTEMPTY, errno.EEXIST)
            problem = NOT_EMPTY if full else f"cannot remove it ({exc.strerror})"
            self.report(task_id, problem)
            return False
        return True

    def report(self, task_id: str, problem: str) -> None:
        """Warn about a lease path agentd leaves alone, once per path and problem in this process."""
        if (task_id, problem) in self._reported:
            return
        self._reported.add((task_id, problem))
        where = display_path(self.file_for(task_id))
        log.warning("%s: %s; left alone: task %s waits until a person removes it", where, problem, task_id)
