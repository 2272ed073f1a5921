"""Tests for agentd.jsonedit: minimal-diff edits of a JSON document's text."""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentd.store.file.jsonedit import (
    Style,
    apply,
    detect_style,
    dumps,
    edits,
    first_non_ascii_escape,
    render,
    restyle,
)

# --- strategies ----------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()  # non-ASCII and control characters included
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=25,
)
indents = st.sampled_from([None, 2, 4, "\t"])


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """A value derived from ``value`` by changing, adding and removing parts of it at any depth."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            action = draw(st.sampled_from(["keep", "keep", "mutate", "drop"]))
            if action == "keep":
                out[key] = item
            elif action == "mutate":
                out[key] = draw(mutated(item))
        for key in draw(st.lists(st.text(max_size=4), max_size=2)):
            out[key] = draw(json_values)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for item in value:
            action = draw(st.sampled_from(["keep", "keep", "mutate", "drop", "insert"]))
            if action == "insert":
                items.append(draw(json_values))
            if action in ("keep", "insert"):
                items.append(item)
            elif action == "mutate":
                items.append(draw(mutated(item)))
        items.extend(draw(st.lists(json_values, max_size=2)))
        return items
    return draw(json_scalars) if draw(st.booleans()) else value


def document(value: Any, indent: int | str | None, ensure_ascii: bool, trailing_newline: bool) -> str:
    """``value`` as json.dumps writes it, with or without a final newline."""
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii) + ("\n" if trailing_newline else "")


def restyled(text: str, style: Style, trailing: str) -> str:
    """``text`` parsed and written again by json.dumps in ``style``."""
    return (
        json.dumps(
            json.loads(text),
            indent=style.indent,
            separators=(style.item_separator, style.key_separator),
            ensure_ascii=style.ensure_ascii,
        )
        + trailing
    )


def lines(text: str) -> list[str]:
    """The lines of ``text`` with their ends, split only at "\n" (as git does; not at U+0085 or U+2028)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def line_diff(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines (with their line ends) that difflib sees removed from ``before`` and added in ``after``."""
    a = lines(before)
    b = lines(after)
    removed: list[str] = []
    added: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def edited(value: Any, change: Callable[[Any], object]) -> Any:
    """A deep copy of ``value`` with ``change`` applied to it."""
    out = copy.deepcopy(value)
    change(out)
    return out


def scalar_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The paths to every scalar inside ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from scalar_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from scalar_paths(item, (*path, index))
    else:
        yield path


def set_path(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A deep copy of ``value`` with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    out = copy.deepcopy(value)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return out


def strictly_equal(a: Any, b: Any) -> bool:
    """JSON equality that tells 1, 1.0 and true apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and repr(a) == repr(b)


# --- properties ----------------------------------------------------------------------------------------------


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=json_values, new=json_values, indent=indents, ensure_ascii=st.booleans(), trailing_newline=st.booleans())
def test_roundtrip_independent_values(
    old: Any, new: Any, indent: int | str | None, ensure_ascii: bool, trailing_newline: bool
) -> None:
    """Any value can be turned into any other: json.loads of the result equals the new value."""
    text = document(old, indent, ensure_ascii, trailing_newline)
    result = apply(text, old, new)
    assert json.loads(result) == new
    assert result.endswith("\n") == trailing_newline


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), old=json_values, indent=indents, ensure_ascii=st.booleans(), trailing_newline=st.booleans())
def test_roundtrip_mutations_keep_the_document_style(
    data: st.DataObject, old: Any, indent: int | str | None, ensure_ascii: bool, trailing_newline: bool
) -> None:
    """Edits at any depth round-trip, both ways, and the result is written exactly as json.dumps would."""
    new = data.draw(mutated(old))
    text = document(old, indent, ensure_ascii, trailing_newline)
    result = apply(text, old, new)
    assert json.loads(result) == new
    trailing = "\n" if trailing_newline else ""
    assert result == restyled(result, detect_style(text), trailing)
    assert json.loads(apply(result, new, old)) == old


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), old=json_values, indent=st.sampled_from([2, 4, "\t"]))
def test_crlf_documents_stay_crlf(data: st.DataObject, old: Any, indent: int | str) -> None:
    """In a CRLF document every line break the edit writes is CRLF too."""
    new = data.draw(mutated(old))
    text = json.dumps(old, indent=indent).replace("\n", "\r\n") + "\r\n"
    result = apply(text, old, new)
    assert json.loads(result) == new
    if "\n" in text.rstrip():
        assert result.count("\n") == result.count("\r\n")


