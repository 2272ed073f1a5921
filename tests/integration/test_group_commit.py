"""Group commit: a pass for a run that ended while others of the daemon still run waits (bounded) for them, so that one
transaction records several ends; never when nothing else runs (real daemons, real commands; the bound widened so that
no test depends on timing)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run import daemon as daemon_mod
from agentd.run import runner
from agentd.run.daemon import Daemon, group_hold
from agentd.run.zygote import default_zygote
from tests.helpers.daemons import task, tasks_by_id, wait_for, write_config, write_queue
from tests.integration.test_zygote import done_with_its_task, let_go

pytestmark = pytest.mark.slow

# A ends at once; B waits for the test's gate.
GATED = 'if [ "$AGENTD_TASK_ID" = B ]; then while [ ! -e gate ]; do sleep 0.02; done; fi'
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["sh", "-c", GATED]}


def test_group_hold_is_a_bounded_share_of_the_last_pass_and_none_when_nothing_else_runs() -> None:
    """The hold: a share of the last pass's own time, capped; 0 with no ended run or nothing else running."""
    assert group_hold(0.010, ended=1, running=3) == pytest.approx(daemon_mod.GROUP_SHARE * 0.010)
    assert group_hold(10.0, ended=1, running=3) == daemon_mod.GROUP_MAX
    assert group_hold(10.0, ended=1, running=0) == 0.0  # a chain, a single task: never held
    assert group_hold(10.0, ended=0, running=3) == 0.0  # nothing to record: nothing to hold


@pytest.fixture
def wide_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold for up to 10 minutes: the tests end the hold by what they do, never by its bound."""
    monkeypatch.setattr(daemon_mod, "GROUP_SHARE", 1e6)
    monkeypatch.setattr(daemon_mod, "GROUP_MAX", 600.0)


def _gather_in_thread(daemon: Daemon) -> threading.Thread:
    gatherer = threading.Thread(target=daemon._gather_ends, daemon=True)
    gatherer.start()
    return gatherer


def test_a_pass_for_one_end_waits_for_the_others_running_and_records_them_together(
    tmp_path: Path, wide_hold: None
) -> None:
    """WIP 2, A ends while B runs: the hold lasts until B ends, and the next pass records A and B in one write."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A"), task("B")], {"builder": 2})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    first = daemon.tick()
    assert sorted(first.claimed) == ["A", "B"], first
    daemon._pass_took = 1.0  # (a pass that recorded or claimed; the loop measures it)
    wait_for(lambda: not daemon._ended.empty(), 60, "A's end to be reported")
    gatherer = _gather_in_thread(daemon)
    wait_for(lambda: daemon.running["A"].exit is not None, 60, "the hold to collect A's end")
    assert gatherer.is_alive(), "the pass for A's end did not wait for B, still running"
    (tmp_path / "gate").touch()
    gatherer.join(60)
    assert not gatherer.is_alive(), "the hold did not end when B ended"
    report = daemon.tick()
    assert sorted(task_id for task_id, _ in report.finished) == ["A", "B"], report
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}


def test_a_lone_run_is_recorded_without_holding(tmp_path: Path, wide_hold: None) -> None:
    """WIP 1 (a chain, a single task): nothing else runs, so its end is never held, whatever the bound."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A"), task("B", dependencies=["A"])], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert daemon.tick().claimed == ["A"]
    daemon._pass_took = 1.0
    wait_for(lambda: not daemon._ended.empty(), 60, "A's end to be reported")
    gatherer = _gather_in_thread(daemon)
    gatherer.join(30)
    assert not gatherer.is_alive(), "a lone run's end was held"
    (tmp_path / "gate").touch()  # (B, claimed next, ends at once)


def test_a_stop_request_ends_the_hold(tmp_path: Path, wide_hold: None) -> None:
    """A SIGTERM (a stop request) while a pass is held ends the hold at once: shutdown is not delayed by it."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A"), task("B")], {"builder": 2})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert sorted(daemon.tick().claimed) == ["A", "B"]
    daemon._pass_took = 1.0
    wait_for(lambda: not daemon._ended.empty(), 60, "A's end to be reported")
    gatherer = _gather_in_thread(daemon)
    wait_for(lambda: daemon.running["A"].exit is not None, 60, "the hold to collect A's end")
    assert gatherer.is_alive()
    daemon._stop_requests += 1
    daemon.wake("signal")
    gatherer.join(30)
    assert not gatherer.is_alive(), "the hold outlived a stop request"
    (tmp_path / "gate").touch()
    wait_for(lambda: daemon.running["B"].proc is None or daemon.running["B"].proc.wait(0) is not None, 60, "B to end")


def test_a_runs_supervisor_is_reaped_once_the_pass_recorded_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's supervisor reported its end and is done with its task: it is let go (reaped, or given back to its
    zygote for the next task) after the pass that records the run (its reap, a wake-up of its reader thread, takes
    nothing from that pass), not before; and then at once."""
    monkeypatch.setattr(runner, "REAP_HOLD", 600.0)  # only the daemon's go ends the hold here
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A")], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert daemon.tick().claimed == ["A"]
    proc = daemon.running["A"].proc
    assert proc is not None
    wait_for(lambda: not daemon._ended.empty(), 60, "A's end to be reported")
    wait_for(lambda: done_with_its_task(proc.pid), 60, "A's supervisor to be done with its task")
    assert proc.wait(0.2) is None, "reaped before its run was recorded"
    report = daemon.tick()
    assert [task_id for task_id, _ in report.finished] == ["A"], report
    assert proc.wait(60) is not None, "not reaped once its run was recorded"
    wait_for(lambda: let_go(proc.pid, default_zygote()), 60, "A's supervisor to be reaped or given back")
