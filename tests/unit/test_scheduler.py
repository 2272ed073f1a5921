"""The decision core: selection order, every blocking rule, WIP, unblocking and outcome decisions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.config import build
from agentd.core import scheduler as core
from agentd.core.model import views
from agentd.core.scheduler import Kind, LeaseObservation, Outcome, Reason, View
from agentd.core.workflow import Workflow
from tests.helpers.examples import examples

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CONFIG = build({}, root=__import__("pathlib").Path("/tmp"), path=None)
WF: Workflow = CONFIG.workflow
BUILDER = WF.role("builder")


def task(task_id: str, status: str = "ready", **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, **extra}


def view(tasks: list[dict[str, Any]], leases: dict[str, LeaseObservation] | None = None, now: datetime = NOW) -> View:
    return View.build(views({"tasks": tasks}), WF, now, leases)


def test_priority_then_queue_order() -> None:
    """Lower priority first, missing priority last, ties in queue order."""
    v = view([task("a"), task("b", priority=2), task("c", priority=1), task("d", priority=2)])
    assert [t.id for t in core.claimable(BUILDER, v)] == ["c", "b", "d", "a"]


def test_dependencies_must_be_done() -> None:
    """A task waits for every dependency to reach a done status."""
    v = view(
        [task("a", "in_progress"), task("b", dependencies=["a"]), task("c", "done"), task("d", dependencies=["c"])]
    )
    assert [t.id for t in core.claimable(BUILDER, v)] == ["d"]
    check = core.blocker(v.by_id["b"], BUILDER, v)
    assert check is not None and check.reason is Reason.DEPENDENCY_NOT_DONE


def test_unknown_dependency_and_cycle_are_named() -> None:
    """Unknown ids and cycles block with their own reasons."""
    v = view([task("a", dependencies=["zz"]), task("b", dependencies=["c"]), task("c", dependencies=["b"])])
    assert core.blocker(v.by_id["a"], BUILDER, v).reason is Reason.UNKNOWN_DEPENDENCY  # type: ignore[union-attr]
    cyc = core.blocker(v.by_id["b"], BUILDER, v)
    assert cyc is not None and cyc.reason is Reason.CYCLE
    assert "b -> c -> b" in cyc.detail or "c -> b -> c" in cyc.detail


def test_type_filter() -> None:
    """A role with a type filter skips other types."""
    role = WF.role("builder").__class__(**{**WF.role("builder").__dict__, "types": ("Build",)})
    v = view([task("a", type="Test"), task("b", type="Build")])
    assert [t.id for t in core.claimable(role, v)] == ["b"]
    assert core.blocker(v.by_id["a"], role, v).reason is Reason.WRONG_TYPE  # type: ignore[union-attr]


def test_backoff_until_not_before() -> None:
    """A task backing off is claimable only once not_before has passed."""
    later = (NOW + timedelta(seconds=30)).isoformat()
    assert core.claimable(BUILDER, view([task("a", not_before=later)])) == []
    assert [
        t.id for t in core.claimable(BUILDER, view([task("a", not_before=later)], now=NOW + timedelta(seconds=31)))
    ] == ["a"]


def test_live_lease_blocks_and_stale_lease_does_not() -> None:
    """A held lock with a fresh heartbeat blocks; a released lock or an old heartbeat does not."""
    live = LeaseObservation("a", token=3, locked=True, heartbeat_at=NOW - timedelta(seconds=10), ttl=60)
    released = LeaseObservation("a", token=3, locked=False, heartbeat_at=NOW, ttl=60)
    hung = LeaseObservation("a", token=3, locked=True, heartbeat_at=NOW - timedelta(seconds=61), ttl=60)
    assert core.claimable(BUILDER, view([task("a")], {"a": live})) == []
    assert len(core.claimable(BUILDER, view([task("a")], {"a": released}))) == 1
    assert len(core.claimable(BUILDER, view([task("a")], {"a": hung}))) == 1
    assert "lock released" in core.judge(released, NOW, 60).cause
    assert "no heartbeat" in core.judge(hung, NOW, 60).cause


def test_wip_room_counts_working_status_across_daemons() -> None:
    """WIP = tasks in the role's working status; select never exceeds the room."""
    v = view([task("w1", "in_progress"), task("a"), task("b"), task("c")])
    assert core.wip_room(v.tasks, BUILDER, {"builder": 3}) == 2
    assert [t.id for t in core.select(BUILDER, v, {"builder": 3})] == ["a", "b"]
    assert core.select(BUILDER, v, {"builder": 1}) == []
    assert core.wip_limit(BUILDER, {}) == 1
    assert len(core.select(BUILDER, v, {"builder": 3}, limit=1)) == 1


