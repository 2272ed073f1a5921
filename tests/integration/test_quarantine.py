"""One bad task never stops the others: a task's own problem quarantines that task alone, reported once."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.errors import QueueInvalid
from agentd.run.daemon import Daemon, Mode
from agentd.store.file.queuefile import QueueStore
from tests.conftest import run_agentd
from tests.helpers.daemons import events, task, tasks_by_id, wait_for, write_config, write_queue

BUILDER = {
    "claims": "ready",
    "working": "in_progress",
    "on_success": "done",
    "on_failure": "blocked",
    "wip": 50,
    "command": ["true"],
}

# Each bad task, and the start of the one line that names its problem.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "priority": (task("P1", priority="high"), "$.tasks[1].priority: 'high' is not of type"),
    "newline-id": (task("X1\n"), "$.tasks[2].id: 'X1\\n' is not a valid task id"),
    "surrogate": (task("S1", title="half \ud83d"), "$.tasks[3].title: text agentd cannot encode"),
    "unknown-dep": (task("U1", dependencies=["nope"]), "$.tasks[4].dependencies[0]: unknown dependency 'nope'"),
    "cycle-a": (task("C1", dependencies=["C2"]), "$.tasks[5].dependencies: dependency cycle: C1 -> C2 -> C1"),
    "cycle-b": (task("C2", dependencies=["C1"]), "$.tasks[6].dependencies: dependency cycle: C1 -> C2 -> C1"),
    "not-object": ("just a string", "$.tasks[7]: 'just a string' is not of type 'object'"),  # type: ignore[dict-item]
}
BAD_IDS = {"P1", "X1\n", "S1", "U1", "C1", "C2", "$.tasks[7]"}


def _project(root: Path) -> Path:
    write_config(root, {"builder": BUILDER})
    tasks = [task("G1"), *(bad for bad, _ in BAD.values()), task("G2"), task("W1", dependencies=["P1"])]
    return write_queue(root, tasks)


def _daemon(root: Path) -> Daemon:
    return Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)


def _bad_texts(path: Path) -> list[str]:
    """The bad tasks as they stand in the file, compared as JSON text (ASCII-escaped)."""
    data = json.loads(path.read_text())
    return [json.dumps(t) for t in data["tasks"][1:8]]


def test_a_bad_task_is_quarantined_and_every_other_flows(tmp_path: Path) -> None:
    """Seven kinds of bad task: the good ones are claimed and finished; the bad ones are left byte for byte."""
    path = _project(tmp_path)
    before = _bad_texts(path)
    daemon = _daemon(tmp_path)
    assert daemon.run(Mode.DRAIN) == 0
    by_id = tasks_by_id_tolerant(tmp_path)
    assert by_id["G1"]["status"] == by_id["G2"]["status"] == "done"
    assert by_id["W1"]["status"] == "ready"  # it depends on a quarantined task: it waits
    assert _bad_texts(path) == before
    assert by_id["P1"]["status"] == "ready" and "lease_token" not in by_id["P1"]


def _ticked(daemon: Daemon) -> bool:
    daemon.wake("poll")
    return daemon.tick().error is None


def tasks_by_id_tolerant(root: Path) -> dict[str, Any]:
    data = json.loads((root / "SPRINT_QUEUE.json").read_text())
    return {t["id"]: t for t in data["tasks"] if isinstance(t, dict) and isinstance(t.get("id"), str)}


def test_each_problem_is_journalled_once_and_again_when_fixed(tmp_path: Path) -> None:
    """A task-quarantined event per bad task on the first pass, none on the next; one 'fixed' event after a fix."""
    path = _project(tmp_path)
    daemon = _daemon(tmp_path)
    for _ in range(3):
        report = daemon.tick()
        assert report.error is None, report.error
    journal = tmp_path / ".agentd" / "events.jsonl"
    quarantined = [e for e in events(journal) if e["event"] == "task-quarantined"]
    assert sorted(e["task"] for e in quarantined) == sorted(BAD_IDS)
    assert all(e["state"] == "quarantined" for e in quarantined)
    # A person fixes P1 by hand: W1, which waited for it, flows too.
    path.write_text(path.read_text().replace('"priority": "high"', '"priority": 1'))
    daemon.wake("queue")
    wait_for(lambda: _ticked(daemon) and tasks_by_id_tolerant(tmp_path)["W1"]["status"] == "done", 30, "W1 done")
    fixed = [e for e in events(journal) if e["event"] == "task-quarantined" and e["state"] == "fixed"]
    assert [e["task"] for e in fixed] == ["P1"]
    claimed = {e["task"] for e in events(journal) if e["event"] == "claimed"}
    assert {"G1", "G2", "P1", "W1"} <= claimed and not claimed & (BAD_IDS - {"P1"})


def test_read_commands_report_every_quarantined_task(tmp_path: Path) -> None:
    """validate prints each problem and exits 4; list marks them; why says why; status and doctor list them."""
    _project(tmp_path)
    before = (tmp_path / "SPRINT_QUEUE.json").read_bytes()
    validate = run_agentd("queue", "validate", cwd=tmp_path)
    assert validate.returncode == 4, validate.stderr
    for _, line in BAD.values():
        assert f"agentd: SPRINT_QUEUE.json: {line}" in validate.stderr
    assert "Traceback" not in validate.stderr
    assert "7 task(s) quarantined" in validate.stdout
    as_json = json.loads(run_agentd("queue", "validate", "--json", cwd=tmp_path).stdout)
    assert as_json["valid"] is False and set(as_json["quarantined"]) == BAD_IDS
    listing = run_agentd("queue", "list", cwd=tmp_path)
    assert listing.returncode == 0 and "ready (quarantined)" in listing.stdout, listing.stderr
    rows = json.loads(run_agentd("queue", "list", "--json", cwd=tmp_path).stdout)
    assert {r["id"] for r in rows if r["quarantined"]} == BAD_IDS
    why = json.loads(run_agentd("queue", "why", "P1", "--json", cwd=tmp_path).stdout)
    assert why["claimable"] is False and why["verdict"].startswith("quarantined: $.tasks[1].priority")
    waiting = json.loads(run_agentd("queue", "why", "W1", "--json", cwd=tmp_path).stdout)
    assert "dependency P1 is quarantined" in waiting["verdict"]
    good = json.loads(run_agentd("queue", "why", "G1", "--json", cwd=tmp_path).stdout)
    assert good["claimable"] is True, good
    status = json.loads(run_agentd("status", "--json", cwd=tmp_path).stdout)
    assert {q["id"] for q in status["quarantined"]} == BAD_IDS and status["queue_error"] is None
    doctor = json.loads(run_agentd("doctor", "--json", cwd=tmp_path).stdout)
    found = {f["subject"]: f for f in doctor if f["code"] in ("task-invalid", "unencodable", "unknown-dep")}
    assert {"P1", "S1", "U1", "X1\n"} <= set(found) and "`agentd queue validate`" in found["P1"]["fix"]
    assert (tmp_path / "SPRINT_QUEUE.json").read_bytes() == before


def test_a_write_never_makes_the_file_worse(tmp_path: Path) -> None:
    """A change may not add a problem, nor change a quarantined task without curing it; curing it is allowed."""
    path = _project(tmp_path)
    store = QueueStore(path)

    def setter(task_id: str, key: str, value: Any) -> Any:
        def change(doc: dict[str, Any]) -> None:
            [raw] = [t for t in doc["tasks"] if isinstance(t, dict) and t.get("id") == task_id]
            raw[key] = value

        return change

    before = path.read_bytes()
    for task_id, key, value, expect in (
        ("G1", "priority", "low", "$.tasks[0].priority: refusing to write: 'low' is not of type"),
        ("G1", "dependencies", ["ghost"], "refusing to write: unknown dependency 'ghost'"),
        ("G1", "title", "\udcff", "$.tasks[0].title: refusing to write: text agentd cannot encode"),
        ("P1", "status", "done", "$.tasks[1].priority: refusing to write: 'high' is not of type"),
        ("U1", "status", "done", "refusing to write: unknown dependency 'nope'"),
        ("C1", "status", "done", "refusing to write: dependency cycle"),
    ):
        with pytest.raises(QueueInvalid) as info:
            store.transaction(setter(task_id, key, value))
        assert expect in str(info.value), str(info.value)
        assert path.read_bytes() == before
    store.transaction(setter("G2", "status", "done"))  # a good task changes while the bad ones are there
    store.transaction(setter("P1", "priority", 3))  # the bad task cured through agentd
    snapshot = store.read()
    assert "P1" not in snapshot.quarantined and set(snapshot.quarantined) == BAD_IDS - {"P1"}
    assert _bad_texts(path)[1:] == [json.dumps(t) for t in json.loads(before)["tasks"][2:8]]


def test_cli_fix_of_a_quarantined_task(tmp_path: Path) -> None:
    """set-status on a quarantined task is refused in one line (exit 4); the file is left as it was."""
    _project(tmp_path)
    before = (tmp_path / "SPRINT_QUEUE.json").read_bytes()
    result = run_agentd("queue", "set-status", "P1", "done", cwd=tmp_path)
    assert result.returncode == 4 and result.stderr.count("\n") == 1, result.stderr
    assert "SPRINT_QUEUE.json: $.tasks[1].priority: refusing to write" in result.stderr
    assert (tmp_path / "SPRINT_QUEUE.json").read_bytes() == before
    assert run_agentd("queue", "set-status", "G1", "done", cwd=tmp_path).returncode == 0


def test_a_quarantined_running_task_does_not_stop_the_others(tmp_path: Path, caplog: Any) -> None:
    """A task broken by hand while it runs: its completion is not recorded (bytes left), the others still flow."""
    write_config(tmp_path, {"builder": {**BUILDER, "wip": 1}})
    path = write_queue(tmp_path, [task("R1"), task("R2")])
    daemon = _daemon(tmp_path)
    assert daemon.tick().claimed == ["R1"]
    text = path.read_text().replace('"title": "task R1"', '"title": 5', 1)
    path.write_text(text)
    daemon.wake("queue")
    with caplog.at_level(logging.INFO, logger="agentd"):
        for _ in range(400):
            daemon.tick()
            if tasks_by_id(tmp_path)["R2"]["status"] == "done":
                break
            daemon.wake("poll")
    assert path.read_text().startswith(text[: text.index('"title": 5') + 20])
    assert tasks_by_id(tmp_path)["R2"]["status"] == "done"
    assert any("completion of R1 refused: the task is quarantined" in r.getMessage() for r in caplog.records)


def test_an_integer_too_long_to_read_quarantines_its_task(tmp_path: Path) -> None:
    """A 5,000-digit integer (over Python's int() limit) is one task's problem, never a traceback."""
    write_config(tmp_path, {"builder": BUILDER})
    path = write_queue(tmp_path, [task("G1"), task("H1", estimate=0)])
    text = path.read_text().replace('"estimate": 0', '"estimate": ' + "9" * 5000)
    path.write_text(text)
    result = run_agentd("queue", "validate", cwd=tmp_path)
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    assert "$.tasks[1].estimate: a number of 5000 digits" in result.stderr
    report = _daemon(tmp_path).tick()
    assert report.error is None and report.claimed == ["G1"], report
    assert run_agentd("queue", "set-status", "H1", "done", cwd=tmp_path).returncode == 4
    assert ("9" * 5000) in path.read_text()


def test_a_too_long_integer_before_a_syntax_error_is_a_parse_error(tmp_path: Path) -> None:
    """A file with both an integer too long to read and a syntax error after it: one line, not valid JSON."""
    path = tmp_path / "SPRINT_QUEUE.json"
    path.write_text('{"tasks": [{"id": "a", "status": "ready", "n": ' + "9" * 5000 + "}, ]}")
    with pytest.raises(QueueInvalid, match=r"not valid JSON: a trailing comma at line 1 column \d+"):
        QueueStore(path, parse_retry=0).read()
