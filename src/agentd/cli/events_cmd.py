"""``agentd events`` and ``agentd queue history``: read the event journal."""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from agentd.cli.app import App
from agentd.cli.output import emit_json, info, is_terminal, warn
from agentd.core.clock import SystemClock
from agentd.core.duration import parse_since
from agentd.errors import AgentdError, ExitCode, TaskNotFound, display_path
from agentd.store.base import EVENT_TYPES, Event, Filter

pass_app = click.make_pass_decorator(App)

FOLLOW_BACKLOG = 10  # events shown before following when -n is not given (as tail -f)
_COLOURS = {
    "finished": "green",
    "retry-scheduled": "yellow",
    "heartbeat-lost": "red",
    "fenced": "red",
    "stopping": "yellow",
    "start-failed": "red",
    "start-capped": "yellow",
    "refused": "red",
    "recovered": "yellow",
    "queue-invalid": "red",
    "wip-full": "yellow",
}


def _styled(event: Event, text: str) -> str:
    if not is_terminal() or "NO_COLOR" in os.environ:
        return text
    colour = _COLOURS.get(event.name)
    if event.name == "finished" and event.data.get("outcome") not in (None, "success"):
        colour = "red"
    return click.style(text, fg=colour) if colour else text


def line(event: Event) -> str:
    """One event for people: time, role, event, task, the message."""
    head = f"{event.data.get('time')} {event.role or '-':<10} "
    return head + _styled(event, f"{event.name:<15}") + f" {event.task or '-':<8} {event.message}"


def _history_line(event: Event) -> str:
    """One event of a task's history: time, role[pid], event, the message."""
    who = f"{event.role or '-'}[{event.data.get('pid', '?')}]"
    return f"{event.data.get('time')} {who:<18} " + _styled(event, f"{event.name:<15}") + f" {event.message}"


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value, SystemClock().now())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _print(items: Iterable[Event], as_json: bool) -> None:
    for event in items:
        click.echo(event.raw if as_json else line(event))


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events (across rotations) until Ctrl-C.")
@click.option("--task", "task_id", metavar="ID", help="Only this task's events.")
@click.option("--role", metavar="ROLE", help="Only events written by this role's daemons.")
@click.option("--since", metavar="DURATION", help="Only events this recent (10m, 2h, 1d, 1h30m) or after an ISO time.")
@click.option(
    "--type",
    "types",
    type=click.Choice(EVENT_TYPES),
    multiple=True,
    metavar="EVENT",
    help="Only this event type (repeatable): " + ", ".join(EVENT_TYPES) + ".",
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"Only the last N matching events. Default: all ({FOLLOW_BACKLOG} with --follow).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as stored: one JSON object per line.")
@click.option(
    "--prune",
    is_flag=True,
    help="PostgreSQL store: prune the journal now, as the daemons do hourly ([log] journal_keep_days, and within "
    "(backups + 1) x max_bytes); the file journal is rotated by size instead.",
)
@pass_app
def events(
    app: App,
    follow: bool,
    task_id: str | None,
    role: str | None,
    since: str | None,
    types: tuple[str, ...],
    lines: int | None,
    as_json: bool,
    prune: bool,
) -> int:
    """Show the event journal (.agentd/events.jsonl and its rotated files, oldest first).

    Every state change a daemon makes is one line: claimed, started, finished (with the outcome), retry scheduled,
    recovered (with the cause), released, refused, unblocked, heartbeat lost, daemon started and stopped, queue
    invalid, WIP full. Docs: docs/reference/events.md.

    \b
    Examples:
      agentd events
      agentd events --task B1
      agentd events --role builder --since 2h --type finished
      agentd events -f
      agentd events --since 1d --json | jq -r 'select(.outcome == "failure") | .task'
    """
    if prune:
        return _prune(app)
    where = Filter(task=task_id, role=role, since=_since(since), types=frozenset(types))
    if role is not None and role not in app.config.roles:
        warn(f"no role {role!r} in the configuration; showing what the journal has for it")
    limit = lines if lines is not None else (FOLLOW_BACKLOG if follow else None)
    found, new = app.store().follow(where, last=limit)
    _print(found, as_json)
    if not follow:
        return ExitCode.OK
    logging.getLogger("agentd.store.postgres.reach").setLevel(logging.INFO)  # (a lost server: one line, one back)
    try:
        for event in new:
            _print([event], as_json)
    except KeyboardInterrupt:
        pass
    return ExitCode.OK


