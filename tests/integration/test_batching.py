"""A pass records the runs that ended and claims the room they leave in the same queue transaction: real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon
from tests.helpers.daemons import task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow

# Each run waits for a file named after its task, then ends: the test decides when each one ends.
WAIT_FOR_GO = ["sh", "-c", 'while [ ! -e "go-$AGENTD_TASK_ID" ]; do sleep 0.01; done']
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": WAIT_FOR_GO}


def _daemon(root: Path, tasks: int, wip: int) -> Daemon:
    write_config(root, {"builder": BUILDER}, defaults={"interval": 60})
    write_queue(root, [task(f"T{n}") for n in range(tasks)], {"builder": wip})
    return Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)


def _go(root: Path, *task_ids: str) -> None:
    for task_id in task_ids:
        (root / f"go-{task_id}").touch()


def test_a_run_recorded_frees_its_room_in_the_same_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WIP 2, both running; one ends: the pass that records it claims the next task too (one queue write, not a
    pass to record and another to claim), and the role never runs more than its WIP."""
    monkeypatch.chdir(tmp_path)
    daemon = _daemon(tmp_path, tasks=3, wip=2)
    assert sorted(daemon.tick().claimed) == ["T0", "T1"]
    try:
        _go(tmp_path, "T0")
        wait_for(lambda: not daemon._ended.empty(), 60, "T0's end to reach the daemon")
        report = daemon.tick()
        assert [task_id for task_id, _ in report.finished] == ["T0"], report
        assert report.claimed == ["T2"], report
        assert sorted(daemon.running) == ["T1", "T2"]
        statuses = {task_id: t["status"] for task_id, t in tasks_by_id(tmp_path).items()}
        assert statuses == {"T0": "done", "T1": "in_progress", "T2": "in_progress"}
        assert sorted(p.stem for p in (tmp_path / ".leases").glob("*.json")) == ["T1", "T2"]
    finally:
        _go(tmp_path, "T0", "T1", "T2")
        wait_for(lambda: daemon.tick() and not daemon.running, 60, "every run to end and be recorded")
