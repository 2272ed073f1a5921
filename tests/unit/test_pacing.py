"""Tests for the daemon's pacing of looks made for file events alone (a CPU budget, the time passed in)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.core.clock import FakeClock
from agentd.run.daemon import LOOK_BURST, LOOK_SHARE, CpuBudget, Daemon


def test_a_quiet_daemon_looks_at_once_and_a_storm_of_costly_looks_is_paced() -> None:
    budget = CpuBudget(0.02, 0.05, now=100.0)
    for _ in range(4):  # cheap looks after a quiet moment: never delayed
        assert budget.wait(100.0) == 0.0
        budget.spend(0.01, 100.0)
    assert budget.wait(100.0) == 0.0  # some left: one more may start...
    budget.spend(0.04, 100.0)  # ...and overdraw it
    assert budget.wait(100.0) == pytest.approx(1.5)  # 0.03 s of CPU at 2 % of the time
    assert budget.wait(101.0) == pytest.approx(0.5)
    assert budget.wait(101.51) == 0.0


def test_the_budget_never_holds_more_than_the_burst() -> None:
    budget = CpuBudget(0.02, 0.05, now=0.0)
    assert budget.wait(1_000_000.0) == 0.0
    budget.spend(0.06, 1_000_000.0)
    assert budget.wait(1_000_000.0) == pytest.approx(0.5)


def test_a_clock_that_goes_back_does_not_refill_or_drain() -> None:
    budget = CpuBudget(0.02, 0.05, now=10.0)
    budget.spend(0.05, 10.0)
    assert budget.wait(5.0) == 0.0
    budget.spend(0.01, 5.0)
    assert budget.wait(5.0) == pytest.approx(0.5)


def test_looks_at_a_small_queue_are_never_delayed_by_the_defaults() -> None:
    """A look at a small queue costs about a millisecond: a pipeline's burst of writes must not wait for it."""
    budget = CpuBudget(LOOK_SHARE, LOOK_BURST, now=0.0)
    now = 0.0
    for _ in range(200):  # 20 writes a second for 10 s, each answered by a 1 ms look
        assert budget.wait(now) == 0.0
        budget.spend(0.001, now)
        now += 0.05


def _daemon(tmp_path: Path, clock: FakeClock, interval: float = 60.0) -> Daemon:
    (tmp_path / "agentd.toml").write_text(
        '[roles.builder]\nclaims = "ready"\nworking = "in_progress"\non_success = "done"\ncommand = ["true"]\n',
        encoding="utf-8",
    )
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": []}\n', encoding="utf-8")
    config = config_mod.load(root=tmp_path, environ={})
    return Daemon(config, "builder", interval=interval, clock=clock, watch=False)


def _pace_in_thread(daemon: Daemon) -> list[bool]:
    """Run ``daemon._pace()`` in a thread; a pace that waits is stopped after a deadline (and fails the test)."""
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(daemon._pace()), daemon=True)
    worker.start()
    worker.join(timeout=5.0)
    if worker.is_alive():
        daemon._stop_requests += 1
        daemon._wake.set()
        worker.join(timeout=5.0)
        pytest.fail("the look was held back by pacing")
    return result


def test_the_first_pass_is_neither_held_back_nor_charged(tmp_path: Path) -> None:
    """After start, the first look at a big queue costs seconds: it must not eat the budget of later file events."""
    clock = FakeClock()
    daemon = _daemon(tmp_path, clock)
    daemon._looks.spend(10.0, clock.monotonic())  # a budget overdrawn by minutes
    daemon._dirty = True
    assert _pace_in_thread(daemon) == [False]


def test_the_interval_poll_is_never_held_back_or_charged(tmp_path: Path) -> None:
    """A look due by the interval runs at once, whatever file events spent before it."""
    clock = FakeClock()
    daemon = _daemon(tmp_path, clock, interval=60.0)
    daemon._last_pass = clock.monotonic()
    clock.advance(61.0)
    daemon._looks.spend(10.0, clock.monotonic())
    daemon._dirty = True  # a file event came as well
    assert _pace_in_thread(daemon) == [False]


def test_a_file_event_after_a_costly_look_is_paced(tmp_path: Path) -> None:
    """Looks for file events alone are still paced once the budget is spent (the delay is what is left to pay)."""
    clock = FakeClock()
    daemon = _daemon(tmp_path, clock, interval=60.0)
    daemon._last_pass = clock.monotonic()
    daemon._looks.spend(1.0, clock.monotonic())
    daemon._dirty = True
    assert daemon._look_delay() > 0
    clock.advance(59.0)
    assert daemon._look_delay() <= 1.0  # never past the interval poll
    clock.advance(1.0)
    assert daemon._look_delay() == 0.0
