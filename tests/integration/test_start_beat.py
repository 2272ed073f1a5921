"""The renewal that records a started run's process group in its lease is told to the supervisor (a control line, so a
wake-up of it) only when the start took a noticeable share of the fence (real daemon passes, real supervisors)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.core.clock import boottime
from agentd.run import execution
from agentd.run.daemon import Daemon
from agentd.run.runner import TaskProcess
from tests.helpers.daemons import task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}


def test_a_quick_start_wakes_no_supervisor_for_its_renewal_and_a_slow_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claimed and started within its pass: its supervisor is told nothing (its fence, counted from the claim, comes
    at most 1 % sooner). B's start seems to take 2 % of the fence (the boot clock read after it is moved on): its
    supervisor is told the renewal. Both run to the end."""
    write_config(tmp_path, {"builder": BUILDER}, defaults={"lease_ttl": 600, "heartbeat": 60})
    write_queue(tmp_path, [task("A"), task("B", dependencies=["A"])], {"builder": 1})
    told: list[float] = []
    real_renewed = TaskProcess.renewed
    monkeypatch.setattr(TaskProcess, "renewed", lambda self, at: told.append(at) or real_renewed(self, at))
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    fence = daemon.role.fence_after
    assert daemon.tick().claimed == ["A"]
    assert told == []
    wait_for(lambda: not daemon._ended.empty(), 60, "A's end to be reported")
    late = fence * 2 * execution.BEAT_AFTER_START
    monkeypatch.setattr(execution, "boottime", lambda: boottime() + late)
    report = daemon.tick()  # (A's end recorded, B claimed and started: one pass)
    assert [task_id for task_id, _ in report.finished] == ["A"] and report.claimed == ["B"], report
    assert len(told) == 1
    wait_for(lambda: daemon.tick().finished, 60, "B to be recorded")
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