def test_unblock_moves_only_tasks_without_reason_and_done_deps() -> None:
    """The unblock rule needs every dependency done and no blocked_reason."""
    v = view(
        [
            task("d", "done"),
            task("x", "blocked", dependencies=["d"]),
            task("y", "blocked", dependencies=["d"], blocked_reason="waiting for design"),
            task("z", "blocked", dependencies=["x"]),
        ]
    )
    assert [t.id for t in core.to_unblock(WF, v)] == ["x"]


def decide(outcome: Outcome, **fields: Any) -> core.Decision:
    t = views({"tasks": [task("a", "in_progress", **fields)]})[0]
    return core.decide(t, BUILDER, outcome, NOW, WF)


def test_success_and_explicit_statuses() -> None:
    """Exit 0 goes to on_success; outcomes and result files name the status."""
    assert decide(Outcome(Kind.SUCCESS, 0)).status == "awaiting_test"
    tester = WF.role("tester").__class__(**{**WF.role("tester").__dict__, "outcomes": {3: "needs_adapt"}})
    assert core.classify(tester, exit_code=3).status == "needs_adapt"
    result = core.classify(BUILDER, exit_code=1, result={"status": "needs_adapt", "fields": {"x": 1}})
    assert result.kind is Kind.RESULT
    assert decide(result).status == "needs_adapt" and decide(result).patch["x"] == 1


def test_failure_backs_off_then_gives_up() -> None:
    """Failures retry with exponential backoff, then go to on_failure with a blocked_reason."""
    first = decide(Outcome(Kind.FAILURE, 1))
    assert first.status == "ready" and first.patch["attempts"] == 1
    assert first.patch["not_before"] == (NOW + timedelta(seconds=30)).isoformat()
    second = decide(Outcome(Kind.FAILURE, 1), attempts=1)
    assert second.patch["not_before"] == (NOW + timedelta(seconds=60)).isoformat()
    last = decide(Outcome(Kind.TIMEOUT), attempts=2)
    assert last.status == "blocked" and last.final_failure and "blocked_reason" in last.patch


def test_interrupted_spends_no_attempt() -> None:
    """A shutdown sends the task back without counting an attempt."""
    d = decide(Outcome(Kind.INTERRUPTED), attempts=1)
    assert d.status == "ready" and "attempts" not in d.patch and d.patch["status_note"] == "interrupted by shutdown"


def test_a_fenced_run_counts_one_attempt_and_goes_back_at_once() -> None:
    """A fenced run (its daemon stopped renewing) counts an attempt, as a recovery does, and waits for no backoff."""
    d = decide(Outcome(Kind.FENCED, None, 9, note="fenced: no lease renewal for 4320 s"), attempts=1)
    assert d.status == "ready" and d.patch["attempts"] == 2 and d.patch["not_before"] is None
    assert d.patch["status_note"] == "attempt 2 failed (fenced: no lease renewal for 4320 s)"
    assert decide(Outcome(Kind.FENCED), attempts=2).status == "blocked"  # max_attempts 3


def test_status_set_by_the_command_stands() -> None:
    """If the task left the working status while it ran, agentd keeps that status."""
    t = views({"tasks": [task("a", "needs_adapt")]})[0]
    assert core.decide(t, BUILDER, Outcome(Kind.SUCCESS, 0), NOW, WF).status == "needs_adapt"


