"""Selection over only the tasks in a status it considers decides exactly as over every task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentd.config import build
from agentd.core import scheduler as core
from agentd.core.model import views
from agentd.core.scheduler import LeaseObservation, View
from agentd.core.workflow import Workflow

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
WF: Workflow = build({}, root=Path("/tmp"), path=None).workflow
_ids = [f"T{n}" for n in range(8)]
_statuses = sorted({status for role in WF.roles.values() for status in role.statuses()} | {"odd", "cancelled"})
_task = st.fixed_dictionaries(
    {"status": st.sampled_from(_statuses)},
    optional={
        "dependencies": st.lists(st.sampled_from([*_ids, "GONE", "ARCH"]), max_size=3),
        "priority": st.integers(0, 3),
        "blocked_reason": st.just("waiting for a person"),
        "not_before": st.sampled_from([NOW - timedelta(hours=1), NOW + timedelta(hours=1)]).map(datetime.isoformat),
        "subtasks": st.lists(st.fixed_dictionaries({"status": st.sampled_from(_statuses)}), max_size=2),
    },
)


def _queue(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n, task in enumerate(tasks):
        subtasks = [{**sub, "id": f"T{n}.{k}"} for k, sub in enumerate(task.get("subtasks", []))]
        out.append({**task, "id": _ids[n], "subtasks": subtasks})
    return out


def test_the_considered_statuses_leave_out_final_ones() -> None:
    """Done and cancelled tasks are not considered; every status a role claims or works in is."""
    considered = core.considered(WF)
    assert not {"done", "cancelled"} & considered
    assert {status for role in WF.roles.values() for status in (*role.claims, role.working)} <= considered


@example(  # a cycle through a done task, which only the whole view walked (found by this test in CI's run)
    tasks=[
        {"status": "adapting", "dependencies": ["T3"]},
        {"status": "adapting"},
        {"status": "adapting"},
        {
            "status": "awaiting_test",
            "blocked_reason": "waiting for a person",
            "priority": 0,
            "not_before": "2026-05-01T11:00:00+00:00",
            "dependencies": ["T5"],
        },
        {"status": "adapting"},
        {"status": "done", "dependencies": ["T0"]},
    ],
    leased=set(),
)
@settings(max_examples=150, deadline=None)
@given(tasks=st.lists(_task, max_size=8), leased=st.sets(st.sampled_from(_ids), max_size=3))
def test_selection_over_the_considered_tasks_decides_as_over_all(tasks: list[dict[str, Any]], leased: set[str]) -> None:
    """Claimable tasks and their order, WIP holders and room, unblocking and any_claimable: the same for every role
    with a View of only the considered tasks (every task in ``by_id``) as with a View of all."""
    every = views({"tasks": _queue(tasks)})
    leases = {
        task_id: LeaseObservation(task_id, 1, "builder", locked=True, heartbeat_at=NOW, acquired=NOW, ttl=90.0)
        for task_id in leased
    }
    archived = {"ARCH": "done"}
    whole = View.build(every, WF, NOW, leases, archived=archived)
    considered = core.considered(WF)
    some = View.build(
        [task for task in every if task.status in considered],
        WF,
        NOW,
        leases,
        archived=archived,
        by_id={task.id: task for task in every},
    )
    for role in WF.roles.values():
        assert [t.id for t in core.claimable(role, some)] == [t.id for t in core.claimable(role, whole)]
        assert core.any_claimable(role, some) == core.any_claimable(role, whole)
        assert core.holders(some.tasks, role, leases, NOW) == core.holders(whole.tasks, role, leases, NOW)
        assert [t.id for t in core.select(role, some, {})] == [t.id for t in core.select(role, whole, {})]
    assert [t.id for t in core.to_unblock(WF, some)] == [t.id for t in core.to_unblock(WF, whole)]
