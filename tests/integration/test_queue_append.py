"""Tasks added at the end of a big queue: only they are checked for duplicates, unknown dependencies and cycles, and
what is quarantined is exactly what a full check quarantines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentd import schema
from agentd.config import build
from agentd.core import model, validate
from agentd.store.file import derived
from agentd.store.file.queuefile import QueueStore
from tests.helpers.examples import examples


def test_tasks_added_at_the_end_are_checked_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task added to a 2,000-task queue (one task quarantined already): the structural check sees that task only,
    and still quarantines a new task with an unknown dependency."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"T{n}", "status": "done"} for n in range(2000)]
    tasks[5]["dependencies"] = ["GONE"]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    store = QueueStore(queue, parse_retry=0)
    assert set(store.read().quarantined) == {"T5"}
    seen: list[int] = []

    def counting(entries: list[Any], known: Any = ()) -> list[validate.Finding]:
        seen.append(len(entries))
        return validate.structural(entries, known)

    monkeypatch.setattr(derived, "structural", counting)
    tasks.append({"id": "N1", "status": "ready", "dependencies": ["T1999"]})
    tasks.append({"id": "N2", "status": "ready", "dependencies": ["NOPE"]})
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    snapshot = store.read()
    assert seen == [2]
    assert set(snapshot.quarantined) == {"T5", "N2"}
    assert snapshot.quarantined["N2"].path == "$.tasks[2001].dependencies[0]"


_ids = st.sampled_from(["A", "B", "C", "D", "T1", "GONE"])
_task = st.fixed_dictionaries(
    {"id": _ids | st.just(7), "status": st.just("ready")},
    optional={
        "dependencies": st.lists(_ids | st.just("ZZ"), max_size=2),
        "subtasks": st.lists(st.fixed_dictionaries({"id": _ids, "status": st.just("ready")}), max_size=1),
    },
)
# Each step: tasks added at the end, and maybe the first task's status or dependencies changed.
_steps = st.lists(
    st.tuples(st.lists(_task, max_size=3), st.sampled_from(["", "status", "deps"])), min_size=1, max_size=4
)
_CYCLE = [{"id": "A", "status": "ready", "dependencies": ["B"]}, {"id": "B", "status": "ready", "dependencies": ["A"]}]


def _decisions(store: QueueStore) -> tuple[list[tuple[str | None, str, str, str | None]], dict[str, str | None]]:
    snapshot = store.read()
    errors = [(f.path, f.message, f.code, f.task) for f in snapshot.errors]
    return errors, {task: finding.path for task, finding in snapshot.quarantined.items()}


@settings(max_examples=examples(80, 30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(steps=[(_CYCLE, "")])
@example(steps=[([{"id": "A", "status": "ready", "dependencies": ["C"]}], ""), ([{"id": "C", "status": "ready"}], "")])
@example(steps=[([{"id": "GONE", "status": "ready"}], "")])
@example(steps=[([{"id": "T1", "status": "ready"}], "deps")])
@given(steps=_steps)
def test_a_store_reading_appended_tasks_quarantines_what_a_fresh_store_does(
    steps: list[tuple[list[dict[str, Any]], str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tasks added at the end (duplicates, unknown dependencies, cycles among them or through a task missing before,
    ids that are not strings), over a queue with quarantined tasks already: the errors and the quarantine of a
    store that read every step are those of a store reading the result once."""
    queue = tmp_path_factory.mktemp("append") / "SPRINT_QUEUE.json"
    data: dict[str, Any] = {
        "tasks": [
            {"id": "T1", "status": "ready"},
            {"id": "T2", "status": "ready", "dependencies": ["GONE"]},
            {"id": "T3", "status": "ready", "dependencies": ["T1"]},
            {"id": "T4", "status": "ready", "dependencies": ["T5"]},
            {"id": "T5", "status": "ready", "dependencies": ["T4"]},
        ]
    }
    queue.write_text(json.dumps(data, indent=2))
    store = QueueStore(queue, parse_retry=0)
    store.read()
    for added, change in steps:
        data["tasks"].extend(added)
        first = data["tasks"][0]
        if change == "status":
            first["status"] = "done" if first["status"] == "ready" else "ready"
        elif change == "deps":
            first["dependencies"] = [] if first.get("dependencies") else ["T3"]
        queue.write_text(json.dumps(data, indent=2))
        assert _decisions(store) == _decisions(QueueStore(queue, parse_retry=0))