statuses = st.sampled_from(["ready", "in_progress", "done", "blocked", "awaiting_test", "needs_plan"])


@st.composite
def queues(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    ids = [f"t{i}" for i in range(n)]
    out = []
    for i, tid in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:i]), max_size=2, unique=True)) if i else []
        prio = draw(st.one_of(st.none(), st.integers(0, 5)))
        out.append(task(tid, draw(statuses), dependencies=deps, priority=prio))
    return out


@st.composite
def tangled(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    """A queue whose dependencies point anywhere (cycles, missing and archived ids), with some tasks quarantined."""
    n = draw(st.integers(1, 10))
    ids = [f"t{i}" for i in range(n)]
    pool = [*ids, "gone", "old"]
    tasks = [
        task(tid, draw(statuses), dependencies=draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)))
        for tid in ids
    ]
    quarantined = {tid: "bad" for tid in draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))}
    return tasks, quarantined, {"old": draw(st.sampled_from(["done", "ready"]))}


@settings(max_examples=examples(300, 100), deadline=None)
@given(tangled())
def test_claimable_is_exactly_the_tasks_no_check_stops(
    drawn: tuple[list[dict[str, Any]], dict[str, str], dict[str, str]],
) -> None:
    """claimable() (and any_claimable()) tell a task waiting for a dependency at a glance: still exactly the tasks of a
    claimed status no check stops, in any queue (cycles, quarantined, missing and archived dependencies)."""
    tasks, quarantined, archived = drawn
    v = View.build(views({"tasks": tasks}), WF, NOW, quarantined=quarantined, archived=archived)
    expected = sorted(
        (t for t in v.tasks if t.status in BUILDER.claims and core.blocker(t, BUILDER, v) is None),
        key=lambda t: t.sort_key,
    )
    assert [t.id for t in core.claimable(BUILDER, v)] == [t.id for t in expected]
    assert core.any_claimable(BUILDER, v) == bool(expected)
    for count in range(len(expected) + 2):  # ranked(), as far as it is asked: the best of them, in that order
        assert [t.id for t in itertools.islice(core.ranked(BUILDER, v), count)] == [t.id for t in expected[:count]]


def _judged(monkeypatch: Any) -> list[str]:
    """The ids of the tasks the scheduler's full check (``blocker``) is run on from now on, in order."""
    checked: list[str] = []
    blocker = core.blocker

    def counting(t: Any, role: Any, seen: View) -> Any:
        checked.append(t.id)
        return blocker(t, role, seen)

    monkeypatch.setattr(core, "blocker", counting)
    return checked


def test_the_best_few_of_a_backlog_are_found_judging_about_as_many(monkeypatch: Any) -> None:
    """A pass claims the best few of 200 ready tasks (priorities in reverse queue order): ranked() judges the tasks in
    rank order and stops there, rather than judging all 200 at every pass to rank them afterwards."""
    v = view([task(f"t{i}", priority=200 - i) for i in range(200)])
    checked = _judged(monkeypatch)
    assert [t.id for t in itertools.islice(core.ranked(BUILDER, v), 4)] == ["t199", "t198", "t197", "t196"]
    assert checked == ["t199", "t198", "t197", "t196"]


def test_a_chain_is_ranked_without_building_a_check_for_each_task_waiting(monkeypatch: Any) -> None:
    """In a chain of 50 ready tasks, ranking what is claimable finds the 49 waiting for their dependency without
    building their failing checks (a message each, at every pass of a daemon): only the claimable one is checked."""
    tasks = [task("t0", "done"), *(task(f"t{i}", dependencies=[f"t{i - 1}"]) for i in range(1, 51))]
    v = view(tasks)
    checked = _judged(monkeypatch)
    assert [t.id for t in core.claimable(BUILDER, v)] == ["t1"]
    assert checked == ["t1"]