def _prune(app: App) -> int:
    store = app.store()
    pruner = getattr(store, "prune_journal", None)
    if pruner is None:
        info(f"{store.where}: the file journal is rotated by size ([log] max_bytes, backups); nothing to prune")
        return ExitCode.OK
    removed = pruner()
    if removed is None:
        info(f"{store.where}: a daemon is pruning the journal right now; nothing done")
    else:
        keep = app.config.log
        days = f"older than {keep.journal_keep_days:g} days or " if keep.journal_keep_days else ""
        click.echo(f"{store.where}: pruned {removed} event(s) ({days}beyond {keep.journal_keep_bytes} bytes)")
    return ExitCode.OK


def _queue_state(app: App, task_id: str) -> tuple[dict[str, Any] | None, str | None, Path | None]:
    """The task as the queue has it now (or None), the reason the queue could not be read (or None), its path."""
    try:
        store = app.store()
    except AgentdError as exc:
        return None, str(exc), None
    try:
        raw = store.read(lenient=True).task(task_id)
        if raw is None:
            found = store.archived(task_id)
            raw = {**found[0], "archived_at": found[1]} if found is not None else None
    except (AgentdError, OSError) as exc:
        return None, str(exc), store.where
    return raw, None, store.where


def _summary(found: list[Event]) -> str:
    names = collections.Counter(event.name for event in found)
    parts = [
        f"{names[name]} {word}{'' if names[name] == 1 else 's'}"
        for name, word in (
            ("claimed", "claim"),
            ("retry-scheduled", "retry"),
            ("recovered", "recovery"),
            ("refused", "refusal"),
            ("heartbeat-lost", "lost lease"),
            ("fenced", "fenced run"),
        )
        if names[name]
    ]
    outcomes = [str(event.data.get("outcome")) for event in found if event.name == "finished"]
    if outcomes:
        parts.append("outcomes " + ", ".join(outcomes))
    return "; ".join(parts)


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the task's state and its events as JSON.")
@pass_app
def history(app: App, task_id: str, as_json: bool) -> int:
    """Show one task's life from the event journal: every claim, start, outcome, retry, recovery and release.

    A header gives the task's status and attempts in the queue now; below it every event of the task in the order
    it happened. The journal is read even when the queue cannot be. Exit code 6 when neither knows the task.

    \b
    Examples:
      agentd queue history B1
      agentd queue history B1 --json | jq -r '.events[] | select(.event == "recovered") | .cause'
    """
    raw, problem, queue_path = _queue_state(app, task_id)
    found = list(app.store().events(Filter(task=task_id)))
    if raw is None and not found:
        if problem is not None:
            warn(f"cannot read the queue: {problem}")
        raise TaskNotFound(task_id, queue_path)
    state = None
    if raw is not None:
        keys = ("title", "status", "attempts", "lease_token", "not_before", "blocked_reason", "archived_at")
        state = {key: raw.get(key) for key in keys}
        state["attempts"] = raw.get("attempts") or 0
    if as_json:
        emit_json({"task": task_id, "queue": state, "queue_error": problem, "events": [e.data for e in found]})
        return ExitCode.OK
    if state is not None:
        extra = "".join(
            f", {label} {state[key]}"
            for key, label in (("lease_token", "last token"), ("not_before", "not before"), ("archived_at", "archived"))
            if state.get(key) is not None
        )
        title = f" {state['title']!r}" if state.get("title") else ""
        info(f"{task_id}{title}: status {state['status']}, attempts {state['attempts']}{extra}")
        if state.get("blocked_reason"):
            info(f"  blocked: {state['blocked_reason']}")
    elif problem is not None:
        warn(f"cannot read the queue: {problem}")
        info(f"{task_id}: status unknown (the queue cannot be read)")
    else:
        where = display_path(queue_path) if queue_path else "the queue"
        info(f"{task_id}: not in {where} (removed?); its events follow")
    if not found:
        info("no events in the journal for this task")
        return ExitCode.OK
    info(f"{len(found)} event(s): {_summary(found)}")
    for event in found:
        click.echo(_history_line(event))
    return ExitCode.OK
