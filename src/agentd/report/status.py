"""What ``agentd status`` shows: daemons per role with their running tasks and next task, then the queue at a glance.

One plain data structure (also the ``--json`` output); the CLI renders it as rich tables, plain text or a live view.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime

from agentd.config import Config
from agentd.core import control, scheduler
from agentd.core.clock import boottime, format_timestamp, parse_timestamp
from agentd.core.model import Task
from agentd.core.scheduler import LeaseObservation, View
from agentd.errors import AgentdError
from agentd.hostinfo import boot_id, hostname
from agentd.report import usage
from agentd.service import probes as service
from agentd.store import open_store
from agentd.store.base import Probe, Store, project_state
from agentd.store.file.pidfile import probe, role_of, silence
from agentd.workspaces import settings as workspaces

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _seconds(delta: float | None) -> float | None:
    return None if delta is None else round(delta, 1)


def _running_tasks(
    role: str,
    pid: int | None,
    host: str | None,
    leases: Mapping[str, LeaseObservation],
    by_id: Mapping[str, Task],
    now: datetime,
    branch: Callable[[str], str | None] = lambda _task_id: None,
) -> list[dict[str, Any]]:
    out = []
    for task_id, lease in sorted(leases.items()):
        if pid is None or lease.pid != pid or lease.role != role:
            continue
        if host is not None and lease.host is not None and lease.host != host:
            continue  # the same pid on another host
        task = by_id.get(task_id)
        out.append(
            {
                "id": task_id,
                "title": task.title if task else None,
                "attempt": (task.attempts + 1) if task else None,
                "token": lease.token,
                "branch": branch(task_id),
                "runtime_s": _seconds((now - lease.acquired).total_seconds()) if lease.acquired else None,
                "heartbeat_age_s": _seconds(
                    lease.beat_age
                    if lease.beat_age is not None
                    else (now - lease.heartbeat_at).total_seconds()
                    if lease.heartbeat_at
                    else None
                ),
            }
        )
    return out


def judge(seen: Probe, store_now: datetime, here: str) -> tuple[bool, float | None, float | None]:
    """(running, seconds it has not beaten when past its limit, seconds since its last beat) of a daemon.

    A daemon of this host is judged as its registration says (its PID file's lock) and, once silent, on this kernel's
    boot clock. A daemon of another host is judged only by its last beat on the store's clock: a pid means nothing
    here, and neither does this host's clock.
    """
    info = seen.info
    if info is None:
        return seen.running, None, None
    if info.host == here:
        quiet = silence(info, store_now, boottime(), boot_id()) if seen.running else None
    else:
        quiet = silence(info, store_now, 0.0, None) if seen.running else None  # (no boot id: the wall clock path)
    age = None
    if info.beat_at is not None:
        with contextlib.suppress(ValueError):
            age = (store_now - parse_timestamp(info.beat_at)).total_seconds()
    return seen.running, quiet, age


def build(
    config: Config,
    probes: list[Probe],
    now: datetime,
    store: Store | None = None,
    spend: usage.Tally | None = None,
) -> dict[str, Any]:
    """Everything the dashboard shows, as plain data (``store``: a long-lived one reuses unchanged tasks; ``spend``:
    a long-lived tally reads only what the journal gained since)."""
    store = store or open_store(config)
    try:
        store_now = store.now()
    except (AgentdError, OSError):
        store_now = now
    here = hostname()
    queue_error = None
    tasks: list[Task] = []
    limits: dict[str, int] = {}
    limits_known = True
    quarantined: dict[str, str] = {}
    archived: Mapping[str, str] = {}
    try:
        snapshot = store.read()
        archived = snapshot.archived
        tasks, limits = snapshot.tasks, snapshot.wip_limits
        quarantined = {task_id: problem.text for task_id, problem in snapshot.quarantined.items()}
    except AgentdError as exc:
        queue_error = str(exc)
        try:  # duplicate ids, unknown dependencies, cycles: the WIP limits are still there to read
            limits = dict(store.read(lenient=True).wip_limits)
        except AgentdError:
            limits_known = False
    try:
        leases = store.leases()
    except (AgentdError, OSError):
        leases = {}
    by_id = {task.id: task for task in tasks}
    view = View.build(tasks, config.workflow, now, leases, quarantined=quarantined, archived=archived)
    raw_of = snapshot.task if tasks else (lambda _task_id: None)

    def branch(task_id: str) -> str | None:
        parent = lambda t: getattr(by_id.get(t), "parent", None)  # noqa: E731
        return workspaces.branch_of(config.workspaces, task_id, parent, lambda t: (raw_of(t) or {}).get("workspace"))

    roles = []
    for seen in probes:
        role_name, instance = (seen.info.role, seen.info.instance) if seen.info else role_of(seen.file)
        role = config.role(role_name)
        running = seen.running and seen.info is not None
        pid = seen.info.pid if running and seen.info else None
        host = seen.info.host if seen.info else None
        upcoming = scheduler.claimable(role, view) if not queue_error else []
        _, quiet, beat_age = judge(seen, store_now, here)
        roles.append(
            {
                "role": role_name,
                "instance": instance,
                "host": host,
                "running": seen.running,
                "not_responding_s": _seconds(quiet),
                "pid": pid,
                "started": seen.info.started_at if running and seen.info else None,
                "last_beat": seen.info.beat_at if running and seen.info else None,
                "beat_age_s": _seconds(beat_age) if running else None,
                "uptime_s": _seconds(seen.info.uptime(store_now)) if running and seen.info else None,
                "interval_s": seen.info.interval if running and seen.info else None,
                "log": seen.info.log if running and seen.info else None,
                "wip": len(scheduler.holders(tasks, role, leases, now, quarantined)) if not queue_error else None,
                "wip_limit": scheduler.wip_limit(role, limits) if limits_known or role.wip is not None else None,
                "tasks": _running_tasks(role_name, pid, host, leases, by_id, now, branch),
                "next": {"id": upcoming[0].id, "title": upcoming[0].title} if upcoming else None,
                "stale_pid_file": seen.stale,
                "pid_file_error": seen.error,
                "pid_file": seen.file,  # (str(seen.path): the same, normalised, without importing pathlib)
            }
        )
    failing = {role.on_failure for role in config.roles.values()}
    backing_off = [
        {"id": t.id, "status": t.status, "until": format_timestamp(t.not_before), "attempts": t.attempts}
        for t in tasks
        if t.not_before is not None and t.not_before > now
    ]
    failed = [
        {"id": t.id, "status": t.status, "attempts": t.attempts, "reason": t.blocked_reason}
        for t in tasks
        if t.status in failing and t.blocked_reason
    ]
    return {
        **_control(config, store, tasks, now, spend or usage.Tally.of(store)),
        "generated_at": format_timestamp(now),
        "queue": config.queue_file,  # (str(config.queue_path), without importing pathlib)
        "queue_error": queue_error,
        "host": here,
        "roles": roles,
        "statuses": dict(sorted(Counter(t.status for t in tasks).items())),
        "backing_off": backing_off,
        "failed": failed,
        "quarantined": [{"id": task_id, "problem": problem} for task_id, problem in quarantined.items()],
    }


def _control(config: Config, store: Store, tasks: list[Task], now: datetime, tally: usage.Tally) -> dict[str, Any]:
    """Pauses in force, questions waiting for answers, and each role's spend today (in the project's time zone)."""
    try:
        pauses = [p for p in project_state(store).pauses if p.active(now)]
        state_error = None
    except (AgentdError, OSError) as exc:
        pauses, state_error = [], str(exc)
    waiting = []
    for task in tasks:
        role = config.roles.get(task.asked_by or "")
        if role is not None and task.status == role.waiting and not task.answered and task.question is not None:
            asked = task.asked_at
            waiting.append(
                {
                    "id": task.id,
                    "role": role.name,
                    "question": task.question.get("text"),
                    "since": format_timestamp(asked) if asked else None,
                }
            )
    start, end = control.day_bounds(now, config.timezone)
    try:
        records = tally.update(start)
    except OSError:
        records = []
    spend = {}
    for name, role in config.roles.items():
        spent = control.spend(records, name, start, end)
        if spent or role.budget_usd_per_day is not None:
            spend[name] = {"cost_usd": round(spent, 4), "budget_usd": role.budget_usd_per_day}
    return {
        "paused": [p.to_dict() for p in sorted(pauses, key=lambda p: p.role)],
        "state_error": state_error,
        "waiting": sorted(waiting, key=lambda w: w["since"] or ""),
        "spend_today": spend,
    }


def snapshot(config: Config, roles: list[str], now: datetime) -> dict[str, Any]:
    """The dashboard for the asked roles (every role when empty)."""
    data = build(config, service.daemons(config, roles or None), now)
    seen = service.web_probe(config)
    data["web"] = (
        {
            "pid": seen.info.pid,
            "url": seen.info.url,
            "uptime_s": _seconds(seen.info.uptime(now)),
            "log": service.display(service.web_log_path(config), config.root),
        }
        if seen.running and seen.info is not None
        else None
    )
    data["automation"] = _automation(config, now)
    return data


def _automation(config: Config, now: datetime) -> dict[str, Any] | None:
    """The automation processes: the background one (``agentd start``) and whichever is active; None when there is
    nothing to automate and nothing runs."""
    background = service.automation_probe(config)
    active = probe(service.automation_active_file(config))
    if not config.automation and not background.running and not active.running:
        return None
    return {
        "configured": bool(config.automation),
        "pid": background.info.pid if background.running and background.info else None,
        "uptime_s": _seconds(background.info.uptime(now)) if background.running and background.info else None,
        "active_pid": active.info.pid if active.running and active.info else None,
        "active_host": active.info.host if active.running and active.info else None,
        "log": service.display(service.automation_log_path(config), config.root),
    }
