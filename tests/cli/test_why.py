"""`agentd queue why`: the right reason for each situation, from the scheduler's own decision code."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentd.cli import main
from agentd.store.file.leases import LeaseDir, new_record
from agentd.store.file.pidfile import PidFile
from tests.helpers.daemons import task, write_config, write_queue

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "command": ["true"]}
TYPED = {**BUILDER, "types": ["Build"]}


def why(root: Path, task_id: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with pytest.raises(SystemExit) as info:
        main(["--root", str(root), "queue", "why", task_id, "--json"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    answer: dict[str, Any] = json.loads(out)
    return answer


@pytest.fixture
def daemon_running(tmp_path: Path) -> Iterator[None]:
    """A builder daemon as far as agentd can tell: its PID file is locked."""
    owner = PidFile(tmp_path / ".agentd" / "run" / "builder.pid", "builder")
    owner.acquire(started=datetime.now(UTC), interval=60, log=None)
    yield
    owner.release()


def failed(answer: dict[str, Any]) -> list[str]:
    return [f"{s['rule']}: {s['text']}" for s in answer["steps"] if not s["ok"]]


def test_unmet_dependency(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A dependency that is not done is named with its status."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A", "in_progress"), task("B", dependencies=["A"])], {"builder": 3})
    answer = why(tmp_path, "B", capsys)
    assert not answer["claimable"] and "dependency A is 'in_progress', not done" in answer["verdict"]


def test_unknown_dependency(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """An unknown dependency quarantines the task: the verdict says so, and the dependency step names the id."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("B", dependencies=["GHOST"]), task("C")], {"builder": 3})
    answer = why(tmp_path, "B", capsys)
    assert (
        not answer["claimable"]
        and "quarantined: $.tasks[0].dependencies[0]: unknown dependency 'GHOST'" in (answer["verdict"])
    )
    assert any("depends on 'GHOST', which is not in the queue" in line for line in failed(answer))
    assert why(tmp_path, "C", capsys)["claimable"]  # the others flow


def test_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A dependency cycle is named in order."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A", dependencies=["B"]), task("B", dependencies=["A"])], {"builder": 3})
    answer = why(tmp_path, "A", capsys)
    assert not answer["claimable"] and "dependency cycle: A -> B -> A" in answer["verdict"]


def test_wip_full(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A full WIP names the limit and the tasks holding it."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("W1", "in_progress"), task("W2", "in_progress"), task("B")], {"builder": 2})
    answer = why(tmp_path, "B", capsys)
    assert not answer["claimable"] and "WIP of builder: 2/2 (held by W1, W2)" in answer["verdict"]


def test_backoff(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A task backing off says until when."""
    later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("B", not_before=later, attempts=1)], {"builder": 3})
    answer = why(tmp_path, "B", capsys)
    assert not answer["claimable"] and "backing off until" in answer["verdict"]


def _lease(root: Path, task_id: str, heartbeat_age: float) -> int:
    """A lease file held by this test process (its flock), with a heartbeat of a given age; returns the fd."""
    now = datetime.now(UTC)
    held = LeaseDir(root / ".leases", root).acquire(
        new_record(task_id, 4, "builder", now=now - timedelta(seconds=heartbeat_age), ttl=60, heartbeat=10, attempt=1)
    )
    assert held is not None
    past = (now - timedelta(seconds=heartbeat_age)).timestamp()
    os.utime(held.fd, (past, past))
    return held.fd


def test_live_lease(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A task in the working status with a live lease is being worked on; the holder and token are named."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("B", "in_progress", lease={"token": 4, "role": "builder"})], {"builder": 3})
    fd = _lease(tmp_path, "B", heartbeat_age=5)
    try:
        answer = why(tmp_path, "B", capsys)
    finally:
        os.close(fd)
    assert answer["verdict"] == "builder is working on it"
    assert any("token 4" in s["text"] and "live: lock held" in s["text"] for s in answer["steps"])


def test_stale_lease(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A lease whose heartbeat is older than its ttl is stale even though its lock is held, and says why."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("B", "in_progress", lease={"token": 4, "role": "builder"})], {"builder": 3})
    fd = _lease(tmp_path, "B", heartbeat_age=600)
    try:
        answer = why(tmp_path, "B", capsys)
    finally:
        os.close(fd)
    assert "its lease is stale" in answer["verdict"]
    assert any("stale: no heartbeat for" in s["text"] for s in answer["steps"])


def test_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """A type the role filters out is named with the role's filter."""
    write_config(tmp_path, {"builder": TYPED})
    write_queue(tmp_path, [task("B", type="Docs")], {"builder": 3})
    answer = why(tmp_path, "B", capsys)
    assert not answer["claimable"] and "type 'Docs'; builder only takes Build" in answer["verdict"]


def test_no_daemon_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Claimable, but nobody runs the role: the answer says so and how to start it."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("B")], {"builder": 3})
    answer = why(tmp_path, "B", capsys)
    assert answer["claimable"] and "no builder daemon is running: `agentd start builder`" in answer["verdict"]


def test_claimable_now(tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon_running: None) -> None:
    """Everything passes: claimable now, with how many claimable tasks are ahead of it."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A", priority=1), task("B", priority=2)], {"builder": 3})
    answer = why(tmp_path, "B", capsys)
    assert (
        answer["claimable"]
        and answer["verdict"] == "claimable now: builder starts it on its next pass (1 claimable task(s) ahead of it)"
    )
    assert failed(answer) == []


def test_plain_output_reads_rule_by_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plain answer is the verdict, then one line per rule with ok/NO."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A", "in_progress"), task("B", dependencies=["A"])], {"builder": 3})
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path), "queue", "why", "B"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("B (ready): not claimable by builder: dependency A")
    assert [line.split()[0] for line in lines[1:]] == ["ok", "ok", "NO", "ok", "NO"]
