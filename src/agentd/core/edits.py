"""Changes people ask for (add, update, remove, set-status, retry, cancel), as pure functions over a transaction.

Each runs inside :meth:`agentd.store.base.Store.transaction` and sees only what :class:`Tasks` offers (a task to
change, add, remove, the ids): never a whole document, so any store can run it. It may run more than once and must
decide from what the transaction shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from agentd.core.model import TASK_ID_RULE, valid_task_id, walk
from agentd.core.workflow import Role, Workflow
from agentd.errors import Conflict, StaleToken, TaskNotFound, UnknownStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol
else:  # (typing is not imported at run time on the CLI's hot path: a Protocol is for the type checker)
    Protocol = object

# Fields `queue update --field` may not set: agentd's own bookkeeping, or a command of its own.
PROTECTED_FIELDS = {"id": "the id", "status": "`agentd queue set-status`", "lease": "a lease", "lease_token": "a lease"}
PROTECTED_FIELDS |= {"subtasks": "`agentd queue add --parent` / `remove`"}


class _Read(Protocol):
    @property
    def data(self) -> dict[str, Any]: ...


class Tasks(Protocol):
    """What an edit needs of a transaction (:class:`agentd.store.base.Txn` has it)."""

    @property
    def snapshot(self) -> _Read: ...

    def task(self, task_id: str) -> dict[str, Any] | None: ...

    def add(self, task: dict[str, Any], parent: str | None = None) -> None: ...

    def remove(self, task_id: str) -> dict[str, Any] | None: ...

    def ids(self) -> list[str]: ...


def _task(txn: Tasks, task_id: str) -> dict[str, Any]:
    task = txn.task(task_id)
    if task is None:
        raise TaskNotFound(task_id)
    return task


def new_task(
    task_id: str,
    *,
    title: str,
    status: str,
    task_type: str | None = None,
    priority: int | None = None,
    dependencies: Sequence[str] = (),
    prompt: str | None = None,
) -> dict[str, Any]:
    """A task dict in the field order real queues use."""
    if not valid_task_id(task_id):
        raise Conflict(task_id, f"invalid task id: {TASK_ID_RULE}")
    task: dict[str, Any] = {"id": task_id, "title": title, "type": task_type, "status": status}
    if priority is not None:
        task["priority"] = priority
    task.update(agent=None, lease=None, dependencies=list(dependencies))
    if prompt is not None:
        task["prompt"] = prompt
    return task


def check_status(status: str, workflow: Workflow) -> None:
    """UnknownStatus (exit 2, the closest known status suggested) unless some role or rule knows ``status``."""
    known = workflow.known_statuses()
    if status in known:
        return
    import difflib  # (only for a status nobody knows)

    close = difflib.get_close_matches(status, sorted(known), n=1, cutoff=0.6)
    raise UnknownStatus(status, close[0] if close else None)


def _check_dependencies(task_id: str, dependencies: Sequence[str], known: set[str]) -> None:
    if task_id in dependencies:
        raise Conflict(task_id, "a task cannot depend on itself")
    missing = [dep for dep in dependencies if dep not in known]
    if missing:
        raise Conflict(task_id, f"unknown dependencies: {', '.join(missing)}")


def add(txn: Tasks, task: dict[str, Any], parent: str | None = None) -> None:
    """Add ``task`` (at the end, or under ``parent`` following the queue's own convention)."""
    known = set(txn.ids())
    if task["id"] in known:
        raise Conflict(task["id"], "a task with this id already exists")
    _check_dependencies(task["id"], task.get("dependencies", []), known)
    if parent is None:
        txn.add(task)
        return
    holder = _task(txn, parent)
    tasks = txn.snapshot.data.get("tasks", [])
    nests = any(isinstance(t.get("subtasks"), list) for _, t, _ in walk(tasks) if isinstance(t, dict))
    if nests or isinstance(holder.get("subtasks"), list):
        txn.add(task, parent)
    else:
        task["parent"] = parent
        txn.add(task)


def set_status(txn: Tasks, task_id: str, status: str, *, note: str | None = None, token: int | None = None) -> str:
    """Set a task's status (fenced by ``token`` when given); returns the old status."""
    task = _task(txn, task_id)
    if token is not None:
        lease = task.get("lease")
        current = lease.get("token") if isinstance(lease, dict) else None
        if current != token:
            raise StaleToken(task_id, token, current if isinstance(current, int) else None)
    old = task.get("status")  # a quarantined task may have none, or not a string: a person may be fixing it
    task["status"] = status
    if note is not None:
        task["status_note"] = note
    return old if isinstance(old, str) else json.dumps(old)


def owning_role(task: dict[str, Any], workflow: Workflow) -> Role | None:
    """The role a task belongs to now: its ``agent`` if that is a role, else the role its status points to."""
    agent = task.get("agent")
    if isinstance(agent, str) and agent in workflow.roles:
        return workflow.roles[agent]
    status = task.get("status")
    for role in workflow.roles.values():
        if status == role.working or status in role.claims:
            return role
    for role in workflow.roles.values():
        if status == role.on_failure:
            return role
    return None


def retry(txn: Tasks, task_id: str, workflow: Workflow) -> str:
    """Send a task back to its role's claimable status with attempts reset; returns the new status."""
    task = _task(txn, task_id)
    status = task.get("status")
    if workflow.is_final(str(status)):
        raise Conflict(task_id, f"it is {status!r}, which is final; use set-status to reopen it")
    role = owning_role(task, workflow)
    if role is None:
        raise Conflict(task_id, f"cannot tell which role status {status!r} belongs to; use set-status")
    if status == role.working and task.get("lease"):
        raise Conflict(task_id, f"{role.name} is working on it (lease held); stop it or run `agentd leases prune`")
    task["status"] = role.retry_status
    task["attempts"] = 0
    for key in ("not_before", "blocked_reason"):
        task.pop(key, None)
    task["status_note"] = "retried by hand"
    return role.retry_status


def cancel(txn: Tasks, task_id: str, workflow: Workflow, note: str | None = None) -> str:
    """Move a task to the cancelled (final) status; returns it."""
    task = _task(txn, task_id)
    status = (
        "cancelled" if "cancelled" in workflow.final_statuses else sorted(workflow.final_statuses or {"cancelled"})[0]
    )
    task["status"] = status
    task["status_note"] = note or "cancelled by hand"
    return status


def update(txn: Tasks, task_id: str, changes: Mapping[str, Any]) -> list[str]:
    """Set fields of a task; returns the keys whose value changed."""
    task = _task(txn, task_id)
    for key in changes:
        if key in PROTECTED_FIELDS:
            raise Conflict(task_id, f"field {key!r} is not set by `queue update`: use {PROTECTED_FIELDS[key]}")
    if "dependencies" in changes:
        _check_dependencies(task_id, changes["dependencies"] or [], set(txn.ids()))
    changed = []
    for key, value in changes.items():
        if key not in task or task[key] != value:
            task[key] = value
            changed.append(key)
    return changed


def _running(task: dict[str, Any], workflow: Workflow) -> bool:
    return bool(task.get("lease")) or bool(workflow.role_working_in(str(task.get("status"))))


def remove(txn: Tasks, task_id: str, workflow: Workflow, *, force: bool = False) -> list[str]:
    """Remove a task (and its nested subtasks); returns the ids removed. Refused while it runs or while others depend
    on it, unless ``force`` (which also drops it from their dependencies)."""
    subtree = [t for _, t, _ in walk([_task(txn, task_id)]) if isinstance(t, dict) and "id" in t]
    going = [str(t["id"]) for t in subtree]
    dependents = sorted(
        str(t.get("id"))
        for _, t, _ in walk(txn.snapshot.data.get("tasks", []))
        if isinstance(t, dict)
        and t.get("id") not in going
        and isinstance(t.get("dependencies"), list)
        and any(dep in going for dep in t["dependencies"])
    )
    if not force:
        running = [str(t["id"]) for t in subtree if _running(t, workflow)]
        if running:
            raise Conflict(task_id, f"{', '.join(running)} is running; stop it first, or pass --force")
        if dependents:
            verb = "depends" if len(dependents) == 1 else "depend"
            raise Conflict(task_id, f"{', '.join(dependents)} {verb} on it; pass --force to remove it anyway")
    for dependent in dependents:
        raw = txn.task(dependent)
        if raw is not None and isinstance(raw.get("dependencies"), list):
            raw["dependencies"][:] = [dep for dep in raw["dependencies"] if dep not in going]
    txn.remove(task_id)
    return going
