"""The decision core: what a role may claim now, in which order, and what an outcome does to a task.

Pure functions of (tasks, lease observations, role, now). The daemon, ``agentd queue why`` and ``agentd doctor`` all
call these, so their answers cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable, Iterator, Mapping
from datetime import datetime
from itertools import compress
from operator import attrgetter

from agentd.core.clock import format_timestamp
from agentd.core.model import Task
from agentd.core.record import Record, set_field
from agentd.core.validate import find_cycle
from agentd.core.workflow import Role, Workflow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ID = attrgetter("id")


class Reason(enum.StrEnum):
    """Why a task is or is not claimable, in the order the rules are applied."""

    CLAIMABLE = "claimable"
    QUARANTINED = "quarantined"  # the task (or a dependency) has a problem of its own: nothing touches it
    WRONG_STATUS = "wrong-status"
    WRONG_TYPE = "wrong-type"
    UNKNOWN_DEPENDENCY = "unknown-dependency"
    CYCLE = "cycle"
    DEPENDENCY_NOT_DONE = "dependency-not-done"
    BACKOFF = "backoff"
    LEASED = "leased"
    WIP_FULL = "wip-full"


class LeaseObservation(Record):
    """What was seen of a task's lease file on disk (gathered by :mod:`agentd.store.file.leases`)."""

    _fields = (
        "task_id",
        "token",
        "role",
        "host",
        "pid",
        "pgid",
        "locked",
        "heartbeat_at",
        "acquired",
        "ttl",
        "error",
        "boot_id",
        "beat_age",
    )

    task_id: str
    token: int | None = None
    role: str | None = None
    host: str | None = None
    pid: int | None = None
    pgid: int | None = None
    locked: bool | None = None  # is its flock held? None: could not tell
    heartbeat_at: datetime | None = None
    acquired: datetime | None = None
    ttl: float | None = None
    error: str | None = None  # why the file did not parse, if it did not
    boot_id: str | None = None  # the kernel boot the holder ran on
    beat_age: float | None = None  # s since its heartbeat on this kernel's boot clock, when it ran on this boot

    def __init__(
        self,
        task_id: str,
        token: int | None = None,
        role: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        pgid: int | None = None,
        locked: bool | None = None,
        heartbeat_at: datetime | None = None,
        acquired: datetime | None = None,
        ttl: float | None = None,
        error: str | None = None,
        boot_id: str | None = None,
        beat_age: float | None = None,
    ) -> None:
        set_field(self, "task_id", task_id)
        set_field(self, "token", token)
        set_field(self, "role", role)
        set_field(self, "host", host)
        set_field(self, "pid", pid)
        set_field(self, "pgid", pgid)
        set_field(self, "locked", locked)
        set_field(self, "heartbeat_at", heartbeat_at)
        set_field(self, "acquired", acquired)
        set_field(self, "ttl", ttl)
        set_field(self, "error", error)
        set_field(self, "boot_id", boot_id)
        set_field(self, "beat_age", beat_age)


class Liveness(Record):
    """A judgement on one lease."""

    _fields = ("live", "cause")

    live: bool
    cause: str

    def __init__(
        self,
        live: bool,
        cause: str,
    ) -> None:
        set_field(self, "live", live)
        set_field(self, "cause", cause)


def judge(lease: LeaseObservation, now: datetime, default_ttl: float) -> Liveness:
    """Kernel liveness first (a free lock is stale at once), then the heartbeat against the TTL: on the boot clock
    when the holder ran on this kernel's boot (no wall-clock step moves it), else on the wall clock."""
    if lease.locked is False:
        return Liveness(False, "lock released: the process holding the lease is gone")
    ttl = lease.ttl if lease.ttl is not None else default_ttl
    beat = lease.heartbeat_at or lease.acquired
    age: float | None = None
    if lease.beat_age is not None:
        age = lease.beat_age
    elif beat is not None:
        age = (now - beat).total_seconds()
    if age is not None and age > ttl:
        return Liveness(False, f"no heartbeat for {age:.0f} s (ttl {ttl:g} s)")
    if lease.locked is None:
        return Liveness(True, "lock state unknown; heartbeat within ttl")
    return Liveness(True, "lock held and heartbeat within ttl")


