"""A daemon takes the file events of a lease it released a moment ago for its own (OWN_EVENTS_GRACE); a peer that
claims, runs and releases that task within that moment must still not leave the task waiting for the interval poll.
A real peer daemon, a real crash point holding it between its queue write and its release, real file events."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon, Mode
from agentd.store.file import leases as leases_mod
from tests.helpers.daemons import events, start, stop_all, task, tasks_by_id, wait_for, write_config, write_queue

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


def _watching(pid: int) -> bool:
    """Whether process ``pid`` has an inotify instance open (its change watch is up)."""
    folder = Path(f"/proc/{pid}/fd")
    for entry in folder.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry) == "anon_inode:inotify":
                return True
    return False


def test_a_peer_killed_while_it_holds_a_reused_lease_file_is_recovered_on_its_file_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon A (a process) runs T1, then claims T2, whose lease file is one it made ahead (a daemon's claims after
    its first, or one kept from a release: the kernel reports such a file's close under another name than
    ``T2.json``). Daemon B (in this process), idle with a 600 s interval and its 1 s check of peers' leases widened
    to 600 s too (what is tested is its file events), its change watch up, is woken by A's death: A is SIGKILLed, its
    supervisor ends T2's command and exits, the lease's lock is free, and B recovers T2 and claims it. (Before round
    24, B took that close for junk: only its check of peers' leases, every second, found it.)"""
    from agentd.run import daemon as daemon_mod

    monkeypatch.setattr(daemon_mod, "LEASE_POLL", 600.0)
    long_second = ["sh", "-c", 'if [ "$AGENTD_TASK_ID" = T2 ]; then exec sleep 600; fi']
    builder = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": long_second}
    write_config(tmp_path, {"builder": builder}, defaults={"interval": 600})
    tasks = [task("T1"), task("T2", dependencies=["T1"]), task("T3", dependencies=["T1"])]
    write_queue(tmp_path, tasks, {"builder": 1})
    first = start(tmp_path, "builder")
    second = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", instance="b")
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(second.run(Mode.FOREVER)), daemon=True)
    try:
        wait_for(lambda: (tasks_by_id(tmp_path)["T2"].get("lease") or {}).get("pid") == first.pid, 60, "A to hold T2")
        runner.start()
        journal = tmp_path / ".agentd" / "events.jsonl"
        me = os.getpid()
        wait_for(lambda: any(e.get("pid") == me and e["event"] == "wip-full" for e in events(journal)), 60, "B's look")
        wait_for(lambda: _watching(me), 60, "B's change watch to be up")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        wait_for(
            lambda: (tasks_by_id(tmp_path)["T2"].get("lease") or {}).get("pid") == me,
            60,
            "B to recover T2 and claim it (its interval and its check of peers' leases are 600 s)",
        )
    finally:
        stop_all([first])
        second._signal(signal.SIGTERM, None)
        runner.join(60)
