"""People's actions on a project, one code path for the CLI and the dashboard: answer a task's question, pause roles,
resume them.

Each is one store transaction (the decisions are the core's: :func:`agentd.core.transitions.answer` and
:class:`agentd.core.control.ProjectState`) followed by its journal event. ``agentd queue answer``, ``agentd pause``
and ``agentd resume`` (:mod:`agentd.cli.control_cmds`) and the dashboard's forms (:mod:`agentd.web.data`) call these
functions and nothing else, so a change from the page and one from a terminal cannot differ.
"""

from __future__ import annotations

import os
from datetime import datetime

from agentd.core import control
from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.core.duration import parse_duration
from agentd.core.record import Record, set_field
from agentd.core.workflow import Workflow
from agentd.errors import RoleNotFound, TaskNotFound
from agentd.store.base import Store, Txn
from agentd.store.base import project_state as project_state  # (re-exported)
from agentd.store.base import state_where as state_where  # (re-exported)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def person() -> str:
    """Who runs this process (the default ``by`` of an answer, a pause or a resume)."""
    import getpass  # (termios and pwd: not at import, `agentd status` asks nobody's name)

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "someone"


def check_roles(workflow: Workflow, roles: list[str]) -> list[str]:
    """``roles``, each checked: RoleNotFound (exit 6, naming the known roles) for the first not in the workflow."""
    for name in roles:
        if name not in workflow.roles:
            raise RoleNotFound(name, sorted(workflow.roles))
    return roles


class Answered(Record):
    """What answering did: the task's new status and the question it answered."""

    _fields = ("task_id", "status", "role", "question", "session", "by")

    task_id: str
    status: str
    role: str  # the role that asked (and resumes the task first)
    question: Any
    session: Any
    by: str

    def __init__(self, task_id: str, status: str, role: str, question: Any, session: Any, by: str) -> None:
        set_field(self, "task_id", task_id)
        set_field(self, "status", status)
        set_field(self, "role", role)
        set_field(self, "question", question)
        set_field(self, "session", session)
        set_field(self, "by", by)


def answer(store: Store, workflow: Workflow, task_id: str, text: str, by: str, now: datetime) -> Answered:
    """Record ``by``'s answer to the task's open question; the task goes back to the role that asked, first in its
    order. TaskNotFound naming the queue; Conflict (exit 7) when it has no open question."""
    from agentd.core import transitions  # (here: `agentd status` reads the pauses, and decides no transition)

    asked: dict[str, Any] = {}

    def change(txn: Txn) -> str:
        raw = txn.task(task_id)
        if raw is None:
            raise TaskNotFound(task_id, store.where)
        question = raw.get("question")
        asked.clear()
        asked.update(question if isinstance(question, dict) else {})
        return transitions.answer(raw, task_id, text, by, now, workflow)

    status = store.transaction(change)
    done = Answered(task_id, status, str(asked.get("role")), asked.get("text"), asked.get("session"), by)
    store.journal(done.role).emit(
        "answered",
        f"{task_id}: {by} answered {done.question!r}; back to {status} for {done.role}",
        task=task_id,
        by=by,
        question=done.question,
        session=done.session,
        status=status,
    )
    return done


def pause_end(now: datetime, for_: str | None, until: str | None) -> datetime | None:
    """When a pause given ``--for DURATION`` or ``--until TIME`` (no zone: UTC) ends (None: until resumed);
    ValueError saying what is wrong (a duration of 0, a time in the past, both given)."""
    seconds = parse_duration(for_) if for_ is not None else None
    if seconds is not None and seconds <= 0:
        raise ValueError(f"--for {for_}: a pause lasts more than 0 s")
    moment = parse_timestamp(until) if until is not None else None
    return control.pause_until(now, seconds=seconds, until=moment)


def pause(
    store: Store, roles: list[str], now: datetime, until: datetime | None, reason: str, by: str
) -> list[control.Pause]:
    """Pause ``roles`` (empty: every role) from ``now`` until ``until`` (None: until resumed); the pauses written.
    Pauses already ended are dropped in the same write."""
    names = roles or [control.ALL]
    where = state_where(store)
    made = [control.Pause(name, now, until, reason, by) for name in names]

    def put(state: control.ProjectState) -> control.ProjectState:
        for item in made:
            state = state.paused(item.role, item)
        return state.pruned(now)

    store.transaction(lambda txn: control.change_state(txn.state, where, put))
    span = f"until {format_timestamp(until)}" if until else "until resumed"
    for item in made:
        every = item.role == control.ALL
        store.journal(None if every else item.role).emit(
            "paused",
            f"{'every role' if every else item.role} paused {span} by {by}" + (f": {reason}" if reason else ""),
            until=format_timestamp(until) if until else None,
            reason=reason,
            by=by,
            paused=item.role,
        )
    return made


class Resumed(Record):
    """What resuming did: the pauses lifted that were in force, and a pause of every role still in force (when only
    some roles were resumed)."""

    _fields = ("lifted", "everyone")

    lifted: list[control.Pause]
    everyone: control.Pause | None

    def __init__(self, lifted: list[control.Pause], everyone: control.Pause | None) -> None:
        set_field(self, "lifted", lifted)
        set_field(self, "everyone", everyone)


def resume(store: Store, roles: list[str], now: datetime, by: str) -> Resumed:
    """Lift the pauses of ``roles`` (empty: every pause, budgets' included); ended pauses are dropped too."""
    where = state_where(store)
    gone: list[control.Pause] = []

    def lift(state: control.ProjectState) -> control.ProjectState:
        fresh, removed = state.resumed(roles or None)
        gone[:] = [p for p in removed if p.active(now)]
        return fresh.pruned(now)

    _before, after = store.transaction(lambda txn: control.change_state(txn.state, where, lift))
    for item in gone:
        role = None if item.role == control.ALL else item.role
        store.journal(role).emit(
            "resumed", f"{item.role if role else 'every role'} resumed by {by}", by=by, paused=item.role
        )
    everyone = next((p for p in after.pauses if p.role == control.ALL and p.active(now)), None)
    return Resumed(gone, everyone if roles else None)
