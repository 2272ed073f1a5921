"""A read that parses many tasks anew has jsonschema-rs judge them in lists, with the same findings as one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentd import schema
from agentd.errors import QueueInvalid
from agentd.store.file.queuefile import QueueStore


def tasks(tag: str, count: int) -> list[dict[str, Any]]:
    """``count`` valid tasks whose text no earlier test made (the process remembers valid texts)."""
    return [{"id": f"F{n:05d}", "title": f"{tag} {n}", "type": "Build", "status": "done"} for n in range(count)]


def test_many_new_tasks_are_judged_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first read of 1,500 valid tasks judges none of them one by one (each was one call of the per-task checks,
    the first 500 by the slower stdlib checker)."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": tasks(tmp_path.name, 1500)}, indent=2))
    judged: list[Any] = []
    one_by_one = schema.first_error

    def counted(instance: Any, name: Any) -> Any:
        if name == "task":
            judged.append(instance)
        return one_by_one(instance, name)

    monkeypatch.setattr(schema, "first_error", counted)
    snapshot = QueueStore(queue).read()
    assert snapshot.errors == [] and len(snapshot.tasks) == 1500
    assert judged == []


def test_judged_together_or_one_by_one_the_findings_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad tasks spread over several lists (a schema violation, a bad id, a lone surrogate, a bad subtask): the
    findings, and so the quarantine, are those of the checks one by one; the good tasks of a list with a bad one are
    judged one by one, the others together."""
    many = tasks(tmp_path.name, 3000)
    many[5]["status"] = 7
    many[1100]["id"] = "bad id"
    many[1101]["title"] = "\ud800 half"
    many[2500]["subtasks"] = [{"id": "S1", "title": "sub", "status": ["no"]}]
    text = json.dumps({"tasks": many}, indent=2)  # (the lone surrogate written as an escape)

    def findings(folder: str) -> list[Any]:
        queue = tmp_path / folder / "SPRINT_QUEUE.json"
        queue.parent.mkdir()
        queue.write_text(text)
        snapshot = QueueStore(queue).read()
        return sorted((f.path, f.message, f.code, f.task) for f in snapshot.errors)

    together = findings("together")
    schema._VALID_TASKS.clear()  # (the texts found valid above: judged again)
    monkeypatch.setattr(schema, "TASKS_BATCH_FROM", 10**9)
    apart = findings("apart")
    assert together == apart
    assert {task for *_, task in together} == {"F00005", "bad id", "F01101", "S1"}


def test_a_task_a_write_changes_is_judged_once_not_again_by_the_next_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write judges the tasks it changes before it writes them; the read that follows (the state the store's
    next transaction starts from) takes their new texts as valid without judging them again. A task with subtasks,
    judged entry by entry, is judged again as a whole."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    many = tasks(tmp_path.name, 20)
    many[3]["subtasks"] = [{"id": "S1", "title": "sub", "status": "ready"}]
    queue.write_text(json.dumps({"tasks": many}, indent=2))
    store = QueueStore(queue)
    store.read()
    judged: list[Any] = []
    one_by_one = schema.first_error

    def counted(instance: Any, name: Any) -> Any:
        if name == "task":
            judged.append(instance.get("id"))
        return one_by_one(instance, name)

    monkeypatch.setattr(schema, "first_error", counted)

    def change(doc: dict[str, Any]) -> None:
        doc["tasks"][7]["status"] = "in_progress"
        doc["tasks"][3]["subtasks"][0]["status"] = "done"

    store.transaction(change)
    assert sorted(judged) == ["F00003", "F00007", "S1"]  # (the write's; F00003 again, whole, by the read)
    judged.clear()
    after = store.read()
    assert judged == [] and after.errors == []
    assert after.task("F00007")["status"] == "in_progress"
    text = json.dumps(after.data["tasks"][7], indent=2).replace("\n", "\n    ")
    assert text in schema.VALID_TASKS


def test_an_invalid_change_is_still_refused_and_remembers_nothing(tmp_path: Path) -> None:
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": tasks(tmp_path.name, 5)}, indent=2))
    before = queue.read_bytes()
    store = QueueStore(queue)
    with pytest.raises(QueueInvalid, match=r"refusing to write"):
        store.transaction(lambda doc: doc["tasks"][2].update(status=["not", "a", "status"]))
    assert queue.read_bytes() == before
    assert not any('"not"' in text for text in schema.VALID_TASKS)


def test_a_write_that_cures_a_quarantined_task_leaves_it_valid_in_the_file_and_to_the_next_read(
    tmp_path: Path,
) -> None:
    """A quarantined task whose priority reads `true` (no integer), given priority 1 by a write that also changes its
    status: the text now reads 1, and the next read, which takes the write's verdict, finds the task valid, as a
    fresh read of the file does."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    many = tasks(tmp_path.name, 4)
    many[2]["priority"] = True
    queue.write_text(json.dumps({"tasks": many}, indent=2))
    store = QueueStore(queue)
    assert "F00002" in store.read().quarantined

    def change(doc: dict[str, Any]) -> None:
        doc["tasks"][2]["priority"] = 1
        doc["tasks"][2]["status"] = "ready"

    store.transaction(change)
    after = store.read()
    assert after.task("F00002") == {**many[2], "priority": 1, "status": "ready"}
    assert type(after.task("F00002")["priority"]) is int and '"priority": true' not in queue.read_text()
    assert after.quarantined == {} and QueueStore(queue).read().quarantined == {}


def test_the_same_task_is_the_same_json_not_only_equal_in_python() -> None:
    task = {"id": "T", "status": "done", "priority": 1}
    assert schema.same_task(task, dict(task))
    assert not schema.same_task(task, {**task, "priority": True})  # (True == 1)
    assert not schema.same_task(task, {**task, "priority": 1.0})  # (1 == 1.0)
    assert not schema.same_task(task, {"priority": 1, "status": "done", "id": "T"})  # (another order: another text)
    assert not schema.same_task(task, {**task, "status": "ready"})
    assert not schema.same_task(object(), object())
