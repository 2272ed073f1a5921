"""Stale-lease recovery: deciding which leases are dead (pure) and clearing them (in a store transaction).

Used on daemon start-up, on every pass, and by ``agentd leases prune``.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from agentd import faults
from agentd.core import scheduler, transitions
from agentd.core.clock import Clock
from agentd.core.model import Task
from agentd.core.record import Record, set_field
from agentd.core.scheduler import LeaseObservation
from agentd.core.workflow import Role, Workflow
from agentd.hostinfo import boot_id, hostname, pid_namespace, process_start, process_tree
from agentd.store.base import LeaseRecord, Store, Txn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # (LeaseLook is for the type checker: a plain class at run time, and typing not imported)

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What recovery does about one lease."""

    REQUEUE = "requeue"  # the task goes back to its role's claimable status (or on_failure)
    REMOVE = "remove"  # only the lease file goes (orphaned or its task is gone)


class Recovery(Record):
    """One stale lease and what to do about it."""

    _fields = ("task_id", "action", "cause", "role", "kill", "lease", "killed")

    task_id: str
    action: Action
    cause: str
    role: str | None = None
    kill: bool = False  # the holder is hung on this kernel: its lock is never broken, its processes are killed
    lease: LeaseObservation | None = None
    killed: tuple[str, ...] = ()  # what was killed of a hung holder (see apply)

    def __init__(
        self,
        task_id: str,
        action: Action,
        cause: str,
        role: str | None = None,
        kill: bool = False,
        lease: LeaseObservation | None = None,
        killed: tuple[str, ...] = (),
    ) -> None:
        set_field(self, "task_id", task_id)
        set_field(self, "action", action)
        set_field(self, "cause", cause)
        set_field(self, "role", role)
        set_field(self, "kill", kill)
        set_field(self, "lease", lease)
        set_field(self, "killed", killed)


def same_kernel(seen: LeaseObservation, this_boot: str | None, this_host: str) -> bool:
    """Whether a lease's holder runs on this kernel: the same ``boot_id`` (containers on one kernel share it, whatever
    their hostnames); the hostname only where a boot id is missing (a lease written without one)."""
    if seen.boot_id is not None and this_boot is not None:
        return seen.boot_id == this_boot
    return seen.host == this_host


def _role_of(task: Task, workflow: Workflow) -> Role | None:
    """The role working on a task: its lease's role if it works in the task's status, else the first that does."""
    named = workflow.roles.get(task.lease.role or "") if task.lease is not None else None
    if named is not None and named.working == task.status:
        return named
    working = workflow.role_working_in(task.status)
    return working[0] if working else None


def plan(
    tasks: list[Task],
    leases: Mapping[str, LeaseObservation],
    workflow: Workflow,
    now: datetime,
    *,
    held: Iterable[str] = (),
    this_host: str | None = None,
    this_boot: str | None = None,
    by_id: Mapping[str, Task] | None = None,
) -> list[Recovery]:
    """Every stale lease and stuck task, with the action that clears it (pure but for reading this host's name and
    boot id when they are not given).

    A lease whose lock is visibly held by a holder on this kernel is never broken, whatever its heartbeat says: its
    holder is killed instead (``kill``), and the lease recovered once the kernel has released the lock."""
    mine = set(held)
    host = this_host or hostname()
    boot = this_boot or boot_id()
    found: list[Recovery] = []
    if by_id is None:  # (given: ``tasks`` may be only those in a working status, and every task is in ``by_id``)
        by_id = {task.id: task for task in tasks}
    working = {role.working for role in workflow.roles.values()}
    for task in tasks:
        if task.status not in working:
            continue  # only a task in a role's working status has a role working on it (see _role_of)
        role = _role_of(task, workflow)
        if role is None or task.id in mine:
            continue
        seen = leases.get(task.id)
        queue_token = task.lease.token if task.lease else None
        if seen is None:
            cause = f"in {task.status!r} with no lease file (its worker is gone)"
            found.append(Recovery(task.id, Action.REQUEUE, cause, role.name))
            continue
        if seen.error is not None:
            if seen.locked is not False:
                # Unreadable but locked: a holder lives, judged by the lock alone. Unopenable, or a folder with files
                # in it: nothing proves the holder gone, so it is left alone (doctor and the daemon's log say so).
                continue
            found.append(Recovery(task.id, Action.REQUEUE, f"lease file unusable ({seen.error})", role.name))
            continue
        if queue_token is not None and seen.token != queue_token:
            if seen.locked:
                continue  # another claim's file, still held: it is being released right now
            cause = f"lease file token {seen.token} is not the task's token {queue_token}"
            found.append(Recovery(task.id, Action.REQUEUE, cause, role.name, lease=seen))
            continue
        verdict = scheduler.judge(seen, now, role.lease_ttl)
        if verdict.live:
            continue
        kill = bool(seen.locked) and same_kernel(seen, boot, host)  # hung here: stopped, never broken (see apply)
        found.append(Recovery(task.id, Action.REQUEUE, verdict.cause, role.name, kill=kill, lease=seen))
    for task_id, seen in leases.items():
        if task_id in mine:
            continue
        owner = by_id.get(task_id)
        if owner is not None and _role_of(owner, workflow) is not None:
            continue  # handled above
        if seen.locked is True and (seen.error is not None or scheduler.judge(seen, now, 5400).live):
            continue  # still held by a live process (a release in progress, or work on a task removed by hand)
        if seen.locked is None and (seen.error is not None or scheduler.judge(seen, now, 5400).live):
            # Not renewed since the server restarted (PostgreSQL), its lock state unknown: a live holder renews it
            # (taking its lock again) within its ttl; past that it is judged by its heartbeat alone, as above. (A
            # claim cut by the restart leaves such a lease on a task still in its claimable status, which it blocks.)
            continue
        cause = "its task no longer exists" if owner is None else f"orphaned (task is {owner.status!r})"
        kill = seen.locked is True and same_kernel(seen, boot, host)
        found.append(Recovery(task_id, Action.REMOVE, cause, kill=kill, lease=seen))
    return found


