"""Any JSON value in any field of one task of a good queue: a real daemon pass and every read command run over it
with no traceback, the good tasks flow, and the task, if bad, is reported."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentd import config as config_mod
from agentd.cli import main
from agentd.run.daemon import Daemon
from agentd.store.file.queuefile import QueueStore
from tests.helpers.daemons import events, task, write_config
from tests.helpers.examples import examples

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "wip": 1000, "command": ["true"]}
FIELDS = (
    "id",
    "status",
    "title",
    "type",
    "priority",
    "agent",
    "lease",
    "dependencies",
    "subtasks",
    "command",
    "prompt",
    "attempts",
    "not_before",
    "lease_token",
    "blocked_reason",
    "status_note",
    "last_run",
    "notes",
)
GOOD = ("G1", "G2")

odd_text = st.sampled_from(
    ["\ud83d", "half \ud83d emoji", "\udcff", "X1\n", "", "-rf", "../x", "a" * 129, "\x00", "ready", "G1", "B0"]
)
text = st.text(max_size=20) | odd_text
numbers = (
    st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.sampled_from([0, -1, 2**63, 10**4000])
    | st.floats(allow_nan=False)
)
scalars = st.none() | st.booleans() | numbers | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int, kind: str) -> Any:
    """A value nested ``depth`` deep: lists, objects, or subtasks of subtasks."""
    value: Any = "leaf"
    for level in range(depth):
        if kind == "list":
            value = [value]
        elif kind == "object":
            value = {"k": value}
        else:
            value = [{"id": f"N{level}", "status": "parked", "subtasks": value if isinstance(value, list) else []}]
    return value


deep = st.builds(nested, st.integers(50, 400), st.sampled_from(["list", "object", "subtasks"]))


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in this process: any exception but SystemExit (a traceback for a user) fails the test."""
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@settings(max_examples=examples(60, 25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS) | text, value=json_values | deep)
def test_any_value_in_any_field(
    field: str, value: Any, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon pass claims the good tasks; every read command answers in lines, never a traceback; a bad task is
    reported by validate (exit 4), list, why and the journal, and its bytes are left as they were."""
    assume(not (field == "id" and value in GOOD))
    root = tmp_path_factory.mktemp("fuzz")
    write_config(root, {"builder": BUILDER})
    bad = {"id": "B0", "status": "parked", "title": "the odd one"}
    bad[field] = value
    try:
        body = json.dumps({"tasks": [task("G1"), bad, task("G2")]}, indent=2)
    except (ValueError, RecursionError):
        assume(False)  # not JSON Python can write (an integer of over 4,300 digits): not a queue anyone has
    queue = root / "SPRINT_QUEUE.json"
    queue.write_text(body + "\n")
    bad_text = json.dumps(json.loads(queue.read_text())["tasks"][1])

    daemon = Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)
    report = daemon.tick()
    assert report.error is None, report.error
    assert set(GOOD) <= set(report.claimed)
    snapshot = QueueStore(queue).read()
    bad_ids = set(snapshot.quarantined)
    assert not bad_ids & set(GOOD), snapshot.errors
    journal = [e for e in events(root / ".agentd" / "events.jsonl") if e["event"] == "task-quarantined"]
    assert {e["task"] for e in journal} == bad_ids

    base = ["--root", str(root)]
    code, out, err = cli([*base, "queue", "validate"], capsys)
    assert code == (4 if bad_ids else 0), err
    assert len([line for line in err.splitlines() if not line.startswith("agentd: warning:")]) == len(snapshot.errors)
    for command in (["queue", "validate", "--json"], ["status", "--json"], ["doctor", "--json"]):
        code, out, err = cli([*base, *command], capsys)
        json.loads(out)
    code, out, err = cli([*base, "queue", "list", "--json"], capsys)
    assert code == 0 and {row["id"] for row in json.loads(out) if row["quarantined"]} == bad_ids
    code, out, err = cli([*base, "queue", "list"], capsys)
    assert code == 0, err
    for task_id in bad_ids | {"G1"}:
        code, out, err = cli([*base, "queue", "why", "--json", "--", task_id], capsys)
        assert code == 0, err
        assert json.loads(out)["verdict"].startswith("quarantined") == (task_id in bad_ids)
        code, out, err = cli([*base, "queue", "show", "--", task_id], capsys)
        assert code in (0, 6) and (code == 0 or err.count("\n") == 1), err
    if bad_ids:
        assert json.dumps(json.loads(queue.read_text())["tasks"][1]) == bad_text