@settings(deadline=None)
@given(value=json_values, indent=indents, ensure_ascii=st.booleans(), trailing_newline=st.booleans())
def test_no_change_returns_the_text(
    value: Any, indent: int | str | None, ensure_ascii: bool, trailing_newline: bool
) -> None:
    """Applying a value to itself (or to an equal copy) leaves the text as it is."""
    text = document(value, indent, ensure_ascii, trailing_newline)
    assert apply(text, value, value) is text
    assert apply(text, value, copy.deepcopy(value)) == text


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), old=json_values, indent=st.sampled_from([2, 4, "\t"]), ensure_ascii=st.booleans())
def test_one_scalar_change_changes_one_line(
    data: st.DataObject, old: Any, indent: int | str, ensure_ascii: bool
) -> None:
    """Replacing any one scalar with another scalar in a multi-line document changes exactly its line."""
    paths = list(scalar_paths(old))
    assume(paths)
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(json_scalars)
    before = old
    for step in path:
        before = before[step]
    assume(before != replacement)  # a kind-only change (1 -> true) is == and may be left (a known limitation)
    new = set_path(old, path, replacement)
    text = json.dumps(old, indent=indent, ensure_ascii=ensure_ascii) + "\n"
    result = apply(text, old, new)
    assert json.loads(result) == new
    assert strictly_equal(json.loads(result), new)
    removed, added = line_diff(text, result)
    assert len(removed) == 1
    assert len(added) == 1


@st.composite
def spliced(draw: st.DrawFn, old: list[Any]) -> list[Any]:
    """``old`` with a slice replaced by new items (up to 40) and a few items changed."""
    i = draw(st.integers(0, len(old)))
    j = draw(st.integers(i, min(len(old), i + draw(st.integers(0, 30)))))
    new = old[:i] + draw(st.lists(json_scalars, max_size=40)) + old[j:]
    for _ in range(draw(st.integers(0, 3))):
        if new:
            new[draw(st.integers(0, len(new) - 1))] = draw(json_scalars)
    return new


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), old=st.lists(st.integers(0, 3) | st.text(max_size=1), max_size=80), indent=indents)
def test_long_lists_are_aligned(data: st.DataObject, old: list[Any], indent: int | str | None) -> None:
    """Long lists with repeated items, spliced and edited, round-trip and keep the json.dumps layout."""
    new = data.draw(spliced(old))
    text = json.dumps(old, indent=indent) + "\n"
    result = apply(text, old, new)
    assert json.loads(result) == new
    assert result == restyled(result, detect_style(text), "\n")
    assert json.loads(apply(result, new, old)) == old


def test_far_resync_in_a_long_list_keeps_other_lines() -> None:
    """A block of inserted items longer than the look-ahead, a removal and a change still touch only themselves."""
    old = [f"item {k}" for k in range(100)]
    new = old[:10] + [f"new {k}" for k in range(30)] + old[10:50] + old[51:]
    new[90] = "changed"  # was "item 61"
    text = json.dumps(old, indent=2) + "\n"
    result = apply(text, old, new)
    assert result == json.dumps(new, indent=2) + "\n"
    removed, added = line_diff(text, result)
    assert sorted(line.strip() for line in removed) == ['"item 50",', '"item 61",']
    assert len(added) == 31


# --- a realistic queue ---------------------------------------------------------------------------------------

QUEUE: dict[str, Any] = {
    "sprint": 7,
    "status": "in_progress",
    "sprint_id": "SPRINT-2025-007",
    "wip_limits": {"planner": 1, "builder": 3, "tester": 2, "refiner": 1, "integrator": 1},
    "tasks": [
        {
            "id": "T001",
            "title": "Lease store \u2192 fencing tokens",
            "type": "Story",
            "complexity": "M",
            "status": "in_progress",
            "priority": 1,
            "agent": "builder",
            "lease": {"owner": "builder-1", "token": 41, "acquired": "2025-10-03T09:15:00+02:00", "ttl": 1800},
            "dependencies": [],
            "objective": "SPRINT-2025-007",
            "sprint": "7",
            "subtasks": [
                {
                    "id": "T001-B01",
                    "title": "Steps 1\u20133: schema and store",
                    "status": "done",
                    "priority": 1,
                    "agent": None,
                    "lease": None,
                    "dependencies": [],
                },
                {
                    "id": "T001-B02",
                    "title": "Step 4: fencing \u2014 reject stale tokens",
                    "status": "blocked",
                    "priority": 2,
                    "agent": None,
                    "lease": None,
                    "dependencies": ["T001-B01"],
                },
            ],
        },
        {
            "id": "T002",
            "title": "Training memory profile",
            "type": "Infra",
            "complexity": "L",
            "status": "ready",
            "priority": 2,
            "agent": None,
            "lease": None,
            "dependencies": ["T001"],
            "objective": "SPRINT-2025-007",
            "sprint": "7",
            "notes": "\U0001f389 Memory \u226416GB, caf\u00e9 \u2705",
            "estimate_hours": 1.5,
        },
        {
            "id": "T003",
            "title": "Planner prompt review",
            "type": "Story",
            "complexity": "S",
            "status": "needs_plan",
            "priority": 3,
            "agent": None,
            "lease": None,
            "dependencies": [],
            "objective": "SPRINT-2025-007",
            "sprint": "7",
        },
        {
            "id": "T004",
            "title": "Release notes",
            "type": "Docs",
            "complexity": "S",
            "status": "done",
            "priority": 4,
            "agent": "integrator",
            "lease": None,
            "dependencies": ["T002", "T003"],
            "objective": "SPRINT-2025-007",
            "sprint": "7",
        },
    ],
    "metadata": {"created": "2025-10-01T08:00:00Z", "updated_by": "planner", "owner": "J\u00fcrgen"},
}