HUNG_CONFIRM = 5.0  # s: a holder is killed as hung only when seen so, unchanged, at looks this far apart


class Suspects:
    """Hung holders seen once and not yet confirmed (pure; the caller passes its monotonic clock).

    A lease whose lock is held on this kernel while its heartbeat is past the ttl looks hung, but so does, for an
    instant, a holder coming back: a daemon resumed after SIGSTOP beats at once, and on PostgreSQL a daemon whose
    server was away takes its lease's lock on a new session just before it beats. Killing it then would kill a
    healthy daemon. So a holder is killed only when it still looks hung, with the same token and the same heartbeat,
    at a look at least :data:`HUNG_CONFIRM` s after the first; a beat in between ends the suspicion."""

    def __init__(self, confirm: float = HUNG_CONFIRM) -> None:
        self.confirm = confirm
        self._seen: dict[str, tuple[tuple[object, ...], float]] = {}  # task -> (what was seen, since when)
        self._confirmed: set[str] = set()  # suspicions that came true (their holders were killed): no "cleared"

    def sift(self, plans: list[Recovery], mono: float) -> tuple[list[Recovery], list[Recovery], list[str]]:
        """The plans to apply now (hung holders only once confirmed); the holders newly suspected; the tasks whose
        holder was suspected and no longer looks hung. Any look may call it (one that applies nothing too: the
        suspicions are kept up to date there, the kills left to the look that applies them)."""
        seen: dict[str, tuple[tuple[object, ...], float]] = {}
        kept: list[Recovery] = []
        new: list[Recovery] = []
        for item in plans:
            if not item.kill:
                kept.append(item)
                continue
            lease = item.lease
            key = (lease.token, lease.heartbeat_at, lease.pid, lease.pgid) if lease is not None else ()
            first = self._seen.get(item.task_id)
            if first is None or first[0] != key:
                first = (key, mono)
                new.append(item)
            seen[item.task_id] = first
            if mono - first[1] >= self.confirm:
                kept.append(item)  # confirmed: killed (again at a later look while its lease stays: nothing then)
                self._confirmed.add(item.task_id)
        cleared = [task_id for task_id in self._seen if task_id not in seen and task_id not in self._confirmed]
        self._confirmed &= set(seen)
        self._seen = seen
        return kept, new, cleared

    def pending(self) -> bool:
        return bool(self._seen)


class LeaseLook(Protocol):
    """What stopping a hung holder reads of a lease (a :class:`~agentd.store.base.Txn` has it)."""

    def read_lease(self, task_id: str) -> LeaseRecord | None: ...

    def holders(self, task_id: str) -> list[int]: ...

    def report(self, task_id: str, problem: str) -> None: ...


