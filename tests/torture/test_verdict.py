"""The torture test's judge: fed a made-up history that breaks a rule, it finds the violation and shows the evidence.

A checker that never fails proves nothing; these tests show each rule of the verdict can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.torture.run import PROFILES, Daemon, Liveness, Profile, Progress, Torture, pid_alive

NO_PID = 1 << 23  # above the kernel's largest pid_max (2**22): never a live process
PROFILE = Profile(**{**PROFILES["quick"].__dict__, "tasks": 2})


def judge(
    tmp_path: Path,
    history: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    liveness: Liveness | None = None,
    **queue: Any,
) -> tuple[int, str]:
    """Run the verdict over ``history`` and a queue of T0000 and T0001 (done unless ``queue`` says otherwise)."""
    torture = Torture(PROFILE, seed=7, root=tmp_path)
    torture.root.mkdir(parents=True, exist_ok=True)
    torture.harness.mkdir(parents=True)
    tasks = [{"id": f"T{i:04d}", "status": queue.get(f"T{i:04d}", "done"), "dependencies": []} for i in range(2)]
    tasks += queue.get("extra", [])
    torture.queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    torture.history.write_text("".join(json.dumps(record) + "\n" for record in history))
    code = torture.verdict(elapsed=1.0, chaos_done=True, liveness=liveness)
    return code, capsys.readouterr().out


def run(
    task: str, token: int, pid: int, start: float, end: float, *, role: str = "builder", gone: bool = False
) -> list[dict[str, Any]]:
    base = {"task": task, "role": role, "token": token, "pid": NO_PID + pid}
    return [{**base, "event": "start", "t": start}, {**base, "event": "gone" if gone else "end", "t": end}]


def test_a_clean_history_has_no_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two tasks run one after the other, tokens growing: zero violations (the baseline the others break)."""
    code, out = judge(tmp_path, run("T0000", 1, 10, 1.0, 2.0) + run("T0000", 2, 11, 2.5, 3.0), capsys)
    assert code == 0 and "violations = 0" in out, out


def test_overlapping_runs_of_a_task_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second run that starts before the first ended is a violation, with the task's runs as evidence."""
    code, out = judge(tmp_path, run("T0000", 1, 10, 1.0, 3.0) + run("T0000", 2, 11, 2.0, 4.0), capsys)
    assert code == 1 and "T0000: run" in out and "started before" in out, out
    assert "evidence:" in out and "--seed 7" in out


def test_a_killed_run_counts_until_it_was_last_seen_alive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run killed without a word (gone) still overlaps a run that started while it was last seen alive."""
    history = run("T0000", 1, 10, 1.0, 3.0, gone=True) + run("T0000", 2, 11, 2.0, 4.0)
    code, out = judge(tmp_path, history, capsys)
    assert code == 1 and "started before" in out, out


def test_a_token_that_does_not_grow_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A later run with the same or a lower token than the one before is a violation."""
    code, out = judge(tmp_path, run("T0000", 5, 10, 1.0, 2.0) + run("T0000", 5, 11, 3.0, 4.0), capsys)
    assert code == 1 and "token 5 after 5" in out, out


def test_more_runs_than_the_wip_limit_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Four builder runs alive at once (WIP 3) is a violation; the evidence lists the runs alive together."""
    history = [record for n in range(4) for record in run(f"T{n:04d}", 1, 20 + n, 1.0 + n / 10, 5.0)]
    code, out = judge(tmp_path, history, capsys)
    assert code == 1 and "builder: 4 runs at once, WIP limit 3" in out, out
    assert "builder runs alive together" in out


def test_a_run_killed_before_it_was_seen_alive_holds_no_wip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run killed before the monitor saw it ends at its start: it must not stay counted as running for ever."""
    history = run("T0000", 1, 10, 1.0, 1.0, gone=True)
    history += [record for n in range(3) for record in run(f"T{n + 1:04d}", 1, 20 + n, 2.0 + n, 2.5 + n)]
    code, out = judge(tmp_path, history, capsys)
    assert code == 0 and "peak concurrency {'builder': 1}" in out, out


