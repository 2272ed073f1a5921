"""The supervisor zygote: per-task supervisors forked from one long-lived process keep every guarantee of the shim."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from agentd.run import runner
from agentd.run.runner import TaskProcess, launch
from agentd.run.zygote import Zygote
from tests.integration.test_runner import SRC_DIR, finish, pid_gone, spec, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    """A zygote of the test's own (never this process's default one)."""
    z = Zygote()
    yield z
    z.close()


def ppid(pid: int) -> int:
    """The parent pid of a live process."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[1])


def fd_targets(pid: int) -> dict[int, str]:
    """{fd: what it names} of a process (descriptors closed while listed are skipped)."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return out


def test_a_forked_supervisor_leads_its_own_session_and_holds_only_its_descriptors(
    tmp_path: Path, zygote: Zygote
) -> None:
    """The supervisor is the zygote's child, leads its own session and group, holds its pipes, the kept fd and its
    channel to the daemon only (not the zygote's socket), the command none of its own, and the zygote holds none of
    the task's descriptors (so the daemon's death still reaches the supervisor)."""
    lock_file = tmp_path / "lease"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        tp = launch(spec(tmp_path, ["sleep", "30"], keep_fds=[fd]), zygote=zygote)
        try:
            assert tp.wait_started(30)
            assert zygote.pid is not None
            assert ppid(tp.pid) == zygote.pid
            assert os.getsid(tp.pid) == tp.pid == os.getpgid(tp.pid)
            assert tp.command_pid is not None and os.getpgid(tp.command_pid) == tp.pid
            shim_fds = fd_targets(tp.pid)
            assert shim_fds[fd] == str(lock_file)
            # Besides: its log, its wake-up pipe, the command's pidfd and its channel (the socket the daemon may
            # hand it another task on); nothing of the zygote (not its socket).
            sockets = [t for t in shim_fds.values() if t.startswith("socket:")]
            assert len(sockets) == 1, shim_fds
            assert not set(sockets) & set(fd_targets(zygote.pid).values())
            assert not [t for t in fd_targets(tp.command_pid).values() if t.startswith("socket:")]
            task_pipes = {shim_fds[0], shim_fds[1]}
            assert all(target.startswith("pipe:") for target in task_pipes)
            assert not task_pipes & set(fd_targets(zygote.pid).values())
        finally:
            tp.kill()
            finish(tp, 30)
    finally:
        os.close(fd)


DAEMON_SCRIPT = """
import json, sys, threading
from pathlib import Path
sys.path.insert(0, {src!r})
from agentd.run import runner
from agentd.run.zygote import default_zygote

out = Path({out!r})
tp = runner.launch(runner.LaunchSpec(
    argv=["sh", "-c", "sleep 60 & echo $! > {bg}; sleep 60"],
    cwd=out.parent, env={{}}, log_path=out.parent / "daemon-task.log", timeout=None))
assert tp.wait_started(30)
tmp = out.with_suffix(".tmp")
tmp.write_text(json.dumps({{"shim": tp.pid, "command": tp.command_pid, "zygote": default_zygote().pid}}))
tmp.rename(out)
threading.Event().wait()
"""


def test_the_daemons_death_ends_a_forked_supervisors_tree_and_the_zygote(tmp_path: Path) -> None:
    """SIGKILL the daemon: the supervisor its zygote forked, the command, its grandchild, the zygote and its spare
    supervisor all end."""
    out, bg = tmp_path / "pids.json", tmp_path / "bg.pid"
    script = tmp_path / "daemon.py"
    script.write_text(textwrap.dedent(DAEMON_SCRIPT.format(src=str(SRC_DIR), out=str(out), bg=str(bg))))
    daemon = subprocess.Popen([sys.executable, str(script)])
    try:
        assert wait_for(lambda: out.exists() and bg.exists() and bg.read_text().strip() != "", 60)
        pids = json.loads(out.read_text())
        everyone = [pids["shim"], pids["command"], int(bg.read_text()), pids["zygote"]]
        assert ppid(pids["shim"]) == pids["zygote"]
        assert wait_for(lambda: len(children_of(pids["zygote"])) == 2, 60)  # the shim and the next task's spare
        everyone += children_of(pids["zygote"])
        kill_then_all_gone(daemon, everyone)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def kill_then_all_gone(daemon: subprocess.Popen[bytes], everyone: list[int]) -> None:
    """SIGKILL the daemon process, then every one of *everyone* must end (exited or a zombie) within a minute."""
    daemon.kill()
    daemon.wait(30)
    assert wait_for(lambda: all(pid_gone(p) for p in everyone), 60), [p for p in everyone if not pid_gone(p)]


def test_a_zygote_killed_between_tasks_is_replaced(
    tmp_path: Path, zygote: Zygote, caplog: pytest.LogCaptureFixture
) -> None:
    """A zygote SIGKILLed between two tasks costs nothing but a warning: the next task gets a fresh zygote."""
    assert finish(launch(spec(tmp_path, ["true"]), zygote=zygote), 30).returncode == 0
    first = zygote.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: zygote.pid is None, 30)
    with caplog.at_level(logging.WARNING, logger="agentd.run.zygote"):
        tp = launch(spec(tmp_path, ["sh", "-c", "exit 7"]), zygote=zygote)
        assert finish(tp, 30).returncode == 7
        if zygote.pid is None:  # that task ran in the spare the old zygote forked before it died: the next one finds
            tp = launch(spec(tmp_path, ["sh", "-c", "exit 8"]), zygote=zygote)  # the zygote gone and starts one
            assert finish(tp, 30).returncode == 8
    assert zygote.pid not in (None, first)
    assert wait_for(lambda: ppid_or_none(tp) is None, 30)  # reaped by its (new) zygote once it had exited
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"zygote {first} died" in warnings[0], warnings


def ppid_or_none(tp: TaskProcess) -> int | None:
    """The supervisor's parent while it still exists (zombies included), else None."""
    try:
        return ppid(tp.pid)
    except OSError:
        return None


