"""``agentd queue why``: why a task is or is not being claimed, rule by rule, in the order the scheduler applies them.

It calls the very functions the daemon decides with (:func:`agentd.core.scheduler.task_checks`, ``wip_room``,
``judge``), so its answer cannot drift from the behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agentd.core import control, scheduler
from agentd.core.clock import format_timestamp
from agentd.core.control import Pause
from agentd.core.model import Task
from agentd.core.scheduler import LeaseObservation, View
from agentd.core.workflow import Role, Workflow


@dataclass(frozen=True)
class Step:
    """One rule and what it says about the task."""

    rule: str
    ok: bool
    text: str


@dataclass
class Explanation:
    """The whole answer."""

    task: str
    status: str
    role: str | None
    claimable: bool
    verdict: str
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _lease_step(lease: LeaseObservation, now: datetime, ttl: float) -> Step:
    if lease.error is not None and lease.locked is None:
        return Step("lease", False, f"lease path unusable and left alone: {lease.error}; a person must remove it")
    verdict = scheduler.judge(lease, now, ttl)
    beat = f", heartbeat {(now - lease.heartbeat_at).total_seconds():.0f} s ago" if lease.heartbeat_at else ""
    holder = f"{lease.role or '?'} on {lease.host or '?'} pid {lease.pid or '?'}, token {lease.token}{beat}"
    if lease.error:
        holder = f"unreadable lease file ({lease.error})"
    state = "live" if verdict.live else "stale"
    return Step("lease", not verdict.live, f"lease: {holder} — {state}: {verdict.cause}")


def _working(task: Task, role: Role, lease: LeaseObservation | None, now: datetime) -> Explanation:
    steps = [Step("status", False, f"status {task.status!r} is {role.name}'s working status: it is being worked on")]
    if lease is None:
        steps.append(Step("lease", True, "no lease file: its worker is gone; the next pass of any daemon recovers it"))
        verdict = f"stuck in {task.status!r} without a lease; it will be recovered (or run `agentd leases prune`)"
        return Explanation(task.id, task.status, role.name, False, verdict, steps)
    step = _lease_step(lease, now, role.lease_ttl)
    steps.append(step)
    if step.ok:
        verdict = "its lease is stale: the next pass of any daemon recovers it and puts it back"
    elif lease.error is not None and lease.locked is None:
        verdict = "stuck until a person removes what is at its lease path (see `agentd doctor`)"
    else:
        verdict = f"{role.name} is working on it"
    return Explanation(task.id, task.status, role.name, False, verdict, steps)


def explain(
    task_id: str,
    tasks: list[Task],
    workflow: Workflow,
    leases: Mapping[str, LeaseObservation],
    queue_limits: Mapping[str, int],
    now: datetime,
    daemons: Mapping[str, bool],
    quarantined: Mapping[str, str] | None = None,
    archived: Mapping[str, str] | None = None,
    pauses: Sequence[Pause] = (),
) -> Explanation:
    """Why ``task_id`` is or is not being claimed now. ``daemons`` says, per role, whether a daemon runs;
    ``quarantined`` maps each task with a problem of its own to that problem (the read's); ``archived`` the status
    of each archived task (a dependency on one counts as that status); ``pauses``: the project's pauses (people's,
    commands', budgets')."""
    quarantined = quarantined or {}
    answer = _explain(task_id, tasks, workflow, leases, queue_limits, now, daemons, quarantined, archived, pauses)
    problem = quarantined.get(task_id)
    if problem is not None:
        if not any(step.rule == "quarantine" for step in answer.steps):
            answer.steps.insert(0, Step("quarantine", False, f"quarantined: {problem}"))
        answer.claimable = False
        answer.verdict = (
            f"quarantined: {problem}; no daemon claims, runs or changes it until a person fixes it "
            "(`agentd queue validate` lists every problem); the other tasks flow"
        )
    return answer


def _explain(
    task_id: str,
    tasks: list[Task],
    workflow: Workflow,
    leases: Mapping[str, LeaseObservation],
    queue_limits: Mapping[str, int],
    now: datetime,
    daemons: Mapping[str, bool],
    quarantined: Mapping[str, str],
    archived: Mapping[str, str] | None = None,
    pauses: Sequence[Pause] = (),
) -> Explanation:
    view = View.build(tasks, workflow, now, leases, quarantined=quarantined, archived=archived)
    task = view.by_id[task_id]
    for role in workflow.role_working_in(task.status):
        return _working(task, role, leases.get(task.id), now)
    asker = workflow.roles.get(task.asked_by or "")
    if asker is not None and task.status == asker.waiting and task.question is not None and not task.answered:
        asked = task.asked_at
        since = f" since {format_timestamp(asked)}" if asked else ""
        text = f"waiting for an answer to: {task.question.get('text')} (asked by {asker.name}{since})"
        steps = [Step("question", False, text)]
        if asker.waiting_expiry is not None and asked is not None:
            ends = format_timestamp(asked + timedelta(seconds=asker.waiting_expiry))
            steps.append(Step("expiry", True, f"unanswered by {ends}, it goes to {asker.on_failure!r}"))
        verdict = f"{text}; `agentd queue answer {task.id} TEXT` puts it back to {asker.name}"
        return Explanation(task.id, task.status, asker.name, False, verdict, steps)
    claimers = workflow.role_claiming(task.status)
    if not claimers:
        if workflow.is_final(task.status):
            text = f"status {task.status!r} is final: no role claims it"
        elif workflow.unblock is not None and task.status == workflow.unblock.from_status:
            blocked = scheduler.to_unblock(workflow, view)
            text = f"status {task.status!r}: the unblock rule moves it to {workflow.unblock.to_status!r} once " + (
                "— now, on the next pass"
                if task in blocked
                else "its dependencies are done and it has no blocked_reason"
            )
            steps = [Step("status", False, text)]
            steps += [Step(c.rule, c.ok, c.detail) for c in scheduler.dependency_checks(task, view)]
            if task.blocked_reason:
                steps.append(Step("blocked_reason", False, f"blocked_reason is set: {task.blocked_reason}"))
            return Explanation(task.id, task.status, None, False, text, steps)
        else:
            text = f"status {task.status!r}: no role claims it and it is not final — nothing will ever pick it up"
        return Explanation(task.id, task.status, None, False, text, [Step("status", False, text)])
    best: Explanation | None = None
    for role in claimers:
        answer = _for_role(task, role, view, queue_limits, daemons.get(role.name, False), pauses)
        if answer.claimable or best is None:
            best = answer
        if answer.claimable:
            break
    assert best is not None
    return best


def _for_role(
    task: Task, role: Role, view: View, queue_limits: Mapping[str, int], running: bool, pauses: Sequence[Pause] = ()
) -> Explanation:
    # The daemon's own per-task rules, in its order; a stale lease is a pass (it is recovered first).
    steps = []
    for check in scheduler.task_checks(task, role, view):
        if check.rule == "lease":
            steps.append(_lease_step(view.leases[task.id], view.now, role.lease_ttl))
        else:
            steps.append(Step(check.rule, check.ok, check.detail))
    limit = scheduler.wip_limit(role, queue_limits)
    holders = scheduler.holders(view.tasks, role, view.leases, view.now, view.quarantined)
    room = scheduler.wip_room(view.tasks, role, queue_limits, view.leases, view.now, view.quarantined)
    held = ", ".join(holders) or "none"
    steps.append(Step("wip", room > 0, f"WIP of {role.name}: {len(holders)}/{limit} (held by {held})"))
    asking = [t for t in view.tasks if t.status == role.waiting and t.asked_by == role.name and not t.answered]
    if role.max_waiting is not None:
        full = not control.may_take_new(len(asking), role.max_waiting) and not task.answered
        text = f"{len(asking)}/{role.max_waiting} of {role.name}'s tasks wait for answers (max_waiting)"
        steps.append(Step("waiting", not full, text + ("; it takes no new task" if full else "")))
    pause = control.pause_in_force(pauses, role.name, view.now)
    if pause is not None:
        until = f"until {format_timestamp(pause.until)}" if pause.until else "until `agentd resume`"
        who = f" by {pause.by}" if pause.by else ""
        steps.append(Step("pause", False, f"{role.name} is paused {until}{who}: {pause.reason or 'no reason given'}"))
    steps.append(
        Step("daemon", running, f"a {role.name} daemon is running" if running else f"no {role.name} daemon is running")
    )
    blocking = next((step for step in steps if not step.ok and step.rule != "daemon"), None)
    if blocking is not None:
        verdict = f"not claimable by {role.name}: {blocking.text}"
        return Explanation(task.id, task.status, role.name, False, verdict, steps)
    if not running:
        verdict = f"claimable now, but no {role.name} daemon is running: `agentd start {role.name}`"
        return Explanation(task.id, task.status, role.name, True, verdict, steps)
    order = scheduler.claimable(role, view)
    position = next((i for i, t in enumerate(order) if t.id == task.id), 0)
    ahead = f" ({position} claimable task(s) ahead of it)" if position else ""
    verdict = f"claimable now: {role.name} starts it on its next pass{ahead}"
    return Explanation(task.id, task.status, role.name, True, verdict, steps)