# 2-space indent with \uXXXX escapes and a final newline; 4-space indent with literal UTF-8 and none.
ESCAPED = json.dumps(QUEUE, indent=2) + "\n"
LITERAL = json.dumps(QUEUE, indent=4, ensure_ascii=False)


@pytest.fixture(params=["escaped", "literal"])
def queue_text(request: pytest.FixtureRequest) -> str:
    """The realistic queue, in either of its two styles."""
    return ESCAPED if request.param == "escaped" else LITERAL


def canonical(value: Any, text: str) -> str:
    """``value`` as json.dumps writes it in the (json.dumps) style of ``text``, final newline included."""
    style = detect_style(text)
    return json.dumps(value, indent=style.indent, ensure_ascii=style.ensure_ascii) + "\n" * text.endswith("\n")


def edit(text: str, change: Callable[[Any], object]) -> tuple[str, Any]:
    """``text`` edited by ``change`` (applied to its parsed value), and the expected value."""
    old = json.loads(text)
    new = edited(old, change)
    result = apply(text, old, new)
    assert json.loads(result) == new
    return result, new


def test_fixture_texts_have_the_intended_styles() -> None:
    """The two queue texts differ in indentation, escaping and final newline, as the tests need."""
    assert "\\u2192" in ESCAPED
    assert ESCAPED.isascii()
    assert "\u2192" in LITERAL
    assert not LITERAL.endswith("\n")
    assert detect_style(ESCAPED) == Style(
        indent="  ", item_separator=",", key_separator=": ", ensure_ascii=True, newline="\n"
    )
    assert detect_style(LITERAL) == Style(
        indent="    ", item_separator=",", key_separator=": ", ensure_ascii=False, newline="\n"
    )


def test_status_change_changes_one_line(queue_text: str) -> None:
    """Changing one task's status shows in difflib as that one line removed and added."""
    result, _ = edit(queue_text, lambda q: q["tasks"][2].update(status="planning"))
    removed, added = line_diff(queue_text, result)
    assert [line.strip() for line in removed] == ['"status": "needs_plan",']
    assert [line.strip() for line in added] == ['"status": "planning",']
    assert removed[0].replace("needs_plan", "planning") == added[0]
    assert result.endswith("\n") == queue_text.endswith("\n")


def test_nested_subtask_status_change_changes_one_line(queue_text: str) -> None:
    """A task nested under "subtasks" is edited in place too."""
    result, _ = edit(queue_text, lambda q: q["tasks"][0]["subtasks"][1].update(status="ready"))
    removed, added = line_diff(queue_text, result)
    assert [line.strip() for line in removed] == ['"status": "blocked",']
    assert [line.strip() for line in added] == ['"status": "ready",']


def test_lease_set_and_cleared(queue_text: str) -> None:
    """Setting a null lease writes an indented object in its place; clearing it restores the text exactly."""
    lease = {"owner": "tester-2", "token": 7, "expires": "2025-10-05T10:00:00Z"}
    result, new = edit(queue_text, lambda q: q["tasks"][1].update(lease=lease))
    removed, added = line_diff(queue_text, result)
    assert [line.strip() for line in removed] == ['"lease": null,']
    assert added[0].strip() == '"lease": {'
    assert added[-1].strip() == "},"
    indent = detect_style(queue_text).indent
    assert indent is not None
    lease_line_indent = added[0][: len(added[0]) - len(added[0].lstrip())]
    assert added[1].startswith(lease_line_indent + indent + '"owner"')
    assert added[-1].startswith(lease_line_indent + "}")
    back = apply(result, new, json.loads(queue_text))
    assert back == queue_text


def test_add_key_to_task(queue_text: str) -> None:
    """A new key appears as new lines only; the previous last member just gains a comma."""
    result, _ = edit(queue_text, lambda q: q["tasks"][2].update(branch="feat/T003", tags=["a", "b"]))
    removed, added = line_diff(queue_text, result)
    assert [line.strip() for line in removed] == ['"sprint": "7"']
    assert added[0] == removed[0].rstrip("\n") + ",\n"
    assert added[1].strip() == '"branch": "feat/T003",'
    assert (
        added[1][: len(added[1]) - len(added[1].lstrip())] == removed[0][: len(removed[0]) - len(removed[0].lstrip())]
    )
    assert [line.strip() for line in added[2:]] == ['"tags": [', '"a",', '"b"', "]"]