class Check(Record):
    """The outcome of one rule for one task."""

    _fields = ("reason", "ok", "detail", "data", "rule")

    reason: Reason
    ok: bool
    detail: str
    data: Mapping[str, Any]
    rule: str = ""  # status | type | dependency | backoff | lease

    def __init__(
        self,
        reason: Reason,
        ok: bool,
        detail: str,
        data: Mapping[str, Any] | None = None,
        rule: str = "",
    ) -> None:
        set_field(self, "reason", reason)
        set_field(self, "ok", ok)
        set_field(self, "detail", detail)
        set_field(self, "data", {} if data is None else data)
        set_field(self, "rule", rule)


class View(Record):
    """Everything selection needs to know, gathered once per pass."""

    _fields = ("tasks", "by_id", "done", "leases", "now", "default_ttl", "cycle", "quarantined", "archived")

    tasks: list[Task]
    by_id: Mapping[str, Task]
    done: frozenset[str]
    leases: Mapping[str, LeaseObservation]
    now: datetime
    default_ttl: float
    cycle: tuple[str, ...] = ()
    quarantined: Mapping[str, str]  # task id -> its problem, one line
    archived: Mapping[str, str]  # id -> status of a task moved to the archive

    def __init__(
        self,
        tasks: list[Task],
        by_id: Mapping[str, Task],
        done: frozenset[str],
        leases: Mapping[str, LeaseObservation],
        now: datetime,
        default_ttl: float,
        cycle: tuple[str, ...] = (),
        quarantined: Mapping[str, str] | None = None,
        archived: Mapping[str, str] | None = None,
    ) -> None:
        set_field(self, "tasks", tasks)
        set_field(self, "by_id", by_id)
        set_field(self, "done", done)
        set_field(self, "leases", leases)
        set_field(self, "now", now)
        set_field(self, "default_ttl", default_ttl)
        set_field(self, "cycle", cycle)
        set_field(self, "quarantined", {} if quarantined is None else quarantined)
        set_field(self, "archived", {} if archived is None else archived)

    @classmethod
    def build(
        cls,
        tasks: list[Task],
        workflow: Workflow,
        now: datetime,
        leases: Mapping[str, LeaseObservation] | None = None,
        default_ttl: float = 5400.0,
        *,
        acyclic: bool = False,
        quarantined: Mapping[str, str] | None = None,
        archived: Mapping[str, str] | None = None,
        by_id: Mapping[str, Task] | None = None,
    ) -> View:
        """``acyclic``: the caller knows no cycle is left to find (a read of the queue quarantines every member of
        one); ``quarantined``: task id -> its problem (from the read); ``archived``: the status of each archived id
        (a dependency on one counts as that status); ``by_id``: every task of the queue by id, when ``tasks`` are only
        those selection looks at (see :func:`considered`): dependencies and parents are found there."""
        if by_id is None:
            by_id = {task.id: task for task in tasks}
        # (over every task: a cycle may pass through one selection does not look at, e.g. a done task)
        cycle = [] if acyclic else find_cycle({task.id: task.dependencies for task in by_id.values()}) or []
        done = frozenset(workflow.done_statuses)
        return cls(tasks, by_id, done, leases or {}, now, default_ttl, tuple(cycle), quarantined or {}, archived)


def considered(workflow: Workflow) -> frozenset[str]:
    """The statuses selection looks at: claimed or worked in by a role, or moved by the unblock rule. A task in any
    other status (done, cancelled: most of a big queue) only matters as a dependency or a parent, so a
    :class:`View` may list only the others (with every task in ``by_id``) and decide exactly the same."""
    statuses = {status for role in workflow.roles.values() for status in (*role.claims, role.working)}
    if workflow.unblock is not None:
        statuses.add(workflow.unblock.from_status)
    return frozenset(statuses)


