"""Tests for agentd.incremental: re-parsing a queue's text gives what json.loads gives, reusing unchanged tasks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.store.file import jsonedit
from agentd.store.file.incremental import Decoder, Spans
from tests.helpers.examples import examples

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
tasks = st.lists(
    st.fixed_dictionaries(
        {"id": st.text("abcdef", min_size=1, max_size=3), "status": st.sampled_from(["ready", "done"])},
        optional={"x": json_values, "subtasks": st.lists(st.fixed_dictionaries({"id": st.just("s")}), max_size=2)},
    )
    | json_values,  # a tasks list holds anything until validation says otherwise
    max_size=8,
)
indents = st.sampled_from([None, 0, 2, "\t"])


@st.composite
def edited(draw: st.DrawFn, items: list[Any]) -> list[Any]:
    """``items`` after changes, insertions, removals and moves, as people and agents make them."""
    out = list(items)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["change", "insert", "remove", "move", "copy"]))
        if action == "insert" or not out:
            out.insert(draw(st.integers(0, len(out))), draw(json_values))
        elif action == "copy":  # a task pasted twice: the texts before and after share more than they seem to
            out.insert(draw(st.integers(0, len(out))), out[draw(st.integers(0, len(out) - 1))])
        elif action == "change":
            position = draw(st.integers(0, len(out) - 1))
            item = out[position]
            changed = {**item, "status": draw(st.text(max_size=4))} if isinstance(item, dict) else draw(json_values)
            out[position] = changed
        elif action == "remove":
            out.pop(draw(st.integers(0, len(out) - 1)))
        else:
            out.insert(draw(st.integers(0, len(out) - 1)), out.pop(draw(st.integers(0, len(out) - 1))))
    return out


@settings(max_examples=examples(300, 100), deadline=None)
@given(data=st.data(), first=tasks, indent=indents, extra=st.dictionaries(st.text(max_size=4), json_values, max_size=3))
def test_a_sequence_of_edits_decodes_as_json_loads_does(
    data: st.DataObject, first: list[Any], indent: Any, extra: dict[str, Any]
) -> None:
    decoder = Decoder()
    current = first
    for _ in range(3):
        text = json.dumps({**extra, "tasks": current}, indent=data.draw(indents) if indent is not None else None)
        decoded = decoder.decode(text)
        assert decoded.data == json.loads(text)
        assert decoded.pieces is not None
        assert [piece.value for piece in decoded.pieces] == decoded.data["tasks"]
        current = data.draw(edited(current))


@settings(max_examples=examples(300, 100), deadline=None)
@given(
    data=st.data(),
    first=tasks,
    indent=indents,
    extra=st.dictionaries(st.text(max_size=4), json_values, max_size=2),
    later=st.dictionaries(st.text("xyz", min_size=1, max_size=2), json_values, max_size=2),
)
def test_the_spans_of_a_sequence_of_edits_are_those_of_a_fresh_parse(
    data: st.DataObject, first: list[Any], indent: Any, extra: dict[str, Any], later: dict[str, Any]
) -> None:
    """Where each task starts and ends (what the text editor relies on) is found anew or derived, never stale."""
    decoder = Decoder()
    current, after = first, later
    for _ in range(4):
        document = {**extra, "tasks": current, **{k: v for k, v in after.items() if k != "tasks"}}
        text = json.dumps(document, indent=data.draw(indents) if indent is not None else None)
        decoded, fresh = decoder.decode(text), Decoder().decode(text)
        assert decoded.data == json.loads(text)
        assert decoded.pieces is not None and fresh.pieces is not None
        assert decoded.spans == fresh.spans
        assert decoded.tasks_end == fresh.tasks_end
        assert [piece.text for piece in decoded.pieces] == [text[start:end] for start, end in decoded.spans.items()]
        assert [piece.value for piece in decoded.pieces] == decoded.data["tasks"]
        current = data.draw(edited(current))
        if data.draw(st.booleans()):
            after = {**after, "x": data.draw(json_values)}


def test_an_edit_in_the_middle_takes_the_tasks_after_it_as_they_were() -> None:
    """One task changed in the middle of a large queue: the tasks after it are the earlier parse's, moved."""
    decoder = Decoder()
    items = [{"id": f"T{i}", "status": "done", "notes": "x" * 50} for i in range(1000)]
    first = decoder.decode(json.dumps({"tasks": items, "after": 1}, indent=2))
    items[500] = {**items[500], "notes": "a longer note than before"}
    text = json.dumps({"tasks": items, "after": 1}, indent=2)
    second = decoder.decode(text)
    assert first.pieces is not None and second.pieces is not None
    assert second.data == json.loads(text)
    assert second.reused == 999
    assert all(a is b for a, b in zip(first.pieces[501:], second.pieces[501:], strict=True))
    assert second.spans == Decoder().decode(text).spans