def test_add_key_to_empty_object() -> None:
    """A key added to an empty object is indented one unit deeper than the object's line."""
    old = {"tasks": [{"id": "A", "meta": {}}]}
    text = json.dumps(old, indent=2)
    new = edited(old, lambda q: q["tasks"][0]["meta"].update(k=1))
    assert apply(text, old, new) == json.dumps(new, indent=2)


def test_remove_key(queue_text: str) -> None:
    """Removing a middle key removes just its line; removing the last key also drops the comma before it."""
    result, _ = edit(queue_text, lambda q: q["tasks"][1].pop("agent"))
    removed, added = line_diff(queue_text, result)
    assert [line.strip() for line in removed] == ['"agent": null,']
    assert added == []
    result, _ = edit(queue_text, lambda q: q["tasks"][1].pop("estimate_hours"))
    removed, added = line_diff(queue_text, result)
    assert len(removed) == 2
    assert removed[0].strip().startswith('"notes": ')
    assert removed[1].strip() == '"estimate_hours": 1.5'
    assert added == [removed[0].replace(",\n", "\n")]


def test_remove_multi_line_member_leaves_no_blank_line(queue_text: str) -> None:
    """Removing an object-valued member removes all its lines and nothing else."""
    result, _ = edit(queue_text, lambda q: q["tasks"][0].pop("lease"))
    removed, added = line_diff(queue_text, result)
    assert removed[0].strip() == '"lease": {'
    assert removed[-1].strip() == "},"
    assert added == []
    assert "\n\n" not in result


def test_append_task(queue_text: str) -> None:
    """Appending a task inserts its lines after the last task, whose closing brace just gains a comma."""
    task: dict[str, Any] = {
        "id": "T005",
        "title": "Retro \u2192 notes",
        "status": "needs_plan",
        "lease": None,
        "dependencies": [],
    }
    result, new = edit(queue_text, lambda q: q["tasks"].append(task))
    last_brace = queue_text.rindex("}", 0, queue_text.rindex("]", 0, queue_text.index('"metadata"'))) + 1
    tail = queue_text[last_brace:]
    assert result.startswith(queue_text[:last_brace])
    assert result.endswith(tail)
    inserted = result[last_brace : len(result) - len(tail)]
    indent = detect_style(queue_text).indent
    assert indent is not None
    assert inserted.startswith(",\n" + indent * 2 + "{\n" + indent * 3 + '"id": "T005",\n')
    assert inserted.endswith("\n" + indent * 2 + "}")
    removed, added = line_diff(queue_text, result)
    assert len(added) - len(removed) == json.dumps(task, indent=indent).count("\n") + 1
    assert result == canonical(new, queue_text)


def test_remove_task_from_middle(queue_text: str) -> None:
    """Removing a task in the middle removes exactly its lines."""
    old = json.loads(queue_text)
    result, _ = edit(queue_text, lambda q: q["tasks"].pop(1))
    removed, added = line_diff(queue_text, result)
    assert added == []
    task_text = json.dumps(old["tasks"][1], indent=detect_style(queue_text).indent, ensure_ascii=queue_text.isascii())
    assert len(removed) == task_text.count("\n") + 1


def test_remove_insert_and_change_in_one_list(queue_text: str) -> None:
    """Several edits in one list (remove, change, append) each touch only their own lines."""

    def change(q: Any) -> None:
        q["tasks"].pop(1)
        q["tasks"][1]["status"] = "planning"  # was tasks[2]
        q["tasks"].append({"id": "T005"})

    old = json.loads(queue_text)
    result, new = edit(queue_text, change)
    assert result == canonical(new, queue_text)  # so every line not edited is as it was
    removed, added = line_diff(queue_text, result)
    task_lines = json.dumps(old["tasks"][1], indent=detect_style(queue_text).indent).count("\n") + 1
    assert len(removed) - len(added) == task_lines + 1 - 4  # task and status line out; status, "}," "{" id "}" in
    assert '"status": "planning",' in [line.strip() for line in added]


def test_unchanged_escapes_and_utf8_survive(queue_text: str) -> None:
    """Strings that did not change keep their escapes or literal characters byte-for-byte."""

    def change(q: Any) -> None:
        q["tasks"][1]["status"] = "in_progress"
        q["tasks"][1]["title"] = "Training memory profile \u2192 done"
        q["metadata"]["owner"] = "Ren\u00e9e"

    result, _ = edit(queue_text, change)
    if queue_text == ESCAPED:
        assert "\\ud83c\\udf89 Memory \\u226416GB, caf\\u00e9 \\u2705" in result
        assert '"Training memory profile \\u2192 done"' in result
        assert '"Ren\\u00e9e"' in result
        assert result.isascii()
    else:
        assert "\U0001f389 Memory ≤16GB, café ✅" in result
        assert '"Training memory profile → done"' in result
        assert '"Renée"' in result
    removed, added = line_diff(queue_text, result)
    assert len(removed) == len(added) == 3


