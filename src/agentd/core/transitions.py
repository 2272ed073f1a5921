"""What claiming, finishing and recovering do to a task's raw dict (pure: no I/O, the time passed in).

The daemon, ``agentd leases prune`` and the state-machine tests all change tasks through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from agentd.core import scheduler
from agentd.core.clock import format_timestamp
from agentd.core.duration import format_duration
from agentd.core.model import Task
from agentd.core.scheduler import Decision, Kind, Outcome
from agentd.core.workflow import Role, Workflow
from agentd.errors import Conflict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def apply_patch(raw: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Merge a decision's fields into a task; ``not_before``, ``repeat_runs`` and ``question`` set to None remove
    the key."""
    for key, value in patch.items():
        if key in ("not_before", "repeat_runs", "question") and value is None:
            raw.pop(key, None)
        else:
            raw[key] = value


def next_token(task: Task, *seen: int | None) -> int:
    """A fencing token larger than any issued for the task (in the queue or on a lease file)."""
    in_queue = task.lease.token if task.lease is not None and task.lease.token is not None else 0
    return 1 + max(task.lease_token, in_queue, *(value or 0 for value in seen))


def claim(raw: dict[str, Any], role: Role, lease: Mapping[str, Any]) -> None:
    """Mark a task as claimed by ``role`` under ``lease`` (which carries the token)."""
    raw["status"] = role.working
    raw["agent"] = role.name
    raw["lease"] = dict(lease)
    raw["lease_token"] = lease["token"]
    raw.pop("not_before", None)


def current_token(raw: Mapping[str, Any]) -> int | None:
    """The token of the task's in-queue lease, if any."""
    lease = raw.get("lease")
    token = lease.get("token") if isinstance(lease, dict) else None
    return token if isinstance(token, int) else None


def complete(
    raw: dict[str, Any] | None,
    task: Task | None,
    role: Role,
    outcome: Outcome,
    token: int,
    now: datetime,
    workflow: Workflow,
    last_run: Mapping[str, Any] | None = None,
) -> Decision | str:
    """Record an attempt's outcome and release the in-queue lease; a reason string when the completion is refused."""
    if raw is None or task is None:
        return "the task was removed from the queue while it ran"
    current = current_token(raw)
    if current != token:
        holder = "the task has no lease now" if current is None else f"the current token is {current}"
        return f"its fencing token {token} is no longer current ({holder})"
    decision = scheduler.decide(task, role, outcome, now, workflow)
    raw["status"] = decision.status
    apply_patch(raw, decision.patch)
    if isinstance(decision.patch.get("question"), dict):
        raw["question"] = {**decision.patch["question"], "token": token}  # who asked: role, attempt, token
    raw["lease"] = None
    if last_run is not None:
        raw["last_run"] = {**last_run, "next_status": decision.status}
    return decision


def answer(raw: dict[str, Any], task_id: str, text: str, by: str, now: datetime, workflow: Workflow) -> str:
    """Record a person's answer to the task's open question and put it back where the role that asked claims it
    (first in that role's order); returns that status. Conflict when it has no open question."""
    question = raw.get("question")
    status = raw.get("status")
    if not isinstance(question, dict) or not isinstance(question.get("text"), str):
        raise Conflict(task_id, f"it has no open question (status {status!r})")
    if isinstance(question.get("answer"), str):
        raise Conflict(task_id, "its question is already answered; the answer waits for its run")
    asker = workflow.roles.get(str(question.get("role")))
    if asker is None:
        raise Conflict(task_id, f"the role that asked, {question.get('role')!r}, is not in the workflow")
    if status != asker.waiting:
        raise Conflict(task_id, f"it is {status!r}, not waiting in {asker.waiting!r} for an answer")
    at = format_timestamp(now)
    feedback = raw.get("feedback")
    entry = {"question": question["text"], "answer": text, "by": by, "at": at}
    raw["feedback"] = [*feedback, entry] if isinstance(feedback, list) else [entry]
    raw["question"] = {**question, "answer": text, "answered_by": by, "answered_at": at}
    raw["status"] = asker.retry_status
    raw["status_note"] = f"answered by {by}; resumes"
    return asker.retry_status


def expire(raw: dict[str, Any], role: Role, now: datetime, workflow: Workflow) -> str:
    """A question unanswered past the role's ``waiting_expiry``: the task goes to ``on_failure`` with a note."""
    question = raw.get("question")
    text = question.get("text") if isinstance(question, dict) else None
    note = f"no answer within {format_duration(role.waiting_expiry or 0)} to: {text}"
    raw["status"] = role.on_failure
    raw["status_note"] = note
    raw.pop("question", None)
    if workflow.unblock is not None and role.on_failure == workflow.unblock.from_status:
        raw["blocked_reason"] = note
    return note


def requeue(raw: dict[str, Any], task: Task, role: Role, cause: str, now: datetime, workflow: Workflow) -> Decision:
    """A stale lease's task goes back to the role's claimable status (attempts + 1), or to on_failure when spent."""
    decision = scheduler.decide(task, role, Outcome(Kind.RECOVERED, note=f"recovered: {cause}"), now, workflow)
    raw["status"] = decision.status
    apply_patch(raw, decision.patch)
    raw["lease"] = None
    return decision
