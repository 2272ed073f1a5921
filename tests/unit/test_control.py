"""Pauses, budgets and waiting limits, decided with the time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentd.core.control import (
    ALL,
    Pause,
    budget_pause,
    day_bounds,
    expired,
    may_take_new,
    pause_in_force,
    pause_until,
    spend,
)

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def test_a_role_pause_and_an_all_roles_pause() -> None:
    """A pause for every role stops the builder too; the longest one in force is the one shown."""
    short = Pause("builder", NOW, NOW + timedelta(minutes=10), "usage limit")
    everyone = Pause(ALL, NOW, NOW + timedelta(hours=2), "release freeze")
    assert pause_in_force([short, everyone], "builder", NOW) == everyone
    assert pause_in_force([short], "tester", NOW) is None
    assert pause_in_force([short], "builder", NOW + timedelta(minutes=10)) is None  # ended
    forever = Pause("tester", NOW)
    assert pause_in_force([forever, everyone], "tester", NOW + timedelta(days=30)) == forever


def test_pause_round_trips_through_its_stored_form() -> None:
    """What is kept in the project's state reads back as it was."""
    pause = Pause("builder", NOW, NOW + timedelta(hours=1), "usage limit", "alice")
    assert Pause.from_dict(pause.to_dict()) == pause
    assert Pause.from_dict(Pause(ALL, NOW).to_dict()).until is None


def test_pause_windows() -> None:
    """--for counts from now; --until in the past is refused; both at once is refused."""
    assert pause_until(NOW, seconds=600) == NOW + timedelta(seconds=600)
    assert pause_until(NOW) is None
    with pytest.raises(ValueError, match="already past"):
        pause_until(NOW, until=NOW - timedelta(seconds=1))
    with pytest.raises(ValueError, match="not both"):
        pause_until(NOW, seconds=1, until=NOW + timedelta(hours=1))


def test_days_in_a_time_zone_include_clock_changes() -> None:
    """The day of 2026-10-25 in Berlin is 25 hours long; a day in UTC is 24."""
    start, end = day_bounds(datetime(2026, 10, 25, 12, tzinfo=UTC), "Europe/Berlin")
    assert (start, end - start) == (datetime(2026, 10, 24, 22, tzinfo=UTC), timedelta(hours=25))
    start, end = day_bounds(NOW)
    assert (start, end) == (datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))


def test_a_budget_reached_pauses_the_role_until_the_next_day() -> None:
    """$20 a day: spend of 19.50 is fine; one more run of 0.75 pauses the builder until local midnight."""
    records = [(NOW - timedelta(hours=h), "builder", 3.25) for h in range(6)]  # 19.50 today
    records += [(NOW - timedelta(days=1), "builder", 100.0), (NOW, "tester", 50.0)]  # yesterday; another role
    assert budget_pause("builder", 20.0, records, NOW) is None
    records.append((NOW, "builder", 0.75))
    pause = budget_pause("builder", 20.0, records, NOW, "America/New_York")
    assert pause is not None and pause.role == "builder" and pause.by == "budget"
    assert pause.until == datetime(2026, 12, 3, 5, tzinfo=UTC)  # midnight in New York
    assert "spent $20.25 of $20.00" in pause.reason
    assert budget_pause("builder", None, records, NOW) is None


def test_spend_counts_a_window_and_a_role() -> None:
    """Runs ending exactly at the window's end belong to the next day."""
    start, end = day_bounds(NOW)
    records = [(start, "a", 1.0), (end, "a", 2.0), (NOW, "b", 4.0)]
    assert spend(records, "a", start, end) == 1.0 and spend(records, None, start, end) == 5.0


def test_waiting_limits() -> None:
    """max_waiting stops new claims at the limit; an expiry runs from when the question was asked."""
    assert may_take_new(1, 2) and not may_take_new(2, 2) and may_take_new(50, None)
    asked = NOW - timedelta(hours=3)
    assert expired(asked, 3 * 3600, NOW) and not expired(asked, 3 * 3600 + 1, NOW) and not expired(asked, None, NOW)


def test_a_pause_written_by_a_clock_ahead_is_in_force_at_once() -> None:
    """A pause whose writer's clock runs an hour ahead stops the role now, not an hour from now."""
    ahead = Pause("builder", NOW + timedelta(hours=1), NOW + timedelta(hours=3), "usage limit")
    assert pause_in_force([ahead], "builder", NOW) == ahead