def test_an_overlap_reported_by_a_run_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run that found the task's guard lock taken records an overlap: a violation on its own."""
    history = [*run("T0000", 1, 10, 1.0, 2.0), {"task": "T0000", "role": "builder", "token": 1, "pid": NO_PID + 10,
                                               "event": "overlap", "t": 1.5}]  # fmt: skip
    code, out = judge(tmp_path, history, capsys)
    assert code == 1 and "execution overlap" in out, out


def test_lost_unfinished_and_duplicated_tasks_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A task missing from the file, one stuck in a working status, and an id twice: three violations."""
    extra = [{"id": "T0000", "status": "done", "dependencies": []}]
    code, out = judge(tmp_path, [], capsys, T0001="in_progress", extra=extra)
    assert code == 1
    assert "duplicate ids in the file: ['T0000']" in out
    assert "never reached a final status: ['T0001']" in out


def test_files_left_behind_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lease file or a PID file left after the daemons stopped is a violation, its content the evidence."""
    leases = tmp_path / "project" / ".leases"
    leases.mkdir(parents=True)
    (leases / "T0000.json").write_text('{"task_id": "T0000"}')
    run_dir = tmp_path / "project" / ".agentd" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "tester.d5.pid").write_text('{"pid": 1}')
    code, out = judge(tmp_path, [], capsys)
    assert code == 1
    assert "lease files left behind: ['T0000.json']" in out and "PID files left behind: ['tester.d5.pid']" in out
    assert '"pid": 1' in out


@pytest.mark.parametrize("successor_exit", ["died starting", "stopped gracefully"])
def test_a_pid_file_of_a_sigkilled_daemon_whose_successor_never_took_it_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], successor_exit: str
) -> None:
    """The PID file of an incarnation the harness SIGKILLed stays when its successor died of the final SIGTERM while
    starting (seen once in CI-like runs): not a violation. Had the successor run and stopped gracefully (exit 0), it
    would have replaced and removed the file: then the file left is one."""
    run_dir = tmp_path / "project" / ".agentd" / "run"
    run_dir.mkdir(parents=True)
    killed = subprocess.Popen(["sleep", "60"])
    killed.kill()
    killed.wait()
    successor = subprocess.Popen(["sh", "-c", "kill -TERM $$" if successor_exit == "died starting" else "exit 0"])
    successor.wait()
    daemon = Daemon("builder.d2", "builder", proc=successor, killed_pids={killed.pid})
    (run_dir / "builder.d2.pid").write_text(json.dumps({"pid": killed.pid}, indent=2).ljust(300))
    torture = Torture(PROFILE, seed=7, root=tmp_path)
    torture.daemons = [daemon]
    torture.root.mkdir(parents=True, exist_ok=True)
    torture.harness.mkdir(parents=True)
    torture.queue.write_text(json.dumps({"tasks": [{"id": f"T{i:04d}", "status": "done"} for i in range(2)]}))
    code = torture.verdict(elapsed=1.0, chaos_done=True)
    out = capsys.readouterr().out
    if successor_exit == "died starting":
        assert code == 0 and "successor was stopped while starting: ['builder.d2.pid']" in out, out
    else:
        assert code == 1 and "PID files left behind: ['builder.d2.pid']" in out, out


def test_a_pid_that_comes_round_is_not_the_run_that_had_it() -> None:
    """pid_max is often 32768: a run is alive only while its pid names the process that started at its time."""
    since = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert pid_alive(os.getpid(), since)
    assert not pid_alive(os.getpid(), since + 1)  # another process that got the pid later
    assert not pid_alive(NO_PID)


