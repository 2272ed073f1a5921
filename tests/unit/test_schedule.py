"""Schedules with the time passed in: cron, every, time zones and their clock changes, catch-up, skip_if_open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentd.automation.schedule import CatchUp, Schedule, ScheduleInvalid, due, open_firing
from agentd.core.duration import format_duration, parse_duration

TASK = {"title": "Security audit", "type": "Audit", "priority": 2, "prompt": "audit at {at}"}


def at(text: str) -> datetime:
    """An aware UTC datetime from ISO text."""
    return datetime.fromisoformat(text).astimezone(UTC)


def make(**spec: object) -> Schedule:
    """A schedule from a config table, with a default task."""
    return Schedule.from_config({"name": "daily-audit", "task": TASK, **spec})


def test_cron_in_a_time_zone_names_the_local_time() -> None:
    """09:00 in Berlin in winter is 08:00 UTC, and the id says 0900."""
    schedule = make(cron="0 9 * * *", tz="Europe/Berlin")
    nxt = schedule.next_after(at("2026-12-02T07:00:00+00:00"))
    assert nxt == at("2026-12-02T08:00:00+00:00")
    assert schedule.task_id(nxt) == "daily-audit-20261202T0900"


def test_an_on_time_firing_fires_once_and_is_remembered() -> None:
    """A look just after the scheduled time fires it; the next look fires nothing more."""
    schedule = make(cron="0 9 * * *")
    first = due(schedule, at("2026-12-01T09:00:00+00:00"), at("2026-12-02T09:00:00.200+00:00"))
    assert first.fire == [at("2026-12-02T09:00:00+00:00")] and first.missed == 0
    again = due(schedule, first.handled, at("2026-12-02T09:00:05+00:00"))
    assert again.fire == [] and again.next_at == at("2026-12-03T09:00:00+00:00")


@pytest.mark.parametrize(
    ("catch_up", "fired", "missed"),
    [
        (CatchUp.NONE, [], 3),
        (CatchUp.ONE, ["2026-12-04T09:00:00+00:00"], 2),
        (CatchUp.ALL, ["2026-12-02T09:00:00+00:00", "2026-12-03T09:00:00+00:00", "2026-12-04T09:00:00+00:00"], 0),
    ],
)
def test_catch_up_after_three_missed_days(catch_up: CatchUp, fired: list[str], missed: int) -> None:
    """Down from the 1st at noon to the 4th at noon: none fires nothing, one the latest, all each missed day."""
    schedule = make(cron="0 9 * * *", catch_up=catch_up.value)
    result = due(schedule, at("2026-12-01T09:00:00+00:00"), at("2026-12-04T12:00:00+00:00"))
    assert result.fire == [at(text) for text in fired]
    assert result.missed == missed
    assert result.handled == at("2026-12-04T09:00:00+00:00")


def test_catch_up_all_is_bounded() -> None:
    """A year of missed minutes fires the latest 1,000 at most and says the rest were missed."""
    schedule = make(cron="* * * * *", catch_up="all")
    result = due(schedule, at("2025-12-01T00:00:00+00:00"), at("2026-12-01T00:00:00+00:00"))
    assert len(result.fire) == 1000 and result.missed >= 1
    assert result.fire[-1] == at("2026-12-01T00:00:00+00:00")
    assert result.fire == sorted(result.fire)


def test_the_first_look_fires_nothing_from_before_the_schedule_existed() -> None:
    """With no memory of earlier firings, catch_up = all must not replay history."""
    schedule = make(cron="0 9 * * *", catch_up="all")
    assert due(schedule, None, at("2026-12-02T12:00:00+00:00")).fire == []
    assert due(schedule, None, at("2026-12-02T09:00:10+00:00")).fire == [at("2026-12-02T09:00:00+00:00")]


def test_every_is_anchored_so_every_process_agrees() -> None:
    """every = 30m fires on the half hour, whoever looks and when."""
    schedule = make(every="30m")
    assert schedule.next_after(at("2026-12-02T10:07:13+00:00")) == at("2026-12-02T10:30:00+00:00")
    result = due(schedule, at("2026-12-02T10:00:00+00:00"), at("2026-12-02T10:30:01+00:00"))
    assert result.fire == [at("2026-12-02T10:30:00+00:00")]
    assert schedule.task_id(result.fire[0]) == "daily-audit-20261202T1030"


def test_spring_forward_fires_once_at_the_shifted_time() -> None:
    """02:30 does not exist in Berlin on 2026-03-29: the firing happens once, at 03:00 local."""
    schedule = make(cron="30 2 * * *", tz="Europe/Berlin", catch_up="all")
    result = due(schedule, at("2026-03-28T12:00:00+00:00"), at("2026-03-30T12:00:00+00:00"))
    ids = [schedule.task_id(moment) for moment in result.fire]
    assert ids == ["daily-audit-20260329T0300", "daily-audit-20260330T0230"]


def test_fall_back_never_gives_two_firings_one_id() -> None:
    """Every 30 min across the repeated hour in Berlin: every firing has its own id (the repeat is marked b)."""
    schedule = make(every="30m", tz="Europe/Berlin", catch_up="all")
    result = due(schedule, at("2026-10-24T23:00:00+00:00"), at("2026-10-25T02:00:00+00:00"))
    ids = [schedule.task_id(moment) for moment in result.fire]
    assert len(ids) == len(set(ids)) == 6
    assert "daily-audit-20261025T0230" in ids and "daily-audit-20261025T0230b" in ids


def test_a_daily_cron_fires_once_on_the_repeated_hour() -> None:
    """cron 30 2 * * * in Berlin on the day the clock goes back fires once, not twice."""
    schedule = make(cron="30 2 * * *", tz="Europe/Berlin", catch_up="all")
    result = due(schedule, at("2026-10-24T12:00:00+00:00"), at("2026-10-25T12:00:00+00:00"))
    assert [schedule.task_id(moment) for moment in result.fire] == ["daily-audit-20261025T0230"]


def test_the_task_a_firing_adds() -> None:
    """The template with its placeholders filled, a deterministic id, ready by default, and where it came from."""
    schedule = make(cron="0 9 * * *")
    task = schedule.make_task(at("2026-12-02T09:00:00+00:00"), at("2026-12-02T09:00:01+00:00"))
    assert task["id"] == "daily-audit-20261202T0900"
    assert task["prompt"] == "audit at 2026-12-02T09:00:00+00:00"
    assert task["status"] == "ready" and task["dependencies"] == []
    assert task["scheduled"] == {"by": "daily-audit", "for": "2026-12-02T09:00:00+00:00"}


def test_skip_if_open_finds_the_earlier_firing_still_open() -> None:
    """An earlier firing's task that is not final holds the next one back; a done one, or another schedule's, not."""
    schedule = make(cron="0 9 * * *")
    final = {"done", "cancelled"}.__contains__
    assert open_firing(schedule, [("daily-audit-20261201T0900", "in_progress")], final) == "daily-audit-20261201T0900"
    assert open_firing(schedule, [("daily-audit-20261201T0900", "done")], final) is None
    assert open_firing(schedule, [("daily-auditor-20261201T0900", "ready"), ("daily-audit", "ready")], final) is None
    relaxed = make(cron="0 9 * * *", skip_if_open=False)
    assert open_firing(relaxed, [("daily-audit-20261201T0900", "ready")], final) is None


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"cron": "0 9 * *"}, "cron"),
        ({"cron": "0 9 * * *", "every": "1h"}, "cron"),
        ({}, "cron"),
        ({"every": "soon"}, "every"),
        ({"every": "0.5s"}, "every"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "tz"),
        ({"cron": "0 9 * * *", "catch_up": "some"}, "catch_up"),
        ({"cron": "0 9 * * *", "name": "bad name"}, "name"),
        ({"cron": "0 9 * * *", "task": {"id": "X", "title": "t"}}, "task.id"),
        ({"cron": "0 9 * * *", "task": {"type": "Audit"}}, "task"),
        ({"cron": "0 9 * * *", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_schedule_names_its_key(spec: dict[str, object], key: str) -> None:
    """Every mistake in a [[schedule]] table is refused with the schedule's name and the key."""
    with pytest.raises(ScheduleInvalid) as caught:
        Schedule.from_config({"name": "daily-audit", "task": TASK, **spec})
    assert caught.value.key == key


