"""A hung holder is killed only when a later look confirms it (agentd.run.recovery.Suspects): a holder coming back
(resumed after SIGSTOP, or on PostgreSQL taking its lease's lock again on a new session just before it beats) looks
hung for an instant, and a peer that killed it then killed a healthy daemon (seen in tests/postgres/test_outage.py:
the daemon that rode out the outage SIGKILLed by its peer the moment the server was back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agentd.core.scheduler import LeaseObservation
from agentd.run import recovery

NOW = datetime(2026, 12, 3, 18, 6, 13, tzinfo=UTC)


def hung(task_id: str = "T1", beat: float = 10.0, token: int = 2) -> recovery.Recovery:
    seen = LeaseObservation(
        task_id, token=token, role="builder", host="h", pid=17108, pgid=17255, locked=True,
        heartbeat_at=NOW - timedelta(seconds=beat), ttl=4.0, boot_id="b",
    )  # fmt: skip
    return recovery.Recovery(task_id, recovery.Action.REQUEUE, "heartbeat 10 s old", "builder", kill=True, lease=seen)


def test_a_holder_seen_hung_once_is_not_killed_at_that_look() -> None:
    """The first look that finds a holder hung only suspects it: nothing to kill yet, and it is said once."""
    suspects = recovery.Suspects(confirm=5.0)
    kept, new, cleared = suspects.sift([hung()], 100.0)
    assert (kept, [i.task_id for i in new], cleared) == ([], ["T1"], [])
    kept, new, cleared = suspects.sift([hung()], 104.9)
    assert (kept, new, cleared) == ([], [], [])


def test_a_holder_still_hung_with_the_same_beat_after_the_wait_is_killed() -> None:
    """Seen hung again, same token and heartbeat, confirm seconds after the first look: killed now."""
    suspects = recovery.Suspects(confirm=5.0)
    suspects.sift([hung()], 100.0)
    kept, new, _ = suspects.sift([hung()], 105.0)
    assert [i.task_id for i in kept] == ["T1"] and new == []
    kept, new, _ = suspects.sift([hung()], 105.5)  # its lease still there: killed again (nothing is left to kill)
    assert [i.task_id for i in kept] == ["T1"] and new == []
    kept, new, cleared = suspects.sift([], 106.0)  # its lease recovered: a suspicion that came true, not "cleared"
    assert (kept, new, cleared, suspects.pending()) == ([], [], [], False)


def test_a_holder_that_beat_in_between_is_suspected_afresh_not_killed() -> None:
    """A new heartbeat between the looks (it came back, then stopped again) restarts the wait."""
    suspects = recovery.Suspects(confirm=5.0)
    suspects.sift([hung(beat=10.0)], 100.0)
    kept, new, _ = suspects.sift([hung(beat=9.0)], 106.0)
    assert kept == [] and [i.task_id for i in new] == ["T1"]
    kept, _, _ = suspects.sift([hung(beat=9.0)], 111.0)
    assert [i.task_id for i in kept] == ["T1"]


def test_a_holder_no_longer_hung_is_cleared_and_said_so() -> None:
    """The holder beat (its lease is live again, so no plan names it): the suspicion ends, and is said to."""
    suspects = recovery.Suspects(confirm=5.0)
    suspects.sift([hung()], 100.0)
    assert suspects.pending()
    kept, new, cleared = suspects.sift([], 101.0)
    assert (kept, new, cleared, suspects.pending()) == ([], [], ["T1"], False)
    kept, new, _ = suspects.sift([hung()], 107.0)  # hung again later: a fresh wait, not the old one's
    assert kept == [] and len(new) == 1


def test_plans_that_kill_nothing_pass_at_once() -> None:
    """Recoveries that break a lease rather than kill a holder are not held back."""
    other = recovery.Recovery("T9", recovery.Action.REQUEUE, "no lease file", "builder")
    kept, new, cleared = recovery.Suspects().sift([other, hung()], 0.0)
    assert kept == [other] and [i.task_id for i in new] == ["T1"] and cleared == []


@given(st.lists(st.tuples(st.floats(0, 30), st.sampled_from([10.0, 9.0]), st.booleans()), max_size=30))
def test_no_kill_unless_the_same_hung_holder_was_seen_confirm_seconds_before(
    looks: list[tuple[float, float, bool]],
) -> None:
    """Whatever the looks: a holder is killed at a look only if an earlier look, at least confirm seconds before,
    saw it hung with the same heartbeat, and every look between saw it so too."""
    suspects = recovery.Suspects(confirm=5.0)
    mono = 0.0
    run: list[tuple[float, float]] = []  # the looks that saw it hung since the suspicion began, each (time, beat)
    for step, beat, is_hung in looks:
        mono += step
        kept, _, _ = suspects.sift([hung(beat=beat)] if is_hung else [], mono)
        if not is_hung:
            run = []
            continue
        run = run if run and run[-1][1] == beat else []  # a new beat: a fresh suspicion
        run.append((mono, beat))
        if kept:
            assert mono - run[0][0] >= 5.0, (run, mono)
