"""A daemon's loop reads its tasks' status itself, in the poll it sleeps in (runner.StatusPump), instead of a reader
thread per task: real supervisors from a real zygote, real signals, and a real process writing frames piecemeal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.run import runner
from agentd.run.runner import ExitInfo, StatusPump, TaskProcess, launch
from agentd.run.zygote import Zygote
from agentd.wakeup import WakeUp
from tests.integration.test_runner import spec
from tests.integration.test_zygote import done_with_its_task, let_go, process_state

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc and pidfds")

DEADLINE = 60.0  # s: what a test waits at most for what it waits for


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


class Owner:
    """What a daemon's loop is to its tasks here: a wake-up, the ends told (with the thread that told each), a pump."""

    def __init__(self) -> None:
        self.wake = WakeUp()
        self.pump = StatusPump()
        self.told: list[tuple[ExitInfo, bool]] = []  # (the end, told on this thread)
        self.thread = threading.get_ident()

    def on_exit(self, _proc: TaskProcess, info: ExitInfo) -> None:
        self.told.append((info, threading.get_ident() == self.thread))
        self.wake.set()

    def sleep_until(self, condition: object, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            self.pump.wait(self.wake, 0.5)
            self.wake.clear()


def test_an_end_is_read_and_told_on_the_owners_thread_and_reaped_at_its_go(tmp_path: Path, zygote: Zygote) -> None:
    """No thread reads the status: the end comes through the owner's wait, is told on its thread, and the supervisor
    (done with its task right after reporting) stays held -- its group may still be signalled -- until let_reap,
    which gives it back to its zygote for the next task (or reaps it) at once."""
    owner = Owner()
    threads = {t.ident for t in threading.enumerate()}
    proc = launch(spec(tmp_path, ["sh", "-c", "exit 3"]), owner.on_exit, zygote=zygote, read=False, hold_reap=True)
    owner.pump.add(proc)
    owner.sleep_until(lambda: owner.told, "the end to be told")
    assert [(info.returncode, mine) for info, mine in owner.told] == [(3, True)]
    assert {t.ident for t in threading.enumerate()} - threads == set(), "a thread read the status"
    owner.sleep_until(lambda: done_with_its_task(proc.pid), "the supervisor to be done with its task")
    assert proc.poll() is None  # (told, not let go: the owner's go not given)
    proc.let_reap()  # (back to its zygote, or the zygote is told to reap it: at once, without waiting for it)
    assert proc.poll() is not None and proc.poll().returncode == 3  # type: ignore[union-attr]
    owner.sleep_until(lambda: let_go(proc.pid, zygote), "the supervisor to be back with its zygote or reaped")


def test_a_supervisor_killed_before_its_report_ends_the_run_as_dead_and_is_reaped_first(
    tmp_path: Path, zygote: Zygote
) -> None:
    """SIGKILL to the supervisor while its command runs: EOF on the status pipe, the group is killed, and the run ends
    as "supervisor died", told once the supervisor is reaped (no report to act on before)."""
    owner = Owner()
    proc = launch(spec(tmp_path, ["sleep", "60"]), owner.on_exit, zygote=zygote, read=False, hold_reap=True)
    owner.pump.add(proc)
    os.kill(proc.pid, signal.SIGKILL)
    owner.sleep_until(lambda: owner.told, "the end to be told")
    [(info, _mine)] = owner.told
    assert info.crashed and info.error == "supervisor died"
    assert proc.wait(DEADLINE) is not None
    owner.sleep_until(lambda: process_state(proc.pid) == "gone", "the zygote to reap the supervisor")


def test_a_reap_never_let_comes_after_the_hold(tmp_path: Path, zygote: Zygote, monkeypatch: pytest.MonkeyPatch) -> None:
    """An owner that never gives the go (let_reap): its waits reap the supervisor REAP_HOLD after the report."""
    monkeypatch.setattr(runner, "REAP_HOLD", 0.2)
    owner = Owner()
    proc = launch(spec(tmp_path, ["true"]), owner.on_exit, zygote=zygote, read=False, hold_reap=True)
    owner.pump.add(proc)
    owner.sleep_until(lambda: owner.told, "the end to be told")
    owner.sleep_until(lambda: proc.poll() is not None, "the reap after the hold")
    owner.sleep_until(lambda: process_state(proc.pid) == "gone", "the zygote to reap the supervisor")


PIECEMEAL = """
import marshal, os, sys
def frame(obj):
    payload = marshal.dumps(obj)
    return len(payload).to_bytes(4, "big") + payload
started = frame({"event": "started", "pid": 4242, "started": 1.0})
exited = frame({"event": "exited", "returncode": 7, "signal": None, "timed_out": False, "killed_by": None,
                "error": None, "started": 1.0, "ended": 2.0})
for piece in (started[:3], started[3:] + exited[:5], exited[5:]):
    sys.stdin.buffer.readline()  # (the test's go for each piece)
    os.write(1, piece)
sys.stdin.buffer.readline()
"""


def test_frames_split_across_reads_are_put_together(tmp_path: Path) -> None:
    """A supervisor's frames read in pieces (a frame's length cut, a frame and the start of the next): each is read
    whole, the start's pid known once its frame is, the end told once its last byte came."""
    child = subprocess.Popen(
        [sys.executable, "-c", PIECEMEAL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    owner = Owner()
    proc = TaskProcess(child, spec(tmp_path, ["true"]), owner.on_exit, time.time(), hold_reap=True)
    owner.pump.add(proc)
    assert child.stdin is not None
    try:
        for expected_pid, told in ((None, 0), (4242, 0), (4242, 1)):
            child.stdin.write(b"go\n")
            child.stdin.flush()
            size = len(owner.told)
            deadline = time.monotonic() + DEADLINE
            while proc.command_pid != expected_pid or len(owner.told) != told:
                assert time.monotonic() < deadline, (proc.command_pid, owner.told)
                owner.pump.wait(owner.wake, 0.2)
            assert len(owner.told) >= size
        [(info, mine)] = owner.told
        assert (info.returncode, info.started, info.ended, mine) == (7, 1.0, 2.0, True)
    finally:
        child.kill()
        child.wait()


def test_supervisors_let_be_reaped_together_go_to_the_zygote_in_one_message(
    tmp_path: Path, zygote: Zygote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three ended runs let be reaped within Zygote.reaping_together: one ``R`` request names the three supervisors
    (one wake-up of the zygote, not three), and the zygote reaps each. (Supervisors that run one task each:
    AGENTD_SUPERVISOR_REUSE=0; a reused one is given back to its zygote, not reaped.)"""
    from tests.integration.test_zygote import CountingSocket

    monkeypatch.setenv("AGENTD_SUPERVISOR_REUSE", "0")  # (read by the zygote as it starts: at the first launch)
    owner = Owner()
    procs = [
        launch(spec(tmp_path, ["true"]), owner.on_exit, zygote=zygote, read=False, hold_reap=True) for _ in range(3)
    ]
    for proc in procs:
        owner.pump.add(proc)
    owner.sleep_until(lambda: len(owner.told) == 3, "the three ends to be told")
    owner.sleep_until(lambda: all(process_state(p.pid) == "Z" for p in procs), "the supervisors to exit")
    counting = CountingSocket(zygote._sock)
    zygote._sock = counting  # type: ignore[assignment]
    with zygote.reaping_together():
        for proc in procs:
            proc.let_reap()
        assert counting.sent == [], "a reap went to the zygote before the end of the batch"
    assert counting.sent == [b"R" + b" ".join(b"%d" % p.pid for p in procs)]
    owner.sleep_until(lambda: all(process_state(p.pid) == "gone" for p in procs), "the zygote to reap all three")
    assert all(p.poll() is not None for p in procs)
