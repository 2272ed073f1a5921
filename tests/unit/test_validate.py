"""Validation beyond the schema, and timestamps."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentd import schema
from agentd.core import validate
from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.core.workflow import Workflow


def test_duplicate_ids_including_nested() -> None:
    """A subtask reusing a top-level id is a duplicate: both tasks are named by their paths (both are quarantined)."""
    doc = {"tasks": [{"id": "a", "status": "ready", "subtasks": [{"id": "a", "status": "ready"}]}]}
    found = [f for f in validate.check(doc) if f.code == "duplicate"]
    assert [f.path for f in found] == ["$.tasks[0].id", "$.tasks[0].subtasks[0].id"]
    assert {f.task for f in found} == {"a"} and "2 tasks have it" in found[0].message


def test_unknown_dependency_named() -> None:
    """A dependency on a missing id names the id and its path."""
    doc = {"tasks": [{"id": "a", "status": "ready", "dependencies": ["x"]}]}
    [finding] = validate.check(doc)
    assert finding.path == "$.tasks[0].dependencies[0]" and "'x'" in finding.message


def test_cycle_is_named() -> None:
    """A dependency cycle is reported with its members in order."""
    doc = {"tasks": [{"id": i, "status": "ready", "dependencies": [d]} for i, d in ("ab", "bc", "ca")]}
    found = validate.check(doc)
    assert [f.task for f in found] == ["a", "b", "c"]  # every member is quarantined
    assert all(f.code == "cycle" and f.message == "dependency cycle: a -> b -> c -> a" for f in found)


def test_every_cycle_and_only_its_members() -> None:
    """Two cycles sharing no task are both found; a task that only depends on a cycle is not a member."""
    graph = {"a": ("b",), "b": ("a",), "x": ("a",), "c": ("d",), "d": ("e",), "e": ("c",), "f": ()}
    assert validate.cycles(graph) == [["a", "b"], ["c", "d", "e"]]
    chain = {f"t{i}": (f"t{i + 1}",) for i in range(10_000)} | {"t10000": ("t0",)}
    assert len(validate.cycles(chain)[0]) == 10_001


def test_deep_chain_is_no_recursion_problem() -> None:
    """A 10,000-long dependency chain is checked without recursion errors."""
    graph = {f"t{i}": (f"t{i + 1}",) for i in range(10_000)}
    assert validate.find_cycle(graph) is None
    graph["t10000"] = ("t0",)
    cycle = validate.find_cycle(graph)
    assert cycle is not None and len(cycle) == 10_002


def test_conflict_markers_name_the_line() -> None:
    """Git conflict markers are found with their line numbers."""
    text = '{\n<<<<<<< HEAD\n  "a": 1\n=======\n  "a": 2\n>>>>>>> branch\n}\n'
    lines = [f.message for f in validate.conflict_markers(text)]
    assert lines[0].startswith("line 2:") and lines[1].startswith("line 4:") and lines[2].startswith("line 6:")


def test_unknown_status_is_a_warning() -> None:
    """Statuses no role or rule knows are warnings, not errors."""
    from agentd.config import build

    wf: Workflow = build({}, root=__import__("pathlib").Path("/"), path=None).workflow
    [finding] = validate.check({"tasks": [{"id": "a", "status": "limbo"}]}, wf)
    assert finding.severity == "warning" and finding.code == "unknown-status"


def test_known_statuses_are_worked_out_once_per_workflow() -> None:
    """Reading a queue asks the workflow's known statuses per task: the same (immutable) set each time, worked out
    once; a workflow replaced with other roles knows their statuses, not the first one's."""
    from agentd.config import build

    wf: Workflow = build({}, root="/", path=None).workflow
    known = wf.known_statuses()
    assert wf.known_statuses() is known and isinstance(known, frozenset)
    assert {"ready", "in_progress", "done", "blocked"} <= known
    only = wf.replace(roles={"builder": wf.roles["builder"].replace(on_success="shipped")})
    assert "shipped" in only.known_statuses() and "shipped" not in known
    assert "testing" not in only.known_statuses() and "testing" in known


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-10-03T09:31:00Z", datetime(2025, 10, 3, 9, 31, tzinfo=UTC)),
        ("2025-10-03T11:30:00+02:00", datetime(2025, 10, 3, 9, 30, tzinfo=UTC)),
        ("2025-10-03T09:31:00", datetime(2025, 10, 3, 9, 31, tzinfo=UTC)),
        ("2025-10-03 09:31:00.250-05:00", datetime(2025, 10, 3, 14, 31, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamps_read_any_offset(text: str, expected: datetime) -> None:
    """Z, any offset and offset-less (UTC) all read."""
    assert parse_timestamp(text) == expected


def test_unreadable_timestamp_is_a_validation_error() -> None:
    """A timestamp agentd reads but cannot parse is an error with its path, never a silent 'stale'."""
    doc = {"tasks": [{"id": "a", "status": "ready", "lease": {"acquired": "last tuesday"}}]}
    assert schema.first_error(doc, "queue") == (
        "$.tasks[0].lease.acquired",
        "'last tuesday' is not a timestamp agentd can read (ISO-8601 expected)",
    )


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))])))
def test_timestamp_round_trip(moment: datetime) -> None:
    """What agentd writes it reads back to the same instant, always with an explicit offset."""
    text = format_timestamp(moment)
    assert text.endswith("+00:00")
    assert abs(parse_timestamp(text) - moment) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "task_id",
    ["X1\n", "X1\r", "\nX1", "X1 ", "", ".x", "a/b", "é", "a" * 129, 5, None, "X1\n\n"],
)
def test_one_definition_of_a_valid_id_refuses(task_id: object) -> None:
    """The schema check, the lease schema and valid_task_id refuse the same ids (a final newline included)."""
    from agentd.core.model import valid_task_id

    assert not valid_task_id(task_id)
    assert schema.first_error({"id": task_id, "status": "ready"}, "task") is not None
    lease = {"task_id": task_id, "token": 1, "role": "r", "host": "h", "pid": 1, "acquired": "2026-01-01T00:00:00Z"}
    assert schema.first_error({**lease, "ttl": 1}, "lease") is not None