def dependency_checks(task: Task, view: View) -> list[Check]:
    """One check per dependency: unknown, in a cycle, not done, or done."""
    return list(_dependency_checks(task, view))


def _dependency_checks(task: Task, view: View, passing: bool = True) -> Iterator[Check]:
    for dep in task.dependencies:
        other = view.by_id.get(dep)
        problem = view.quarantined.get(dep)
        if problem is not None and other is not None:
            yield Check(
                Reason.QUARANTINED,
                False,
                f"dependency {dep} is quarantined ({problem}): it waits until that task is fixed",
                {"id": dep},
                rule="dependency",
            )
        elif other is None and dep in view.archived:
            status = view.archived[dep]
            if status not in view.done:
                yield Check(
                    Reason.DEPENDENCY_NOT_DONE,
                    False,
                    f"dependency {dep} is {status!r} (archived), not done",
                    {"id": dep},
                    rule="dependency",
                )
            elif passing:
                yield Check(
                    Reason.CLAIMABLE, True, f"dependency {dep} is {status!r} (archived)", {"id": dep}, rule="dependency"
                )
        elif other is None:
            yield Check(
                Reason.UNKNOWN_DEPENDENCY,
                False,
                f"depends on {dep!r}, which is not in the queue",
                rule="dependency",
            )
        elif task.id in view.cycle and dep in view.cycle:
            yield Check(Reason.CYCLE, False, "dependency cycle: " + " -> ".join(view.cycle), rule="dependency")
        elif other.status not in view.done:
            yield Check(
                Reason.DEPENDENCY_NOT_DONE,
                False,
                f"dependency {dep} is {other.status!r}, not done",
                {"id": dep},
                rule="dependency",
            )
        elif passing:
            yield Check(Reason.CLAIMABLE, True, f"dependency {dep} is {other.status!r}", {"id": dep}, rule="dependency")


def task_checks(task: Task, role: Role, view: View) -> list[Check]:
    """Every per-task rule, in the order the scheduler applies them (WIP is per role: see :func:`wip_room`)."""
    return list(iter_checks(task, role, view))


def iter_checks(task: Task, role: Role, view: View, *, passing: bool = True) -> Iterator[Check]:
    """:func:`task_checks` one at a time (the scheduler stops at the first that fails); ``passing=False`` skips
    making the checks that pass (the decisions are the same)."""
    problem = view.quarantined.get(task.id)
    if problem is not None:
        yield Check(Reason.QUARANTINED, False, f"quarantined: {problem}", rule="quarantine")
    if task.status in role.claims:
        if passing:
            yield Check(Reason.CLAIMABLE, True, f"status {task.status!r} is claimed by {role.name}", rule="status")
    else:
        claims = ", ".join(repr(s) for s in role.claims)
        yield Check(Reason.WRONG_STATUS, False, f"status {task.status!r}; {role.name} claims {claims}", rule="status")
    if role.types is None:
        if passing:
            yield Check(Reason.CLAIMABLE, True, f"{role.name} takes tasks of any type", rule="type")
    elif role.accepts_type(task.type):
        if passing:
            yield Check(Reason.CLAIMABLE, True, f"type {task.type!r} passes {role.name}'s filter", rule="type")
    else:
        allowed = ", ".join(role.types or ())
        yield Check(Reason.WRONG_TYPE, False, f"type {task.type!r}; {role.name} only takes {allowed}", rule="type")
    yield from _dependency_checks(task, view, passing)
    if task.not_before is not None and task.not_before > view.now:
        wait = (task.not_before - view.now).total_seconds()
        yield Check(
            Reason.BACKOFF,
            False,
            f"backing off until {format_timestamp(task.not_before)} ({wait:.0f} s)",
            {"until": format_timestamp(task.not_before)},
            rule="backoff",
        )
    lease = view.leases.get(task.id)
    if lease is not None:
        verdict = judge(lease, view.now, view.default_ttl)
        if verdict.live and lease.error is not None and lease.locked is None:
            yield Check(Reason.LEASED, False, f"its lease path is unusable and left alone: {lease.error}", rule="lease")
        elif verdict.live:
            holder = f"{lease.role or '?'} on {lease.host or '?'} pid {lease.pid or '?'}"
            detail = f"leased by {holder}, token {lease.token}: {verdict.cause}"
            yield Check(Reason.LEASED, False, detail, rule="lease")
        elif passing:
            detail = f"old lease is stale ({verdict.cause}); it will be recovered"
            yield Check(Reason.CLAIMABLE, True, detail, rule="lease")