def test_untouched_number_formatting_survives() -> None:
    """Numbers that did not change keep their spelling (1.50, 1E3, -0), even next to a changed one."""
    text = '{\n  "a": 1.50,\n  "b": 1E3,\n  "c": -0,\n  "d": 2\n}\n'
    old = json.loads(text)
    result = apply(text, old, {**old, "d": 3})
    assert result == '{\n  "a": 1.50,\n  "b": 1E3,\n  "c": -0,\n  "d": 3\n}\n'


def test_crlf_queue_keeps_crlf() -> None:
    """Status changes, new keys and new tasks in a CRLF queue use CRLF and change only their lines."""
    text = ESCAPED.replace("\n", "\r\n")
    assert detect_style(text).newline == "\r\n"
    result, _ = edit(text, lambda q: q["tasks"][0].update(status="awaiting_test"))
    removed, added = line_diff(text, result)
    assert [line for line in removed] == ['      "status": "in_progress",\r\n']
    assert [line for line in added] == ['      "status": "awaiting_test",\r\n']

    def change(q: Any) -> None:
        q["tasks"][3]["commit"] = "abc123"
        q["tasks"].append({"id": "T005", "lease": {"owner": "x"}})
        q["wip_limits"] = {}

    result, _ = edit(text, change)
    assert result.count("\n") == result.count("\r\n")
    assert result.endswith("}\r\n")


def test_duplicate_keys_edit_the_last_occurrence() -> None:
    """With a key written twice, the last occurrence (the one json.loads uses) is edited; removal removes both."""
    text = '{\n  "status": "ready",\n  "id": "T1",\n  "status": "blocked"\n}\n'
    old = json.loads(text)
    assert old == {"status": "blocked", "id": "T1"}
    result = apply(text, old, {"status": "done", "id": "T1"})
    assert result == '{\n  "status": "ready",\n  "id": "T1",\n  "status": "done"\n}\n'
    assert json.loads(result) == {"status": "done", "id": "T1"}
    result = apply(text, old, {"id": "T1"})
    assert result == '{\n  "id": "T1"\n}\n'


def test_compact_document_stays_on_one_line() -> None:
    """Values inserted into a one-line document are written compactly, in its separators."""
    old: dict[str, Any] = {"tasks": [{"id": "A", "lease": None, "deps": []}]}
    for separators in ((", ", ": "), (",", ":")):
        text = json.dumps(old, separators=separators)

        def change(q: Any) -> None:
            q["tasks"][0]["lease"] = {"owner": "b", "ttl": [1, 2]}
            q["tasks"][0]["deps"].append("Z")
            q["tasks"].append({"id": "B"})
            q["extra"] = {"k": None}

        new = edited(old, change)
        result = apply(text, old, new)
        assert result == json.dumps(new, separators=separators)


def test_inline_containers_in_a_pretty_document_stay_inline() -> None:
    """Hand-written one-line lists and objects inside a multi-line document get one-line additions."""
    text = '{\n  "deps": ["A", "B"],\n  "lease": {"owner": "x"},\n  "one": [1]\n}\n'
    old = json.loads(text)

    def change(q: Any) -> None:
        q["deps"].append("C")
        q["lease"]["ttl"] = {"s": 60}
        q["one"].append({"k": [2]})

    result = apply(text, old, edited(old, change))
    assert result == (
        '{\n  "deps": ["A", "B", "C"],\n  "lease": {"owner": "x", "ttl": {"s": 60}},\n  "one": [1, {"k": [2]}]\n}\n'
    )


def test_list_edges_and_empty_lists() -> None:
    """Items inserted at the start, removed to empty and added to an empty list are laid out like json.dumps."""
    old = {"a": [1, 2, 3], "b": [], "c": [4]}
    text = json.dumps(old, indent=2)
    for new in (
        {"a": [0, 1, 2, 3], "b": [], "c": [4]},
        {"a": [2, 3], "b": [{"x": 1}], "c": []},
        {"a": [1, 9, 3], "b": ["y", "z"], "c": [4, 5]},
        {"a": [], "b": [], "c": [5, 4]},
    ):
        assert apply(text, old, new) == json.dumps(new, indent=2)