@pytest.mark.parametrize("task_id", ["X1", "a" * 128, "0.b_c-d", "P001-B01"])
def test_one_definition_of_a_valid_id_accepts(task_id: str) -> None:
    """Good ids pass all three checks."""
    from agentd.core.model import valid_task_id

    assert valid_task_id(task_id)
    assert schema.first_error({"id": task_id, "status": "ready"}, "task") is None


_json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_field_values = {
    "id": st.sampled_from(["T1", "a.b-c_d", "-x", "a\n", "", "x" * 129]) | _json,
    "status": st.sampled_from(["ready", "", "\ud800"]) | _json,
    "priority": st.integers(-5, 5) | st.just(1.0) | st.just(True) | _json,
    "dependencies": st.lists(st.text(max_size=4), max_size=3) | _json,
    "not_before": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "soon", "", None]) | _json,
    "attempts": st.integers(-2, 3) | _json,
    "lease_token": st.integers(-2, 3) | _json,
    "lease": st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "token": st.integers(-1, 3) | _json,
            "acquired": st.sampled_from(["2026-01-01T00:00:00+02:00", "later"]) | _json,
            "ttl": st.floats(-1, 5, allow_nan=False) | _json,
        },
    )
    | _json,
    "command": st.lists(st.text(max_size=3), max_size=2) | _json,
    "subtasks": st.lists(
        st.fixed_dictionaries({"id": st.sampled_from(["S1", "S 1"]), "status": st.just("ready")}), max_size=2
    )
    | _json,
}
_tasks = st.fixed_dictionaries({}, optional={name: strategy for name, strategy in _field_values.items()}) | _json


def test_the_fast_validator_is_on() -> None:
    """jsonschema-rs compiles agentd's task schema (its own keywords and the lease schema it refers to included)."""
    assert schema._fast_task_validator() is not None
    assert schema._fast_valid({"id": "T1", "status": "ready", "lease": None})
    assert not schema._fast_valid({"id": "T1\n", "status": "ready"})
    assert not schema._fast_valid({"id": "T1", "status": "ready", "not_before": "soon"})


@given(_tasks)
def test_the_fast_validator_agrees_with_jsonschema(task: object) -> None:
    """jsonschema-rs is only a gate: whatever it lets through, jsonschema finds valid, so the answer never changes."""
    slow = schema.exact_first_error(task, "task") is None
    if schema._fast_valid(task):
        assert slow
    assert (schema.task_error(task) is None) == (slow and schema.lone_surrogate(task) is None)