def test_a_zygote_killed_while_its_supervisor_runs_loses_no_run(tmp_path: Path, zygote: Zygote) -> None:
    """The supervisors of a zygote that dies run on: their exits are reported, and so are stops asked later."""
    go = tmp_path / "go"
    ends = launch(spec(tmp_path, ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 5"]), zygote=zygote)
    stopped = launch(spec(tmp_path, ["sleep", "60"]), zygote=zygote)
    assert ends.wait_started(30) and stopped.wait_started(30)
    assert zygote.pid is not None
    os.kill(zygote.pid, signal.SIGKILL)
    assert wait_for(lambda: zygote.pid is None, 30)
    go.touch()
    assert finish(ends, 30).returncode == 5
    stopped.terminate()
    info = finish(stopped, 30)
    assert info.killed_by == "term" and info.signal == signal.SIGTERM
    assert finish(launch(spec(tmp_path, ["true"]), zygote=zygote), 30).returncode == 0  # and a new one serves


CRASH_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {src!r})
from agentd.run import runner

runs = Path({runs!r})
tp = runner.launch(runner.LaunchSpec(
    argv=["sh", "-c", "echo run >> {runs}"], cwd=runs.parent, env={{}}, log_path=runs.parent / "task.log",
    timeout=60))
info = tp.wait(60)
print(info.returncode if info else "none")
"""


def test_a_zygote_dying_between_fork_and_reply_never_runs_a_command_twice(tmp_path: Path) -> None:
    """Zygotes that die right after forking (before the daemon learns the pid): the command runs once, from the
    fallback; the supervisors they forked read EOF instead of a spec and start nothing."""
    runs = tmp_path / "runs"
    script = tmp_path / "daemon.py"
    script.write_text(textwrap.dedent(CRASH_SCRIPT.format(src=str(SRC_DIR), runs=str(runs))))
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "AGENTD_CRASH_AT": "zygote.after-fork"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert "starting each task's supervisor directly" in done.stderr
    assert runs.read_text() == "run\n"


def test_the_zygote_boots_from_the_code_the_daemon_compiled(tmp_path: Path) -> None:
    """The zygote runs the shim's code sent by the daemon (no _shim.py compiled per start) and exits on EOF."""
    z = Zygote()
    try:
        tp = launch(spec(tmp_path, ["true"]), zygote=z)
        assert finish(tp, 30).returncode == 0
        pid = z.pid
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert runner.SHIM_BOOT.encode() in cmdline and b"agentd-zygote" in cmdline
    finally:
        z.close()
    assert wait_for(lambda: pid_gone(pid), 30)


def test_a_hung_zygote_is_replaced_and_the_task_runs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A zygote that does not answer (SIGSTOPped) is killed and replaced: the task runs once, through the new one."""
    z = Zygote(reply_timeout=1.0)
    try:
        assert finish(launch(spec(tmp_path, ["true"]), zygote=z), 30).returncode == 0
        hung = z.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        runs = tmp_path / "runs"
        with caplog.at_level(logging.WARNING, logger="agentd.run.zygote"):
            for n in (1, 2):  # the first runs in the spare forked before the hang; the second finds the hang
                tp = launch(spec(tmp_path, ["sh", "-c", f"echo run {n} >> {runs}"]), zygote=z)
                assert finish(tp, 60).returncode == 0
        assert runs.read_text() == "run 1\nrun 2\n"
        assert z.pid not in (None, hung)
        assert wait_for(lambda: pid_gone(hung), 30)
        assert any(f"zygote {hung} did not answer" in r.getMessage() for r in caplog.records)
    finally:
        z.close()


def children_of(pid: int) -> list[int]:
    """Pids whose parent is *pid* (zombies included)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if ppid(int(name)) == pid:
                    found.append(int(name))
    return found


def test_the_zygote_reaps_every_supervisor_and_keeps_no_descriptor(tmp_path: Path, zygote: Zygote) -> None:
    """After tasks have ended the zygote has no child left but the next task's spare (not even a zombie) and no more
    descriptors than before."""
    assert finish(launch(spec(tmp_path, ["true"]), zygote=zygote), 30).returncode == 0
    assert zygote.pid is not None
    before = kinds(fd_targets(zygote.pid).values())
    shims = []
    for code in range(5):
        tp = launch(spec(tmp_path, ["sh", "-c", f"exit {code}"]), zygote=zygote)
        shims.append(tp.pid)
        assert finish(tp, 30).returncode == code
    # (The last task's supervisor, let go once its end was told, exits and is reaped a moment later.)
    assert wait_for(lambda: spare_alone(zygote.pid or 0, shims) is not None, 30), children_of(zygote.pid or 0)
    (spare,) = children_of(zygote.pid)
    assert spare not in shims and process_state(spare) in ("S", "R")  # waiting for its task
    # While it forks a spare the zygote holds the spare's channel for an instant (a socket pair, passed on and
    # closed): either look may catch one, so sockets are counted, and the count may not grow (one a task would).
    settled = wait_for(lambda: fewer_or_as_many(kinds(fd_targets(zygote.pid or 0).values()), before), 30)
    assert settled, (kinds(fd_targets(zygote.pid).values()), before)


def kinds(targets: Iterable[str]) -> tuple[frozenset[str], int]:
    """What a process's descriptors name, sockets (whose names change as they come and go) only counted."""
    named = list(targets)
    return frozenset(t for t in named if not t.startswith("socket:")), sum(t.startswith("socket:") for t in named)


def fewer_or_as_many(now: tuple[frozenset[str], int], before: tuple[frozenset[str], int]) -> bool:
    return now[0] == before[0] and now[1] <= before[1]


def test_the_zygote_loads_what_each_supervisor_needs_once_before_it_forks(tmp_path: Path, zygote: Zygote) -> None:
    """The C modules a supervisor uses (fcntl for its descriptors, _ctypes and libffi for prctl) are loaded by the
    zygote itself before it forks, so no forked supervisor loads them again; the task runs as before."""
    tp = launch(spec(tmp_path, ["true"]), zygote=zygote)
    assert finish(tp, 30).returncode == 0
    assert zygote.pid is not None
    maps = Path(f"/proc/{zygote.pid}/maps").read_text()
    assert "/fcntl." in maps, "the zygote has not loaded fcntl"
    assert "/_ctypes." in maps, "the zygote has not loaded _ctypes"


SHIM_CODE_COMPILES = """
import sys
compiled = []
sys.addaudithook(lambda event, args: compiled.append(str(args[1])) if event == "compile" else None)
from agentd.run import runner
frame = runner.shim_code()
print(repr([name for name in compiled if name.endswith("_shim.py")]), len(frame))
"""


def test_the_shim_code_comes_from_its_bytecode_cache_not_a_compile_per_daemon() -> None:
    """A daemon's first task does not compile _shim.py (~16 ms of CPU) when its bytecode cache is current."""
    import importlib.util

    from agentd.run.runner import SHIM_PATH

    cached = Path(importlib.util.cache_from_source(str(SHIM_PATH)))
    assert cached.stat().st_mtime >= SHIM_PATH.stat().st_mtime  # (the suite compiles src/ before it runs)
    env = {**os.environ, "PYTHONPATH": str(SRC_DIR)}
    out = subprocess.run(
        [sys.executable, "-c", SHIM_CODE_COMPILES], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    compiled, size = out.stdout.rsplit(maxsplit=1)
    assert compiled == "[]" and int(size) > 1000, out.stdout


def test_a_running_daemon_starts_its_zygote_before_any_task(tmp_path: Path) -> None:
    """The zygote's interpreter starts with the daemon (overlapping its first pass), not at the first task's start."""
    from tests.helpers import daemons

    role = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}
    daemons.write_config(tmp_path, {"builder": role})
    daemons.write_queue(tmp_path, [])
    daemon = daemons.start(tmp_path, "builder")
    try:

        def zygote_child() -> int | None:
            for name in os.listdir("/proc"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    ours = name.isdigit() and ppid(int(name)) == daemon.pid
                    if ours and b"agentd-zygote" in Path(f"/proc/{name}/cmdline").read_bytes():
                        return int(name)
            return None

        zygote_pid = daemons.wait_for(zygote_child, 60, "the daemon's zygote")
        assert daemon.poll() is None
    finally:
        daemons.stop_all([daemon])
    assert wait_for(lambda: pid_gone(zygote_pid), 60)  # EOF on its socket when the daemon is gone


def process_state(pid: int) -> str:
    """The state letter of *pid* in /proc ("gone" once it was reaped)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "gone"
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def spare_alone(zygote_pid: int, supervisors: list[int]) -> int | None:
    """The zygote's one child, once that is neither of *supervisors* (tasks' supervisors it forked before, which exit
    and are reaped a moment after their tasks); None until then."""
    kids = children_of(zygote_pid)
    return kids[0] if len(kids) == 1 and kids[0] not in supervisors else None


def done_with_its_task(pid: int) -> bool:
    """Its task's end reported: the supervisor exited (a zombie until reaped) or waits for another task (reuse: its
    task's descriptors closed, /dev/null on 0)."""
    state = process_state(pid)
    return state == "Z" or (state == "S" and fd_targets(pid).get(0) == os.devnull)


def let_go(pid: int, zygote: Zygote) -> bool:
    """Reaped, or back with its zygote, waiting to be handed another task."""
    return process_state(pid) == "gone" or any(entry[0] == pid for entry in zygote._idle)


def test_the_end_is_told_once_reported_while_the_supervisor_still_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_exit comes with the supervisor's exit report, not after its exit and reaping: a supervisor stopped right
    after reporting (crash point supervisor.after-report:stop) does not hold back the wake-up; it is reaped later."""
    monkeypatch.setenv("AGENTD_CRASH_AT", "supervisor.after-report:stop")
    z = Zygote()  # started with that environment: its supervisors stop after their report
    told: list[tuple[int | None, str]] = []

    def on_exit(p: TaskProcess, info: runner.ExitInfo) -> None:
        # Told before the supervisor stopped itself, after it stopped, or (without the early report) once reaped.
        wait_for(lambda: process_state(p.pid) not in ("R", "S", "D"), 60)
        told.append((info.returncode, process_state(p.pid)))

    try:
        tp = launch(spec(tmp_path, ["true"]), on_exit=on_exit, zygote=z)
        assert wait_for(lambda: bool(told), 60), "no end told"
        assert told == [(0, "T")]  # the exit code, told while the supervisor was stopped after its report
        os.kill(tp.pid, signal.SIGCONT)
        assert finish(tp, 60).returncode == 0
        assert wait_for(lambda: pid_gone(tp.pid), 60)
    finally:
        z.close()


@pytest.mark.parametrize("action", ["exit", "kill"])
def test_a_spare_dying_with_its_task_in_hand_starts_nothing_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """A spare that dies once handed its task's descriptors (crash point supervisor.after-fds), before reading its
    spec: the command never runs, and the end comes as "supervisor died" (the daemon's crash outcome)."""
    monkeypatch.setenv("AGENTD_CRASH_AT", f"supervisor.after-fds:{action}")
    z = Zygote()
    runs = tmp_path / "runs"
    try:
        info = finish(launch(spec(tmp_path, ["sh", "-c", f"echo run >> {runs}"]), zygote=z), 60)
        assert info.error == "supervisor died" and info.crashed, info
        assert not runs.exists()
    finally:
        z.close()


def test_a_status_reader_thread_serves_the_next_task_instead_of_exiting(tmp_path: Path, zygote: Zygote) -> None:
    """A thread that read one task's status reads a later task's (no thread started per task while one waits), and
    each task still reports its own end."""
    readers: list[tuple[object, int | None]] = []

    def on_exit(_p: TaskProcess, info: runner.ExitInfo) -> None:
        readers.append((threading.current_thread(), info.returncode))

    assert finish(launch(spec(tmp_path, ["sh", "-c", "exit 3"]), on_exit=on_exit, zygote=zygote), 30).returncode == 3
    assert wait_for(lambda: runner._READERS.idle >= 1, 60)  # that thread back, waiting for a task
    before = [t for t in threading.enumerate() if t.name == "agentd-status"]
    assert finish(launch(spec(tmp_path, ["sh", "-c", "exit 4"]), on_exit=on_exit, zygote=zygote), 30).returncode == 4
    assert wait_for(lambda: len(readers) == 2, 60)
    assert [code for _, code in readers] == [3, 4]
    assert readers[0][0] in before and readers[1][0] in before  # (this process's earlier tests may have left more)
    assert [t for t in threading.enumerate() if t.name == "agentd-status"] == before


def test_a_spare_killed_while_it_waits_is_replaced_and_reaped(
    tmp_path: Path, zygote: Zygote, caplog: pytest.LogCaptureFixture
) -> None:
    """A spare SIGKILLed before it is handed a task: the task runs once, in another spare, with one warning, and the
    dead spare is reaped (no zombie left)."""
    first = launch(spec(tmp_path, ["true"]), zygote=zygote)
    assert finish(first, 30).returncode == 0
    assert zygote.pid is not None
    # The next task's spare alone (the first task's supervisor, let go once its end was told, exits and is reaped
    # a moment later).
    assert wait_for(lambda: spare_alone(zygote.pid or 0, [first.pid]) is not None, 60)
    (spare,) = children_of(zygote.pid)
    os.kill(spare, signal.SIGKILL)
    assert wait_for(lambda: process_state(spare) == "Z", 60)
    runs = tmp_path / "runs"
    with caplog.at_level(logging.WARNING, logger="agentd.run.zygote"):
        tp = launch(spec(tmp_path, ["sh", "-c", f"echo run >> {runs}"]), zygote=zygote)
        assert finish(tp, 60).returncode == 0
    assert tp.pid != spare and runs.read_text() == "run\n"
    gone = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert len(gone) == 1 and gone[0].startswith(f"supervisor spare {spare} is gone ("), gone
    assert wait_for(lambda: process_state(spare) == "gone", 60)


def test_a_zygote_keeps_as_many_spares_as_asked_each_serving_one_task(tmp_path: Path) -> None:
    """prestart(3) (a daemon that starts up to 3 tasks in one pass): three supervisors wait forked ahead, three tasks
    started in a row run in them (no fork in between), and three fresh spares wait again afterwards."""
    z = Zygote()
    try:
        z.prestart(3)
        assert wait_for(lambda: z.pid is not None and len(children_of(z.pid)) == 3, 60)
        ahead = set(children_of(z.pid or 0))
        tps = [launch(spec(tmp_path, ["sh", "-c", f"exit {n}"]), zygote=z) for n in range(3)]
        assert {tp.pid for tp in tps} == ahead
        assert [finish(tp, 60).returncode for tp in tps] == [0, 1, 2]
        fresh = lambda: set(children_of(z.pid or 0))  # noqa: E731
        assert wait_for(lambda: len(fresh()) == 3 and not fresh() & ahead, 60), fresh()
    finally:
        z.close()


def read_frames(fd: int, deadline: float = 60.0) -> list[dict[str, object]]:
    """The status frames a supervisor wrote on *fd* until it closed it (select with a deadline: never hangs)."""
    import marshal
    import select
    import time

    data, end = b"", time.monotonic() + deadline
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        data += chunk
    frames = []
    while len(data) >= 4:
        size = int.from_bytes(data[:4], "big")
        frames.append(marshal.loads(data[4 : 4 + size]))
        data = data[4 + size :]
    return frames


def test_a_spare_runs_its_task_from_the_hand_over_alone(tmp_path: Path, zygote: Zygote) -> None:
    """The spec comes in the message that hands the spare its descriptors (one wake-up of the spare, not two):
    nothing is ever written to its control pipe, and it starts the command and reports its end."""
    import marshal

    from agentd.run.zygote import close_quietly, pipes

    out = tmp_path / "out"
    message = marshal.dumps(
        {
            "argv": ["sh", "-c", f"echo $WHO > {out}"],
            "cwd": str(tmp_path),
            "env": {"PATH": os.environ["PATH"], "WHO": "inline"},
            "log": str(tmp_path / "task.log"),
            "timeout": 30.0,
            "kill_after": 5.0,
            "keep_fds": [],
            "fence": None,
        }
    )
    control_r, control_w, status_r, status_w = pipes()
    try:
        pid, generation, pidfd, spec_sent, _start, channel = zygote.fork(control_r, status_w, [], message)
        close_quietly(control_r, status_w)
        assert spec_sent
        frames = read_frames(status_r)  # (the control pipe stays open and empty: its EOF would kill the task)
        assert [f["event"] for f in frames] == ["started", "exited"], frames
        assert frames[1]["returncode"] == 0 and out.read_text() == "inline\n"
        channel.close()  # (it said it would wait for another task: EOF, it exits)
        os.close(pidfd)
        zygote.reap(pid, generation)
    finally:
        close_quietly(control_w, status_r)


@pytest.mark.parametrize("inline_max", [None, 8 << 20])
def test_a_spec_too_big_for_the_hand_over_goes_down_the_control_pipe(
    tmp_path: Path, zygote: Zygote, monkeypatch: pytest.MonkeyPatch, inline_max: int | None
) -> None:
    """A spec over the hand-over's size (a huge environment) is written to the control pipe instead, and the command
    gets all of it; so is one the kernel refuses in one message (EMSGSIZE: a limit raised over the socket buffer)."""
    from agentd.run import zygote as zygote_module

    if inline_max is not None:
        monkeypatch.setattr(zygote_module, "INLINE_SPEC_MAX", inline_max)
    # Over the hand-over's limit; or, with the limit raised, over any socket buffer (8 x 120 kB: under the kernel's
    # 128 kB for one variable and 2 MB for a command's whole environment).
    sizes = [zygote_module.INLINE_SPEC_MAX + 1] if inline_max is None else [120_000] * 8
    env = {f"BIG{n}": str(n) * size for n, size in enumerate(sizes)}
    out = tmp_path / "out"
    small = launch(spec(tmp_path, ["true"]), zygote=zygote)
    assert finish(small, 30).returncode == 0
    assert isinstance(small._popen, runner.ForkedSupervisor) and small._popen.spec_sent
    count = " ".join(f'"${name}"' for name in env)
    tp = launch(spec(tmp_path, ["sh", "-c", f"printf %s {count} | wc -c > {out}"], env=env), zygote=zygote)
    assert finish(tp, 60).returncode == 0
    assert isinstance(tp._popen, runner.ForkedSupervisor) and not tp._popen.spec_sent
    assert int(out.read_text()) == sum(sizes)


def test_a_forked_supervisors_start_time_comes_from_its_zygote(tmp_path: Path, zygote: Zygote) -> None:
    """The supervisor's start time the lease records (pgid_start) is the one /proc gives for its pid, read by the
    zygote after forking it (the daemon does not read /proc on its way to the command); a directly started
    supervisor's is read from /proc."""
    from agentd.hostinfo import process_start

    tp = launch(spec(tmp_path, ["sleep", "30"]), zygote=zygote)
    try:
        assert tp.wait_started(30)
        assert isinstance(tp._popen, runner.ForkedSupervisor)
        assert tp._popen.start is not None and tp._popen.start == process_start(tp.pid) == tp.pgid_start()
    finally:
        tp.kill()
        finish(tp, 30)
    broken = Zygote()
    broken.broken = True
    direct = launch(spec(tmp_path, ["sleep", "30"]), zygote=broken)
    try:
        assert direct.wait_started(30)
        assert not isinstance(direct._popen, runner.ForkedSupervisor)
        assert direct.pgid_start() == process_start(direct.pid) is not None
    finally:
        direct.kill()
        finish(direct, 30)


class CountingSocket:
    """The zygote's socket, counting the requests sent down it (the zygote process itself is real)."""

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return int(self.sock.send(data))  # type: ignore[attr-defined]

    @property
    def asked(self) -> list[bytes]:
        """The requests for spares (a task that already ended also sends ``R<pid>``: the zygote reaps its exit)."""
        return [data for data in self.sent if data.startswith(b"S")]

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_the_spares_of_several_starts_are_asked_for_in_one_request(tmp_path: Path) -> None:
    """Tasks started together (launch(..., replenish=False), as a pass does) use the spares forked ahead; one
    replenish() then asks for all their successors in one message (one wake-up of the zygote), and as many fresh
    spares wait afterwards, each serving one task."""
    z = Zygote()
    try:
        z.prestart(3)
        assert wait_for(lambda: z.pid is not None and len(children_of(z.pid)) == 3, 60)
        ahead = set(children_of(z.pid or 0))
        counting = CountingSocket(z._sock)
        z._sock = counting  # type: ignore[assignment]
        tps = [launch(spec(tmp_path, ["sh", "-c", f"exit {n}"]), zygote=z, replenish=False) for n in range(3)]
        assert {tp.pid for tp in tps} == ahead and counting.asked == []
        z.replenish()
        assert counting.asked == [b"S3"]
        assert [finish(tp, 60).returncode for tp in tps] == [0, 1, 2]
        fresh = lambda: {pid for pid in children_of(z.pid or 0) if process_state(pid) != "Z"}  # noqa: E731
        assert wait_for(lambda: len(fresh() - ahead) == 3, 60), fresh()
        spares = fresh() - ahead
        more = [launch(spec(tmp_path, ["true"]), zygote=z, replenish=False) for _ in range(3)]
        assert {tp.pid for tp in more} == spares
        assert [finish(tp, 60).returncode for tp in more] == [0, 0, 0]
    finally:
        z.close()


@pytest.mark.parametrize("direct", [False, True])
def test_a_supervisor_not_asked_to_report_the_start_reports_only_the_end(
    tmp_path: Path, zygote: Zygote, direct: bool
) -> None:
    """report_start=False (the daemon's tasks: it uses no command pid): no "started" report, whose arrival would
    wake the task's reader thread while the daemon starts the next tasks; the end is reported with the command's
    start time. Asked (the default), the start is reported."""
    zygote.broken = direct  # (a supervisor started directly reads the same spec)
    quiet = launch(spec(tmp_path, ["sh", "-c", "exit 5"]).replace(report_start=False), zygote=zygote)
    info = finish(quiet, 30)
    assert info.returncode == 5 and quiet.command_pid is None
    assert 0 < info.started <= info.ended
    told = launch(spec(tmp_path, ["true"]), zygote=zygote)
    assert finish(told, 30).returncode == 0 and told.command_pid is not None


def test_a_task_launched_unread_is_told_once_its_status_is_read(tmp_path: Path, zygote: Zygote) -> None:
    """launch(..., read=False) (a daemon's starts: no reader thread woken between them): the supervisor's report
    waits in its pipe, the end is not told, until read_status() hands the task to a reader; then it is, once."""
    told: list[int | None] = []
    tp = launch(
        spec(tmp_path, ["sh", "-c", "exit 7"]),
        on_exit=lambda _p, info: told.append(info.returncode),
        zygote=zygote,
        read=False,
    )
    # It reported and closed that task's descriptors (it waits for another on its channel): nobody read the report.
    assert wait_for(lambda: fd_targets(tp.pid).get(0) == os.devnull, 60)
    assert tp.poll() is None and told == []
    runner.read_status(tp)
    assert finish(tp, 30).returncode == 7
    assert told == [7]


def test_spares_forked_in_one_batch_each_hold_only_their_own_channel(zygote: Zygote) -> None:
    """Spares asked for in one request are forked first and answered after (the zygote's answers copy its pages once
    for the batch): each spare, while it waits, holds one socket, its own end of its channel -- not the daemon's end of
    a channel forked before it in the batch, which would keep that spare from reading EOF when it is dropped. Then
    the daemon goes (the zygote closed): every spare reads EOF and exits, unused."""
    zygote.prestart(4)  # one request: b"S4"
    assert zygote.pid is not None
    zpid = zygote.pid

    def sockets() -> dict[int, int]:
        """{spare (a child of the zygote): how many sockets it holds}."""
        with contextlib.suppress(OSError):
            kids = [int(p) for p in Path(f"/proc/{zpid}/task/{zpid}/children").read_text().split()]
            return {kid: sum(t.startswith("socket:") for t in fd_targets(kid).values()) for kid in kids}
        return {}

    # (each holds the zygote's socket too until it has closed it, first thing)
    assert wait_for(lambda: len(sockets()) == 4 and set(sockets().values()) == {1}, 60), sockets()
    spares = sockets()
    zygote.close()
    assert wait_for(lambda: all(pid_gone(pid) for pid in spares), 60)


def test_spares_of_a_batch_forked_but_not_yet_answered_exit_when_the_zygote_is_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A zygote SIGKILLed after forking a batch of spares, before answering any (crash point zygote.after-fork:stop,
    then a real SIGKILL): the daemon never learned of them, and each reads EOF on its channel (the zygote held its
    other end, no sibling did) and exits without running anything."""
    monkeypatch.setenv("AGENTD_CRASH_AT", "zygote.after-fork:stop")
    z = Zygote()  # started with that environment
    z.prestart(4)
    zpid = z.pid
    assert zpid is not None
    try:
        assert wait_for(lambda: process_state(zpid) == "T", 60)  # stopped after its forks, before its answers
        spares = [int(p) for p in Path(f"/proc/{zpid}/task/{zpid}/children").read_text().split()]
        assert len(spares) == 4
        os.kill(zpid, signal.SIGKILL)
        assert wait_for(lambda: all(pid_gone(pid) for pid in spares), 60)
    finally:
        with contextlib.suppress(OSError):
            os.kill(zpid, signal.SIGKILL)  # (not left stopped if the test failed)
        z.close()


def test_a_held_reap_waits_for_the_owners_go(tmp_path: Path, zygote: Zygote, monkeypatch: pytest.MonkeyPatch) -> None:
    """launch(..., hold_reap=True) (a daemon's starts): the end is told as soon as the supervisor reports it, but the
    supervisor, its task's descriptors closed, waiting for another task, is held (the handle may still signal its
    group) until the owner's let_reap(); then it goes back to the zygote, which hands it the next task."""
    monkeypatch.setattr(runner, "REAP_HOLD", 600.0)  # only the go ends the hold here
    told: list[int | None] = []
    tp = launch(
        spec(tmp_path, ["sh", "-c", "exit 5"]),
        on_exit=lambda _p, info: told.append(info.returncode),
        zygote=zygote,
        hold_reap=True,
    )
    assert wait_for(lambda: told == [5], 60)
    assert wait_for(lambda: fd_targets(tp.pid).get(0) == os.devnull, 60)  # reported, that task's descriptors closed
    assert tp.wait(0.2) is None and process_state(tp.pid) == "S"
    tp.let_reap()
    assert finish(tp, 30).returncode == 5
    assert process_state(tp.pid) == "S"  # not exited: back with its zygote, waiting for a task
    nxt = launch(
        spec(tmp_path, ["sh", "-c", "exit 6"]),
        on_exit=lambda _p, info: told.append(info.returncode),
        zygote=zygote,
        hold_reap=True,
    )
    assert nxt.pid == tp.pid and nxt.pgid_start() == tp.pgid_start()
    assert wait_for(lambda: told == [5, 6], 60)
    nxt.let_reap()
    assert finish(nxt, 30).returncode == 6


def test_a_held_reap_never_let_ends_after_the_hold(
    tmp_path: Path, zygote: Zygote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owner that never gives the go (it gave up on the run) only delays the supervisor's reap by REAP_HOLD."""
    monkeypatch.setattr(runner, "REAP_HOLD", 0.2)
    tp = launch(spec(tmp_path, ["true"]), zygote=zygote, hold_reap=True)
    assert finish(tp, 60).returncode == 0
    assert wait_for(lambda: process_state(tp.pid) == "gone", 60)


def test_the_daemon_does_not_wait_for_the_zygote_to_read_its_code(tmp_path: Path) -> None:
    """The shim's code (more than the 64 kB a pipe holds by default) is written whole while the zygote has not read a
    byte (SIGSTOPped before its interpreter starts): prestart() returns, and the zygote, continued, runs the task."""
    wrapper = tmp_path / "python-stopped"
    wrapper.write_text(f'#!/bin/sh\nkill -STOP $$\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    assert len(runner.shim_code()) > 65536
    z = Zygote(executable=str(wrapper))
    starting = threading.Thread(target=z.prestart, daemon=True)
    starting.start()
    stopped = None
    try:

        def zygote_stopped() -> int | None:
            for pid in children_of(os.getpid()):
                with contextlib.suppress(OSError):
                    if str(wrapper).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                        return pid if state == "T" else None
            return None

        assert wait_for(lambda: zygote_stopped() is not None, 30)
        stopped = zygote_stopped()
        assert stopped is not None
        starting.join(timeout=20)
        assert not starting.is_alive(), "prestart() waited for the stopped zygote to read its code"
        os.kill(stopped, signal.SIGCONT)
        stopped = None
        assert finish(launch(spec(tmp_path, ["true"]), zygote=z), 30).returncode == 0
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        starting.join(timeout=30)
        z.close()


def _pipe_inode(fd: int) -> str:
    return f"pipe:[{os.fstat(fd).st_ino}]"


def _write_fails(fd: int) -> bool:
    try:
        os.write(fd, b"x")
    except BrokenPipeError:
        return True
    return False


def test_a_kept_descriptor_is_held_by_the_zygote_until_the_next_one_or_its_exit(tmp_path: Path, zygote: Zygote) -> None:
    """Zygote.keep (what an ending daemon does with its inotify descriptor, whose last close waits for the kernel):
    the zygote holds its copy once ours is closed, one such descriptor at a time, until it exits."""
    assert finish(launch(spec(tmp_path, ["true"]), zygote=zygote), 30).returncode == 0
    pid = zygote.pid
    assert pid is not None
    first_r, first_w = os.pipe()
    second_r, second_w = os.pipe()
    try:
        assert zygote.keep(first_r)
        os.close(first_r)
        assert wait_for(lambda: _pipe_inode(first_w) in fd_targets(pid).values(), 30), fd_targets(pid)
        assert not _write_fails(first_w)  # a reader is left: the zygote
        assert zygote.keep(second_r)
        os.close(second_r)
        assert wait_for(lambda: _write_fails(first_w), 30), "the first descriptor is still held"
        assert _pipe_inode(second_w) in fd_targets(pid).values() and not _write_fails(second_w)
        zygote.close()  # EOF on its socket: it exits
        assert wait_for(lambda: pid_gone(pid), 30)
        assert _write_fails(second_w)
    finally:
        for fd in (first_w, second_w):
            os.close(fd)


def test_keeping_a_descriptor_never_waits_on_a_zygote_that_does_not_read(tmp_path: Path, zygote: Zygote) -> None:
    """A zygote stopped with its socket's buffer full (hung): keep() gives up at once (False: the daemon's own close
    is then the last) instead of holding up the daemon's end."""
    assert finish(launch(spec(tmp_path, ["true"]), zygote=zygote), 30).returncode == 0
    pid = zygote.pid
    sock = zygote._sock
    assert pid is not None and sock is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: process_state(pid) == "T", 30)  # (stopped: it reads nothing more from now on)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # (a request it does not know: ignored once it reads again)
                sock.send(b"X" * 512)
        sock.settimeout(None)  # a blocking send would now wait for ever
        read_r, read_w = os.pipe()
        result: list[bool] = []
        worker = threading.Thread(target=lambda: result.append(zygote.keep(read_r)), daemon=True)
        worker.start()
        assert wait_for(lambda: bool(result), 30), "keep() waited on the stopped zygote"
        assert result == [False]
        os.close(read_r)
        os.close(read_w)
    finally:
        os.kill(pid, signal.SIGCONT)


def test_an_ending_daemon_hands_its_inotify_descriptor_to_the_zygote(tmp_path: Path) -> None:
    """A drained daemon's change watch: the zygote keeps its inotify descriptor (it exits after the daemon, waited
    for by no one), so the daemon's own close of it is not the last and does not wait for the kernel to release the
    watches; the daemon's process holds none once run() returns."""
    from agentd import config as config_mod
    from agentd.run.daemon import Daemon, Mode
    from agentd.run.zygote import default_zygote
    from tests.helpers import daemons

    def inotify_fds(pid: int) -> int:
        return sum(target == "anon_inode:inotify" for target in fd_targets(pid).values())

    before = inotify_fds(os.getpid())
    # The task waits until this process (its daemon) has one more inotify descriptor: the watch is up.
    wait = (
        "import os, sys, time\n"
        "def count():\n"
        f"    fds = '/proc/{os.getpid()}/fd'\n"
        "    return sum(os.readlink(f'{fds}/{n}') == 'anon_inode:inotify' for n in os.listdir(fds)"
        " if os.path.exists(f'{fds}/{n}'))\n"
        "deadline = time.monotonic() + 60\n"
        f"while count() <= {before} and time.monotonic() < deadline: time.sleep(0.01)\n"
        f"sys.exit(0 if count() > {before} else 1)\n"
    )
    command = [sys.executable, "-c", wait]
    builder = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": command}
    daemons.write_config(tmp_path, {"builder": builder})
    daemons.write_queue(tmp_path, [daemons.task("W1")])
    assert Daemon(config_mod.load(root=tmp_path, environ={}), "builder").run(Mode.DRAIN) == 0
    assert daemons.tasks_by_id(tmp_path)["W1"]["status"] == "done"  # the watch was up while it ran
    assert inotify_fds(os.getpid()) <= before
    zygote = default_zygote().pid
    assert zygote is not None
    # Its one inotify descriptor is this daemon's: it watches this project's folder (a descriptor kept from an
    # earlier daemon of this process watches another).
    project = f"ino:{os.stat(tmp_path).st_ino:x} "
    assert wait_for(lambda: any(project in text for text in inotify_fdinfo(zygote)), 30), inotify_fdinfo(zygote)
    assert inotify_fds(zygote) == 1


def inotify_fdinfo(pid: int) -> list[str]:
    """/proc/PID/fdinfo of each inotify descriptor of *pid* (one ``inotify wd:... ino:<watched inode, hex>`` line per
    watch)."""
    out = []
    for fd, target in fd_targets(pid).items():
        if target == "anon_inode:inotify":
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/fdinfo/{fd}").read_text())
    return out


def test_a_booted_zygote_forks_the_spares_a_later_prestart_asks_for(tmp_path: Path, zygote: Zygote) -> None:
    """boot() (a daemon's start, once its configuration is read) starts the interpreter; the prestart that follows
    (once the daemon knows how many) asks that same zygote for the spares, where their logs go told first (each makes
    its task's log folder ahead)."""
    zygote.boot()
    pid = zygote.pid
    assert pid is not None
    zygote.boot()  # (once)
    assert zygote.pid == pid
    logs = tmp_path / "logs"
    logs.mkdir()
    zygote.prepare_logs(str(logs))
    zygote.prestart(2)
    assert wait_for(lambda: len(children_of(pid)) == 2, 30), children_of(pid)
    assert wait_for(lambda: len([p for p in logs.iterdir() if p.name.startswith(".spare-")]) == 2, 30), list(
        logs.iterdir()
    )
    assert zygote.pid == pid  # the booted one, not another
