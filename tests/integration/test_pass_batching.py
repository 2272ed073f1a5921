"""One pass, one queue transaction: the runs that ended are recorded and the slots they freed refilled in the same
write (real daemons driven by ``tick()``, real commands)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon, TickReport
from agentd.run.dispatch import PassResult
from tests.conftest import run_agentd
from tests.helpers.daemons import drain_in_thread, events, task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}


def _daemon(root: Path) -> Daemon:
    return Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)


def _drive(daemon: Daemon, done: int, what: str) -> list[TickReport]:
    """Tick (as the loop's wake-ups do) until ``done`` runs are recorded; every report that did something."""
    reports: list[TickReport] = []

    def step() -> bool:
        daemon.wake("test")
        report = daemon.tick()
        assert report.error is None, report.error
        if report.did_something:
            reports.append(report)
        return sum(len(r.finished) for r in reports) >= done

    wait_for(step, 60, what)
    return reports


def test_a_chain_successor_is_claimed_in_its_predecessors_completion(tmp_path: Path) -> None:
    """A -> B -> C at WIP 1: the pass that records A done claims B (and starts it) in the same write, and so on."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A"), task("B", dependencies=["A"]), task("C", dependencies=["B"])], {"builder": 1})
    daemon = _daemon(tmp_path)
    reports = _drive(daemon, 3, "the chain to run")
    steps = [([f for f, _ in r.finished], r.claimed) for r in reports]
    assert steps == [([], ["A"]), (["A"], ["B"]), (["B"], ["C"]), (["C"], [])], steps
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    assert not daemon.running


def test_freed_slots_are_refilled_in_the_pass_that_records_the_runs(tmp_path: Path) -> None:
    """WIP 2 over 7 independent tasks: every pass that records k ended runs claims k more while any are left."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task(f"T{n}") for n in range(7)], {"builder": 2})
    daemon = _daemon(tmp_path)
    reports = _drive(daemon, 7, "the tasks to run")
    claimed = 2
    for report in reports[1:]:
        left = 7 - claimed
        assert len(report.claimed) == min(len(report.finished), left), [(r.finished, r.claimed) for r in reports]
        claimed += len(report.claimed)
    assert reports[0].claimed == ["T0", "T1"] and claimed == 7
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}