@settings(max_examples=examples(200, 100), deadline=None)
@given(queues(), st.integers(0, 4))
def test_selection_invariants(tasks: list[dict[str, Any]], limit: int) -> None:
    """Selected tasks are claimable, sorted, unique, within WIP room, with every dependency done."""
    v = view(tasks)
    chosen = core.select(BUILDER, v, {"builder": limit})
    assert len(chosen) <= core.wip_room(v.tasks, BUILDER, {"builder": limit})
    assert len({t.id for t in chosen}) == len(chosen)
    assert chosen == sorted(chosen, key=lambda t: t.sort_key)
    for t in chosen:
        assert t.status == "ready"
        assert all(v.by_id[d].status in WF.done_statuses for d in t.dependencies)
    claimable_ids = {t.id for t in core.claimable(BUILDER, v)}
    for t in v.tasks:
        if t.id not in claimable_ids:
            assert core.blocker(t, BUILDER, v) is not None
        # The scheduler's fast path (no passing checks made) decides as the full list of checks `why` shows.
        full = core.task_checks(t, BUILDER, v)
        assert core.blocker(t, BUILDER, v) == next((c for c in full if not c.ok), None)
    assert core.any_claimable(BUILDER, v) == bool(claimable_ids)


@settings(max_examples=examples(200, 100), deadline=None)
@given(st.integers(0, 10), st.floats(0, 100), st.floats(1, 4), st.floats(0, 5000))
def test_backoff_is_monotonic_and_capped(n: int, initial: float, factor: float, cap: float) -> None:
    """Backoff never shrinks with more failures and never exceeds the cap."""
    from agentd.core.workflow import Backoff

    b = Backoff(initial, factor, cap)
    assert b.delay(n) <= max(cap, 0) + 1e-9
    assert b.delay(n + 1) >= b.delay(n) - 1e-9


def test_unblock_waits_for_a_parent_still_being_planned() -> None:
    """A blocked subtask stays blocked while its parent story is waiting for, or in, the planner's hands."""
    for parent_status, moved in (("needs_plan", []), ("planning", []), ("planning_complete", ["s1"])):
        v = view([task("p", parent_status, subtasks=[task("s1", "blocked")])])
        assert [t.id for t in core.to_unblock(WF, v)] == moved, parent_status
    flat = view([task("p", "planning"), task("s2", "blocked", parent="p")])
    assert core.to_unblock(WF, flat) == []


def test_an_outcome_mapping_for_exit_zero_wins() -> None:
    """outcomes = { 0 = ... } is honoured, not shadowed by on_success."""
    role = BUILDER.__class__(**{**BUILDER.__dict__, "outcomes": {0: "needs_review"}})
    assert core.classify(role, exit_code=0).status == "needs_review"


def test_a_bad_result_file_reason_survives_into_the_note() -> None:
    """The reason an attempt failed (a result file that did not validate) is kept in status_note."""
    d = decide(Outcome(Kind.FAILURE, 0, note="bad result file: $.status: 5 is not of type 'string'"), attempts=2)
    assert d.final_failure and "bad result file" in d.patch["status_note"]
    assert d.patch["status_note"].startswith("gave up after 3 attempts")


def test_live_leases_hold_wip_even_when_the_queue_was_reverted() -> None:
    """A claim reverted by a careless writer still holds WIP while its lease is live (the work still runs)."""
    running = LeaseObservation("a", token=5, role="builder", locked=True, heartbeat_at=NOW, ttl=60)
    v = view([task("a"), task("b"), task("c")], {"a": running})
    assert core.holders(v.tasks, BUILDER, v.leases, v.now) == ["a"]
    assert core.wip_room(v.tasks, BUILDER, {"builder": 1}, v.leases, v.now) == 0
    assert core.select(BUILDER, v, {"builder": 1}) == []
    assert [t.id for t in core.select(BUILDER, v, {"builder": 2})] == ["b"]


