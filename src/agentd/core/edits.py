"""Changes people ask for (add, set-status, retry, cancel), as pure functions on the raw queue document.

Each runs inside :meth:`agentd.store.file.queuefile.QueueStore.transaction`, so it may run more than once and must
decide from the document it is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentd.core.model import TASK_ID_RULE, index_by_id, valid_task_id, walk
from agentd.core.workflow import Role, Workflow
from agentd.errors import Conflict, StaleToken, TaskNotFound


def _task(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    task = index_by_id(doc).get(task_id)
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


def add(doc: dict[str, Any], task: dict[str, Any], parent: str | None = None) -> None:
    """Add ``task`` (at the end, or under ``parent`` following the queue's own convention)."""
    if task["id"] in index_by_id(doc):
        raise Conflict(task["id"], "a task with this id already exists")
    missing = [dep for dep in task.get("dependencies", []) if dep not in index_by_id(doc)]
    if missing:
        raise Conflict(task["id"], f"unknown dependencies: {', '.join(missing)}")
    tasks = doc.setdefault("tasks", [])
    if parent is None:
        tasks.append(task)
        return
    holder = _task(doc, parent)
    nests = any(isinstance(t.get("subtasks"), list) for _, t, _ in walk(tasks) if isinstance(t, dict))
    if nests or isinstance(holder.get("subtasks"), list):
        holder.setdefault("subtasks", []).append(task)
    else:
        task["parent"] = parent
        tasks.append(task)


def set_status(
    doc: dict[str, Any], task_id: str, status: str, *, note: str | None = None, token: int | None = None
) -> str:
    """Set a task's status (fenced by ``token`` when given); returns the old status."""
    task = _task(doc, task_id)
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


def retry(doc: dict[str, Any], task_id: str, workflow: Workflow) -> str:
    """Send a task back to its role's claimable status with attempts reset; returns the new status."""
    task = _task(doc, task_id)
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


def cancel(doc: dict[str, Any], task_id: str, workflow: Workflow, note: str | None = None) -> str:
    """Move a task to the cancelled (final) status; returns it."""
    task = _task(doc, task_id)
    status = (
        "cancelled" if "cancelled" in workflow.final_statuses else sorted(workflow.final_statuses or {"cancelled"})[0]
    )
    task["status"] = status
    task["status_note"] = note or "cancelled by hand"
    return status
