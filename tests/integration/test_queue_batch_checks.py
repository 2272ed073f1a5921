"""A read that parses many tasks anew has jsonschema-rs judge them in lists, with the same findings as one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentd import schema
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