def test_kind_changes_are_written() -> None:
    """A scalar compared directly is rewritten when only its JSON kind changes (1, 1.0, true, -0.0)."""
    text = '{"a": 1, "b": 0.0, "c": [1], "d": 0}'
    old = json.loads(text)
    assert apply(text, old, {**old, "a": True, "d": 1}) == '{"a": true, "b": 0.0, "c": [1], "d": 1}'
    assert apply(text, old, {**old, "a": 1.0, "b": -0.0, "d": 1}) == '{"a": 1.0, "b": -0.0, "c": [1], "d": 1}'
    assert apply(text, old, {**old, "c": [1.0, 2]}) == '{"a": 1, "b": 0.0, "c": [1.0, 2], "d": 0}'
    assert apply(text, old, {**old, "c": {"1": 1}}) == '{"a": 1, "b": 0.0, "c": {"1": 1}, "d": 0}'


def test_kind_only_change_inside_an_equal_container_is_not_written() -> None:
    """Documented limitation: containers compare with Python ==, so 1 -> true alone leaves the text (still ==)."""
    text = '{"a": 1, "c": [1]}'
    old = json.loads(text)
    new = {"a": True, "c": [1.0]}
    assert apply(text, old, new) is text
    assert json.loads(text) == new


def test_whole_document_replaced() -> None:
    """A root of another kind replaces the whole value and keeps the surrounding whitespace."""
    assert apply("  [1, 2]\n", [1, 2], {"a": 1}) == '  {"a": 1}\n'
    assert apply("null", None, "x") == '"x"'


def test_mismatched_old_value_is_refused() -> None:
    """Text that visibly does not hold ``old`` raises ValueError instead of producing a wrong document."""
    with pytest.raises(ValueError, match="expected an object"):
        apply("[1]", {"a": 1}, {"a": 2})
    with pytest.raises(ValueError, match="not in the old value"):
        apply('{"b": 1}', {"a": 1}, {"a": 2})
    with pytest.raises(ValueError, match="keys of the old value"):
        apply('{"a": 1}', {"a": 1, "b": 2}, {"a": 2, "b": 2})
    with pytest.raises(ValueError, match="items"):
        apply("[1, 2]", [1], [3])
    with pytest.raises(ValueError, match="extra data"):
        apply('{"a": 1} x', {"a": 1}, {"a": 2})
    with pytest.raises(ValueError, match="has 1 items, the old value 2"):
        apply("[1]", [1, 2], [1, 3])
    with pytest.raises(ValueError, match="expected a JSON value"):
        apply('{"a": x, "b": 1}', {"a": 1, "b": 1}, {"a": 1, "b": 2})


def test_nan_equals_nan() -> None:
    """A NaN that is still NaN is left as written, even when the two values hold different NaN objects."""
    text = '[NaN, 1, {"x": NaN}]'
    old = json.loads(text)
    assert apply(text, old, json.loads('[NaN, 2, {"x": NaN}]')) == '[NaN, 2, {"x": NaN}]'


def test_non_string_keys_are_refused() -> None:
    """A new key that is not a string would not round-trip, so it is refused."""
    with pytest.raises(TypeError, match="keys must be str"):
        apply("{}", {}, {1: "x"})


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, Style(None, ", ", ": ", False, "\n")),
        ({"separators": (",", ":")}, Style(None, ",", ":", False, "\n")),
        ({"indent": 2}, Style("  ", ",", ": ", False, "\n")),
        ({"indent": 4, "ensure_ascii": False}, Style("    ", ",", ": ", False, "\n")),
        ({"indent": "\t"}, Style("\t", ",", ": ", True, "\n")),
        ({"indent": 2, "separators": (", ", ": ")}, Style("  ", ", ", ": ", False, "\n")),
    ],
)
def test_detect_style(kwargs: dict[str, Any], expected: Style) -> None:
    """Indentation, separators and escaping are read from the document."""
    value: Any = {"a": [1, "x, y: z"], "b": {"c": None}}
    if kwargs.get("indent") == "\t":
        value["d"] = "caf\u00e9"
    assert detect_style(json.dumps(value, **kwargs)) == expected


def test_detect_style_escapes() -> None:
    """Only a real \\u escape of a non-ASCII character makes the style escaped, and literal text wins."""
    assert detect_style(json.dumps({"a": "\u00e9"})).ensure_ascii
    assert not detect_style(json.dumps({"a": "\u00e9"}, ensure_ascii=False)).ensure_ascii
    assert not detect_style(json.dumps({"a": "\x1b\n"})).ensure_ascii  # ASCII control escapes only
    assert detect_style(json.dumps({"a": "\x7f"})).ensure_ascii  # only ensure_ascii=True escapes DEL
    assert not detect_style(json.dumps({"a": "C:\\u00e9"})).ensure_ascii  # an escaped backslash, then "u00e9"
    assert not detect_style('{"a": "\\u00e9", "b": "é"}').ensure_ascii
    assert detect_style('{"a": 1}\n').newline == "\n"
    assert detect_style('{"a": 1}\r\n').newline == "\r\n"
    assert detect_style('{\r\n  "a": 1\r\n}').newline == "\r\n"


