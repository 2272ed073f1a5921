"""Stale-lease recovery: deciding which leases are dead (pure) and clearing them (under the queue lock).

Used on daemon start-up, on every pass, and by ``agentd leases prune``.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentd import scheduler, transitions
from agentd.leases import LeaseDir, hostname, process_start
from agentd.model import Task
from agentd.scheduler import LeaseObservation
from agentd.workflow import Role, Workflow

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What recovery does about one lease."""

    REQUEUE = "requeue"  # the task goes back to its role's claimable status (or on_failure)
    REMOVE = "remove"  # only the lease file goes (orphaned or its task is gone)


@dataclass(frozen=True)
class Recovery:
    """One stale lease and what to do about it."""

    task_id: str
    action: Action
    cause: str
    role: str | None = None
    kill: bool = False  # the holder is hung on this host: kill its process group first
    lease: LeaseObservation | None = None


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
) -> list[Recovery]:
    """Every stale lease and stuck task, with the action that clears it (pure)."""
    mine = set(held)
    host = this_host or hostname()
    found: list[Recovery] = []
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
            if seen.locked is True:
                continue  # unreadable, but its lock says a holder lives: judged by the lock alone
            found.append(Recovery(task.id, Action.REQUEUE, f"lease file unusable ({seen.error}), lock free", role.name))
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
        kill = bool(seen.locked) and seen.host == host and seen.pgid is not None
        found.append(Recovery(task.id, Action.REQUEUE, verdict.cause, role.name, kill=kill, lease=seen))
    for task_id, seen in leases.items():
        if task_id in mine:
            continue
        owner = by_id.get(task_id)
        if owner is not None and _role_of(owner, workflow) is not None:
            continue  # handled above
        if seen.locked is True and (seen.error is not None or scheduler.judge(seen, now, 5400).live):
            continue  # still held by a live process (a release in progress, or work on a task removed by hand)
        cause = "its task no longer exists" if owner is None else f"orphaned (task is {owner.status!r})"
        found.append(Recovery(task_id, Action.REMOVE, cause, lease=seen))
    return found


def kill_hung_group(leasedir: LeaseDir, task_id: str, deadline: float = 5.0) -> bool:
    """SIGKILL the process group a hung lease names, if it is still the same group on this host; wait for it."""
    record = leasedir.read_record(task_id)
    if record is None or record.pgid is None or record.host != hostname():
        return False
    if record.pgid_start is not None and process_start(record.pgid) != record.pgid_start:
        return False  # the group leader is gone and its pid may be reused: nothing of ours to kill
    try:
        os.killpg(record.pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not group_members(record.pgid):
            return True
        time.sleep(0.02)
    return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group. A hung daemon cannot reap its killed supervisor, so zombies
    are not counted; without /proc, any member (zombies included) counts."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def apply(
    raw_of: Callable[[str], dict[str, Any] | None],
    recoveries: list[Recovery],
    workflow: Workflow,
    now: datetime,
    leasedir: LeaseDir,
) -> list[Recovery]:
    """Clear the stale leases (call inside a queue transaction; ``raw_of(id)`` gives the task to change, as
    ``index_by_id(doc).get`` or :meth:`agentd.queuefile.Draft.task` do); returns what was done."""
    done: list[Recovery] = []
    for item in recoveries:
        if item.kill:
            kill_hung_group(leasedir, item.task_id)
        if item.lease is not None and item.lease.locked:
            leasedir.break_held(item.task_id)
        elif not leasedir.break_free(item.task_id):
            continue  # its lock is held after all: someone is alive
        if item.action is Action.REQUEUE and item.role is not None:
            role = workflow.roles[item.role]
            raw = raw_of(item.task_id)
            if raw is not None:
                transitions.requeue(raw, Task.from_dict(raw, index=0, path=""), role, item.cause, now, workflow)
        done.append(item)
    return done