def test_runs_of_tasks_moved_to_a_final_status_are_stopped() -> None:
    """Only tasks this daemon runs that someone moved to a done or final status are to be stopped."""
    tasks = views(
        {"tasks": [task("a", "cancelled"), task("b", "done"), task("c", "awaiting_test"), task("d", "cancelled")]}
    )
    assert core.to_stop(tasks, WF, {"a", "b", "c"}) == [("a", "cancelled"), ("b", "done")]
    assert core.to_stop(tasks, WF, set()) == []


def test_a_stopped_run_keeps_the_final_status_and_spends_no_attempt() -> None:
    """A stopped run leaves the person's status and note; moved back to working by hand, it retries unspent."""
    t = views({"tasks": [task("a", "cancelled", status_note="superseded", attempts=1)]})[0]
    stood = core.decide(t, BUILDER, Outcome(Kind.STOPPED, None, 15), NOW, WF)
    assert stood.status == "cancelled" and stood.stood and "status_note" not in stood.patch
    back = decide(Outcome(Kind.STOPPED, None, 15), attempts=1)
    assert back.status == "ready" and "attempts" not in back.patch and "stopped" in back.patch["status_note"]


def test_a_run_agentd_could_not_start_spends_no_attempt() -> None:
    """agentd's own failure to start a command sends the task back at once, its attempts untouched."""
    d = decide(Outcome(Kind.NOT_STARTED, note="not started: agentd could not start it (EMFILE)"), attempts=2)
    assert d.status == "ready" and d.retry and not d.final_failure
    assert "attempts" not in d.patch and "not_before" not in d.patch and "EMFILE" in d.patch["status_note"]


def test_descriptor_room_counts_what_a_task_keeps_and_what_starting_it_costs() -> None:
    """Room for k tasks needs k kept sets, one spawn's extra and the reserve; no limit means no cap."""
    assert core.descriptor_room(None, 10, per_task=3, spawn=6, reserve=8) is None
    assert core.descriptor_room(32, 10, per_task=3, spawn=6, reserve=8) == 3  # 10 + 3*3 + 3 + 8 = 30 <= 32
    assert core.descriptor_room(32, 11, per_task=3, spawn=6, reserve=8) == 3
    assert core.descriptor_room(32, 12, per_task=3, spawn=6, reserve=8) == 3  # 12 + 9 + 3 + 8 = 32: just fits
    assert core.descriptor_room(32, 13, per_task=3, spawn=6, reserve=8) == 2
    assert core.descriptor_room(16, 12, per_task=3, spawn=6, reserve=8) == 0


def test_repeats_are_counted_and_capped_at_max_repeats() -> None:
    """A success that leaves a task where its role claims it counts a repeat; max_repeats in a row -> on_failure."""
    from agentd.core.clock import FakeClock

    looper = BUILDER.replace(on_success="ready", allow_loop=True, max_repeats=3)
    clock = FakeClock()
    raw = task("L", "in_progress", repeat_runs=1)
    first = core.decide(views({"tasks": [raw]})[0], looper, Outcome(Kind.SUCCESS, 0), clock.now(), WF)
    assert (first.status, first.patch["repeat_runs"], first.looped) == ("ready", 2, False)
    clock.advance(5)
    raw["repeat_runs"] = 2
    last = core.decide(views({"tasks": [raw]})[0], looper, Outcome(Kind.SUCCESS, 0), clock.now(), WF)
    assert (last.status, last.looped, last.final_failure) == ("blocked", True, True)
    assert last.patch["repeat_runs"] is None and "ran 3 times in a row" in last.patch["blocked_reason"]
    moved = core.decide(views({"tasks": [raw]})[0], BUILDER, Outcome(Kind.SUCCESS, 0), clock.now(), WF)
    assert moved.status == "awaiting_test" and moved.patch["repeat_runs"] is None
    failed = core.decide(views({"tasks": [raw]})[0], looper, Outcome(Kind.FAILURE, 1), clock.now(), WF)
    assert failed.retry and "repeat_runs" not in failed.patch  # failures are counted by attempts, not here