def stop_hung_holder(leasedir: LeaseLook, task_id: str) -> list[str]:
    """SIGKILL the processes of a hung lease on this kernel: the task's process group and the daemon that holds the
    lease, each only if it is still the process the lease names (its start time is checked) and it lives in this
    PID namespace (in another container a pid names some other process). Returns what was killed.

    The lease itself is not touched: it is recovered once the kernel has released its lock, that is once every
    process holding it (the daemon, its task supervisor, the command) is gone, so nothing of the old claim can still
    run when the task is claimed again. A holder in another PID namespace is left alone (reported once): it must be
    stopped from its own container.
    """
    record = leasedir.read_lease(task_id)
    if record is None:
        return []
    if record.boot_id is not None and boot_id() is not None:
        if record.boot_id != boot_id():
            return []  # another kernel (or a previous boot): its pids mean nothing here
    elif record.host != hostname():
        return []
    if record.pid_ns is not None and pid_namespace() is not None and record.pid_ns != pid_namespace():
        leasedir.report(
            task_id,
            f"its holder ({record.owner or record.host}) is hung in another PID namespace (container) on this kernel; "
            "its lock is never broken: stop it there",
        )
        return []
    killed = []
    if record.pgid is not None and (record.pgid_start is None or process_start(record.pgid) == record.pgid_start):
        # The supervisor's whole tree, seen before anything dies: what left the group (setsid, a daemonised dev
        # server that closed every descriptor) is no longer the group's, and is re-parented once its parent dies.
        tree = process_tree(record.pgid) if record.pgid_start is not None else {}  # only a leader proven the same
        outside = {pid: start for pid, start in tree.items() if _pgid(pid) != record.pgid}
        try:
            os.killpg(record.pgid, signal.SIGKILL)
            killed.append(f"task group {record.pgid}")
        except (ProcessLookupError, PermissionError):
            pass
        escaped = [pid for pid, start in outside.items() if _kill_same(pid, start)]
        if escaped:
            killed.append(f"escaped task processes {escaped}")
    same_daemon = record.pid_start is not None and process_start(record.pid) == record.pid_start
    if same_daemon and record.pid != os.getpid():
        try:
            os.kill(record.pid, signal.SIGKILL)
            killed.append(f"daemon pid {record.pid}")
        except (ProcessLookupError, PermissionError):
            pass
    # Whatever still holds the lock: a descendant of the task that left its group (setsid) and inherited the lease's
    # descriptor, or a supervisor whose group id the record does not name. Each checked by its start time.
    for pid in leasedir.holders(task_id):
        if pid != os.getpid() and _kill_same(pid, process_start(pid)):
            killed.append(f"lock holder pid {pid}")
    if killed:
        log.debug("lease on %s: its holder is hung; killed its %s", task_id, " and ".join(killed))
    return killed


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _kill_same(pid: int, start: int | None) -> bool:
    """SIGKILL ``pid`` if it is still the process that started at ``start`` (through a pidfd where there is one)."""
    if start is None:
        return False
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return False
    try:
        if process_start(pid) != start:
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def apply(
    txn: Txn,
    recoveries: list[Recovery],
    workflow: Workflow,
    now: datetime,
    stopped: list[Recovery] | None = None,
) -> list[Recovery]:
    """Clear the stale leases (inside the transaction ``txn``, whose tasks it changes); returns what was done. Hung
    holders on this host whose processes were killed instead are added to ``stopped``."""
    done: list[Recovery] = []
    for item in recoveries:
        if item.kill:
            # A hung holder on this host: never broken while its lock is held (its daemon may wake up and start or
            # go on with the task). Its processes are killed; the lease is recovered once the kernel has released the
            # lock (its close wakes the daemons), as any lease whose holder died.
            killed = stop_hung_holder(txn, item.task_id)
            if stopped is not None:
                stopped.append(item.replace(killed=tuple(killed)))
            continue
        if item.lease is not None and item.lease.locked is not False:
            # A holder on another host, or a lease not renewed since the server restarted (its lock state unknown,
            # locked None): judged stale by its heartbeat alone, so broken as held (break_free keeps such a lease).
            txn.break_held(item.task_id)
        elif not txn.break_free(item.task_id):
            continue  # its lock is held after all (someone is alive), or it cannot be removed (reported)
        faults.point("recover.after-break")
        if item.action is Action.REQUEUE and item.role is not None:
            role = workflow.roles[item.role]
            raw = txn.task(item.task_id)
            if raw is not None:
                transitions.requeue(raw, Task.from_dict(raw, index=0, path=""), role, item.cause, now, workflow)
        done.append(item)
    return done


def prune(store: Store, workflow: Workflow, clock: Clock, settle: float = 5.0) -> tuple[list[Recovery], list[Recovery]]:
    """What ``agentd leases prune`` and ``agentd doctor --fix`` do: recover every stale lease in a queue transaction.
    Hung holders on this host are killed first, and their leases recovered once the kernel has released the locks
    (waiting up to ``settle`` seconds). Returns (what was recovered, the hung holders still holding their locks)."""

    def once(stopped: list[Recovery]) -> list[Recovery]:
        def change(txn: Txn) -> list[Recovery]:
            stopped.clear()  # the change may run more than once
            now = clock.now()
            # A quarantined task, and its lease, are left alone until the task is fixed.
            quarantined = txn.snapshot.quarantined
            plans = plan(txn.snapshot.tasks, txn.leases(), workflow, now, held=quarantined)
            return apply(txn, plans, workflow, now, stopped)

        return store.transaction(change)

    stopped: list[Recovery] = []
    done = once(stopped)
    deadline = time.monotonic() + settle
    while stopped and time.monotonic() < deadline:
        seen = store.leases()
        if all(seen.get(item.task_id) is None or seen[item.task_id].locked is not True for item in stopped):
            done += once(stopped)
        else:
            time.sleep(0.05)
    return done, stopped
