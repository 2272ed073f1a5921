"""``agentd queue archive``: move finished tasks out of the live queue into the archive beside it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click

from agentd.cli.app import App
from agentd.cli.output import info
from agentd.core.clock import SystemClock, parse_timestamp
from agentd.core.duration import parse_duration
from agentd.core.model import walk_one
from agentd.errors import ExitCode, display_path

pass_app = click.make_pass_decorator(App)


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def finished_at(task: dict[str, Any]) -> datetime | None:
    """When the task's last run ended (None when it records none: its status set by hand, say)."""
    last = task.get("last_run")
    ended = last.get("ended_at") if isinstance(last, dict) else None
    if not isinstance(ended, str):
        return None
    try:
        return parse_timestamp(ended)
    except ValueError:
        return None


@click.command()
@click.option(
    "--older-than",
    "older_than",
    callback=_duration,
    metavar="D",
    help="Only tasks whose last run ended longer ago than this (30m, 12h, 7d, 2w); tasks with no run are kept.",
)
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@pass_app
def archive(app: App, older_than: timedelta | None, dry_run: bool) -> int:
    """Move finished tasks out of the queue into the archive beside it (SPRINT_QUEUE.archive.jsonl).

    A task moves when it and all its subtasks are in a final status (done, cancelled, ...); a quarantined task
    stays. Archived tasks stay readable: `queue show` and `queue history` find them, and a dependency on one
    counts as its final status. The archive is written and fsynced before the queue, under the queue lock: a crash
    leaves a task in both files (the queue wins), and running the command again finishes the move without writing
    it twice.

    \b
    Examples:
      agentd queue archive
      agentd queue archive --older-than 7d --dry-run
    """
    workflow = app.config.workflow
    now = SystemClock().now()

    def movable(task: dict[str, Any]) -> bool:
        subtree = [raw for _, raw, _ in walk_one(task, "")]
        if not all(isinstance(raw, dict) and workflow.is_final(str(raw.get("status"))) for raw in subtree):
            return False
        if older_than is None:
            return True
        ended = finished_at(task)
        return ended is not None and now - ended > older_than

    store = app.store()
    target = display_path(store.archive.path)
    moved = store.archive_tasks(movable, now, dry_run=dry_run)
    verb = "would archive" if dry_run else "archived"
    info(f"{verb} {len(moved)} task(s) to {target}" + (f": {', '.join(moved)}" if moved else ""))
    return ExitCode.OK