@given(_tasks)
def test_the_fast_gate_quarantines_exactly_what_jsonschema_alone_does(task: object) -> None:
    """A task's findings (path, message, code, task) are the same with the gate as with jsonschema alone."""
    schema._VALID_TASKS.clear()
    gated = schema.task_problems(task, "$.tasks[0]")
    schema._VALID_TASKS.clear()
    original, checker = schema._fast_task_validator, schema.stdlib_verdict
    schema._fast_task_validator = lambda: None  # type: ignore[assignment]
    schema.stdlib_verdict = lambda instance, name: None  # type: ignore[assignment]
    try:
        alone = schema.task_problems(task, "$.tasks[0]")
    finally:
        schema._fast_task_validator, schema.stdlib_verdict = original, checker  # type: ignore[assignment]
    assert gated == alone


_tops = (
    st.fixed_dictionaries(
        {},
        optional={
            "tasks": st.just([]) | _json,
            "wip_limits": st.dictionaries(st.text(max_size=3), st.integers(-2, 3) | st.just(1.0) | _json, max_size=2)
            | _json,
            "other": _json,
        },
    )
    | _json
)
_leases = (
    st.fixed_dictionaries(
        {},
        optional={
            "task_id": st.sampled_from(["T1", "T 1"]) | _json,
            "token": st.integers(-1, 3) | _json,
            "role": st.just("builder") | _json,
            "host": st.just("h") | _json,
            "pid": st.integers(-1, 3) | _json,
            "ttl": st.floats(-1, 5, allow_nan=False) | _json,
            "acquired": st.sampled_from(["2026-01-01T00:00:00Z", "later"]) | _json,
            "last_heartbeat": st.sampled_from(["2026-01-01T00:00:00Z", "later"]) | _json,
        },
    )
    | _json
)


@given(st.sampled_from(["queue", "lease", "result", "config"]), _tops | _leases | _json)
def test_the_fast_gate_of_every_schema_agrees_with_jsonschema(name: schema.SchemaName, instance: object) -> None:
    """first_error through the jsonschema-rs gate gives jsonschema's own answer for every schema, not only tasks."""
    assert schema.first_error(instance, name) == schema.exact_first_error(instance, name)


def test_a_valid_document_is_judged_without_jsonschema() -> None:
    """A valid queue, lease or config is accepted by the fast gate alone: jsonschema is never asked."""
    assert schema.fast_valid({"tasks": [], "wip_limits": {"builder": 2}}, "queue")
    assert not schema.fast_valid({"tasks": [], "wip_limits": {"builder": -1}}, "queue")
    assert schema.fast_valid({"roles": {}}, "config") == (schema.exact_first_error({"roles": {}}, "config") is None)


def test_the_stdlib_checker_handles_every_schema_of_agentd() -> None:
    """Every schema agentd ships compiles to the stdlib checker, every branch of it (a new keyword there would silently
    cost jsonschema-rs on every CLI call)."""
    from agentd import schemacheck

    for name in schema.NAMES:
        assert schema._checker(name) is not None, name
        whole = schemacheck.compile_schema(
            schema._bare(schema.load(name)), [], schema._STDLIB_KEYWORDS, schema._by_id, eager=True
        )
        assert whole is not None, name


def test_a_branch_the_stdlib_checker_cannot_judge_is_left_to_the_validators() -> None:
    """A keyword the stdlib checker does not handle, deep in a branch compiled only when first used, makes it answer
    "cannot tell" when an instance reaches it (never a wrong verdict, never an exception), and "unsupported" when
    compiled at once."""
    from agentd import schemacheck

    odd = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"dependentRequired": {}}}}}}
    check = schemacheck.compile_schema(odd, [], {})
    assert check is not None
    assert schemacheck.judge(check, {"x": 1}) is True
    assert schemacheck.judge(check, {"a": {"b": 1}}) is None
    assert schemacheck.judge(check, {"a": {"b": 1}}) is None  # (and again: the failed compile left nothing behind)
    assert schemacheck.compile_schema(odd, [], {}, eager=True) is None


@given(st.sampled_from(["queue", "lease", "result", "config", "task"]), _tops | _leases | _tasks | _json)
def test_the_stdlib_checker_agrees_with_jsonschema(name: schema.SchemaName, instance: object) -> None:
    """Where the stdlib checker gives a verdict, it is jsonschema's: valid exactly when jsonschema finds no error."""
    verdict = schema.stdlib_verdict(instance, name)
    if verdict is not None:
        assert verdict == (schema.exact_first_error(instance, name) is None)