def blocker(task: Task, role: Role, view: View) -> Check | None:
    """The first rule that stops ``role`` from claiming ``task``, or None."""
    return next(iter_checks(task, role, view, passing=False), None)


def wip_limit(role: Role, queue_limits: Mapping[str, int]) -> int:
    """The role's WIP limit: agentd.toml, else the queue's wip_limits, else 1."""
    if role.wip is not None:
        return role.wip
    return int(queue_limits.get(role.name, 1))


def in_progress(tasks: Iterable[Task], role: Role) -> list[Task]:
    """Tasks holding the role's WIP: those in its working status."""
    return [task for task in tasks if task.status == role.working]


def holders(
    tasks: Iterable[Task],
    role: Role,
    leases: Mapping[str, LeaseObservation] | None = None,
    now: datetime | None = None,
    quarantined: Container[str] = (),
) -> list[str]:
    """Ids holding the role's WIP: tasks in its working status, and tasks whose live lease the role holds.

    The leases count too because the queue can be wrong for a moment: a writer that ignores agentd's lock can save
    an older copy over a claim, and the work it reverted is still running. A quarantined task holds WIP only while
    its live lease says it runs (stuck in the working status, it would stop the role for everyone).
    """
    ids = [task.id for task in tasks if task.status == role.working and task.id not in quarantined]
    if leases and now is not None:
        known = set(ids)
        for task_id, lease in leases.items():
            if lease.role == role.name and task_id not in known and judge(lease, now, role.lease_ttl).live:
                ids.append(task_id)
    return ids


def wip_room(
    tasks: Iterable[Task],
    role: Role,
    queue_limits: Mapping[str, int],
    leases: Mapping[str, LeaseObservation] | None = None,
    now: datetime | None = None,
    quarantined: Container[str] = (),
) -> int:
    """How many more tasks the role may start now, across all its daemons (live leases included)."""
    return max(0, wip_limit(role, queue_limits) - len(holders(tasks, role, leases, now, quarantined)))


def _waits_for_a_dependency(task: Task, view: View) -> bool:
    """Whether a dependency of ``task`` in the queue is in no done status: then the dependency rule fails for it (not
    done, or in a cycle, or quarantined), whatever the other rules say. A test of a few lookups, where finding the
    failing check itself builds its message: tasks waiting in a chain are told apart from the others at every pass."""
    by_id, done = view.by_id, view.done
    for dep in task.dependencies:
        other = by_id.get(dep)
        if other is not None and other.status not in done:
            return True
    return False


def _may_claim(task: Task, role: Role, view: View) -> bool:
    """``blocker(task, role, view) is None``, for a task whose status ``role`` claims."""
    if task.dependencies and _waits_for_a_dependency(task, view):
        return False
    return blocker(task, role, view) is None


def claimable(role: Role, view: View) -> list[Task]:
    """Tasks ``role`` may claim now, best first (priority, then queue order); WIP not applied."""
    return list(ranked(role, view))


_SORT_KEY = attrgetter("sort_key")