def test_a_drain_looks_at_the_queue_outside_its_transactions_only_at_start(tmp_path: Path) -> None:
    """A chain of 8 run by a watching daemon: each run's end is one pass (its transaction records it and claims the
    next); neither that pass's own write nor its own lease files' events prompt another look at the queue (before:
    one look per task)."""
    write_config(tmp_path, {"builder": BUILDER}, defaults={"interval": 3600})
    chain = [task("T0"), *(task(f"T{n}", dependencies=[f"T{n - 1}"]) for n in range(1, 8))]
    write_queue(tmp_path, chain, {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=True)
    looks: list[int] = []
    real = daemon.dispatcher.needed

    def counted(held: set[str], room_cap: int | None) -> tuple[bool, PassResult]:
        looks.append(len(held))
        return real(held, room_cap)

    daemon.dispatcher.needed = counted  # type: ignore[method-assign]
    assert drain_in_thread(daemon, 60) == 0
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    # The first pass's look; at most two more, for a lease event the watcher's thread handled only after its own
    # moment had passed (a loaded machine): never one per task.
    assert looks[0] == 0 and len(looks) <= 3, looks


def test_wip_full_is_logged_once_while_tasks_wait_and_room_once_when_none_do(tmp_path: Path) -> None:
    """WIP 2 over 5 tasks: "WIP limit reached (2/2); 3 task(s) waiting" once, after the first claims, and once, when
    the last task has been claimed, that no task waits any more (at 2/2: not "room again"): not a pair per task as
    ended runs free slots and passes refill them."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task(f"T{n}") for n in range(5)], {"builder": 2})
    daemon = _daemon(tmp_path)
    _drive(daemon, 5, "the tasks to run")
    wip = [(e["event"], e["message"]) for e in events(tmp_path / ".agentd" / "events.jsonl") if "wip" in e["event"]]
    assert wip[0] == ("wip-full", "WIP limit reached (2/2); 3 task(s) waiting"), wip
    assert [event for event, _ in wip] == ["wip-full", "wip-room"], wip
    busy = int(wip[1][1].rsplit("(", 1)[1].split("/")[0])  # 1 or 2: whether the last claim came after one end or two
    said = "WIP room again (1/2)" if busy < 2 else "no task waits for WIP room any more (2/2)"
    assert wip[1] == ("wip-room", said), wip


def test_wip_full_ends_saying_no_task_waits_when_the_waiting_one_goes(tmp_path: Path) -> None:
    """WIP 1, a task running and one waiting: "WIP limit reached (1/1); 1 task(s) waiting"; the waiting task
    cancelled by hand, the next pass says that no task waits any more, at 1/1 — not "WIP room again (1/1)"."""
    go = tmp_path / "go"  # T0 runs until the test lets it end
    wait = ["sh", "-c", f"while [ ! -e '{go}' ]; do sleep 0.05; done"]
    write_config(tmp_path, {"builder": {**BUILDER, "command": wait}})
    write_queue(tmp_path, [task("T0"), task("T1")], {"builder": 1})
    daemon = _daemon(tmp_path)
    journal = tmp_path / ".agentd" / "events.jsonl"

    def wip() -> list[tuple[str, str]]:
        return [(e["event"], e["message"]) for e in events(journal) if "wip" in e["event"]]

    daemon.tick()
    assert wip() == [("wip-full", "WIP limit reached (1/1); 1 task(s) waiting")]
    assert run_agentd("queue", "cancel", "T1", "--note", "not needed", cwd=tmp_path).returncode == 0
    daemon.wake("test")
    daemon.tick()
    assert wip()[1:] == [("wip-room", "no task waits for WIP room any more (1/1)")], wip()
    go.touch()
    _drive(daemon, 1, "T0 to end")
    assert tasks_by_id(tmp_path)["T0"]["status"] == "done"


def test_an_end_that_arrives_while_a_look_begins_is_recorded_by_a_pass_that_claims(tmp_path: Path) -> None:
    """A -> B at WIP 1: A ends while a pass for another wake-up has collected the ends but not yet begun its look (it
    reads the project state), so that look clears the wake-up of A's end too. The pass that then records A still
    looks, and claims B in the same transaction (before: it recorded A alone, and B took a pass of its own)."""
    go = tmp_path / "go"  # A runs until the test lets it end: its end must come after the wake-up is cleared
    until_go = ["sh", "-c", f"while [ ! -e '{go}' ]; do sleep 0.01; done"]
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A", command=until_go), task("B", dependencies=["A"])], {"builder": 1})
    daemon = _daemon(tmp_path)
    assert daemon.tick().claimed == ["A"]
    real = daemon._read_state

    def state_read_once_a_has_ended() -> None:
        go.touch()
        wait_for(lambda: not daemon._ended.empty() and daemon._wake.is_set(), 60, "A's end to be reported")
        real()

    daemon._read_state = state_read_once_a_has_ended  # type: ignore[method-assign]
    daemon.wake("queue")  # (a file event: a look at the queue is due)
    daemon._wake.clear()  # (as the loop does before a pass: set again by A's end, once reported)
    looked = daemon.tick()
    assert not looked.finished and not looked.claimed, looked  # (A's end came after this pass collected the ends)
    daemon._read_state = real  # type: ignore[method-assign]
    recorded = daemon.tick()  # (the loop's next pass: its wake-up, A's end, was cleared by the look above)
    assert [f for f, _ in recorded.finished] == ["A"] and recorded.claimed == ["B"], recorded
    _drive(daemon, 1, "B to run")
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