@settings(max_examples=examples(300, 100), deadline=None)
@given(before=st.text(max_size=60), after=st.text(max_size=60))
def test_any_text_decodes_or_fails_exactly_as_json_loads(before: str, after: str) -> None:
    decoder = Decoder()
    for text in (before, after, '{"tasks": [' + before + "]}", '{"tasks": [' + after + "]}"):
        assert outcome(decoder.decode, text) == outcome(json.loads, text)


def outcome(decode: Any, text: str) -> tuple[str, Any]:
    """What decoding gives: the document, or the error's type and message."""
    try:
        result = decode(text)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)
    return "ok", getattr(result, "data", result)


def test_unchanged_tasks_are_reused_not_parsed_again() -> None:
    decoder = Decoder()
    items = [{"id": f"T{i}", "status": "ready", "notes": "x" * 50} for i in range(100)]
    first = decoder.decode(json.dumps({"wip_limits": {}, "tasks": items}, indent=2))
    items[40] = {**items[40], "status": "done"}
    items.insert(70, {"id": "NEW", "status": "ready"})
    del items[10]
    second = decoder.decode(json.dumps({"wip_limits": {}, "tasks": items}, indent=2))
    assert second.data["tasks"] == items
    assert second.reused == 98  # every task but the changed one and the new one
    assert first.pieces is not None and second.pieces is not None
    assert second.pieces[0] is first.pieces[0]
    assert second.pieces[-1] is first.pieces[-1]
    assert second.data["tasks"][-1] is first.data["tasks"][-1]  # shared, so a decoded document is read-only


def test_a_number_that_begins_with_an_earlier_one_is_not_mistaken_for_it() -> None:
    decoder = Decoder()
    assert decoder.decode('{"tasks": [1, {"a": 1}]}').data == {"tasks": [1, {"a": 1}]}
    assert decoder.decode('{"tasks": [12, {"a": 1}]}').data == {"tasks": [12, {"a": 1}]}
    assert decoder.decode('{"tasks": [{"a": 1}, {"a": 1}]}').data == {"tasks": [{"a": 1}, {"a": 1}]}
    assert decoder.decode('{"tasks": [{"a": 1}2]}'.replace("}2", "}, 2")).data == {"tasks": [{"a": 1}, 2]}


def test_the_last_of_duplicate_keys_wins_as_in_json_loads() -> None:
    decoder = Decoder()
    text = '{"tasks": [{"id": "A"}], "tasks": 5}'
    decoded = decoder.decode(text)
    assert decoded.data == json.loads(text) == {"tasks": 5}
    assert decoded.pieces is None
    text = '{"tasks": 5, "tasks": [{"id": "B"}]}'
    assert decoder.decode(text).data == {"tasks": [{"id": "B"}]}


