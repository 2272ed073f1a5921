"""Crash points: the daemon dies (os._exit or SIGKILL) at each step of the queue transaction and lease protocol.

Afterwards the queue parses and validates, and a restarted daemon recovers to a state where the task runs to
completion exactly once more at most.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from agentd import faults
from tests.conftest import run_agentd
from tests.helpers.daemons import events, recorder, task, tasks_by_id, write_config, write_queue

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}


# Every point a daemon reaches on a fresh queue (claim, run, complete); recovery's own points need a stale lease first.
# `queue archive`'s own point is tested in tests/cli/test_archive.py.
# Worktree mode's points (git steps in the workspace step) are tested in test_workspace_runs.py, the automation's
# in test_automation.py.
WORKSPACE = [point for point in faults.POINTS if point.startswith(("workspace.", "merge."))]
ARCHIVE = ["archive.after-append"]
AUTOMATION = ["automation.after-fire"]
BATCH = ["complete.before-claim"]  # reached only with a task left to claim when a run ends: its own test below
STARTED = ["complete.after-starts"]  # likewise, once the claim has started: its own test below
BIG = ["queue.after-link"]  # reached only where a queue of 1 MiB or more is replaced: its own test below
STARTUP = ["daemon.after-register"]  # before any task: its own tests in tests/integration/test_daemon.py
SPARE = ["lease.spare-linked"]  # reached only by a claim after a release (a third task at WIP 1): its own test below
KEPT = ["queue.spare-written"]  # reached only by a daemon's third write (its first kept version reused): below
CYCLE = [
    point
    for point in faults.POINTS
    if not point.startswith("recover.")
    and point not in WORKSPACE + ARCHIVE + AUTOMATION + BATCH + STARTED + BIG + STARTUP + SPARE + KEPT
]
RECOVERY = [point for point in faults.POINTS if point.startswith("recover.")]


def test_every_point_is_tested() -> None:
    """The lists cover every fault point, so a new point cannot go untested."""
    every = CYCLE + RECOVERY + WORKSPACE + ARCHIVE + AUTOMATION + BATCH + STARTED + BIG + STARTUP + SPARE + KEPT
    assert sorted(every) == sorted(faults.POINTS)
    assert RECOVERY and WORKSPACE


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", CYCLE)
def test_crash_at_every_point_recovers(point: str, action: str, tmp_path: Path) -> None:
    """Die at the point, restart: the queue is valid and the task completes with at most one more run."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log, "--sleep", "0.2")}})
    write_queue(tmp_path, [task("C1")], {"builder": 1})
    crashed = run_agentd("--role", "builder", "--once", cwd=tmp_path, env={"AGENTD_CRASH_AT": f"{point}:{action}"})
    expected = -signal.SIGKILL if action == "kill" else faults.CRASH_EXIT_CODE
    assert crashed.returncode == expected, (point, crashed.returncode, crashed.stderr)
    valid = run_agentd("queue", "validate", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    runs_before = len([r for r in events(log) if r["event"] == "start"])
    recovered = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    starts = [r for r in events(log) if r["event"] == "start"]
    assert len(starts) - runs_before <= 1, starts
    assert not [r for r in events(log) if r["event"] == "overlap"]
    final = tasks_by_id(tmp_path)["C1"]
    assert final["status"] == "awaiting_test" and final["lease"] is None, final
    assert list((tmp_path / ".leases").glob("*.json")) == []
    for folder in (tmp_path, tmp_path / ".agentd"):
        assert [p.name for p in folder.iterdir() if "agentd-tmp" in p.name] == []
    tokens = [r["token"] for r in starts]
    assert tokens == sorted(set(tokens)), tokens


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", BIG)
def test_crash_while_a_big_queue_is_replaced(point: str, action: str, tmp_path: Path) -> None:
    """A queue of 1 MiB or more: the daemon dies with the queue's old version given a second name and the new one
    not yet renamed over it. The queue is the old one, the second name is left (as a dead writer's temporary
    file); a restarted daemon removes it, and the task completes with at most one more run."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    queue = write_queue(tmp_path, [task("C1"), task("PAD", "done", notes="x" * (1 << 20))], {"builder": 1})
    old = queue.read_bytes()
    crashed = run_agentd("--role", "builder", "--once", cwd=tmp_path, env={"AGENTD_CRASH_AT": f"{point}:{action}"})
    expected = -signal.SIGKILL if action == "kill" else faults.CRASH_EXIT_CODE
    assert crashed.returncode == expected, (crashed.returncode, crashed.stderr)
    assert queue.read_bytes() == old
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".agentd-tmp")]
    assert any(p.samefile(queue) for p in left), left  # the second name: the window this point marks
    recovered = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    starts = [r for r in events(log) if r["event"] == "start"]
    assert len(starts) <= 2, starts
    assert not [r for r in events(log) if r["event"] == "overlap"]
    final = tasks_by_id(tmp_path)["C1"]
    assert final["status"] == "awaiting_test" and final["lease"] is None, final
    assert [p.name for p in tmp_path.iterdir() if "agentd-tmp" in p.name] == []


def _crash_in_a_pass_of_two(tmp_path: Path, point: str, action: str) -> Path:
    """WIP 1, tasks C1 and C2: a drain that dies at ``point`` (os._exit or SIGKILL); returns the runs' log."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [task("C1"), task("C2")], {"builder": 1})
    crashed = run_agentd("--role", "builder", "--drain", cwd=tmp_path, env={"AGENTD_CRASH_AT": f"{point}:{action}"})
    expected = -signal.SIGKILL if action == "kill" else faults.CRASH_EXIT_CODE
    assert crashed.returncode == expected, (point, crashed.returncode, crashed.stderr)
    return log


def _finished_after_the_crash(tmp_path: Path, log: Path) -> list[str]:
    """The queue validates; a restarted drain finishes both tasks (growing tokens, no overlap, no lease file left);
    returns the tasks of every start, in order."""
    valid = run_agentd("queue", "validate", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    recovered = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    starts = [(r["task"], r["token"]) for r in events(log) if r["event"] == "start"]
    assert [token for _, token in starts] == sorted({token for _, token in starts}), starts
    assert not [r for r in events(log) if r["event"] == "overlap"]
    for final in tasks_by_id(tmp_path).values():
        assert final["status"] == "awaiting_test" and final["lease"] is None, final
    assert list((tmp_path / ".leases").glob("*.json")) == []
    return [task_id for task_id, _ in starts]


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", BATCH)
def test_crash_between_a_completion_and_the_claim_in_its_pass(point: str, action: str, tmp_path: Path) -> None:
    """WIP 1, two tasks: the daemon dies in the pass that records C1 and claims C2 (one transaction, not written);
    a restarted daemon finds a valid queue, runs C1 once more and C2 once, with growing tokens."""
    log = _crash_in_a_pass_of_two(tmp_path, point, action)
    assert [t["status"] for t in tasks_by_id(tmp_path).values()] == ["in_progress", "ready"]
    assert sorted(_finished_after_the_crash(tmp_path, log)) == ["C1", "C1", "C2"]


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", STARTED)
def test_crash_after_a_pass_started_its_claims_before_releasing_its_ends(
    point: str, action: str, tmp_path: Path
) -> None:
    """WIP 1, two tasks: the daemon dies in the pass that recorded C1 and started C2, before removing C1's lease
    file. The queue says C1 ended (it is not run again) and C2 runs; a restarted daemon finds a valid queue, removes
    the orphan lease file, recovers C2 (it may run once more) and finishes both, with growing tokens."""
    log = _crash_in_a_pass_of_two(tmp_path, point, action)
    assert [t["status"] for t in tasks_by_id(tmp_path).values()] == ["awaiting_test", "in_progress"]
    assert (tmp_path / ".leases" / "C1.json").exists()  # left by the crash: the window this point marks
    started = _finished_after_the_crash(tmp_path, log)
    assert started.count("C1") == 1 and 1 <= started.count("C2") <= 2, started


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", SPARE)
def test_crash_while_a_released_lease_file_is_reused(point: str, action: str, tmp_path: Path) -> None:
    """WIP 1, three tasks: C1's lease file, released, is kept as a spare and reused for C3's claim, in the pass that
    records C2's end; the daemon dies with it linked to C3's name and its spare name not yet removed (two names of one
    locked file), that pass's transaction not written. A restarted daemon finds a valid queue, removes the dead
    daemon's spare name and C3's orphan lease file, runs C2 once more and C3 once, with growing tokens; no spare is
    left once it stops."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [task("C1"), task("C2"), task("C3")], {"builder": 1})
    crashed = run_agentd("--role", "builder", "--drain", cwd=tmp_path, env={"AGENTD_CRASH_AT": f"{point}:{action}"})
    expected = -signal.SIGKILL if action == "kill" else faults.CRASH_EXIT_CODE
    assert crashed.returncode == expected, (point, crashed.returncode, crashed.stderr)
    leases = tmp_path / ".leases"
    spares = [p for p in leases.iterdir() if p.name.startswith(".spare-")]
    assert len(spares) == 1 and spares[0].samefile(leases / "C3.json"), sorted(leases.iterdir())  # the window
    assert [t["status"] for t in tasks_by_id(tmp_path).values()] == ["awaiting_test", "in_progress", "ready"]
    started = _finished_after_the_crash(tmp_path, log)
    assert started == ["C1", "C2", "C2", "C3"], started
    assert [p.name for p in leases.iterdir() if p.name.startswith(".spare-")] == []


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", RECOVERY)
def test_crash_while_recovering_a_stale_lease(point: str, action: str, tmp_path: Path) -> None:
    """A daemon dies with its claim written (a stale lease); the peer recovering it dies mid-way too; a third
    daemon finds a valid queue and finishes the task, with at most one more run and growing tokens."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log, "--sleep", "0.2")}})
    write_queue(tmp_path, [task("C1")], {"builder": 1})
    first = run_agentd("--role", "builder", "--once", cwd=tmp_path, env={"AGENTD_CRASH_AT": "claim.after-queue-write"})
    assert first.returncode == faults.CRASH_EXIT_CODE, first.stderr
    assert tasks_by_id(tmp_path)["C1"]["status"] == "in_progress"
    assert (tmp_path / ".leases" / "C1.json").exists()
    crashed = run_agentd("--role", "builder", "--once", cwd=tmp_path, env={"AGENTD_CRASH_AT": f"{point}:{action}"})
    expected = -signal.SIGKILL if action == "kill" else faults.CRASH_EXIT_CODE
    assert crashed.returncode == expected, (point, crashed.returncode, crashed.stderr)
    assert not (tmp_path / ".leases" / "C1.json").exists()  # the lease file went, the queue was not written
    assert tasks_by_id(tmp_path)["C1"]["status"] == "in_progress"
    valid = run_agentd("queue", "validate", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    recovered = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    starts = [r for r in events(log) if r["event"] == "start"]
    assert len(starts) == 1, starts  # the first two never started it
    final = tasks_by_id(tmp_path)["C1"]
    assert final["status"] == "awaiting_test" and final["lease"] is None, final
    assert final["lease_token"] > 1 and starts[0]["token"] == final["lease_token"], (final, starts)
    assert list((tmp_path / ".leases").glob("*.json")) == []


@pytest.mark.parametrize("action", ["exit", "kill"])
def test_a_supervisor_dying_after_its_report_loses_nothing(action: str, tmp_path: Path) -> None:
    """Each task's supervisor dies right after reporting its command's end (supervisor.after-report): the daemon
    records every run once, by its report, and frees every lease; three tasks one after another run through."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [task("C1"), task("C2"), task("C3")], {"builder": 1})
    done = run_agentd(
        "--role", "builder", "--drain", cwd=tmp_path, env={"AGENTD_CRASH_AT": f"supervisor.after-report:{action}"}
    )
    assert done.returncode == 0, done.stderr
    starts = [r["task"] for r in events(log) if r["event"] == "start"]
    assert sorted(starts) == ["C1", "C2", "C3"], starts
    final = tasks_by_id(tmp_path)
    assert all(t["status"] == "awaiting_test" and t["lease"] is None for t in final.values()), final
    assert [e["outcome"] for e in events(tmp_path / ".agentd" / "events.jsonl") if e["event"] == "finished"] == [
        "success"
    ] * 3
    assert list((tmp_path / ".leases").glob("*.json")) == []


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", KEPT)
def test_crash_while_a_kept_queue_version_is_written_again(point: str, action: str, tmp_path: Path) -> None:
    """WIP 1, two tasks: the daemon dies with its third version of the queue (C2's completion) written into the file
    of its first, not yet renamed. The queue is its second version (C1 done, C2 running); the kept file, a dead
    writer's now, holds the version that never became the queue. A restarted daemon removes that file, runs C2 once
    more, and leaves no temporary file."""
    log = _crash_in_a_pass_of_two(tmp_path, point, action)
    assert [t["status"] for t in tasks_by_id(tmp_path).values()] == ["awaiting_test", "in_progress"]
    (left,) = [p for p in (tmp_path / ".agentd").iterdir() if ".spare-" in p.name]
    assert json.loads(left.read_text())["tasks"][1]["status"] == "awaiting_test"
    assert sorted(_finished_after_the_crash(tmp_path, log)) == ["C1", "C2", "C2"]
    for folder in (tmp_path, tmp_path / ".agentd"):
        assert [p.name for p in folder.iterdir() if "agentd-tmp" in p.name] == []
