"""``agentd --role ROLE`` / ``agentd run``: a role daemon in the foreground (:mod:`agentd.cli.foreground`);
``agentd leases``: list and prune."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from agentd.cli import foreground
from agentd.cli.app import App
from agentd.cli.foreground import ReadyPipe
from agentd.cli.options import daemon_options
from agentd.cli.output import Group, emit_json, info, table
from agentd.core.clock import SystemClock
from agentd.core.model import views
from agentd.core.scheduler import LeaseObservation, judge
from agentd.errors import ExitCode, display_path
from agentd.hostinfo import hostname, process_name
from agentd.run import recovery
from agentd.store import open_store
from agentd.store.file.leases import LeaseDir

__all__ = ["ReadyPipe", "leases", "run", "run_daemon"]

pass_app = click.make_pass_decorator(App)


def run_daemon(
    app: App,
    role: str | None,
    interval: float | None,
    once: bool,
    drain: bool,
    concurrency: int | None,
    instance: str | None,
    *,
    log_file: str | None = None,
    log_format: str = "text",
    ready_fd: int | None = None,
) -> int:
    """The usage errors click words, then :func:`agentd.cli.foreground.run`."""
    if not role:
        raise click.UsageError("--role is required (one of the roles in agentd.toml)")
    if once and drain:
        raise click.UsageError("--once and --drain exclude each other")
    return foreground.run(
        app,
        role,
        interval,
        once,
        drain,
        concurrency,
        instance,
        log_file=log_file,
        log_format=log_format,
        ready_fd=ready_fd,
    )


@click.command(name="run")
@daemon_options
@pass_app
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log to this file (rotated) instead of stderr.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--ready-fd", type=int, hidden=True)
def run(
    app: App,
    role: str | None,
    interval: float | None,
    once: bool,
    drain: bool,
    concurrency: int | None,
    instance: str | None,
    log_file: str | None,
    log_format: str,
    ready_fd: int | None,
) -> int:
    """Run one role's daemon in the foreground (the same as "agentd --role ROLE").

    Claims the best ready task whose dependencies are done, within the role's WIP limit across every daemon, runs
    the role's command for it, records the outcome, and moves the task on. Queue changes wake it at once.
    SIGTERM/SIGINT drain (a second signal skips the grace); SIGHUP re-reads agentd.toml, or, when the terminal
    the daemon runs in has closed, stops it gracefully (docs/reference/signals.md).

    \b
    Examples:
      agentd run --role builder --interval 60
      agentd run --role tester --once          # cron, CI
      agentd run --role builder --drain --concurrency 2
      agentd run --role builder --instance b2  # a second builder on this host
    """
    return run_daemon(
        app,
        role,
        interval,
        once,
        drain,
        concurrency,
        instance,
        log_file=log_file,
        log_format=log_format,
        ready_fd=ready_fd,
    )


@click.group(cls=Group)
def leases() -> None:
    """Inspect and clear task leases (.leases/)."""


def _beat_age(seen: LeaseObservation, now: datetime) -> float | None:
    """A heartbeat's age as recovery judges it: on the boot clock when written on this boot, else the wall clock."""
    if seen.beat_age is not None:
        return round(seen.beat_age, 1)
    return round((now - seen.heartbeat_at).total_seconds(), 1) if seen.heartbeat_at else None


def _lease_rows(app: App) -> list[dict[str, Any]]:
    config = app.config
    clock = SystemClock()
    now = clock.now()
    store = app.store()
    rows = []
    for task_id, seen in store.leases().items():
        role = config.roles.get(seen.role or "")
        ttl = seen.ttl if seen.ttl is not None else role.lease_ttl if role else 5400.0
        verdict = judge(seen, now, ttl)
        holders = store.holders(task_id) if seen.locked and seen.host == hostname() else []
        rows.append(
            {
                "task": task_id,
                "role": seen.role,
                "host": seen.host,
                "pid": seen.pid,
                "token": seen.token,
                "age_s": round((now - seen.acquired).total_seconds(), 1) if seen.acquired else None,
                "heartbeat_age_s": _beat_age(seen, now),
                "held_by": [{"pid": pid, "name": process_name(pid)} for pid in holders],
                "live": verdict.live,
                "left_alone": seen.error is not None and seen.locked is None,
                "why": f"{display_path(config.leases_dir / LeaseDir.name_for(task_id))}: {seen.error}"
                if seen.error
                else verdict.cause,
            }
        )
    return rows


def _held_by(holders: list[dict[str, Any]]) -> str:
    """The processes really holding a lease's lock, for people: `` (lock: 812 sleep, 790 python3)``."""
    named = ", ".join(f"{holder['pid']} {holder['name']}" for holder in holders)
    return f" (lock: {named})" if named else ""


@leases.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the leases as JSON.")
@pass_app
def list_leases(app: App, as_json: bool) -> int:
    """Show every lease: task, role, holder host/pid, token, age, heartbeat age, live or stale (and why).

    \b
    Examples:
      agentd leases list
      agentd leases list --json | jq '.[] | select(.live | not)'
    """
    rows = _lease_rows(app)
    if as_json:
        emit_json(rows)
        return ExitCode.OK
    table(
        ["task", "role", "holder", "token", "age", "heartbeat", "state"],
        [
            [
                r["task"],
                r["role"],
                f"{r['host'] or '?'}:{r['pid'] or '?'}" + _held_by(r["held_by"]),
                r["token"],
                f"{r['age_s']:.0f}s" if r["age_s"] is not None else "",
                f"{r['heartbeat_age_s']:.0f}s ago" if r["heartbeat_age_s"] is not None else "",
                ("LEFT ALONE: " if r["left_alone"] else "live: " if r["live"] else "STALE: ") + r["why"],
            ]
            for r in rows
        ],
    )
    return ExitCode.OK


@leases.command()
@click.option("--dry-run", is_flag=True, help="Say what would be cleared; change nothing.")
@pass_app
def prune(app: App, dry_run: bool) -> int:
    """Clear stale leases and put their tasks back to their role's claimable status.

    A lease is stale when its lock is free (its holder died) or its heartbeat is older than lease_ttl (a hung
    holder: on this host its daemon and task group are killed, and the lease is cleared once the lock is free).
    Tasks stuck in a working status without a lease file (left by an older daemon) are put back too; lease files
    of tasks that no longer exist are removed.

    \b
    Examples:
      agentd leases prune --dry-run
      agentd leases prune
    """
    config = app.config
    store = open_store(config)
    clock = SystemClock()
    if dry_run:
        plans = recovery.plan(views(store.read().data), store.leases(), config.workflow, clock.now())
        done = plans
    else:
        done, hung = recovery.prune(store, config.workflow, clock)
        for item in hung:
            held = ", ".join(f"{pid} {process_name(pid)}" for pid in store.holders(item.task_id)) or "a process"
            info(
                f"killed the hung holder of {item.task_id} ({item.cause}); its lease is still locked by {held}: "
                "prune again"
            )
    verb = "would clear" if dry_run else "cleared"
    for item in done:
        what = "requeued" if item.action is recovery.Action.REQUEUE else "lease file removed"
        hung_note = " after killing its hung holder" if item.kill and dry_run else ""
        info(f"{verb} {item.task_id}: {item.cause} ({what}){hung_note}")
    if not done:
        info("no stale leases")
    return ExitCode.OK