@pytest.mark.parametrize(
    ("instance", "valid"),
    [
        ({"id": "T1", "status": "ready", "priority": 1.0}, True),
        ({"id": "T1", "status": "ready", "priority": True}, False),
        ({"id": "T1", "status": "ready", "lease": {"token": 0}}, False),
        ({"id": "T1", "status": "ready", "lease": {"token": 1, "acquired": "now"}}, False),
        ({"id": "T1", "status": "ready", "subtasks": [{"id": "T 2", "status": "ready"}]}, False),
        ({"id": "T1", "status": "ready", "subtasks": [{"id": "T2", "status": "ready"}]}, True),
        ({"id": "T1", "status": "", "x": {"anything": [1]}}, False),
        ({"id": "T1", "status": "ready", "command": []}, False),
        ({"id": "T1", "status": "ready", "attempts": float("nan")}, False),
    ],
)
def test_the_stdlib_checker_on_tasks(instance: dict[str, object], valid: bool) -> None:
    """Floats with no fraction are integers, booleans are not; leases, timestamps, ids and subtasks are checked."""
    assert schema.stdlib_verdict(instance, "task") is valid
    assert (schema.exact_first_error(instance, "task") is None) is valid


@pytest.mark.parametrize(
    "task",
    [
        {"id": "T1", "status": "ready", "priority": 2},
        {"id": "T1", "status": "ready", "priority": True},
        {"id": "T 1", "status": "ready"},
        {"id": "T1", "status": "ready", "not_before": "soon"},
    ],
)
def test_after_many_checks_jsonschema_rs_judges_first_with_the_same_answers(
    task: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a process has checked many tasks (a big queue), jsonschema-rs judges first: the answers stay the same."""
    before = schema.first_error(task, "task")
    monkeypatch.setattr(schema, "_stdlib_spent", schema.RS_LOAD_COST)
    assert schema.first_error(task, "task") == before == schema.exact_first_error(task, "task")


_odd_text = st.text(alphabet=st.sampled_from(["a", "é", "\ud800", "\udfff", "\\", "u"]), max_size=4)
_odd_leaf = _odd_text | st.builds(schema.HugeInt, st.just("9" * 5)) | st.integers() | st.none() | st.booleans()
_odd_values = st.recursive(
    _odd_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_odd_text, inner, max_size=3), max_leaves=10
)


@given(value=_odd_values)
def test_the_quick_look_for_unwritable_text_agrees_with_the_walk_that_names_it(value: object) -> None:
    """A lone surrogate (in a key or a string) or a number too long to read is found by the quick look, without
    paths, exactly when the walk with paths finds one; the answer is the walk's."""
    found = schema._first_unwritable(value)
    assert schema._any_unwritable(value) == (found is not None)
    assert schema.lone_surrogate(value) == found


def test_the_fast_gate_checks_task_ids_without_calling_into_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """jsonschema-rs checks a task's id (and a lease's task_id) with the pattern of a valid id, not by a call back
    into Python per id (half of its time on a 10,000-task queue's first read)."""
    from agentd.core.model import valid_task_id

    calls: list[object] = []

    def counted(task_id: object) -> bool:
        calls.append(task_id)
        return valid_task_id(task_id)

    monkeypatch.setattr(schema, "valid_task_id", counted)
    tasks = [{"id": f"T{n}", "status": "ready"} for n in range(50)]
    assert schema._fast_tasks_validator().is_valid(tasks)
    assert not schema._fast_tasks_validator().is_valid([*tasks, {"id": "T 1", "status": "ready"}])
    assert schema._fast_valid({"id": "T1", "status": "ready"})
    assert calls == []


@given(st.text(max_size=130) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,130}\n?", fullmatch=True))
def test_the_fast_gate_takes_exactly_the_valid_ids(task_id: str) -> None:
    """The fast gates of the task and lease schemas let an id through exactly when valid_task_id does (a final
    newline, a 129th character, a character outside the set: refused)."""
    from agentd.core.model import valid_task_id

    assert schema._fast_valid({"id": task_id, "status": "ready"}) == valid_task_id(task_id)
    lease = {"task_id": task_id, "token": 1, "role": "r", "host": "h", "pid": 1, "acquired": "2026-01-01T00:00:00Z"}
    assert schema.fast_valid({**lease, "ttl": 1}, "lease") == valid_task_id(task_id)


def test_only_tasks_with_dependencies_are_searched_for_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task without dependencies cannot be in a cycle: the search for cycles is not given the thousands of such
    tasks a big queue holds (it went through each); the findings are the same."""
    searched: list[list[str]] = []
    real = validate.cycles

    def spied(graph: dict[str, tuple[str, ...]]) -> list[list[str]]:
        searched.append(list(graph))
        return real(graph)

    monkeypatch.setattr(validate, "cycles", spied)
    tasks = [{"id": f"D{n}", "status": "done", "dependencies": []} for n in range(50)]
    tasks += [
        {"id": "A", "status": "ready", "dependencies": ["B", "D1"]},
        {"id": "B", "status": "ready", "dependencies": ["A"]},
        {"id": "C", "status": "ready", "dependencies": ["C", "Z"]},
        {"id": "E", "status": "ready"},
    ]
    found = validate.check({"tasks": tasks})
    assert searched == [["A", "B", "C"]]
    assert [(f.code, f.task, f.path) for f in found] == [
        ("cycle", "C", "$.tasks[52].dependencies[0]"),
        ("unknown-dep", "C", "$.tasks[52].dependencies[1]"),
        ("cycle", "A", "$.tasks[50].dependencies"),
        ("cycle", "B", "$.tasks[51].dependencies"),
    ]


def test_jsonschema_rs_is_loaded_once_the_stdlib_checker_has_spent_what_loading_it_costs() -> None:
    """Rent or buy, in a process of its own: 600 valid tasks checked (by the stdlib checker, its time added up) load
    no jsonschema-rs while that time is below RS_LOAD_COST (set out of reach here; a count of 500 checks loaded it
    before, 24 ms of loading to save about 7); once the time spent reaches it, the next check loads it, with the same
    answers."""
    code = """
import sys
from agentd import schema
schema.RS_LOAD_COST = 3600.0
tasks = [{"id": f"T{i}", "status": "ready", "priority": i % 5} for i in range(600)]
assert all(schema.first_error(task, "task") is None for task in tasks)
print("jsonschema_rs" in sys.modules, schema._stdlib_spent > 0)
schema._stdlib_spent = schema.RS_LOAD_COST
assert schema.first_error(tasks[0], "task") is None
assert schema.first_error({"id": "T1", "status": "ready", "priority": True}, "task") is not None
print("jsonschema_rs" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]


def test_once_a_big_read_has_loaded_jsonschema_rs_it_judges_first_at_once() -> None:
    """A big queue's first read has jsonschema-rs judge its tasks in lists (remember_valid_tasks), which loads it:
    from then on it judges each task first, the stdlib checker spending nothing (before, the stdlib checker kept
    judging a valid task until its own rule said otherwise; an invalid one goes on to the exact checkers)."""
    code = """
import sys
from agentd import schema
tasks = [{"id": f"T{i}", "status": "ready", "priority": i % 5} for i in range(600)]
schema.remember_valid_tasks([(task, f"key-{i}") for i, task in enumerate(tasks)])
assert "jsonschema_rs" in sys.modules
assert schema.first_error({"id": "N1", "status": "ready", "priority": 3}, "task") is None
print(schema._stdlib_spent)
assert schema.first_error({"id": "N2", "status": "ready", "priority": True}, "task") is not None
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 0.0


def _structural_as_before(entries: list[tuple[str, Any, str | None]], known: Any = ()) -> list[validate.Finding]:
    """The structural checks as written before round 20 (each id's paths made for every task), the oracle for the
    one that makes them only for repeated ids and cycles."""
    from agentd.core.validate import Finding, cycles, find_cycle

    findings: list[Finding] = []
    paths: dict[str, list[str]] = {}
    graph: dict[str, tuple[str, ...]] = {}
    usable: list[tuple[str, str, tuple[str, ...]]] = []
    for path, task, _ in entries:
        task_id = task.get("id") if isinstance(task, dict) else None
        if not isinstance(task_id, str):
            continue
        deps = task.get("dependencies")
        deps = tuple(d for d in deps if isinstance(d, str)) if deps and isinstance(deps, list) else ()
        paths.setdefault(task_id, []).append(path)
        graph.setdefault(task_id, deps)
        if deps:
            usable.append((path, task_id, deps))
    for task_id, where in paths.items():
        if len(where) > 1:
            message = f"duplicate task id {task_id!r} ({len(where)} tasks have it)"
            findings += [Finding("error", f"{path}.id", message, "duplicate", task_id) for path in where]
    for path, task_id, deps in usable:
        for position, dep in enumerate(deps):
            if dep not in paths and dep not in known:
                message = f"unknown dependency {dep!r}"
                findings.append(
                    Finding("error", f"{path}.dependencies[{position}]", message, "unknown-dep", task_id, dep)
                )
            elif dep == task_id:
                message = "a task cannot depend on itself"
                findings.append(Finding("error", f"{path}.dependencies[{position}]", message, "cycle", task_id, dep))
    depending = {k: v if k not in v else tuple(d for d in v if d != k) for k, v in graph.items() if v}
    for members in cycles(depending):
        inside = set(members)
        cycle = find_cycle({k: tuple(d for d in graph[k] if d in inside and d != k) for k in members}) or members
        message = "dependency cycle: " + " -> ".join(cycle)
        findings += [
            Finding("error", f"{paths[member][0]}.dependencies", message, "cycle", member, "cycle")
            for member in members
        ]
    return findings


_names = st.sampled_from(["A", "B", "C", "D", "E", "F"])
_entry_task = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(_names, st.integers(0, 2))},
        optional={"dependencies": st.one_of(st.lists(st.one_of(_names, st.just("X"), st.integers(0, 1))), st.none())},
    ),
    st.just("not a task"),
)


@given(tasks=st.lists(_entry_task, max_size=14), known=st.sets(st.sampled_from(["X", "F"])))
def test_the_structural_checks_find_what_they_found_before_and_the_ids(tasks: list[Any], known: set[str]) -> None:
    """Duplicates, unknown and self dependencies and cycles, found with each id's paths made only where needed, are
    those found before, in the same order; and the ids are the string ids of the tasks."""
    entries = [(f"$.tasks[{n}]", task, None) for n, task in enumerate(tasks)]
    found, ids = validate.structural_and_ids(entries, known)
    assert found == _structural_as_before(entries, known)
    assert set(ids) == {t["id"] for t in tasks if isinstance(t, dict) and isinstance(t["id"], str)}


@pytest.mark.parametrize("cap", [10**9, 5000])
def test_tasks_judged_valid_in_lists_are_remembered_within_the_cache_s_size(
    monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """A big read's tasks judged valid in lists are remembered at once, text by text (the next look at one finds it
    valid without a check), unless that passes the cache's size: then one by one, the cache emptied where full, as
    for a task judged alone; a list with an invalid task leaves its texts to each task's own check."""
    monkeypatch.setattr(schema, "_VALID_TASKS_MAX_CHARS", cap)
    monkeypatch.setattr(schema, "_valid_chars", 0)
    schema.VALID_TASKS.clear()
    tasks = [({"id": f"T{i}", "status": "ready"}, f"text of valid task {i:04d}") for i in range(1500)]
    tasks[1400] = ({"id": "bad", "status": 5}, "text of an invalid task")
    schema.remember_valid_tasks(tasks)
    remembered = [key for _, key in tasks if key in schema.VALID_TASKS]
    judged_in_valid_lists = [key for _, key in tasks[:1024]]  # (the second list holds the invalid task)
    if cap > 10**6:
        assert remembered == judged_in_valid_lists
    else:
        assert remembered == judged_in_valid_lists[-len(remembered) :] and 0 < len(remembered) < 1024
    assert schema._valid_chars == sum(map(len, remembered)) <= cap
    schema.VALID_TASKS.clear()


def test_texts_decoded_from_utf8_are_remembered_unless_they_escape_half_a_surrogate_pair() -> None:
    """A file's texts (decoded strictly from UTF-8) hold no half of a surrogate pair themselves: only an escaped one
    keeps a valid-looking task from being remembered (its own check then finds it); a text not said to be decoded is
    looked through for both."""
    schema.VALID_TASKS.clear()
    tasks = [
        ({"id": f"T{i}", "status": "ready", "title": "→ ✅"}, f'{{"id": "T{i}", "title": "→ ✅ {i}"}}')
        for i in range(600)
    ]
    tasks[7] = ({"id": "T7", "status": "ready", "title": "half \ud83d"}, '{"id": "T7", "title": "half \\ud83d"}')
    schema.remember_valid_tasks(tasks, decoded=True)
    assert [key for _, key in tasks if key not in schema.VALID_TASKS] == [tasks[7][1]]
    schema.VALID_TASKS.clear()
    tasks[8] = ({"id": "T8", "status": "ready"}, '{"id": "T8", "title": "half \ud83d"}')  # (itself: not a file's)
    schema.remember_valid_tasks(tasks)
    assert [key for _, key in tasks if key not in schema.VALID_TASKS] == [tasks[7][1], tasks[8][1]]
    schema.VALID_TASKS.clear()
