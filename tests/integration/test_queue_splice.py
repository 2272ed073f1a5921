"""A write splices the changed text into the bytes read: the same file as editing the whole text, and it parses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentd.store.file import jsonedit
from agentd.store.file.queuefile import BOM, QueueStore

NOTES = st.text(max_size=12)  # any characters but lone surrogates: ASCII or not, quotes, backslashes, controls
CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("notes"), st.integers(0, 30), NOTES),
        st.tuples(st.just("add"), st.integers(0, 30), NOTES),
        st.tuples(st.just("remove"), st.integers(0, 30), st.just("")),
    ),
    min_size=1,
    max_size=4,
)


def change_of(changes: list[tuple[str, int, str]], round_: int) -> Any:
    def change(doc: dict[str, Any]) -> None:
        tasks = doc["tasks"]
        for number, (kind, at, value) in enumerate(changes):
            if kind == "notes" and tasks:
                tasks[at % len(tasks)]["notes"] = value
            elif kind == "add":
                tasks.append({"id": f"N{round_}-{number}", "title": value or "t", "type": "Build", "status": "ready"})
            elif kind == "remove" and len(tasks) > 1:
                del tasks[at % len(tasks)]

    return change


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    notes=st.lists(NOTES, min_size=1, max_size=8),
    bom=st.booleans(),
    indent=st.sampled_from([2, 4, None]),
    ascii_only=st.booleans(),
    rounds=st.lists(CHANGES, min_size=1, max_size=4),
)
def test_a_spliced_write_is_the_whole_text_edited(
    notes: list[str],
    bom: bool,
    indent: int | None,
    ascii_only: bool,
    rounds: list[list[tuple[str, int, str]]],
    tmp_path_factory: Any,
) -> None:
    """Every write's bytes are those of the whole text edited by jsonedit.apply, json.loads of them is the new
    document, and the store's own next read (taken by stat, not read) equals a full parse of the file."""
    queue = Path(tmp_path_factory.mktemp("q")) / "SPRINT_QUEUE.json"
    tasks = [
        {"id": f"T{n}", "title": "t", "type": "Build", "status": "ready", "notes": text} for n, text in enumerate(notes)
    ]
    doc = {"tasks": tasks}
    queue.write_bytes(((BOM if bom else "") + json.dumps(doc, indent=indent, ensure_ascii=ascii_only)).encode())
    store = QueueStore(queue, parse_retry=0)
    for round_, changes in enumerate(rounds):
        before = queue.read_bytes().decode()
        prefix, text = (BOM, before[1:]) if before.startswith(BOM) else ("", before)
        old = json.loads(text)
        new = json.loads(text)
        change_of(changes, round_)(new)
        store.transaction(change_of(changes, round_))
        after = queue.read_bytes()
        assert after == (prefix + jsonedit.apply(text, old, new)).encode()
        assert json.loads(after.decode().removeprefix(BOM)) == new
        assert store.read().data == new


DRAFT_CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("notes"), st.integers(0, 30), NOTES),
        st.tuples(st.just("look"), st.integers(0, 30), NOTES),  # a task asked for and left as it was
        st.tuples(st.just("same"), st.integers(0, 30), NOTES),  # a task given the value it had
        st.tuples(st.just("sub"), st.integers(0, 30), NOTES),
        st.tuples(st.just("add"), st.integers(0, 30), NOTES),
        st.tuples(st.just("remove"), st.integers(0, 30), st.just("")),
    ),
    min_size=1,
    max_size=5,
)


def _plain(changes: list[tuple[str, int, str]], round_: int, doc: dict[str, Any]) -> None:
    """The changes of :func:`_drafted` made to a plain document."""
    tasks = doc["tasks"]
    for number, (kind, at, value) in enumerate(changes):
        if not tasks:
            return
        task = tasks[at % len(tasks)]
        if kind == "notes":
            task["notes"] = value
        elif kind == "sub":
            task.setdefault("subtasks", []).append({"id": f"S{round_}-{number}", "status": "ready"})
        elif kind == "add":
            tasks.append({"id": f"N{round_}-{number}", "title": value or "t", "type": "Build", "status": "ready"})
        elif kind == "remove" and len(tasks) > 1:
            tasks.remove(task)


def _drafted(changes: list[tuple[str, int, str]], round_: int) -> Any:
    """The same changes made through a Draft (tasks copied only when asked for)."""

    def change(draft: Any) -> None:
        for number, (kind, at, value) in enumerate(changes):
            tops = [task["id"] for task in draft.doc["tasks"]]
            if not tops:
                return
            top = tops[at % len(tops)]
            if kind == "notes":
                draft.task(top)["notes"] = value
            elif kind == "look":
                draft.task(top)
            elif kind == "same":
                task = draft.task(top)
                task["status"] = task["status"]
            elif kind == "sub":
                draft.add({"id": f"S{round_}-{number}", "status": "ready"}, parent=top)
            elif kind == "add":
                draft.add({"id": f"N{round_}-{number}", "title": value or "t", "type": "Build", "status": "ready"})
            elif kind == "remove" and len(tops) > 1:
                draft.remove(top)

    return change


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    notes=st.lists(NOTES, min_size=1, max_size=8),
    indent=st.sampled_from([2, None]),
    rounds=st.lists(DRAFT_CHANGES, min_size=1, max_size=4),
)
def test_a_drafted_write_is_the_whole_text_edited(
    notes: list[str], indent: int | None, rounds: list[list[tuple[str, int, str]]], tmp_path_factory: Any
) -> None:
    """Changes through a Draft (which tells the write the places of the tasks it copied, not compared): every write's
    bytes are those of the whole text edited by jsonedit.apply, and an unchanged document is not written."""
    queue = Path(tmp_path_factory.mktemp("q")) / "SPRINT_QUEUE.json"
    tasks = [
        {"id": f"T{n}", "title": "t", "type": "Build", "status": "ready", "notes": text} for n, text in enumerate(notes)
    ]
    queue.write_text(json.dumps({"tasks": tasks}, indent=indent, ensure_ascii=False), encoding="utf-8")
    store = QueueStore(queue, parse_retry=0)
    for round_, changes in enumerate(rounds):
        before = queue.read_bytes()
        identity = queue.stat().st_ino
        text = before.decode()
        old = json.loads(text)
        new = json.loads(text)
        _plain(changes, round_, new)
        store.edit(_drafted(changes, round_))
        after = queue.read_bytes()
        assert after == jsonedit.apply(text, old, new).encode()
        assert json.loads(after) == new
        if new == old:
            assert queue.stat().st_ino == identity  # (not written again)
        assert store.read().data == new
