"""The storage boundary: what a store of one project's queue, leases, journal and daemons must do.

Everything that reads or changes a project's tasks, leases, events, daemon registrations or project state goes through
a :class:`Store` (``agentd.store.open_store(config)`` builds one). The JSON queue file with its lease files is one
implementation (:mod:`agentd.store.file.store`); a database store is meant to be another. Every store passes the one
contract suite, ``tests/contract/test_store.py``; docs/concepts/storage.md says what each method promises.

This module holds the protocols and the plain types they exchange (lease records, journal events and filters, daemon
registrations), and nothing that touches a disk or a database.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime

from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.core.record import Record, set_field
from agentd.hostinfo import boot_id, hostname, own_start, pid_namespace, process_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping
    from contextlib import AbstractContextManager
    from pathlib import Path
    from typing import Any, Protocol, TypeVar

    from agentd.core.control import ProjectState
    from agentd.core.model import Task
    from agentd.core.scheduler import LeaseObservation
    from agentd.core.validate import Finding
    from agentd.core.workflow import Workflow

    T = TypeVar("T")
else:
    # The protocols below are for the type checker: at run time they are plain classes, so that `agentd status` (which
    # reads a store through them) does not import typing (and this module builds no Protocol class) on every call.
    Protocol = object

# -- leases ------------------------------------------------------------------------------------------------------------


class LeaseRecord(Record):
    """What a lease says: who holds which task under which token (a lease file's content, for the file store)."""

    _fields = (
        "task_id",
        "token",
        "role",
        "host",
        "pid",
        "acquired",
        "ttl",
        "owner",
        "heartbeat",
        "attempt",
        "instance",
        "boot_id",
        "pgid",
        "pgid_start",
        "heartbeat_at",
        "pid_start",
        "heartbeat_boot",
        "pid_ns",
    )

    task_id: str
    token: int
    role: str
    host: str
    pid: int
    acquired: str
    ttl: float
    owner: str = ""
    heartbeat: float = 60.0
    attempt: int = 1
    instance: str | None = None
    boot_id: str | None = None
    pgid: int | None = None
    pgid_start: int | None = None
    heartbeat_at: str | None = None
    pid_start: int | None = None  # the daemon's start time (process_start), to tell it from a reused pid
    heartbeat_boot: float | None = None  # the boot clock at the last heartbeat (compare only within boot_id)
    pid_ns: int | None = None  # the daemon's PID namespace: its pid and pgid mean something only within it

    def __init__(
        self,
        task_id: str,
        token: int,
        role: str,
        host: str,
        pid: int,
        acquired: str,
        ttl: float,
        owner: str = "",
        heartbeat: float = 60.0,
        attempt: int = 1,
        instance: str | None = None,
        boot_id: str | None = None,
        pgid: int | None = None,
        pgid_start: int | None = None,
        heartbeat_at: str | None = None,
        pid_start: int | None = None,
        heartbeat_boot: float | None = None,
        pid_ns: int | None = None,
    ) -> None:
        set_field(self, "task_id", task_id)
        set_field(self, "token", token)
        set_field(self, "role", role)
        set_field(self, "host", host)
        set_field(self, "pid", pid)
        set_field(self, "acquired", acquired)
        set_field(self, "ttl", ttl)
        set_field(self, "owner", owner)
        set_field(self, "heartbeat", heartbeat)
        set_field(self, "attempt", attempt)
        set_field(self, "instance", instance)
        set_field(self, "boot_id", boot_id)
        set_field(self, "pgid", pgid)
        set_field(self, "pgid_start", pgid_start)
        set_field(self, "heartbeat_at", heartbeat_at)
        set_field(self, "pid_start", pid_start)
        set_field(self, "heartbeat_boot", heartbeat_boot)
        set_field(self, "pid_ns", pid_ns)

    def dumps(self) -> bytes:
        # json.dumps(asdict(self), indent=2), the same bytes: the fields are scalars, each encoded by the C encoder
        # (indent= takes the pure-Python one) and not deep-copied by asdict first; written on every claim and start.
        values = [_scalar(getattr(self, name)) for name in _RECORD_FIELDS]
        return ("{\n" + ",\n".join(map(str.__add__, _RECORD_KEYS, values)) + "\n}\n").encode()


_RECORD_FIELDS = LeaseRecord._fields
_encode = json.JSONEncoder().encode
_RECORD_KEYS = tuple(f"  {_encode(name)}: " for name in _RECORD_FIELDS)
_plain_string = json.encoder.encode_basestring_ascii  # (C) what JSONEncoder().encode does for a str


def _scalar(value: object) -> str:
    """``JSONEncoder().encode(value)`` for a lease record's field, without its per-call set-up for the common kinds:
    ``None``, ``bool``, ``str``, ``int`` and finite ``float`` (as ``json`` writes them: ``float.__repr__``)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return str(_plain_string(value))
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return float.__repr__(value)
    return _encode(value)


def new_record(
    task_id: str,
    token: int,
    role: str,
    *,
    now: datetime,
    ttl: float,
    heartbeat: float,
    attempt: int,
    instance: str | None = None,
    boot: float | None = None,
) -> LeaseRecord:
    """A fresh lease record for this process (``boot``: the boot clock now, see :mod:`agentd.core.clock`)."""
    host = hostname()
    pid = os.getpid()
    owner = f"{role}@{host}:{pid}" + (f"/{instance}" if instance else "")
    stamp = format_timestamp(now)
    return LeaseRecord(
        task_id=task_id,
        token=token,
        role=role,
        owner=owner,
        host=host,
        pid=pid,
        acquired=stamp,
        ttl=ttl,
        heartbeat=heartbeat,
        attempt=attempt,
        instance=instance,
        boot_id=boot_id(),
        heartbeat_at=stamp,
        pid_start=own_start(),
        heartbeat_boot=boot,
        pid_ns=pid_namespace(),
    )


# -- the journal-------------------------------------------------------------------------------------------------------


EVENT_TYPES = (
    "daemon-started",
    "daemon-stopped",
    "hangup",
    "claimed",
    "started",
    "heartbeat-lost",
    "fenced",
    "stopping",
    "start-failed",
    "start-capped",
    "finished",
    "retry-scheduled",
    "hot-loop",
    "refused",
    "recovered",
    "released",
    "unblocked",
    "queue-invalid",
    "task-quarantined",
    "wip-full",
    "wip-room",
    # agentd automation
    "automation-active",
    "automation-stopped",
    "automation-failed",
    "schedule-fired",
    "schedule-skipped",
    "rule-fired",
    "rule-coalesced",
    "hook-delivered",
    "hook-failed",
)


class Event(Record):
    """One journal line: its fields as stored (``data``), the line itself (``raw``) and its time."""

    _fields = ("data", "raw", "time")

    data: dict[str, Any]
    raw: str
    time: datetime

    def __init__(
        self,
        data: dict[str, Any],
        raw: str,
        time: datetime,
    ) -> None:
        set_field(self, "data", data)
        set_field(self, "raw", raw)
        set_field(self, "time", time)

    @property
    def name(self) -> str:
        """The event type (``claimed``, ``finished``, ...)."""
        return str(self.data["event"])

    @property
    def role(self) -> str | None:
        value = self.data.get("role")
        return value if isinstance(value, str) else None

    @property
    def task(self) -> str | None:
        value = self.data.get("task")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> str:
        return str(self.data.get("message") or "")


class Filter(Record):
    """Which events to keep; every criterion given must hold."""

    _fields = ("task", "role", "since", "types")

    task: str | None = None
    role: str | None = None
    since: datetime | None = None
    types: frozenset[str] = frozenset()

    def __init__(
        self,
        task: str | None = None,
        role: str | None = None,
        since: datetime | None = None,
        types: frozenset[str] = frozenset(),
    ) -> None:
        set_field(self, "task", task)
        set_field(self, "role", role)
        set_field(self, "since", since)
        set_field(self, "types", types)

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes the filter."""
        return (
            (self.task is None or event.task == self.task)
            and (self.role is None or event.role == self.role)
            and (self.since is None or event.time >= self.since)
            and (not self.types or event.name in self.types)
        )


# -- daemons -----------------------------------------------------------------------------------------------------------


class PidInfo(Record):
    """What a PID file says."""

    _fields = (
        "pid",
        "role",
        "host",
        "started_at",
        "argv",
        "instance",
        "boot_id",
        "proc_start",
        "interval",
        "log",
        "beat_at",
        "beat_boot",
        "beat_every",
        "url",
    )

    pid: int
    role: str
    host: str
    started_at: str
    argv: list[str]
    instance: str | None = None
    boot_id: str | None = None
    proc_start: int | None = None
    interval: float | None = None
    log: str | None = None
    beat_at: str | None = None  # the daemon's last liveness beat (wall clock)
    beat_boot: float | None = None  # the same beat on the boot clock (compare only within boot_id)
    beat_every: float | None = None  # seconds between beats
    url: str | None = None  # the address a web server serves on

    def __init__(
        self,
        pid: int,
        role: str,
        host: str,
        started_at: str,
        argv: list[str],
        instance: str | None = None,
        boot_id: str | None = None,
        proc_start: int | None = None,
        interval: float | None = None,
        log: str | None = None,
        beat_at: str | None = None,
        beat_boot: float | None = None,
        beat_every: float | None = None,
        url: str | None = None,
    ) -> None:
        set_field(self, "pid", pid)
        set_field(self, "role", role)
        set_field(self, "host", host)
        set_field(self, "started_at", started_at)
        set_field(self, "argv", argv)
        set_field(self, "instance", instance)
        set_field(self, "boot_id", boot_id)
        set_field(self, "proc_start", proc_start)
        set_field(self, "interval", interval)
        set_field(self, "log", log)
        set_field(self, "beat_at", beat_at)
        set_field(self, "beat_boot", beat_boot)
        set_field(self, "beat_every", beat_every)
        set_field(self, "url", url)

    @property
    def name(self) -> str:
        return self.role + (f".{self.instance}" if self.instance else "")

    def uptime(self, now: datetime) -> float:
        return (now - parse_timestamp(self.started_at)).total_seconds()

    @classmethod
    def of_this_process(
        cls,
        role: str,
        instance: str | None,
        started: datetime,
        interval: float | None,
        log: str | None,
        boot: float | None,
        beat_every: float | None,
    ) -> PidInfo:
        """What this daemon registers about itself, whichever store keeps it."""
        pid = os.getpid()
        return cls(
            pid=pid,
            role=role,
            instance=instance,
            host=hostname(),
            boot_id=boot_id(),
            proc_start=process_start(pid),
            started_at=format_timestamp(started),
            argv=list(sys.argv),
            interval=interval,
            log=log,
            beat_at=format_timestamp(started) if beat_every else None,
            beat_boot=boot if beat_every else None,
            beat_every=beat_every,
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PidInfo:
        """A PidInfo from its JSON object, keys it does not know ignored (a newer agentd's); TypeError if one it
        needs is missing."""
        known = cls._fields
        return cls(**{key: value for key, value in data.items() if key in known})


def state_where(store: Store) -> str | Path:
    """What names the project state in messages: the file store's ``state.json``, else the store's location."""
    where = getattr(store, "state_file", None)  # (the file store's, a string: `agentd status` imports no pathlib)
    return where if isinstance(where, str) else store.where


def project_state(store: Store) -> ProjectState:
    """The project's pauses as they are now; StateInvalid naming the state and the JSON path when they do not parse."""
    from agentd.core.control import read_state

    return read_state(store.state(), state_where(store))


def stale_reason(info: PidInfo) -> str:
    """Why a PID file whose lock is free is stale, in a few words."""
    if info.host != hostname():
        return f"written on host {info.host}"
    if info.boot_id and boot_id() and info.boot_id != boot_id():
        return "written before the last reboot"
    start = process_start(info.pid)
    if start is None:
        return f"pid {info.pid} is not running"
    if info.proc_start is not None and start != info.proc_start:
        return f"pid {info.pid} now belongs to another program"
    return f"pid {info.pid} no longer holds its lock"


class Probe(Record):
    """What a look at a PID file found."""

    _fields = ("path", "running", "info", "junk", "error")

    file: str  # the PID file's path as a string (`agentd status` looks without importing pathlib); ``path`` its Path
    running: bool
    info: PidInfo | None
    junk: bool = False  # it has content that is not agentd's
    error: str | None = None  # it exists but could not be opened: running or not is unknown

    def __init__(
        self,
        path: str | Path,
        running: bool,
        info: PidInfo | None,
        junk: bool = False,
        error: str | None = None,
    ) -> None:
        set_field(self, "file", os.fspath(path))
        set_field(self, "running", running)
        set_field(self, "info", info)
        set_field(self, "junk", junk)
        set_field(self, "error", error)

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.file)

    @property
    def stale(self) -> str | None:
        """Why the file is stale (not running but has content), or None."""
        if self.running or self.error is not None:
            return None
        if self.info is None:
            return "its content is not an agentd PID file" if self.junk else None
        return stale_reason(self.info)


# -- the protocols -----------------------------------------------------------------------------------------------------


class Snapshot(Protocol):
    """One read of the queue: the document, the typed views of its tasks, and what validation found."""

    @property
    def data(self) -> dict[str, Any]:
        """The queue as one JSON document (read-only: parts are shared with other reads)."""
        ...

    @property
    def tasks(self) -> list[Task]:
        """Every task, nested ones included, in queue order."""
        ...

    def tasks_changed_since(self, earlier: list[Task]) -> Collection[int] | None:
        """Where :attr:`tasks` may hold other views than ``earlier``, the tasks of an earlier read of the same store
        (a superset), or None when the store does not know: a daemon then compares every view."""
        ...

    @property
    def warnings(self) -> list[Finding]: ...

    @property
    def errors(self) -> list[Finding]: ...

    @property
    def quarantined(self) -> dict[str, Finding]:
        """Task id -> its first problem: the tasks nothing may claim, run, recover or change until they are fixed."""
        ...

    @property
    def wip_limits(self) -> dict[str, int]: ...

    @property
    def archived(self) -> Mapping[str, str]:
        """Archived task id -> its status (a dependency on one counts as that status)."""
        ...

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The raw dict of one task (read-only), or None."""
        ...


class HeldLease(Protocol):
    """A lease this process holds (thread-safe: a heartbeat thread renews it while the main loop may release it)."""

    @property
    def task_id(self) -> str: ...

    @property
    def token(self) -> int: ...

    @property
    def record(self) -> LeaseRecord: ...

    def renew(self, now: datetime, boot: float | None = None) -> bool | None:
        """Record a heartbeat: True when renewed, False when the lease is no longer ours (broken by a peer), None
        when it was released meanwhile. True only once the store has recorded it, stamped no earlier than the call
        began: the task's supervisor is told, and fences the run by that (docs/concepts/lease-protocol.md)."""
        ...

    def update(self, now: datetime, boot: float | None = None, **changes: Any) -> bool | None:
        """:meth:`renew`, also changing fields of the record (the task's process group once it runs)."""
        ...

    def release(self) -> None:
        """Give the lease up (idempotent); only a lease still ours is removed."""
        ...

    def inherit(self) -> tuple[int, ...]:
        """Descriptors the task's supervisor must inherit so the lease lives exactly as long as the work (the
        locked lease file for the file store; none where the store judges liveness otherwise)."""
        ...


class Txn(Protocol):
    """What a transaction's change sees and may do. Changes to tasks and state take effect together when the change
    returns, or not at all when it raises; lease operations take effect at once (a claim's lease exists before the
    queue says so, and is released by the caller when the transaction fails)."""

    @property
    def now(self) -> datetime:
        """The store's clock when the transaction began."""
        ...

    @property
    def snapshot(self) -> Snapshot:
        """The read the transaction started from (never changed by it)."""
        ...

    @property
    def state(self) -> MutableMapping[str, Any]:
        """Project state (pauses, automation switches): JSON values, kept apart from the queue people edit."""
        ...

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The task to change (a private, mutable copy written back at commit), or None."""
        ...

    def add(self, task: dict[str, Any], parent: str | None = None) -> None:
        """Add a task at the end, or at the end of ``parent``'s subtasks (KeyError when there is no such parent)."""
        ...

    def remove(self, task_id: str) -> dict[str, Any] | None:
        """Remove a task with its subtasks; returns it (None when there is none)."""
        ...

    def ids(self) -> list[str]:
        """Every task id as the transaction has it now (added ones included, removed ones not), in queue order."""
        ...

    def replace(self, queue: dict[str, Any]) -> None:
        """Make ``queue`` the whole queue at commit: its top-level fields and every task (``agentd queue import
        --replace``); the task methods then see the new tasks. Leases and project state are left as they are."""
        ...

    def leases(self) -> dict[str, LeaseObservation]:
        """Every lease, observed now."""
        ...

    def read_lease(self, task_id: str) -> LeaseRecord | None:
        """A lease's record (None when there is none or it cannot be read)."""
        ...

    def issue_tokens(self, floors: list[int]) -> list[int]:
        """Fencing tokens, one per floor: each above its floor and above every token this store ever issued."""
        ...

    def claim(self, record: LeaseRecord) -> HeldLease | None:
        """Create and hold the lease of ``record``; None when the task has a lease already."""
        ...

    def break_free(self, task_id: str) -> bool:
        """Remove a lease whose holder is proven gone; False when it stays (held, or not ours to remove)."""
        ...

    def break_held(self, task_id: str) -> None:
        """Remove a lease whose holder was judged hung by its heartbeat (its completion is refused by the token)."""
        ...

    def holders(self, task_id: str) -> list[int]:
        """Processes on this host proven to hold the lease ([] when the store cannot tell)."""
        ...

    def report(self, task_id: str, problem: str) -> None:
        """Warn about a lease left alone, once per lease and problem in this process."""
        ...


class Journal(Protocol):
    """The event journal of one writer (a daemon's role, or a command): each event is also a log line."""

    max_bytes: int
    backups: int

    def emit(self, event: str, message: str, *, level: int = ..., **fields: Any) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Events this thread emits meanwhile may be stored together at its end (in the order emitted)."""
        ...


class Registration(Protocol):
    """A daemon's registration, held for its whole life (its PID file for the file store)."""

    @property
    def info(self) -> PidInfo | None: ...

    @property
    def replaced(self) -> PidInfo | None:
        """A stale registration of the same name found and replaced at start, for a one-line notice."""
        ...

    def beat(self, now: datetime, boot: float) -> None: ...

    def release(self) -> None: ...


class Watching(Protocol):
    """A running watch for changes (see :meth:`Store.watch`)."""

    def stop(self, hand_off: Callable[[int], object] | None = None) -> None:
        """Stop watching. ``hand_off(fd)``, for a process about to end, is given a descriptor before it is closed, to
        pass to a process that keeps it until that one ends: the last close of an inotify instance waits for the
        kernel's release of its watches (an SRCU grace period: 7-20 ms measured), which would otherwise delay this
        process's exit."""


class Store(Protocol):
    """One project's queue, leases, journal, daemons registry and project state, and its clock and wake-ups."""

    workflow: Workflow | None  # the statuses reads check (warnings only); replaced on a configuration reload

    @property
    def where(self) -> Path:
        """What to name in messages about the queue (the queue file for the file store)."""
        ...

    def create(self, queue: dict[str, Any]) -> bool:
        """Make a new project's store with ``queue`` as its queue; False (nothing changed) when it has one."""
        ...

    def archived(self, task_id: str) -> tuple[dict[str, Any], str | None] | None:
        """An archived task and when it was archived (None: not in the archive)."""
        ...

    def archive_tasks(
        self, select: Callable[[dict[str, Any]], bool], now: datetime, *, dry_run: bool = False
    ) -> list[str]:
        """Move the final top-level tasks ``select`` picks (with their subtasks, never a quarantined one) out of the
        live queue into the archive; their ids (``dry_run``: which would move)."""
        ...

    @property
    def archive_where(self) -> Path:
        """Where archived tasks are kept, for messages."""
        ...

    def read(self, *, lenient: bool = False) -> Snapshot:
        """The queue now, validated: a problem of the whole raises QueueInvalid; a task's own problems quarantine
        that task only."""
        ...

    def transaction(self, change: Callable[[Txn], T], *, settle_later: bool = False) -> T:
        """Run ``change`` and commit what it did, atomically; nothing changes when it raises. ``change`` may run more
        than once (someone else changed the queue meanwhile), so it must decide from what the Txn shows.

        ``settle_later``: what makes the commit survive a power cut, where that is a step of its own after the commit
        is visible (the file store: the fsync of the queue's folder after the rename), is left to :meth:`settle` (a
        daemon starts what it claimed meanwhile: a power cut ends those runs anyway, and each is then recovered as
        after any crash). When the transaction raises, it is done before."""
        ...

    def settle(self) -> None:
        """Make the last commit left by ``transaction(..., settle_later=True)`` survive a power cut (see there);
        nothing when nothing is left, or for a store whose commit is durable as it returns. Never raises."""
        ...

    def prepare(self, claims: int) -> None:
        """Make ahead, outside any transaction, what the next one will need to write the queue and make up to
        ``claims`` claims, so that it holds the queue for less (the file store: the queue's next temporary file and
        the lease files, unnamed, see :meth:`agentd.store.file.queuefile.QueueStore.prepare_write` and
        :meth:`agentd.store.file.leases.LeaseDir.prepare`); nothing for a store with nothing to make. Never raises:
        a transaction makes what is missing itself. A daemon calls it before its first pass (``claims`` 0) and after
        each pass that claimed: from the first call on, the file store keeps what its writes free for its later ones
        (released lease files, the queue's replaced versions: see :meth:`agentd.store.file.leases.LeaseDir.reuses`
        and :meth:`agentd.store.file.queuefile.QueueStore.keep_versions`)."""
        ...

    def leases(self) -> dict[str, LeaseObservation]:
        """Every lease, observed now (a look outside any transaction)."""
        ...

    def lease_ids(self) -> list[str]:
        """The ids of the tasks with a lease (cheaper than :meth:`leases`)."""
        ...

    def read_lease(self, task_id: str) -> LeaseRecord | None: ...

    def holders(self, task_id: str) -> list[int]:
        """Processes on this host proven to hold the lease ([] when the store cannot tell)."""
        ...

    def report(self, task_id: str, problem: str) -> None:
        """Warn about a lease left alone, once per lease and problem in this process."""
        ...

    def journal(self, role: str | None = None, logger: Any = None) -> Journal:
        """A writer of events for ``role`` (None: a command), logging each to ``logger`` too."""
        ...

    def events(self, where: Filter | None = None) -> Iterator[Event]:
        """The journal's events that pass ``where``, oldest first."""
        ...

    def follow(
        self, where: Filter | None = None, *, last: int | None = None
    ) -> tuple[Iterator[Event], Iterator[Event]]:
        """(the events that pass ``where`` now, then each new one as it is written, forever): ``agentd events -f``.
        The second iterator starts where the first ended, once the first is read to its end. ``last``: only the last
        that many of the first (a store may read only those)."""
        ...

    def daemons(self) -> list[Probe]:
        """Every registered daemon, running or stale."""
        ...

    def register(
        self,
        role: str,
        instance: str | None,
        *,
        started: datetime,
        interval: float | None,
        log: str | None,
        boot: float | None = None,
        beat_every: float | None = None,
    ) -> Registration:
        """Register this process as the daemon ``role[.instance]`` for its life; AlreadyRunning when one is."""
        ...

    def state(self) -> dict[str, Any]:
        """Project state as it is now (a copy; change it in a transaction)."""
        ...

    def signature(self) -> tuple[object, ...]:
        """What changes whenever the queue, the journal or a lease changes: cheap enough to poll (the dashboard)."""
        ...

    def now(self) -> datetime:
        """The store's clock (the system clock for files; the database's for a shared store)."""
        ...

    def watch(self, wake: Callable[[str], None]) -> Watching | None:
        """Call ``wake(reason)`` from another thread when others change the queue (``"queue"``) or a lease goes
        (``"lease"``); None when no wake-ups are available (polling is left)."""
        ...

    def close(self) -> None: ...
