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


# As _step, and a step of a pass whose changes are not written (its transaction tried again, or failed): its views
# refreshed, the next read without them.
_step_or_abandon = st.tuples(
    st.sampled_from(["read", "refresh", "abandon"]), st.lists(st.tuples(st.integers(0, 30), _statuses), max_size=3)
)


@settings(max_examples=examples(300, 100), deadline=None)
@given(queue=_queue, steps=st.lists(_step_or_abandon, max_size=6), data=st.data())
def test_views_patched_where_the_reads_say_they_changed_are_those_derived_afresh(
    queue: list[dict[str, Any]], steps: list[tuple[str, list[tuple[int, str]]]], data: st.DataObject
) -> None:
    """As above, with each read's list saying where it may differ from an earlier read's (every place whose view
    is another object, and maybe more, or not known), as the file store's reads do; and no dict by id handed out
    changes afterwards (a caller's view of an earlier look keeps what it was given)."""
    data_doc = {"tasks": queue}
    tasks = views(data_doc)
    reads = [tasks]
    asked: list[list[Task]] = []

    def changes_of(read: list[Task]) -> Any:
        def changes(earlier: list[Task]) -> set[int] | None:
            asked.append(earlier)
            if not any(earlier is r for r in reads) or data.draw(st.booleans(), label="unknown"):
                return None
            extra = data.draw(st.sets(st.integers(-2, len(read) + 2), max_size=3), label="extra")
            return {k for k in range(len(read)) if read[k] is not earlier[k]} | extra

        return changes

    kept = TaskViews(CONSIDERED)
    handed: list[tuple[dict[str, Task], dict[str, Task]]] = []
    considered, by_id = kept.of(tasks, changes_of(tasks))
    assert (considered, by_id) == fresh(tasks)
    handed.append((by_id, dict(by_id)))
    for kind, changes in steps:
        if not tasks:
            break
        by_raw = raws(tasks, data_doc)
        if kind == "abandon":  # (the pass's own copies of the dicts: the file keeps what it had)
            by_raw = {task_id: dict(raw) for task_id, raw in by_raw.items()}
        changed = []
        for where, status in changes:
            task = tasks[where % len(tasks)]
            by_raw[task.id]["status"] = status
            changed.append(task.id)
        if kind in ("refresh", "abandon"):
            expected = refreshed(tasks, by_raw.get, changed)
            tasks = kept.refreshed(tasks, by_raw.get, changed)
            assert tasks == expected
            considered, by_id = kept.of(tasks)
        else:  # a new read: the views of the tasks whose dicts changed are new objects, the others the same
            again = views(data_doc)
            tasks = [new if new != old else old for old, new in zip(reads[-1], again, strict=True)]
            reads.append(tasks)
            if data.draw(st.booleans(), label="refresh at once"):
                tasks = kept.refreshed(tasks, by_raw.get, changed[:1], changes_of(tasks))
            considered, by_id = kept.of(tasks, changes_of(tasks) if tasks is reads[-1] else None)
        assert (considered, by_id) == fresh(tasks)
        assert all(a is b for a, b in zip(considered, fresh(tasks)[0], strict=True))
        assert all(by_id[k] is v for k, v in fresh(tasks)[1].items())
        handed.append((by_id, dict(by_id)))
    assert all(given == copy and all(given[k] is copy[k] for k in copy) for given, copy in handed)


def test_a_view_refreshed_by_a_pass_whose_change_was_not_written_is_looked_at_after_the_next_read() -> None:
    """A pass refreshed A's view to a status it did not write (its transaction tried again): the next read, which
    says nothing of A changed since the read before, still has A as the file has it."""
    doc = {"tasks": [{"id": "A", "status": "ready"}, {"id": "B", "status": "ready"}]}
    first = views(doc)

    def changes_of(read: list[Task]) -> Any:
        return lambda earlier: {k for k in range(len(read)) if read[k] is not earlier[k]}

    kept = TaskViews(CONSIDERED)
    kept.of(first, changes_of(first))
    abandoned = {"A": {"id": "A", "status": "done"}}
    assert [t.status for t in kept.of(kept.refreshed(first, abandoned.get, ["A"]))[1].values()] == ["done", "ready"]
    again = list(first)  # (the next read: every view the same object, none said changed)
    considered, by_id = kept.of(again, changes_of(again))
    assert (considered, by_id) == fresh(again)
    assert considered[0] is first[0] and by_id["A"] is first[0]