def test_a_read_after_an_append_looks_only_at_the_added_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unchanged head of a 2,000-task queue is taken whole: no task of it is walked, checked or given a view
    again; the views are those of a fresh read."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"T{n}", "status": "done"} for n in range(2000)]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    store = QueueStore(queue, workflow=build({}, root=tmp_path, path=None).workflow, parse_retry=0)
    assert len(store.read().tasks) == 2000
    looked: list[str] = []

    def walk_one(task: Any, path: str, parent: str | None = None) -> Any:
        looked.append(path)
        return model.walk_one(task, path, parent)

    def task_problems(task: Any, path: str, key: str | None = None, *, thorough: bool = False) -> Any:
        looked.append(path)
        return real_problems(task, path, key, thorough=thorough)

    real_problems = schema.task_problems
    monkeypatch.setattr(derived, "walk_one", walk_one)
    monkeypatch.setattr(schema, "task_problems", task_problems)
    tasks.append({"id": "N1", "status": "ready"})
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    views = store.read().tasks
    assert looked and set(looked) == {"$.tasks[2000]"}
    monkeypatch.undo()
    assert views == QueueStore(queue, parse_retry=0).read().tasks


def test_a_read_after_a_change_in_the_middle_looks_only_at_the_changed_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person saves a 2,000-task queue with one task in the middle changed: the tasks after it are taken as they
    were (not walked, checked or given a view again); the views, errors and warnings are those of a fresh read."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"T{n}", "status": "done"} for n in range(2000)]
    tasks[1500]["dependencies"] = ["GONE"]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    workflow = build({}, root=tmp_path, path=None).workflow
    store = QueueStore(queue, workflow=workflow, parse_retry=0)
    assert len(store.read().tasks) == 2000
    looked: list[str] = []

    def walk_one(task: Any, path: str, parent: str | None = None) -> Any:
        looked.append(path)
        return model.walk_one(task, path, parent)

    monkeypatch.setattr(derived, "walk_one", walk_one)
    tasks[1000]["notes"] = "saved by a person"
    tasks[1000]["status"] = "odd"
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    mine = store.read()
    assert looked and len(looked) <= 6  # (its views, its entries, its shape before and after: "" is that)
    assert set(looked) == {"$.tasks[1000]", ""}
    monkeypatch.undo()
    fresh = QueueStore(queue, workflow=workflow, parse_retry=0).read()
    assert mine.tasks == fresh.tasks
    assert (mine.errors, mine.warnings) == (fresh.errors, fresh.warnings)
    assert len(mine.warnings) == 1 and [e.task for e in mine.errors] == ["T1500"]


def test_a_save_by_someone_else_after_a_write_of_its_own_costs_what_they_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store writes a task at the end of a 2,000-task queue, then a person saves it with a task in the middle
    changed: the store's next read looks at that task alone (not at every task between it and the store's own
    change), and sees what a fresh store sees."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"T{n}", "status": "done"} for n in range(2000)]
    tasks[-1]["status"] = "ready"
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    store = QueueStore(queue, parse_retry=0)
    assert len(store.read().tasks) == 2000
    store.transaction(lambda doc: doc["tasks"][-1].update(status="in_progress"))
    person = QueueStore(queue, parse_retry=0)
    person.transaction(lambda doc: doc["tasks"][1000].update(notes="saved by a person"))
    looked: list[str] = []

    def walk_one(task: Any, path: str, parent: str | None = None) -> Any:
        looked.append(path)
        return model.walk_one(task, path, parent)

    monkeypatch.setattr(derived, "walk_one", walk_one)
    mine = store.read()
    assert set(looked) == {"$.tasks[1000]", ""} and len(looked) <= 6
    monkeypatch.undo()
    fresh = QueueStore(queue, parse_retry=0).read()
    assert mine.tasks == fresh.tasks and mine.data == fresh.data
    assert (mine.errors, mine.warnings) == (fresh.errors, fresh.warnings)


_edit = st.tuples(st.sampled_from(["append", "insert", "remove", "change", "nest"]), st.integers(0, 50))


