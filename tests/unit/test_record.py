"""The value classes on the CLI's path (agentd.core.record.Record) behave as the frozen dataclasses they replace."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from agentd.core.model import Task
from agentd.core.record import FrozenInstanceError
from agentd.core.workflow import Backoff, Role, UnblockRule, Workflow


@dataclasses.dataclass(frozen=True)
class _Backoff:
    initial: float = 30.0
    factor: float = 2.0
    max: float = 1800.0


def test_repr_equality_and_hash_match_a_frozen_dataclass() -> None:
    """Backoff's repr, equality and hash are those of the frozen dataclass with the same fields."""
    ours, theirs = Backoff(1.0, factor=3.0), _Backoff(1.0, factor=3.0)
    assert repr(ours) == repr(theirs).replace("_Backoff", "Backoff")
    assert hash(ours) == hash(theirs)
    assert ours == Backoff(1.0, 3.0, 1800.0)
    assert ours != Backoff(1.0, 3.0, 1.0)
    assert ours != theirs  # (another class: never equal, as for dataclasses)
    assert Backoff.initial == 30.0  # a default is a class attribute, as a dataclass keeps it


def test_fields_cannot_be_assigned_or_deleted() -> None:
    """Assigning or deleting a field raises FrozenInstanceError (an AttributeError), the value unchanged."""
    task = Task(id="T1", status="ready", index=0, path="$.tasks[0]")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'status'"):
        task.status = "done"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del task.id
    assert task.status == "ready"


def test_replace_copies_with_changes_and_refuses_unknown_names() -> None:
    """replace() returns a changed copy (the original kept) and refuses a name that is no field, as
    dataclasses.replace does."""
    role = Role(name="b", claims=("ready",), working="in_progress", on_success="done")
    looped = role.replace(on_success="ready", allow_loop=True)
    assert (looped.on_success, looped.allow_loop, looped.claims) == ("ready", True, ("ready",))
    assert (role.on_success, role.allow_loop) == ("done", False)
    with pytest.raises(TypeError, match="no field 'colour'"):
        role.replace(colour="red")


def test_defaults_are_fresh_or_immutable() -> None:
    """A mapping default is a new dict per instance; an explicit unblock=None stays None (no rule)."""
    one = Role(name="a", claims=("x",), working="w", on_success="s")
    two = Role(name="b", claims=("x",), working="w", on_success="s")
    assert one.outcomes == {} and one.outcomes is not two.outcomes
    assert Workflow(roles={}).unblock == UnblockRule()
    assert Workflow(roles={}, unblock=None).unblock is None


def test_pickle_and_copy_round_trip() -> None:
    """A workflow survives pickling, copy and deepcopy equal to itself (sent to a child process, kept in a cache)."""
    role = Role(name="b", claims=("ready",), working="in_progress", on_success="done", outcomes={1: "blocked"})
    workflow = Workflow(roles={"b": role})
    for other in (pickle.loads(pickle.dumps(workflow)), copy.copy(workflow), copy.deepcopy(workflow)):
        assert other == workflow
        assert other.role("b").outcomes == {1: "blocked"}


@dataclasses.dataclass
class _Report:
    claimed: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None


def test_a_mutable_record_behaves_as_a_plain_dataclass() -> None:
    """TickReport (a MutableRecord): fields assignable, a new list per instance, equality over the fields, the
    repr of the dataclass with the same fields, and no hash (as for a dataclass that is not frozen)."""
    from agentd.run.daemon import TickReport

    one, two = TickReport(), TickReport()
    assert one.claimed == [] and one.claimed is not two.claimed
    one.claimed.append("A")
    one.error = "bad"
    assert one == TickReport(claimed=["A"], error="bad") and one != two
    assert repr(TickReport(claimed=["A"])) == (
        "TickReport(claimed=['A'], finished=[], refused=[], recovered=[], unblocked=[], error=None, error_code=4, "
        "claimable_left=0, settled=False)"
    )
    assert repr(_Report(claimed=["A"])) == "_Report(claimed=['A'], error=None)"  # (the dataclass's form)
    with pytest.raises(TypeError, match="unhashable"):
        hash(one)


_RECORD_MODULES = [
    "actions",
    "config",
    "core.adapters",
    "core.control",
    "core.model",
    "core.outcome",
    "core.scheduler",
    "core.validate",
    "core.workflow",
    "report.usage",
    "run.daemon",
    "run.dispatch",
    "run.execution",
    "run.recovery",
    "run.runner",
    "service.background",
    "store.base",
    "store.file.archive",
    "store.file.derived",
    "store.file.incremental",
    "store.file.jsonedit",
    "store.file.queuefile",
    "store.postgres.store",
    "workspaces.launch",
    "workspaces.settings",
]


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_every_record_names_its_init_parameters_as_its_fields() -> None:
    """A Record or MutableRecord lists its fields three times (annotations, ``_fields``, ``__init__``): ``_fields``
    must be ``__init__``'s parameters, in order, or a field added to one is left out of equality, the repr and
    ``replace()``. Checked over every such class in agentd (the modules that define them are imported here)."""
    import importlib
    import inspect

    from agentd.core.record import MutableRecord, Record

    for name in _RECORD_MODULES:
        importlib.import_module(f"agentd.{name}")
    classes = _subclasses(Record) + _subclasses(MutableRecord)
    assert len(classes) > 30, classes  # (the modules above define them: a rename here must not empty the check)
    wrong = {
        f"{cls.__module__}.{cls.__qualname__}": (cls._fields, params)
        for cls in classes
        if cls.__module__.startswith("agentd.")
        and cls._fields != (params := tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self"))
    }
    assert wrong == {}
