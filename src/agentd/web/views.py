"""What each page shows, as plain data built from one read (pure: tasks, leases, status and time in)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from agentd.core.clock import format_timestamp
from agentd.core.model import Task
from agentd.core.scheduler import LeaseObservation
from agentd.core.workflow import Workflow


@dataclass(frozen=True)
class Card:
    """One task on the board."""

    id: str
    title: str
    type: str
    priority: int | None
    role: str
    attempts: int
    lease_age: str | None
    heartbeat_age: str | None
    question: str | None
    backoff_until: str | None
    blocked: str | None


@dataclass
class Column:
    """One status and its cards."""

    status: str
    final: bool
    cards: list[Card] = field(default_factory=list)


def card_html(card: Card) -> str:
    """One card's HTML, every value escaped (written in Python: 10,000 cards through a template take seconds)."""
    e = escape
    head = f"<b>{e(card.id)}</b>"
    if card.priority is not None:
        head += f' <span class="prio">p{e(card.priority)}</span>'
    if card.type:
        head += f' <span class="type">{e(card.type)}</span>'
    meta = [card.role] if card.role else []
    if card.attempts:
        meta.append(f"attempt {card.attempts}")
    if card.lease_age:
        meta.append(f"leased {card.lease_age}")
    if card.heartbeat_age:
        meta.append(f"♥ {card.heartbeat_age}")
    extra = ""
    if card.question:
        extra += f'<div class="question">? {e(card.question)}</div>'
    if card.backoff_until:
        extra += f'<div class="backoff">backoff until {e(card.backoff_until)}</div>'
    if card.blocked:
        extra += f'<div class="blocked">{e(card.blocked)}</div>'
    text = (card.id + " " + card.title).lower()
    return (
        f'<a class="card" id="card-{e(card.id)}" href="/tasks/{e(card.id)}" data-id="{e(card.id)}" '
        f'data-role="{e(card.role)}" data-type="{e(card.type)}" data-text="{e(text)}">'
        f'<div class="head">{head}</div><div class="title">{e(card.title)}</div>'
        f'<div class="meta">{e(" · ".join(meta))}</div>{extra}</a>\n'
    )


def cards_html(column: Column) -> Markup:
    """A column's cards, ready to insert."""
    return Markup("".join(card_html(card) for card in column.cards))  # noqa: S704 - every value escaped above


def age(seconds: float | None) -> str | None:
    """``42 s``, ``3 m``, ``5 h``, ``2 d``."""
    if seconds is None:
        return None
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def status_order(workflow: Workflow, present: set[str]) -> list[tuple[str, bool]]:
    """Every status as (status, final): the roles' claims, working, success and failure statuses in workflow order,
    then statuses only the queue knows, then the done and final ones."""
    ended = workflow.final_statuses | workflow.done_statuses
    order: list[str] = []
    for role in workflow.roles.values():
        for status in (*role.claims, role.working, role.on_success, role.on_failure):
            if status not in order and status not in ended:
                order.append(status)
    order.extend(sorted(present - set(order) - ended))
    return [(s, False) for s in order] + [(s, True) for s in sorted(ended)]


def role_of_status(workflow: Workflow) -> dict[str, str]:
    """Which role a status belongs to: the role working in it or claiming it."""
    out: dict[str, str] = {}
    for role in workflow.roles.values():
        out.setdefault(role.working, role.name)
        for status in role.claims:
            out.setdefault(status, role.name)
    return out


def board(
    tasks: Sequence[Task],
    raw: Mapping[str, Mapping[str, Any]],
    leases: Mapping[str, LeaseObservation],
    workflow: Workflow,
    now: datetime,
) -> list[Column]:
    """The board: a column per status in workflow order, a card per task in queue order."""
    columns = {status: Column(status, final) for status, final in status_order(workflow, {t.status for t in tasks})}
    owner = role_of_status(workflow)
    for task in tasks:
        lease = leases.get(task.id)
        data = raw.get(task.id, {})
        question = data.get("question")
        role = task.agent if task.agent in workflow.roles else owner.get(task.status, "")
        columns[task.status].cards.append(
            Card(
                id=task.id,
                title=str(task.title or ""),
                type=str(task.type or ""),
                priority=task.priority,
                role=str(role or ""),
                attempts=task.attempts,
                lease_age=age((now - lease.acquired).total_seconds()) if lease and lease.acquired else None,
                heartbeat_age=age((now - lease.heartbeat_at).total_seconds()) if lease and lease.heartbeat_at else None,
                question=str(question) if isinstance(question, str | dict) and question else None,
                backoff_until=format_timestamp(task.not_before) if task.not_before and task.not_before > now else None,
                blocked=str(task.blocked_reason) if task.blocked_reason else None,
            )
        )
    return list(columns.values())


def health(status: Mapping[str, Any], roles: Sequence[str]) -> list[str]:
    """Why the team is not healthy: a configured role with no responding daemon, an unreadable queue (empty: all
    well)."""
    problems = []
    if status.get("queue_error"):
        problems.append(f"queue: {status['queue_error']}")
    running = {row["role"] for row in status["roles"] if row["running"]}
    for role in roles:
        if role not in running:
            problems.append(f"{role}: no daemon running")
    return problems
