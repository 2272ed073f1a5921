"""A lazy task view (``Task.lazy``, what a read of the queue makes for each task of its parse) is the view
``Task.from_dict`` makes, field for field, whatever the task holds: only when its fields are made differs."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.core.model import Task, walk_one
from agentd.store.file.derived import views_of
from agentd.store.file.incremental import Piece
from tests.helpers.examples import examples

FIELDS = Task._fields

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
)
# Each field a view reads, with a value of its type or any other (a task of the wrong shape is still viewed).
tasks = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=8), values),
        "status": st.one_of(st.sampled_from(["ready", "done", "in_progress"]), values),
        "title": values,
        "type": values,
        "priority": values,
        "agent": values,
        "lease": st.one_of(values, st.fixed_dictionaries({"owner": st.text(max_size=4), "ttl": values})),
        "dependencies": values,
        "attempts": values,
        "not_before": st.one_of(values, st.just("2026-12-04T10:00:00+00:00")),
        "lease_token": values,
        "blocked_reason": values,
        "parent": values,
        "parent_task": values,
        "repeat_runs": values,
        "question": st.one_of(values, st.fixed_dictionaries({"answer": values, "role": values})),
    },
)


def same_view(lazy: Task, full: Task) -> None:
    for field in FIELDS:
        assert getattr(lazy, field) == getattr(full, field), field
    assert lazy == full and full == lazy
    try:
        hashed = hash(full)
    except TypeError:  # (a view holding a dict, its question or blocked reason, is no more hashable than that)
        with pytest.raises(TypeError):
            hash(lazy)
    else:
        assert hash(lazy) == hashed
    assert repr(lazy) == repr(full)


@settings(max_examples=examples(300, 100), deadline=None)
@given(task=tasks, index=st.integers(0, 10_000), parent=st.one_of(st.none(), st.text(min_size=1, max_size=4)))
def test_a_lazy_view_is_the_full_view_field_for_field(task: dict[str, Any], index: int, parent: str | None) -> None:
    path = f"$.tasks[{index}]"
    full = Task.from_dict(task, index=index, path=path, parent=parent)
    same_view(Task.lazy(task, index=index, path=path, parent=parent), full)
    # And compared before any field was asked for (equality makes them), both ways round.
    assert Task.lazy(task, index=index, path=path, parent=parent) == full
    assert full == Task.lazy(task, index=index, path=path, parent=parent)


@settings(max_examples=examples(200, 60), deadline=None)
@given(task=tasks, field=st.sampled_from(FIELDS))
def test_any_one_field_asked_first_gives_the_full_views_value(task: dict[str, Any], field: str) -> None:
    full = Task.from_dict(task, index=3, path="$.tasks[3]")
    lazy = Task.lazy(task, index=3, path="$.tasks[3]")
    assert getattr(lazy, field) == getattr(full, field)
    same_view(lazy, full)


def test_the_fields_left_for_later_are_made_at_the_first_use_of_one_and_only_then() -> None:
    task = {"id": "T1", "status": "done", "priority": 2, "dependencies": ["T0"], "title": "x"}
    lazy = Task.lazy(task, index=0, path="$.tasks[0]")
    assert set(vars(lazy)) == {"id", "status", "index", "path", "parent", "_raw"}
    assert (lazy.id, lazy.status, lazy.parent) == ("T1", "done", None)
    assert "priority" not in vars(lazy)
    assert lazy.priority == 2
    assert set(FIELDS) <= set(vars(lazy))  # (all of them at once: the next use is a plain attribute)
    assert lazy.dependencies == ("T0",)


def test_a_name_that_is_no_field_is_an_attribute_error_as_on_any_view() -> None:
    lazy = Task.lazy({"id": "T1", "status": "done"}, index=0, path="$.tasks[0]")
    full = Task.from_dict({"id": "T1", "status": "done"}, index=0, path="$.tasks[0]")
    for view in (lazy, full):
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            _ = view.nope  # type: ignore[attr-defined]
        assert not hasattr(view, "_raw_") and not hasattr(view, "nope")
    assert "priority" not in vars(lazy)  # (a look for another name made none of the fields)


def test_a_lazy_view_is_frozen_copies_and_pickles_as_the_full_one() -> None:
    task = {"id": "T1", "status": "ready", "priority": 1, "not_before": "2026-12-04T10:00:00+00:00"}
    full = Task.from_dict(task, index=1, path="$.tasks[1]")
    lazy = Task.lazy(task, index=1, path="$.tasks[1]")
    with pytest.raises(AttributeError):
        lazy.priority = 3  # type: ignore[misc]
    for made in (copy.copy(lazy), copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        same_view(made, full)
    same_view(lazy.replace(priority=5), full.replace(priority=5))
    assert lazy.asdict() == full.asdict()
    assert lazy.sort_key == full.sort_key


def test_a_lazy_view_without_a_string_id_is_known_by_its_path() -> None:
    for task in ({"status": "done"}, {"id": 7, "status": "done"}, {"id": "", "status": 3}):
        same_view(Task.lazy(task, index=4, path="$.tasks[4]"), Task.from_dict(task, index=4, path="$.tasks[4]"))


@pytest.mark.parametrize(
    "value",
    [
        {"id": "A", "status": "done"},
        {"id": "A", "status": "done", "subtasks": []},
        {"id": "A", "status": "ready", "subtasks": [{"id": "A.1", "status": "done"}, 5, {"status": "ready"}]},
        {"id": "A", "subtasks": [{"id": "A.1", "subtasks": [{"id": "A.1.1", "parent": "X"}]}]},
        {"id": "A", "subtasks": "not a list"},
        "not a task",
        7,
    ],
)
def test_views_of_a_piece_are_the_full_views_of_its_tasks(value: Any) -> None:
    """Top-level, nested, and values that are no task at all: each view as ``Task.from_dict`` makes it."""
    piece = Piece(json.dumps(value), value)
    made = views_of(6, piece, 10)
    walked = walk_one(value, "$.tasks[6]")
    assert len(made) == len(walked)
    for offset, ((path, task, parent), view) in enumerate(zip(walked, made, strict=True)):
        same_view(view, Task.from_dict(task, index=10 + offset, path=path, parent=parent))