def test_dumps_indents_continuation_lines() -> None:
    """dumps writes the document's style and prefixes every line after the first."""
    style = Style(indent="  ", item_separator=",", key_separator=": ", ensure_ascii=True, newline="\n")
    assert dumps({"a": [1]}, style, "    ") == '{\n      "a": [\n        1\n      ]\n    }'
    assert dumps({"a": 1}, style, "", 1) == '{\n    "a": 1\n  }'
    assert dumps("\u00e9\n", style) == '"\\u00e9\\n"'
    crlf = Style(indent="\t", item_separator=",", key_separator=":", ensure_ascii=False, newline="\r\n")
    assert dumps(["\u00e9"], crlf, "\t") == '[\r\n\t\t"\u00e9"\r\n\t]'
    compact = Style(indent=None, item_separator=",", key_separator=":", ensure_ascii=False, newline="\n")
    assert dumps({"a": [1, 2]}, compact, "    ") == '{"a":[1,2]}'


def test_large_queue_one_change() -> None:
    """A status change deep in a large queue changes one line and leaves every other byte alone."""
    tasks = [{"id": f"T{i:05d}", "status": "ready", "notes": "n \u2192 " * 5, "deps": [i - 1]} for i in range(3000)]
    old = {"sprint": 1, "tasks": tasks}
    text = json.dumps(old, indent=2) + "\n"
    new = edited(old, lambda q: q["tasks"][2222].update(status="done"))
    result = apply(text, old, new)
    assert result == json.dumps(new, indent=2) + "\n"
    assert len(result) == len(text) - 1  # "ready" -> "done"


# --- real queues ---------------------------------------------------------------------------------------------

SHARED = Path(__file__).resolve().parents[3] / "shared"  # ../shared beside the project root
REAL_QUEUE_DIR = SHARED / "fixtures" / "oodatcaa"
REAL_QUEUES = sorted(REAL_QUEUE_DIR.glob("*.json")) if REAL_QUEUE_DIR.is_dir() else []


def task_paths(tasks: list[Any], prefix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """The paths of every task (and task nested under "subtasks") that has a status."""
    for index, task in enumerate(tasks):
        if isinstance(task, dict):
            if "status" in task:
                yield (*prefix, index)
            if isinstance(task.get("subtasks"), list):
                yield from task_paths(task["subtasks"], (*prefix, index, "subtasks"))


@pytest.mark.fixtures
@pytest.mark.skipif(
    not REAL_QUEUES, reason=f"no real queues: {REAL_QUEUE_DIR} (read-only fixtures in ../shared) is absent or empty"
)
@pytest.mark.parametrize("path", REAL_QUEUES, ids=lambda p: p.name)
def test_real_queue_status_changes_change_one_line(path: Path) -> None:
    """In each real queue, changing any task's status (nested ones included) changes exactly one line."""
    text = path.read_text(encoding="utf-8")
    old = json.loads(text)
    paths = list(task_paths(old["tasks"], ("tasks",)))
    assert paths
    assert any("subtasks" in p for p in paths) or "78605cf" not in path.name
    for task_path in paths:
        task = old
        for step in task_path:
            task = task[step]
        status = "done" if task["status"] != "done" else "ready"
        new = set_path(old, (*task_path, "status"), status)
        result = apply(text, old, new)
        assert json.loads(result) == new
        removed, added = line_diff(text, result)
        assert len(removed) == len(added) == 1, task_path
        assert removed[0].replace(json.dumps(task["status"]), json.dumps(status)) == added[0]


_queue_tasks = st.lists(
    st.fixed_dictionaries(
        {"id": st.text("abc", min_size=1, max_size=2), "status": st.sampled_from(["ready", "done"])},
        optional={"x": json_values},
    ),
    min_size=1,
    max_size=8,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tasks=_queue_tasks, indent=indents)
def test_known_task_extents_give_the_same_edit(data: st.DataObject, tasks: list[Any], indent: int | str | None) -> None:
    """With the parse's task spans (the fast path over a queue's tasks) the edit is exactly the one made without."""
    from agentd.store.file.incremental import Decoder

    old = {"sprint": 1, "tasks": tasks}
    text = json.dumps(old, indent=indent)
    decoded = Decoder().decode(text)
    assume(decoded.pieces is not None)
    new = copy.deepcopy(old)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["change", "insert", "remove"]))
        if action == "change" and new["tasks"]:
            position = data.draw(st.integers(0, len(new["tasks"]) - 1))
            new["tasks"][position]["status"] = data.draw(st.sampled_from(["ready", "done", "in_progress"]))
        elif action == "insert":
            new["tasks"].insert(data.draw(st.integers(0, len(new["tasks"]))), {"id": "n", "status": "ready"})
        elif new["tasks"]:
            del new["tasks"][data.draw(st.integers(0, len(new["tasks"]) - 1))]
    edited = apply(text, old, new, decoded.spans)
    assert edited == apply(text, old, new)
    assert json.loads(edited) == new


