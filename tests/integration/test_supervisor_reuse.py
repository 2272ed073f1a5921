"""A forked supervisor serves more than one task (``_shim._spare``, ``Zygote.take_back``): only after a run that ended
cleanly and only on its owner's go, with nothing of the earlier task carried over (descriptors, folder, signals), and
never once its daemon is gone. Real zygotes, supervisors, commands and signals."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.run.runner import ExitInfo, TaskProcess, launch
from agentd.run.zygote import Zygote
from tests.conftest import run_agentd
from tests.integration.test_runner import SRC_DIR, finish, pid_gone, spec, wait_for
from tests.integration.test_zygote import children_of, fd_targets, kill_then_all_gone, process_state

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    try:
        yield z
    finally:
        z.close()


def run_held(
    tmp_path: Path, zygote: Zygote, argv: list[str], *, cwd: Path | None = None, keep_fds: list[int] | None = None
) -> tuple[TaskProcess, ExitInfo]:
    """Launch as a daemon does (hold_reap), wait for the end told, give the owner's go, wait for the handle's end."""
    told: list[ExitInfo] = []
    task_spec = spec(tmp_path, argv, cwd=cwd, keep_fds=keep_fds or [])
    tp = launch(task_spec, on_exit=lambda _p, info: told.append(info), zygote=zygote, hold_reap=True)
    assert wait_for(lambda: bool(told), 60), "no end told"
    tp.let_reap()
    finish(tp, 60)
    return tp, told[0]


def waits_for_a_task(pid: int) -> bool:
    """The supervisor holds nothing but /dev/null on 0 and 1, its stderr and its channel: it waits, between tasks."""
    fds = fd_targets(pid)
    rest = {fd: target for fd, target in fds.items() if fd > 2}
    return fds.get(0) == fds.get(1) == os.devnull and len(rest) == 1 and next(iter(rest.values())).startswith("socket:")


def test_a_supervisor_runs_the_next_task_in_its_own_folder_with_none_of_the_last_ones_descriptors(
    tmp_path: Path, zygote: Zygote
) -> None:
    """Reused: the second task runs in the same supervisor, in the folder its spec names (not the first task's), the
    first task's kept descriptor closed there (its lock free: the lease's is), and the supervisor back in the folder
    it came from between the two."""
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir()
    second_dir.mkdir()
    lock_file = tmp_path / "lease"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        tp, info = run_held(tmp_path, zygote, ["sh", "-c", "pwd > where"], cwd=first_dir, keep_fds=[fd])
    finally:
        os.close(fd)  # ours: only the supervisor's copy could hold the lock now
    assert info.returncode == 0 and (first_dir / "where").read_text().strip() == str(first_dir)
    assert wait_for(lambda: waits_for_a_task(tp.pid), 60)
    assert os.readlink(f"/proc/{tp.pid}/cwd") == os.getcwd()  # (the zygote's folder, this process's)
    other = os.open(lock_file, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if the supervisor still held it
    finally:
        os.close(other)
    again, info = run_held(tmp_path, zygote, ["sh", "-c", 'pwd > where; echo "$PPID" > parent'], cwd=second_dir)
    assert again.pid == tp.pid and info.returncode == 0
    assert (second_dir / "where").read_text().strip() == str(second_dir)
    assert int((second_dir / "parent").read_text()) == tp.pid  # the command's parent: the same supervisor


@pytest.mark.parametrize("how", ["kill", "eof"])
def test_a_reused_supervisor_hears_its_daemon_on_the_next_tasks_control_pipe(
    tmp_path: Path, zygote: Zygote, how: str
) -> None:
    """The second task's control pipe is the one the reused supervisor reads: KILL on it stops the command, and its
    EOF (the daemon gone) kills the tree and ends the supervisor, which then holds nothing open (the lease's lock
    free). A supervisor that read another descriptor would never hear either."""
    first, _ = run_held(tmp_path, zygote, ["true"])
    assert wait_for(lambda: waits_for_a_task(first.pid), 60)
    started = tmp_path / "started"
    tp = launch(spec(tmp_path, ["sh", "-c", f"touch {started}; exec sleep 60"]), zygote=zygote, hold_reap=True)
    assert tp.pid == first.pid
    assert wait_for(started.exists, 60)
    if how == "kill":
        tp.kill()
        info = finish(tp, 60)
        assert info.killed_by == "kill" and info.signal == signal.SIGKILL, info
    else:
        tp.detach_control()
        assert wait_for(lambda: pid_gone(tp.pid), 60)
        finish(tp, 60)


@pytest.mark.parametrize(
    ("argv", "stop"),
    [
        (["sh", "-c", "sleep 60 & exit 0"], None),  # left a process behind: the supervisor had to kill it
        (["sleep", "60"], "kill"),  # stopped by the daemon
        (["sleep", "60"], "timeout"),  # its timeout
    ],
    ids=["left-a-process", "killed", "timed-out"],
)
def test_a_supervisor_whose_run_did_not_end_cleanly_exits_rather_than_serve_again(
    tmp_path: Path, zygote: Zygote, argv: list[str], stop: str | None
) -> None:
    """A run that needed a signal (leftovers killed, KILL, a timeout) is reported without reuse: the supervisor exits
    once its owner is done, and the next task gets another."""
    told: list[ExitInfo] = []
    timeout = 0.5 if stop == "timeout" else 20.0
    tp = launch(
        spec(tmp_path, argv, timeout=timeout, kill_after=0.2),
        on_exit=lambda _p, info: told.append(info),
        zygote=zygote,
        hold_reap=True,
    )
    if stop == "kill":
        assert tp.wait_started(30)
        tp.kill()
    assert wait_for(lambda: bool(told), 60)
    tp.let_reap()
    finish(tp, 60)
    assert wait_for(lambda: pid_gone(tp.pid), 60)
    nxt, info = run_held(tmp_path, zygote, ["true"])
    assert nxt.pid != tp.pid and info.returncode == 0


def test_a_supervisor_is_not_reused_without_its_owners_go(tmp_path: Path, zygote: Zygote) -> None:
    """A launch whose owner never holds the reap (not a daemon's) lets its supervisor exit after its report, though
    the supervisor offered to serve again."""
    tp = launch(spec(tmp_path, ["true"]), zygote=zygote)
    assert finish(tp, 60).returncode == 0
    assert wait_for(lambda: pid_gone(tp.pid), 60)


def test_a_waiting_supervisor_that_died_is_replaced_and_the_task_runs_once(tmp_path: Path, zygote: Zygote) -> None:
    """A supervisor SIGKILLed while it waits between tasks: the next task goes to another, and runs once."""
    first, _ = run_held(tmp_path, zygote, ["true"])
    assert wait_for(lambda: waits_for_a_task(first.pid), 60)
    os.kill(first.pid, signal.SIGKILL)
    assert wait_for(lambda: process_state(first.pid) in ("Z", "gone"), 60)
    runs = tmp_path / "runs"
    nxt, info = run_held(tmp_path, zygote, ["sh", "-c", f"echo run >> {runs}"])
    assert nxt.pid != first.pid and info.returncode == 0
    assert runs.read_text() == "run\n"
    assert wait_for(lambda: process_state(first.pid) == "gone", 60)  # reaped by the zygote (no zombie left)


def test_the_zygote_keeps_as_many_waiting_supervisors_as_it_keeps_spares(tmp_path: Path, zygote: Zygote) -> None:
    """More supervisors back than spares wanted: the extra ones exit (a daemon holds two descriptors for each one
    kept), and every kept one is let go when the spares are released (a daemon's end)."""
    zygote.keep_ahead(2)
    told: list[int | None] = []
    procs = [
        launch(
            spec(tmp_path, ["sleep", "0.3"]),
            on_exit=lambda _p, i: told.append(i.returncode),
            zygote=zygote,
            hold_reap=True,
        )
        for _ in range(3)
    ]
    assert len({p.pid for p in procs}) == 3
    assert wait_for(lambda: len(told) == 3, 60)
    for p in procs:
        p.let_reap()
        finish(p, 60)
    assert wait_for(lambda: sum(not pid_gone(p.pid) for p in procs) == 2, 60), [process_state(p.pid) for p in procs]
    assert all(waits_for_a_task(p.pid) for p in procs if not pid_gone(p.pid))
    zygote.release_spares()
    assert wait_for(lambda: all(pid_gone(p.pid) for p in procs), 60)


DAEMON_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {src!r})
from agentd.run import runner
from agentd.run.zygote import default_zygote

out = Path({out!r})
told = []
tp = runner.launch(runner.LaunchSpec(argv=["true"], cwd=out.parent, env={{}}, log_path=out.parent / "t.log",
                   timeout=None), on_exit=lambda _p, info: told.append(info), hold_reap=True)
while not told:
    tp.wait(0.01)
tp.let_reap()
tp.wait(30)
tmp = out.with_suffix(".tmp")
tmp.write_text(json.dumps({{"shim": tp.pid, "zygote": default_zygote().pid}}))
tmp.rename(out)
sys.stdin.read()
"""


def test_the_daemons_death_ends_the_supervisors_waiting_between_tasks(tmp_path: Path) -> None:
    """SIGKILL the daemon while a supervisor waits for its next task: it reads EOF on its channel and exits, as does
    the zygote; nothing is left."""
    out = tmp_path / "pids.json"
    script = tmp_path / "daemon.py"
    script.write_text(textwrap.dedent(DAEMON_SCRIPT.format(src=str(SRC_DIR), out=str(out))))
    daemon = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE)
    try:
        assert wait_for(lambda: out.exists(), 60)
        pids = json.loads(out.read_text())
        assert wait_for(lambda: waits_for_a_task(pids["shim"]), 60)
        kill_then_all_gone(daemon, [pids["shim"], pids["zygote"], *children_of(pids["zygote"])])
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_a_daemons_drain_reuses_its_supervisors_runs_each_task_once_and_leaves_none_behind(tmp_path: Path) -> None:
    """A real daemon draining 12 tasks two at a time: each command runs once; fewer supervisors than tasks ran them
    (each command writes its parent's pid); none of them is left once the daemon returned."""
    from tests.helpers.daemons import task, tasks_by_id, write_config, write_queue

    ids = [f"T{i:02d}" for i in range(12)]
    report = 'echo "$AGENTD_TASK_ID $PPID" >> runs'
    builder = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["sh", "-c", report]}
    write_config(tmp_path, {"builder": builder})
    write_queue(tmp_path, [task(i) for i in ids], {"builder": 2})
    done = run_agentd("--root", str(tmp_path), "--role", "builder", "--drain", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {t["id"]: t["status"] for t in tasks_by_id(tmp_path).values()} == dict.fromkeys(ids, "done")
    runs = [line.split() for line in (tmp_path / "runs").read_text().splitlines()]
    assert sorted(task_id for task_id, _ in runs) == ids  # each once
    supervisors = {int(pid) for _, pid in runs}
    assert len(supervisors) < len(ids), runs
    assert all(pid_gone(pid) for pid in supervisors), [p for p in supervisors if not pid_gone(p)]