def test_a_daemon_killed_as_hung_that_was_never_stopped_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon a peer SIGKILLed while the harness had not stopped it is a violation; a stopped one is not."""
    torture = Torture(PROFILE, seed=7, root=tmp_path)
    stopped, working = Daemon("builder.d0", "builder"), Daemon("builder.d1", "builder")
    stopped.stops = [[10.0, 14.0]]
    assert stopped.stopped_at(12.0) and stopped.stopped_at(14.0 + 3.5)  # during the stop, or just after SIGCONT
    assert not working.stopped_at(12.0) and not stopped.stopped_at(30.0)
    torture.stats.killed_as_hung = 1
    torture.stats.killed_as_hung_running = 1
    torture.stats.killed_running = ["builder.d1 (pid 4242, stops [])"]
    torture.root.mkdir(parents=True, exist_ok=True)
    torture.harness.mkdir(parents=True)
    torture.queue.write_text(json.dumps({"tasks": [{"id": f"T{i:04d}", "status": "done"} for i in range(2)]}))
    code = torture.verdict(elapsed=1.0, chaos_done=True)
    out = capsys.readouterr().out
    assert code == 1 and "1 daemon(s) killed as hung that were never stopped" in out, out
    assert "killed as hung by a peer: 1 that were stopped, 1 that were not (must be 0)" in out
    assert "builder.d1 (pid 4242" in out


def tasks_in(*states: tuple[str, str, int | None]) -> list[dict[str, Any]]:
    return [{"id": i, "status": status, "lease_token": token, "dependencies": []} for i, status, token in states]


def test_progress_is_a_task_changing_state_not_an_edit_or_an_added_task() -> None:
    """A claim or a completion is progress; a hand edit of another field or a task added by hand is not, and no
    progress for the stall window is a stall, however fast or slow the time around it went."""
    progress = Progress(window=60.0, began=100.0)
    progress.observe(100.0, tasks_in(("T0", "ready", None), ("T1", "ready", None)))
    progress.observe(130.0, tasks_in(("T0", "in_progress", 4), ("T1", "ready", None)))  # a claim
    assert progress.last_change == 130.0 and not progress.stalled(189.0)
    edited = tasks_in(("T0", "in_progress", 4), ("T1", "ready", None), ("H0", "ready", None))
    edited[1]["notes"] = "edited by hand"
    progress.observe(180.0, edited)  # an edit and an added task: the daemons did nothing
    assert progress.last_change == 130.0 and progress.stalled(190.0)
    progress.observe(200.0, tasks_in(("T0", "done", 4), ("T1", "ready", None), ("H0", "ready", None)))
    assert not progress.stalled(200.0) and progress.longest == 70.0 and progress.final == 1


def test_a_stall_is_reported_with_the_stuck_tasks_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tasks not final after a stall: a "stall" violation naming them, `queue why` as evidence, and not "too slow"."""
    why = ["agentd queue why T0001: T0001 (ready): not claimable by builder: no builder daemon is running"]
    stall = Liveness("stall", at=300.0, quiet=60.0, longest=60.0, rate=0.01, final=1, why=why)
    code, out = judge(tmp_path, [], capsys, stall, T0001="ready")
    assert code == 1
    assert "stall: no task changed state for 60 s (window 60 s) at 300 s, 1 task(s) not final: ['T0001']" in out
    assert "evidence: agentd queue why T0001: T0001 (ready): not claimable" in out and "too slow" not in out


def test_a_run_past_the_cap_is_too_slow_not_stalled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tasks not final when the cap runs out while they still move on: "too slow" with the rate, not a stall."""
    slow = Liveness("too slow", at=1800.0, quiet=0.5, longest=3.0, rate=0.25, final=450)
    code, out = judge(tmp_path, [], capsys, slow, T0001="awaiting_test")
    assert code == 1 and "too slow: 0.25 tasks/s (450 final, 1 not) when the 1800 s cap ran out" in out, out
    assert "stall:" not in out


def test_a_real_stall_ends_the_run_at_the_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No daemon to move the tasks: the run ends as a stall after the window (not at the cap), with the stuck
    tasks' `agentd queue why` taken while it waited."""
    profile = Profile(**{**PROFILE.__dict__, "daemons": 0, "tasks": 3, "kills": 0, "stops": 0, "terms": 0,
                         "uts": 0, "skewed": 0, "stall": 2.0})  # fmt: skip
    code = Torture(profile, seed=7, root=tmp_path).run()
    out = capsys.readouterr().out
    assert code == 1 and "liveness: stall at" in out, out
    assert "stall: no task changed state for" in out and "3 task(s) not final: ['T0000', 'T0001', 'T0002']" in out
    assert "evidence: agentd queue why T0000: T0000 (ready)" in out and "too slow" not in out