# Strings made of the characters an escape is made of, so that escapes, escaped backslashes and their mixes appear.
_escapy = st.text(alphabet=st.sampled_from(["\\", "u", "0", "e", "9", "\u00e9", "\u2264", "a", '"']), max_size=8)
_escapy_values = st.recursive(
    json_scalars | _escapy,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_escapy, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), old=_escapy_values, indent=indents, ensure_ascii=st.booleans())
def test_the_style_told_from_the_edits_is_the_one_a_scan_finds(
    data: st.DataObject, old: Any, indent: int | str | None, ensure_ascii: bool
) -> None:
    """After edits, the style and the first non-ASCII escape told from the edits alone are those a scan finds."""
    text = document(old, indent, ensure_ascii, data.draw(st.booleans()))
    escape_at = first_non_ascii_escape(text)
    for _ in range(3):  # (a chain: each text's answer is the next one's start, as a store keeps it)
        new = data.draw(mutated(old))
        out = edits(text, old, new, style=detect_style(text))
        text = render(text, out)
        style, escape_at = restyle(escape_at, out, text)
        assert (style, escape_at) == (detect_style(text), first_non_ascii_escape(text))
        old = new


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    items=st.lists(json_values, min_size=1, max_size=12),
    indent=st.sampled_from([None, 2, "\t"]),
)
def test_edits_told_where_a_list_holds_other_objects_are_the_edits_found_by_looking(
    data: st.DataObject, items: list[Any], indent: int | str | None
) -> None:
    """A caller that says where a long list holds other objects (the places a Draft copied) gets the very edits
    found without being told, whether those objects changed or not."""
    old = {"tasks": items}
    text = json.dumps(old, indent=indent)
    new_items = list(items)
    places = sorted(data.draw(st.sets(st.integers(0, len(items) - 1), max_size=4)))
    for place in places:
        copied = copy.deepcopy(items[place])
        new_items[place] = data.draw(st.just(copied) | mutated(copied))
    new = {"tasks": new_items}
    told = edits(text, old, new, changed=(items, new_items, places))
    assert told == edits(text, old, new)
    assert apply(text, old, new) == render(text, told)


def _align_looking_everywhere(old: list[Any], new: list[Any], start: int, old_end: int, new_end: int) -> list[Any]:
    """jsonedit's greedy alignment as first written: every resync point within the lookahead is tried, inside the
    lists or not (the reference the bounded search must match)."""
    from agentd.store.file import jsonedit

    look = jsonedit._LOOKAHEAD
    blocks: list[tuple[int, int, int, int]] = []
    i, j = start, start
    budget = jsonedit._ALIGN_BUDGET
    while i < old_end and j < new_end:
        if jsonedit._same(old[i], new[j]):
            i, j = i + 1, j + 1
            continue
        found: tuple[int, int] | None = None
        for cost in range(1, 2 * look + 1):
            for di in sorted(range(max(0, cost - look), min(cost, look) + 1), key=lambda d: abs(2 * d - cost)):
                dj = cost - di
                if i + di < old_end and j + dj < new_end:
                    budget -= 1
                    if jsonedit._same(old[i + di], new[j + dj]):
                        found = (di, dj)
                        break
            if found is not None or budget <= 0:
                break
        if found is None:
            break
        blocks.append((i, i + found[0], j, j + found[1]))
        i, j = i + found[0], j + found[1]
    if i < old_end or j < new_end:
        if old_end - i == new_end - j or i == old_end or j == new_end:
            blocks.append((i, old_end, j, new_end))
        else:
            return [*blocks, ("difflib", i, j)]
    return blocks


@settings(max_examples=300, deadline=None)
@given(
    old=st.lists(st.integers(0, 3), max_size=45),
    new=st.lists(st.integers(0, 3), max_size=45),
    start=st.integers(0, 3),
)
def test_the_alignment_looks_only_inside_the_lists_and_finds_what_looking_everywhere_finds(
    old: list[int], new: list[int], start: int
) -> None:
    """The greedy alignment tries only the resync points inside both lists: the same blocks as trying them all."""
    from agentd.store.file import jsonedit

    start = min(start, len(old), len(new))
    expected = _align_looking_everywhere(old, new, start, len(old), len(new))
    got = jsonedit._align(old, new, start, len(old), len(new))
    if expected and expected[-1][0] == "difflib":  # (the rest by difflib: the greedy part must be the same)
        assert got[: len(expected) - 1] == expected[:-1]
    else:
        assert got == expected