def ranked(role: Role, view: View) -> Iterator[Task]:
    """:func:`claimable`, judged one task at a time as they are asked for: the tasks in a status ``role`` claims and
    waiting for no dependency (a few lookups each: a chain's tasks are dropped here, not sorted) are ranked first
    (their keys sorted), then judged by every rule in that order, so that a pass that claims a few tasks of a long
    backlog judges about as many (a stable sort, filtered, is the filter sorted: the same tasks in the same order)."""
    candidates = sorted(
        (
            task
            for task in view.tasks
            if task.status in role.claims and not (task.dependencies and _waits_for_a_dependency(task, view))
        ),
        key=_SORT_KEY,
    )
    return (task for task in candidates if blocker(task, role, view) is None)


def any_claimable(role: Role, view: View) -> bool:
    """Whether :func:`claimable` would find anything (stops at the first)."""
    return any(_may_claim(task, role, view) for task in view.tasks if task.status in role.claims)


def select(role: Role, view: View, queue_limits: Mapping[str, int], limit: int | None = None) -> list[Task]:
    """What to claim now: the best claimable tasks, as many as WIP room (and ``limit``) allow."""
    room = wip_room(view.tasks, role, queue_limits, view.leases, view.now, view.quarantined)
    if limit is not None:
        room = min(room, limit)
    return claimable(role, view)[:room] if room > 0 else []


def to_unblock(workflow: Workflow, view: View) -> list[Task]:
    """Tasks the unblock rule moves now: in its ``from`` status, every dependency done, no ``blocked_reason``, and
    no parent still waiting for (or in) a role's hands."""
    rule = workflow.unblock
    if rule is None:
        return []
    unsettled = {status for role in workflow.roles.values() for status in (*role.claims, role.working)}
    moved = []
    for task in view.tasks:
        if task.status != rule.from_status or task.blocked_reason or task.id in view.quarantined:
            continue
        parent = view.by_id.get(task.parent) if task.parent else None
        if parent is not None and parent.status in unsettled:
            continue  # a subtask waits while its parent is still waiting for, or in, a role's hands (being planned)
        if all(check.ok for check in dependency_checks(task, view)):
            moved.append(task)
    return moved


def to_stop(tasks: Iterable[Task], workflow: Workflow, running: Container[str]) -> list[tuple[str, str]]:
    """Runs to stop now: (task id, status) of each task in ``running`` that someone moved to a final status (done,
    cancelled) while it ran. Its command is stopped; the status stands when the run is recorded."""
    if not running:
        return []
    listed = tasks if isinstance(tasks, list) else list(tasks)
    mine = compress(listed, map(running.__contains__, map(_ID, listed)))  # (in C: most of a big queue is not running)
    return [(task.id, task.status) for task in mine if workflow.is_final(task.status)]


def descriptor_room(limit: int | None, open_now: int, *, per_task: int, spawn: int, reserve: int) -> int | None:
    """How many more tasks a daemon can start with ``open_now`` of its ``limit`` file descriptors in use (None: no
    limit). Each task keeps ``per_task`` open while it runs, ``spawn`` more for a moment while it is started, and the
    daemon keeps ``reserve`` free for its own work (the queue, its journal, lease reads)."""
    if limit is None:
        return None
    return max(0, (limit - open_now - reserve - spawn + per_task) // per_task)


# -- outcomes (agentd.core.outcome, imported when first asked for: `agentd status` decides no outcome) ---------------

_OUTCOME_NAMES = frozenset(("Kind", "Outcome", "classify", "Decision", "decide", "describe"))
if TYPE_CHECKING:
    from agentd.core.outcome import Decision as Decision
    from agentd.core.outcome import Kind as Kind
    from agentd.core.outcome import Outcome as Outcome
    from agentd.core.outcome import classify as classify
    from agentd.core.outcome import decide as decide
    from agentd.core.outcome import describe as describe


def __getattr__(name: str) -> object:
    if name in _OUTCOME_NAMES:
        from agentd.core import outcome

        return getattr(outcome, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