@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    gaps=st.lists(st.integers(min_value=0, max_value=4 * 3600), min_size=1, max_size=30),
    spec=st.sampled_from(
        [
            {"cron": "*/7 * * * *", "tz": "Europe/Berlin"},
            {"every": "13m"},
            {"cron": "0 * * * *", "tz": "America/New_York"},
        ]
    ),
)
def test_catch_up_all_fires_each_scheduled_time_exactly_once(
    start: datetime, gaps: list[int], spec: dict[str, str]
) -> None:
    """However irregular the looks, catch_up = all fires every scheduled time once, in order, none twice."""
    schedule = Schedule.from_config({"name": "s", "task": TASK, "catch_up": "all", **spec})
    last, now, fired = start, start, []
    for gap in gaps:
        now += timedelta(seconds=gap)
        result = due(schedule, last, now)
        fired += result.fire
        last = result.handled
    assert fired == schedule.times_between(start, now, limit=10**6)
    assert len({schedule.task_id(moment) for moment in fired}) == len(fired)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), (45, 45.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    """Durations as people write them."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-3", "1h-5m", "nan", "inf", True])
def test_bad_durations_are_refused(text: object) -> None:
    """Anything that is not a finite, non-negative duration is refused, naming the text."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)  # type: ignore[arg-type]


def test_durations_read_back() -> None:
    """Short forms for people."""
    assert [format_duration(s) for s in (5, 600, 5400, 9000, 3 * 86400)] == ["5 s", "10 min", "90 min", "2.5 h", "3 d"]
