"""A daemon takes the file events of a lease it released a moment ago for its own (OWN_EVENTS_GRACE); a peer that
claims, runs and releases that task within that moment must still not leave the task waiting for the interval poll.
A real peer daemon, a real crash point holding it between its queue write and its release, real file events."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon, Mode
from agentd.store.file import leases as leases_mod
from tests.helpers.daemons import start, stop_all, task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

# The tester fails the task once (it goes to the refiner), then passes it.
ONCE_THEN_PASS = "if [ -e tested ]; then exit 0; fi; touch tested; exit 3"
ROLES = {
    "tester": {
        "claims": "awaiting_test",
        "working": "testing",
        "on_success": "done",
        "outcomes": {"3": "needs_adapt"},
        "command": ["sh", "-c", ONCE_THEN_PASS],
    },
    "refiner": {"claims": "needs_adapt", "working": "adapting", "on_success": "awaiting_test", "command": ["true"]},
}


def _state(pid: int) -> str:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def test_a_task_a_peer_gives_back_within_the_own_events_grace_is_claimed_without_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tester fails T (to needs_adapt) and releases its lease; the refiner claims T, runs it, writes T back to
    awaiting_test and, held there by a crash point (SIGSTOP), has not released its lease yet when the tester looks.
    Its release then comes inside the tester's grace (widened to 10 minutes here: any event on T's lease is taken for
    the tester's own). The tester, polling while a peer's lease exists, sees that lease gone and claims T again, long
    before its 600 s interval."""
    monkeypatch.setattr(leases_mod, "OWN_EVENTS_GRACE", 600.0)
    write_config(tmp_path, ROLES, defaults={"interval": 600})
    write_queue(tmp_path, [task("T", status="awaiting_test")], {"tester": 1, "refiner": 1})
    tester = Daemon(config_mod.load(root=tmp_path, environ={}), "tester")
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(tester.run(Mode.FOREVER)), daemon=True)
    refiner = None
    try:
        runner.start()
        wait_for(lambda: tasks_by_id(tmp_path)["T"]["status"] == "needs_adapt", 60, "the tester to fail T once")
        refiner = start(tmp_path, "refiner", env={"AGENTD_CRASH_AT": "complete.after-queue-write:stop"})
        wait_for(lambda: _state(refiner.pid) == "T", 60, "the refiner to stop after writing T back")
        assert tasks_by_id(tmp_path)["T"]["status"] == "awaiting_test"
        assert (tmp_path / ".leases" / "T.json").exists()  # (the refiner's, not released yet)
        looked = tester._last_pass
        queue = tmp_path / "SPRINT_QUEUE.json"  # (saved again as it is: a file event, and the tester's look after it)
        (tmp_path / "saved").write_bytes(queue.read_bytes())
        os.replace(tmp_path / "saved", queue)
        wait_for(lambda: tester._last_pass != looked, 60, "the tester to look at T back in awaiting_test")
        assert tasks_by_id(tmp_path)["T"]["status"] == "awaiting_test"  # (a peer's lease on it: not claimed)
        refiner.send_signal(signal.SIGCONT)  # its release: an event the tester takes for its own
        wait_for(lambda: tasks_by_id(tmp_path)["T"]["status"] == "done", 30, "the tester to claim T again and pass it")
    finally:
        if refiner is not None:
            refiner.send_signal(signal.SIGCONT)
            stop_all([refiner])
        tester._signal(signal.SIGTERM, None)
        runner.join(30)
    assert codes == [0]