@pytest.mark.parametrize(
    "text",
    [
        '{"tasks": [{"id": "A"},]}',  # trailing comma
        '{"tasks": [{"id": "A"}] "x": 1}',
        '{"tasks": [{"id": "A"}]} trailing',
        "\ufeff{}",
        '{"tasks": [{"id": "A"}',
        "[]",
    ],
)
def test_malformed_text_gets_json_loads_own_error(text: str) -> None:
    decoder = Decoder()
    decoder.decode('{"tasks": [{"id": "A"}]}')
    try:
        expected: Any = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError, match="^" + str(exc).replace("(", r"\(").replace(")", r"\)") + "$"):
            decoder.decode(text)
    else:
        assert decoder.decode(text).data == expected


@settings(max_examples=examples(300, 100), deadline=None)
@given(data=st.data(), first=tasks, indent=indents)
def test_a_decode_told_what_an_edit_kept_gives_what_a_fresh_parse_gives(
    data: st.DataObject, first: list[Any], indent: Any
) -> None:
    """A writer's text edit says how much of the text it kept at the start and the end: the decoder takes that
    instead of comparing the texts, and the document and the spans are those of a fresh parse."""
    decoder = Decoder()
    text = json.dumps({"tasks": first}, indent=indent)
    decoded = decoder.decode(text)
    for _ in range(3):
        assert decoded.pieces is not None
        new = {"tasks": data.draw(edited(decoded.data["tasks"]))}
        edited_text, same = jsonedit.apply_where(text, decoded.data, new, decoded.spans)
        assert edited_text[: same[0]] == text[: same[0]]
        assert edited_text[len(edited_text) - same[1] :] == text[len(text) - same[1] :]
        decoded = decoder.decode(edited_text, base=text, same=same)
        text = edited_text
        fresh = Decoder().decode(text)
        assert decoded.data == json.loads(text) == new
        assert decoded.spans == fresh.spans and decoded.tasks_end == fresh.tasks_end


@settings(max_examples=examples(200, 50), deadline=None)
@given(
    bounds=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 50)), max_size=12),
    probes=st.lists(st.integers(-5, 2000), max_size=20),
)
def test_spans_answer_as_the_dict_of_their_starts_and_ends(bounds: list[tuple[int, int]], probes: list[int]) -> None:
    """The parse's spans (two sorted lists) answer every lookup, length and iteration as the dict they stand for."""
    starts, ends, at = [], [], 0
    for gap, length in bounds:
        starts.append(at + gap)
        ends.append(at + gap + length)
        at += gap + length + 1
    spans, expected = Spans(starts, ends), dict(zip(starts, ends, strict=True))
    assert spans == expected and len(spans) == len(expected) and list(spans) == list(expected)
    for probe in [*probes, *starts, *ends]:
        assert spans.get(probe) == expected.get(probe) and (probe in spans) == (probe in expected)
    assert spans.get("x") is None  # type: ignore[arg-type]


@settings(max_examples=examples(300, 100), deadline=None)
@given(data=st.data(), first=tasks, indent=indents, told=st.booleans())
def test_the_places_a_decode_says_changed_are_exactly_those_holding_other_pieces(
    data: st.DataObject, first: list[Any], indent: Any, told: bool
) -> None:
    """A decode with as many pieces as the last one names exactly the places where its pieces are other objects."""
    decoder = Decoder()
    text = json.dumps({"tasks": first}, indent=indent)
    decoded = decoder.decode(text)
    for _ in range(4):
        previous = decoded.pieces
        assert previous is not None
        new = {"tasks": data.draw(edited(decoded.data["tasks"]))}
        if told:  # a writer's edit, which says what it kept
            new_text, same = jsonedit.apply_where(text, decoded.data, new, decoded.spans)
            decoded = decoder.decode(new_text, base=text, same=same)
        else:  # a save from outside, maybe in another layout
            new_text = json.dumps(new, indent=data.draw(indents) if indent is not None else None)
            decoded = decoder.decode(new_text)
        text = new_text
        assert decoded.pieces is not None
        if len(decoded.pieces) == len(previous):
            assert decoded.changed is not None
        if decoded.changed is not None:
            base, places = decoded.changed
            assert base is previous
            assert places == [k for k, piece in enumerate(decoded.pieces) if piece is not previous[k]]
