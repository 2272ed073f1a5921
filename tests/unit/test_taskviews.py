"""A daemon's task views kept from look to look (agentd.run.taskviews) are those derived afresh from every task."""

from __future__ import annotations

from itertools import compress
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.config import build
from agentd.core.model import Task, refreshed, views
from agentd.core.scheduler import to_stop
from agentd.run.taskviews import TaskViews
from tests.helpers.examples import examples

WF = build({}, root=Path("/tmp"), path=None).workflow
CONSIDERED = frozenset({"ready", "in_progress", "blocked"})
_statuses = st.sampled_from(["ready", "in_progress", "blocked", "done", "cancelled"])
_ids = st.sampled_from([f"T{n}" for n in range(12)])
_queue = st.lists(
    st.fixed_dictionaries(
        {"id": _ids, "status": _statuses},
        optional={"subtasks": st.lists(st.fixed_dictionaries({"id": _ids, "status": _statuses}), max_size=2)},
    ),
    max_size=10,
)
# Steps: a look at the file after someone changed it (a new list of views, the unchanged ones the same objects), or
# a step of a pass that changed a few tasks' statuses (refreshed from their raw dicts).
_step = st.tuples(st.sampled_from(["read", "refresh"]), st.lists(st.tuples(st.integers(0, 30), _statuses), max_size=3))


def fresh(tasks: list[Task]) -> tuple[list[Task], dict[str, Task]]:
    return list(compress(tasks, (t.status in CONSIDERED for t in tasks))), {t.id: t for t in tasks}


def raws(tasks: list[Task], data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each view's raw dict (the last of duplicates)."""
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        holder: Any = data
        for part in task.path.removeprefix("$.").replace("[", ".").replace("]", "").split("."):
            holder = holder[int(part)] if part.isdigit() else holder[part]
        out[task.id] = holder
    return out


@settings(max_examples=examples(300, 100), deadline=None)
@given(queue=_queue, steps=st.lists(_step, max_size=6))
def test_views_patched_look_after_look_are_those_derived_afresh(
    queue: list[dict[str, Any]], steps: list[tuple[str, list[tuple[int, str]]]]
) -> None:
    """Whatever changes between looks (a few statuses, in or out of the considered ones, duplicate ids), the
    considered tasks, the views by id, the refreshed views and the running ones are those of a fresh derivation."""
    data = {"tasks": queue}
    tasks = views(data)
    kept = TaskViews(CONSIDERED)
    assert kept.of(tasks) == fresh(tasks)
    for kind, changes in steps:
        if not tasks:
            break
        by_raw = raws(tasks, data)
        changed = []
        for where, status in changes:
            task = tasks[where % len(tasks)]
            by_raw[task.id]["status"] = status
            changed.append(task.id)
        if kind == "refresh":
            expected = refreshed(tasks, by_raw.get, changed)
            tasks = kept.refreshed(tasks, by_raw.get, changed)
            assert tasks == expected
        else:  # a new read: the views of the tasks whose dicts changed are new objects, the others the same
            again = views(data)
            tasks = [new if new != old else old for old, new in zip(tasks, again, strict=True)]
        considered, by_id = kept.of(tasks)
        assert (considered, by_id) == fresh(tasks)
        assert all(a is b for a, b in zip(considered, fresh(tasks)[0], strict=True))
        running = {task.id for task in tasks[::2]} | {"GONE"}
        assert to_stop(kept.running(tasks, running), WF, running) == to_stop(tasks, WF, running)