@settings(max_examples=examples(60, 25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(_edit, min_size=1, max_size=6))
def test_a_store_reading_edit_after_edit_sees_what_a_fresh_store_sees(
    edits: list[tuple[str, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tasks added, inserted, removed, changed or given subtasks anywhere, read after each edit by one store: its
    views, errors and warnings are those of a fresh store reading the same file."""
    queue = tmp_path_factory.mktemp("edits") / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"T{n}", "status": "done"} for n in range(8)]
    tasks[3]["dependencies"] = ["GONE"]
    workflow = build({}, root=queue.parent, path=None).workflow  # ("odd" is a status no role knows: a warning)
    store = QueueStore(queue, workflow=workflow, parse_retry=0)
    for step, (action, where) in enumerate(edits):
        at = where % (len(tasks) + 1)
        if action == "append":
            tasks.append({"id": f"A{step}", "status": "ready", "dependencies": ["T1"]})
        elif action == "insert":
            tasks.insert(at, {"id": f"I{step}", "status": "odd"})
        elif action == "remove" and tasks:
            del tasks[at % len(tasks)]
        elif action == "change" and tasks:
            tasks[at % len(tasks)]["status"] = "ready"
        elif tasks:
            tasks[at % len(tasks)]["subtasks"] = [{"id": f"S{step}", "status": "ready"}]
        queue.write_text(json.dumps({"tasks": tasks}, indent=2))
        mine, fresh = store.read(), QueueStore(queue, workflow=workflow, parse_retry=0).read()
        assert mine.tasks == fresh.tasks
        assert (mine.errors, mine.warnings) == (fresh.errors, fresh.warnings)


_mixed = st.lists(
    st.tuples(st.sampled_from(["mine", "mine-edit", "theirs", "in-place", "add"]), st.integers(0, 40)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=examples(80, 30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_mixed, with_workflow=st.booleans())
def test_a_store_s_kept_state_is_a_fresh_parse_after_its_own_and_outside_writes(
    steps: list[tuple[str, int]], with_workflow: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Writes of its own (whole-document and per-task), saves by another process, and in-place rewrites of the same
    size with the modification time put back, in any order: what the store reads next is what a fresh store
    reads."""
    queue = tmp_path_factory.mktemp("mixed") / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"T{n}", "status": "done", "notes": "n"} for n in range(30)]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    workflow = build({}, root=queue.parent, path=None).workflow if with_workflow else None
    store = QueueStore(queue, workflow=workflow, parse_retry=0)
    other = QueueStore(queue, workflow=workflow, parse_retry=0)
    store.read()
    for step, (kind, where) in enumerate(steps):
        if kind == "mine":
            store.transaction(lambda doc, n=where, s=step: doc["tasks"][n % len(doc["tasks"])].update(notes=f"m{s}"))
        elif kind == "mine-edit":

            def change(draft: Any, n: int = where, s: int = step) -> None:
                raw = draft.task(draft.ids()[n % len(draft.ids())])
                raw["status"] = "ready" if raw["status"] != "ready" else "odd"
                raw["notes"] = f"e{s}"

            store.edit(change)
        elif kind == "theirs":
            other.transaction(lambda doc, n=where, s=step: doc["tasks"][n % len(doc["tasks"])].update(notes=f"t{s}"))
        elif kind == "add":
            other.transaction(lambda doc, s=step: doc["tasks"].append({"id": f"A{s}", "status": "ready"}))
        else:  # a same-size rewrite in place, its times put back: only the bytes tell
            info = os.stat(queue)
            text = queue.read_bytes()
            at = text.find(b'"notes": "', (where * 997) % len(text))
            if at < 0:
                continue
            at += len(b'"notes": "')
            flipped = text[:at] + (b"X" if text[at : at + 1] != b"X" else b"Y") + text[at + 1 :]
            with open(queue, "r+b") as handle:
                handle.write(flipped)
            os.utime(queue, ns=(info.st_atime_ns, info.st_mtime_ns))
        mine, fresh = store.read(), QueueStore(queue, workflow=workflow, parse_retry=0).read()
        assert mine.data == fresh.data
        assert mine.tasks == fresh.tasks
        assert (mine.errors, mine.warnings) == (fresh.errors, fresh.warnings)


def test_passes_with_outside_saves_between_them_never_compare_the_task_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon-like passes (an edit of two tasks) with saves by another process between them, each read: the decoder
    tells every per-task cache which tasks changed, so none of them compares the lists of 2,000 tasks."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks = [{"id": f"T{n}", "status": "done", "notes": "n"} for n in range(2000)]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    store = QueueStore(queue, parse_retry=0)
    other = QueueStore(queue, parse_retry=0)
    compared: list[int] = []
    differing = derived.differing

    def spy(old: list[Any], new: list[Any]) -> list[int]:
        compared.append(len(new))
        return differing(old, new)

    for step in range(4):
        if step == 2:
            monkeypatch.setattr(derived, "differing", spy)
        for save in range(2):  # (two saves, each read before the next pass)
            other.edit(lambda draft, s=step, n=save: draft.task(f"T{s}").update(notes=f"saved {s} {n}"))
            assert store.read().data["tasks"][step]["notes"] == f"saved {step} {save}"
        store.edit(lambda draft, s=step: [draft.task(f"T{1000 + k}").update(status="ready") for k in (s, s + 1)])
    assert compared == []
