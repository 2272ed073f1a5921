"""Tests for the daemon's pacing of looks made for file events alone (a CPU budget, the time passed in)."""

from __future__ import annotations

import pytest

from agentd.run.daemon import LOOK_BURST, LOOK_SHARE, CpuBudget


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
