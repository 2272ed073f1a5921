"""Integration tests for agentd.runner and its shim: real processes, real signals."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentd.run import runner
from agentd.run.runner import ExitInfo, LaunchSpec, TaskProcess, launch
from tests.helpers.daemons import lock_held

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

SRC_DIR = Path(runner.__file__).resolve().parents[1]


def wait_for(cond: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll *cond* until it is true or *timeout* expires; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pid_gone(pid: int) -> bool:
    """True if *pid* no longer exists or is a zombie (dead, merely not reaped)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):  # (gone between the open and the read: ESRCH)
        return True
    state = data[data.rfind(b")") + 2 :].split()[0]
    return state in (b"Z", b"X")


def spec(
    tmp_path: Path,
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 20.0,
    kill_after: float = 5.0,
    keep_fds: tuple[int, ...] | list[int] = (),
) -> LaunchSpec:
    """A LaunchSpec running *argv* (in tmp_path by default), logging to tmp_path/logs/task.log."""
    return LaunchSpec(
        argv=argv,
        cwd=cwd or tmp_path,
        env=env or {},
        log_path=tmp_path / "logs" / "task.log",
        timeout=timeout,
        kill_after=kill_after,
        keep_fds=keep_fds,
    )


def finish(tp: TaskProcess, timeout: float = 60.0) -> ExitInfo:
    """Wait for the task's ExitInfo, failing the test if it does not come."""
    info = tp.wait(timeout)
    assert info is not None, f"task {tp} did not finish within {timeout}s"
    return info


@pytest.fixture
def tasks() -> Iterator[list[TaskProcess]]:
    """Collects launched tasks and kills any still running at teardown."""
    launched: list[TaskProcess] = []
    yield launched
    for tp in launched:
        if tp.poll() is None:
            tp.kill()
            tp.wait(5)


def test_exit_codes_and_log(tmp_path: Path) -> None:
    """Exit codes are reported and the log holds the header plus the command's stdout and stderr."""
    info = finish(launch(spec(tmp_path, ["true"])))
    assert (info.returncode, info.signal, info.timed_out, info.killed_by, info.error) == (0, None, False, None, None)
    assert not info.crashed
    assert info.ended >= info.started

    argv = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]
    info = finish(launch(spec(tmp_path, argv)))
    assert info.returncode == 3
    assert info.signal is None
    text = (tmp_path / "logs" / "task.log").read_text()
    assert "agentd: " in text
    assert "exec sh -c 'echo to-stdout; echo to-stderr >&2; exit 3'" in text
    assert "to-stdout\n" in text
    assert "to-stderr\n" in text
    assert (tmp_path / "logs" / "task.log").stat().st_mode & 0o777 & ~0o644 == 0


def test_env_cwd_and_argv_are_passed_literally(tmp_path: Path) -> None:
    """env, cwd and argv with spaces, quotes and $(...) reach the command verbatim (no shell)."""
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    tricky = ["a b", 'it\'s "quoted"', "$(touch pwned)", "`touch pwned2`", "$HOME", "*", ""]
    code = (
        "import json, os, sys; "
        "print('RESULT ' + json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
        "'var': os.environ.get('AGENTD_T_VAR'), 'path': os.environ.get('PATH')}))"
    )
    env = {"AGENTD_T_VAR": "x $(touch pwned3) 'y'"}
    info = finish(launch(spec(tmp_path, [sys.executable, "-c", code, *tricky], cwd=workdir, env=env)))
    assert info.returncode == 0
    line = next(ln for ln in (tmp_path / "logs" / "task.log").read_text().splitlines() if ln.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["argv"] == tricky
    assert result["cwd"] == str(workdir)
    assert result["var"] == env["AGENTD_T_VAR"]
    assert result["path"] == os.environ.get("PATH")  # env is added to os.environ, not a replacement
    assert not list(tmp_path.rglob("pwned*"))


def test_a_change_to_the_daemons_environment_reaches_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command gets os.environ as it is at its launch: a variable set, changed or removed between two launches
    is seen so by the second (the decoded environment is reused only while it is unchanged)."""
    code = "import os; print('RESULT', os.environ.get('AGENTD_T_ENV', '-'))"

    def seen() -> str:
        log = tmp_path / "logs" / "task.log"
        log.unlink(missing_ok=True)
        assert finish(launch(spec(tmp_path, [sys.executable, "-c", code]))).returncode == 0
        return next(ln for ln in log.read_text().splitlines() if ln.startswith("RESULT ")).split()[1]

    monkeypatch.delenv("AGENTD_T_ENV", raising=False)
    assert seen() == "-"
    monkeypatch.setenv("AGENTD_T_ENV", "one")
    assert seen() == "one"
    assert seen() == "one"
    monkeypatch.setenv("AGENTD_T_ENV", "two")
    assert seen() == "two"
    monkeypatch.delenv("AGENTD_T_ENV")
    assert seen() == "-"


def test_missing_executable_reports_127(tmp_path: Path) -> None:
    """A missing executable gives returncode 127 and an error line, without raising."""
    tp = launch(spec(tmp_path, ["agentd-no-such-command-xyz", "arg"]))
    info = finish(tp)
    assert info.returncode == 127
    assert info.error is not None
    assert "agentd-no-such-command-xyz" in info.error
    assert "\n" not in info.error
    assert tp.command_pid is None
    assert not info.crashed
    assert "cannot start command" in (tmp_path / "logs" / "task.log").read_text()


def test_command_is_found_on_the_path_of_its_own_environment(tmp_path: Path) -> None:
    """A bare command name is looked up on the PATH the task gets (as a shell or subprocess would), not agentd's."""
    tools = tmp_path / "tools"
    tools.mkdir()
    tool = tools / "agentd-test-tool"
    tool.write_text('#!/bin/sh\necho tool ran in "$PWD"\n')
    tool.chmod(0o755)
    env = {"PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    info = finish(launch(spec(tmp_path, ["agentd-test-tool"], env=env)))
    assert info.returncode == 0
    assert f"tool ran in {tmp_path}" in (tmp_path / "logs" / "task.log").read_text()
    assert finish(launch(spec(tmp_path, ["agentd-test-tool"]))).returncode == 127  # not on agentd's own PATH


def test_signals_python_ignores_are_back_to_default_for_the_command(tmp_path: Path) -> None:
    """Python ignores SIGPIPE for itself; the command must get the default (a `cmd | head` pipeline ends)."""
    if not Path("/proc/self/status").exists():  # pragma: no cover
        pytest.skip("needs /proc")
    info = finish(launch(spec(tmp_path, ["grep", "SigIgn", "/proc/self/status"])))  # grep's own ignored signals
    assert info.returncode == 0
    line = next(ln for ln in (tmp_path / "logs" / "task.log").read_text().splitlines() if ln.startswith("SigIgn"))
    ignored = int(line.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), line


def test_not_executable_reports_126(tmp_path: Path) -> None:
    """A file without execute permission gives returncode 126."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    info = finish(launch(spec(tmp_path, [str(script)])))
    if os.geteuid() == 0 and info.returncode == 0:  # pragma: no cover - root may exec anyway
        pytest.skip("running as root with CAP_DAC_OVERRIDE")
    assert info.returncode == 126
    assert info.error


def in_order(log: Path, *fragments: str) -> None:
    """Each fragment appears in the task log, each on a later line than the one before."""
    lines = log.read_text().splitlines()
    at = -1
    for fragment in fragments:
        found = next((i for i, line in enumerate(lines) if i > at and fragment in line), None)
        assert found is not None, f"{fragment!r} not found after line {at} of:\n" + "\n".join(lines)
        at = found


def test_timeout_terminates(tmp_path: Path) -> None:
    """A command running past its timeout is SIGTERMed by the shim and reported as timed out."""
    info = finish(launch(spec(tmp_path, ["sleep", "30"], timeout=0.5, kill_after=5)))
    assert (info.timed_out, info.killed_by, info.signal, info.returncode) == (True, "timeout", signal.SIGTERM, None)
    assert not info.crashed
    in_order(tmp_path / "logs" / "task.log", "exec sleep 30", "timeout after 0.5s", "exited returncode=None signal=15")


def test_timeout_escalates_to_sigkill_when_term_is_ignored(tmp_path: Path) -> None:
    """A command ignoring SIGTERM is SIGKILLed by the shim after the timeout's SIGTERM (kill_after later)."""
    ready = tmp_path / "ready"
    argv = ["sh", "-c", f'trap "" TERM; touch "{ready}"; sleep 30']
    info = finish(launch(spec(tmp_path, argv, timeout=3.0, kill_after=0.5)))  # (time for the trap on a busy machine)
    assert ready.exists(), "the trap was in place before the timeout"
    assert (info.timed_out, info.killed_by, info.signal, info.returncode) == (True, "timeout", signal.SIGKILL, None)
    assert not info.crashed
    in_order(tmp_path / "logs" / "task.log", "timeout after 3.0s", "exited returncode=None signal=9")


def test_terminate_and_kill(tmp_path: Path, tasks: list[TaskProcess], caplog: pytest.LogCaptureFixture) -> None:
    """terminate() and kill() stop a running command through the shim, which reports how (no fallback needed)."""
    tp = launch(spec(tmp_path, ["sleep", "30"], kill_after=30))
    tasks.append(tp)
    assert tp.wait_started(30)
    tp.terminate()
    info = finish(tp)
    assert (info.signal, info.killed_by, info.timed_out, info.crashed) == (signal.SIGTERM, "term", False, False)

    tp = launch(spec(tmp_path, ["sh", "-c", 'trap "" TERM; sleep 30'], kill_after=30))
    tasks.append(tp)
    assert tp.wait_started(30)
    tp.kill()
    info = finish(tp)
    # The shim's own KILL: it reported the kill. Had the runner's fallback SIGKILLed the group (the shim with it),
    # there would be no report: a crash, "supervisor died", and the fallback's warning in the log.
    assert (info.signal, info.killed_by, info.crashed, info.error) == (signal.SIGKILL, "kill", False, None)
    assert "no exit report" not in caplog.text
    tp.terminate()  # after the end: harmless no-ops
    tp.kill()


def test_group_sigterm_from_outside_is_a_term_request(tmp_path: Path, tasks: list[TaskProcess]) -> None:
    """killpg(SIGTERM) by the daemon does not kill the shim; it escalates to SIGKILL and reports."""
    ready = tmp_path / "ready"
    tp = launch(spec(tmp_path, ["sh", "-c", f"trap '' TERM; touch '{ready}'; sleep 30"], kill_after=0.3))
    tasks.append(tp)
    assert tp.wait_started(30)
    assert wait_for(ready.exists, 30)  # the trap is in place
    command = tp.command_pid
    assert command is not None
    assert runner.group_alive(tp.pgid)
    assert runner.kill_group(tp.pgid, signal.SIGTERM)
    info = finish(tp)
    assert not info.crashed  # the shim survived the group's SIGTERM to report
    assert (info.signal, info.killed_by) == (signal.SIGKILL, "term")  # TERM ignored, then the shim's escalation
    assert pid_gone(command)
    assert pid_gone(tp.pid)


def test_kill_group_on_a_vanished_group(tmp_path: Path) -> None:
    """group_alive / kill_group report False for a process group that no longer exists."""
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()  # reaped: the group is gone (its id is not reused this fast)
    assert not runner.group_alive(proc.pid)
    assert not runner.kill_group(proc.pid, signal.SIGTERM)


DAEMON_SCRIPT = """
import json, sys, threading
from pathlib import Path
sys.path.insert(0, {src!r})
from agentd.run import runner

out = Path({out!r})
tp = runner.launch(runner.LaunchSpec(
    argv=["sh", "-c", "sleep 60 & echo $! > {bg}; sleep 60"],
    cwd=out.parent, env={{}}, log_path=out.parent / "daemon-task.log", timeout=None))
assert tp.wait_started(30)
tmp = out.with_suffix(".tmp")
tmp.write_text(json.dumps({{"shim": tp.pid, "command": tp.command_pid}}))
tmp.rename(out)
threading.Event().wait()
"""


def test_daemon_death_kills_the_whole_group(tmp_path: Path) -> None:
    """SIGKILLing the daemon process takes the shim, the command and its grandchild down."""
    out = tmp_path / "pids.json"
    bg = tmp_path / "bg.pid"
    script = tmp_path / "daemon.py"
    script.write_text(textwrap.dedent(DAEMON_SCRIPT.format(src=str(SRC_DIR), out=str(out), bg=str(bg))))
    daemon = subprocess.Popen([sys.executable, str(script)])
    try:
        assert wait_for(lambda: out.exists() and bg.exists() and bg.read_text().strip() != "", 30)
        pids = json.loads(out.read_text())
        shim, command, grandchild = pids["shim"], pids["command"], int(bg.read_text())
        for pid in (shim, command, grandchild):
            assert not pid_gone(pid)
        assert os.getpgid(command) == shim
        assert os.getpgid(grandchild) == shim

        daemon.kill()
        daemon.wait(5)
        assert wait_for(lambda: all(pid_gone(p) for p in (shim, command, grandchild)), 30), (
            f"survivors: {[p for p in (shim, command, grandchild) if not pid_gone(p)]}"
        )
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def fd_targets(pid: int | None) -> set[str]:
    """What a process's open descriptors name (one closed while they are listed is skipped: a command's own start-up
    opens and closes files)."""
    targets = set()
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{n}"))
        except FileNotFoundError:
            continue
    return targets


def test_kept_fd_holds_the_lease_lock(tmp_path: Path, tasks: list[TaskProcess]) -> None:
    """A flock'ed fd in keep_fds stays locked while the command runs and is released when it dies."""
    lease = tmp_path / "lease"
    lease.touch()
    fd = os.open(lease, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        tp = launch(spec(tmp_path, ["sleep", "30"], keep_fds=[fd]))
        tasks.append(tp)
    finally:
        os.close(fd)
    assert tp.wait_started(30)
    # the command itself has the very same open file (the lease) among its fds
    assert wait_for(lambda: str(lease) in fd_targets(tp.command_pid), 30)

    assert lock_held(lease)
    tp.kill()
    finish(tp, 30)
    assert wait_for(lambda: not lock_held(lease), 30)


def test_leftover_group_members_are_cleaned_up(tmp_path: Path) -> None:
    """Processes the command leaves behind in its group are terminated after it exits."""
    bg = tmp_path / "bg.pid"
    info = finish(launch(spec(tmp_path, ["sh", "-c", f"sleep 60 & echo $! > '{bg}'; exit 0"])))
    assert info.returncode == 0
    assert info.killed_by is None
    pid = int(bg.read_text())
    assert wait_for(lambda: pid_gone(pid), 30)


def test_on_exit_called_exactly_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """on_exit runs once with the task and its ExitInfo; an exception in it is logged, not raised."""
    calls: list[tuple[TaskProcess, ExitInfo]] = []

    def on_exit(tp: TaskProcess, info: ExitInfo) -> None:
        calls.append((tp, info))
        raise RuntimeError("callback boom")

    tp = launch(spec(tmp_path, ["sh", "-c", "exit 5"]), on_exit=on_exit)
    info = finish(tp)
    reader = next((t for t in threading.enumerate() if t.name == f"agentd-shim-{tp.pid}"), None)
    if reader is not None:
        reader.join(5)
        assert not reader.is_alive()
    assert len(calls) == 1
    assert calls[0][0] is tp
    assert calls[0][1] == info == tp.poll()
    assert info.returncode == 5
    assert "on_exit callback failed" in caplog.text


def test_detach_control_reports_a_crash(tmp_path: Path) -> None:
    """Closing the control pipe (simulated daemon death) kills the group; the runner sees a crash."""
    tp = launch(spec(tmp_path, ["sleep", "30"]))
    assert tp.wait_started(30)
    command = tp.command_pid
    assert command is not None
    tp.detach_control()
    info = finish(tp, 30)
    assert info.crashed
    assert info.error == "supervisor died"
    assert wait_for(lambda: pid_gone(command), 30)


def test_no_fd_leak(tmp_path: Path) -> None:
    """Launching and finishing tasks leaves no file descriptor open in the daemon."""

    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    finish(launch(spec(tmp_path, ["true"])))  # warm-up: lazily opened fds (e.g. /dev/null)
    before = open_fds()
    for _ in range(5):
        finish(launch(spec(tmp_path, ["true"])))
    assert wait_for(lambda: open_fds() <= before, 30), open_fds() - before


def test_group_helpers_refuse_dangerous_pgids() -> None:
    """group_alive / kill_group refuse pgid 0 and 1 instead of signalling our own group or init."""
    for pgid in (0, 1, -5):
        with pytest.raises(ValueError, match="refusing"):
            runner.kill_group(pgid, 0)
        with pytest.raises(ValueError, match="refusing"):
            runner.group_alive(pgid)


def ppid_of(pid: int) -> int:
    """The parent pid of a live process."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[1])


def read_pid(path: Path) -> int:
    """A pid a command wrote to *path* (waited for: the command writes it in the background)."""
    assert wait_for(lambda: path.exists() and path.read_text().strip() != "", 30), f"{path} was not written"
    return int(path.read_text())


def test_an_escaped_grandchild_ends_when_the_command_exits(tmp_path: Path) -> None:
    """A `setsid` grandchild (its own session) left running by a command that exits is stopped before the report."""
    bg = tmp_path / "bg.pid"
    info = finish(launch(spec(tmp_path, ["sh", "-c", f"setsid sleep 45 & echo $! > '{bg}'; exit 0"], kill_after=0.5)))
    assert info.returncode == 0 and info.killed_by is None
    assert pid_gone(read_pid(bg)), "the escaped grandchild outlived its task"


def test_an_orphaned_escaped_grandchild_is_reparented_to_the_shim_and_stopped(
    tmp_path: Path, tasks: list[TaskProcess]
) -> None:
    """A double-forked `setsid` process whose parent exited becomes the shim's child; terminate() ends it."""
    bg = tmp_path / "bg.pid"
    tp = launch(spec(tmp_path, ["sh", "-c", f"(setsid sleep 45 & echo $! > '{bg}'); sleep 45"], kill_after=0.5))
    tasks.append(tp)
    assert tp.wait_started(30)
    orphan = read_pid(bg)
    assert wait_for(lambda: os.getsid(orphan) == orphan, 30), "it left the task's session"
    assert wait_for(lambda: ppid_of(orphan) == tp.pid, 30), "not re-parented to the shim"
    tp.terminate()
    info = finish(tp)
    assert (info.signal, info.killed_by) == (signal.SIGTERM, "term")
    assert pid_gone(orphan)


def test_timeout_stops_an_escaped_grandchild_that_ignores_term(tmp_path: Path) -> None:
    """On timeout, a setsid grandchild ignoring SIGTERM is SIGKILLed with the rest of the tree."""
    bg = tmp_path / "bg.pid"
    script = f"setsid sh -c 'trap \"\" TERM; echo $$ > {bg}; while :; do sleep 1; done' & sleep 45"
    info = finish(launch(spec(tmp_path, ["sh", "-c", script], timeout=3.0, kill_after=0.5)))
    assert info.timed_out and info.killed_by == "timeout"
    assert pid_gone(read_pid(bg))


ESCAPED_DAEMON_SCRIPT = """
import fcntl, json, os, sys, threading
from pathlib import Path
sys.path.insert(0, {src!r})
from agentd.run import runner

out = Path({out!r})
fd = os.open({lease!r}, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
tp = runner.launch(runner.LaunchSpec(
    argv=["sh", "-c", "setsid sleep 60 & echo $! > {bg}; sleep 60"],
    cwd=out.parent, env={{}}, log_path=out.parent / "daemon-task.log", timeout=None, keep_fds=[fd]))
assert tp.wait_started(30)
tmp = out.with_suffix(".tmp")
tmp.write_text(json.dumps({{"shim": tp.pid, "command": tp.command_pid}}))
tmp.rename(out)
threading.Event().wait()
"""


def test_daemon_death_ends_an_escaped_grandchild_and_frees_the_lease_lock(tmp_path: Path) -> None:
    """SIGKILL the daemon: a setsid grandchild holding the inherited lease fd dies too, and the lock is free."""
    out, bg, lease = tmp_path / "pids.json", tmp_path / "bg.pid", tmp_path / "lease"
    lease.touch()
    script = tmp_path / "daemon.py"
    script.write_text(
        textwrap.dedent(ESCAPED_DAEMON_SCRIPT.format(src=str(SRC_DIR), out=str(out), bg=str(bg), lease=str(lease)))
    )
    daemon = subprocess.Popen([sys.executable, str(script)])
    try:
        assert wait_for(out.exists, 30)
        pids = json.loads(out.read_text())
        escaped = read_pid(bg)
        assert wait_for(lambda: os.getsid(escaped) == escaped, 30), "the grandchild runs in its own session"

        assert lock_held(lease)
        daemon.kill()
        daemon.wait(5)
        assert wait_for(lambda: all(pid_gone(p) for p in (pids["shim"], pids["command"], escaped)), 30), (
            f"survivors: {[p for p in (pids['shim'], pids['command'], escaped) if not pid_gone(p)]}"
        )
        assert wait_for(lambda: not lock_held(lease), 30), "the lease lock is still held"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_a_supervisor_out_of_descriptors_reports_not_started(tmp_path: Path) -> None:
    """A supervisor that cannot open its log for want of descriptors says the command was not started (agentd's
    failure), unlike a command that is not found (the command's own)."""
    import marshal
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4, 4))

    spec_ = {"argv": ["true"], "cwd": str(tmp_path), "env": dict(os.environ), "log": str(tmp_path / "t.log")}
    body = marshal.dumps(spec_)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(runner.SHIM_PATH)],
        input=len(body).to_bytes(4, "big") + body,
        capture_output=True,
        preexec_fn=limited,
        timeout=30,
        check=False,
    )
    report = marshal.loads(proc.stdout[4:])
    assert report["event"] == "exited" and report["not_started"] is True, report
    assert "Too many open files" in report["error"]
    info = finish(launch(spec(tmp_path, ["/nonexistent/command"])))
    assert info.returncode == 127 and not info.not_started


def test_the_supervisor_runs_code_compiled_once_by_the_daemon(tmp_path: Path) -> None:
    """The shim is not handed _shim.py to compile on every task (a script's bytecode is never cached): the daemon
    sends the code it compiled once, and the command still runs under it as before."""
    probe = "import os; print(repr(open(f'/proc/{os.getppid()}/cmdline', 'rb').read().split(b'\\0')[:-1]))"
    info = finish(launch(spec(tmp_path, [sys.executable, "-c", probe])))
    assert info.returncode == 0, info
    lines = (tmp_path / "logs" / "task.log").read_text().splitlines()
    printed = next(line for line in lines if line.startswith("["))  # between agentd's "exec" and "exited" lines
    shim_argv = ast.literal_eval(printed)
    assert shim_argv[1:4] == [b"-I", b"-S", b"-c"], shim_argv
    assert not any(arg.endswith(b".py") for arg in shim_argv), shim_argv


SHIM_WITH_AUDIT = """
import marshal, os, sys
seen = []
sys.addaudithook(lambda event, args: seen.append(args[0]) if event == "open" and isinstance(args[0], str) else None)
def report():
    stats = [p for p in seen if p.startswith("/proc/") and p.endswith("/stat")]
    os.write(2, ("PROC-STAT-OPENS %d\\n" % len(stats)).encode())
import atexit
atexit.register(report)
def r(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(2)
        b += c
    return b
exec(marshal.loads(r(int.from_bytes(r(4), "big"))), {"__name__": "__main__"})
"""


def test_a_command_that_leaves_nothing_behind_ends_without_a_scan_of_every_process(tmp_path: Path) -> None:
    """When the command has exited and the shim (a subreaper) has no child left, its tree is empty: the shim does not
    read the stat file of every process on the host to find out (a cost per task that grows with the host)."""
    import marshal

    body = marshal.dumps(
        {"argv": ["true"], "cwd": str(tmp_path), "env": dict(os.environ), "log": str(tmp_path / "t.log")}
    )
    shim = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", SHIM_WITH_AUDIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert shim.stdin is not None and shim.stdout is not None
    shim.stdin.write(runner.shim_code() + len(body).to_bytes(4, "big") + body)
    shim.stdin.flush()  # kept open until the command has ended (the shim's EOF means "the daemon died")
    try:
        frames = []
        while not frames or frames[-1]["event"] != "exited":
            size = int.from_bytes(shim.stdout.read(4), "big")
            assert size, "the shim ended without reporting the exit"
            frames.append(marshal.loads(shim.stdout.read(size)))
        shim.stdin.close()
        stderr = shim.stderr.read() if shim.stderr else b""
        shim.wait(timeout=60)
    finally:
        if shim.poll() is None:
            shim.kill()
    assert shim.returncode == 0 and frames[-1]["returncode"] == 0, (frames, stderr)
    assert frames[0]["subreaper"] is True  # (the kernel lets a process be a child subreaper: Linux >= 3.4)
    opens = int(stderr.decode().split("PROC-STAT-OPENS ")[1].split()[0])
    processes = sum(1 for name in os.listdir("/proc") if name.isdigit())
    assert opens < 5 < processes, (opens, processes)


@pytest.mark.parametrize("inherited", ["nothing", "a socket"])
def test_a_supervisor_killed_with_its_group_takes_the_run_s_escaped_processes_with_it(
    inherited: str, tmp_path: Path
) -> None:
    """The supervisor's whole group is SIGKILLed (a person's ``kill -9 -PGID``, a command's ``kill -9 0``): the
    subreaper that would have ended the run's escaped grandchild is gone. The run inherits no descriptor (then a tie
    is made for it) or a socket (the PostgreSQL store's session): the grandchild (its own session) holds it and is
    SIGKILLed before the end is told, so that nothing of the run lives once the task can be claimed again."""
    import socket

    ours, theirs = socket.socketpair()
    try:
        escaped = escape_then_kill_the_group(tmp_path, [theirs.fileno()] if inherited == "a socket" else [])
        assert pid_gone(escaped), "the escaped grandchild outlived its run's end"
    finally:
        ours.close()
        theirs.close()


def escape_then_kill_the_group(tmp_path: Path, keep_fds: list[int]) -> int:
    """A run (inheriting ``keep_fds``) leaves a grandchild in a session of its own; its supervisor's whole group is
    then SIGKILLed, and its end told. Returns the grandchild's pid."""
    bg = tmp_path / "bg.pid"
    tp = launch(spec(tmp_path, ["sh", "-c", f"setsid sleep 60 & echo $! > '{bg}'; sleep 60"], keep_fds=keep_fds))
    assert tp.wait_started(30)
    escaped = read_pid(bg)
    assert wait_for(lambda: os.getsid(escaped) == escaped, 30), "the grandchild runs in its own session"
    os.killpg(tp.pid, signal.SIGKILL)
    assert finish(tp).error == "supervisor died"
    return escaped


def test_a_supervisor_killed_with_its_group_takes_the_escaped_holders_of_the_lease_with_it(tmp_path: Path) -> None:
    """The same with the file store's lease descriptor inherited: the grandchild is SIGKILLed before the end is
    told, and the lease's lock is then this process's alone."""
    lease = tmp_path / "lease"
    fd = os.open(lease, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        escaped = escape_then_kill_the_group(tmp_path, [fd])
        assert pid_gone(escaped), "the escaped grandchild outlived its run's end"
        other = os.open(lease, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still this process's lock ...
        finally:
            os.close(other)
    finally:
        os.close(fd)
    assert not lock_held(lease)  # ... and no one else's


def test_a_supervisor_killed_with_its_group_in_a_process_with_many_descriptors(tmp_path: Path) -> None:
    """The same, with this process's descriptors numbered past 1,024 (a daemon with many leases, logs and peers):
    the wait for the killed grandchild must not depend on select()'s FD_SETSIZE."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"needs a descriptor limit of at least 1,200 (the hard limit is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if soft != resource.RLIM_INFINITY else soft, hard))
    fillers: list[int] = []
    try:
        while len(fillers) < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        assert max(fillers) > 1024
        test_a_supervisor_killed_with_its_group_takes_the_escaped_holders_of_the_lease_with_it(tmp_path)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_descriptor_number_reused_since_the_launch_never_points_at_another_process(tmp_path: Path) -> None:
    """The run inherited a socket (the PostgreSQL store's session) which the daemon has since closed (the store
    replaced the connection) and whose number now names another socket, held by an unrelated process. When the
    supervisor dies with its group, the run's escaped grandchild is found by what the descriptor was at the launch:
    it is SIGKILLed, the unrelated process is not."""
    import socket

    bg = tmp_path / "bg.pid"
    first, theirs = socket.socketpair()
    number = theirs.fileno()
    tp = launch(spec(tmp_path, ["sh", "-c", f"setsid sleep 60 & echo $! > '{bg}'; sleep 60"], keep_fds=[number]))
    bystander = None
    try:
        assert tp.wait_started(30)
        escaped = read_pid(bg)
        assert wait_for(lambda: os.getsid(escaped) == escaped, 30)
        theirs.close()  # the store's new connection takes the number
        other = socket.socket()
        if other.fileno() != number:  # (the lowest free number is often the one just freed: else put it there)
            os.dup2(other.fileno(), number)
            other.close()
            other = socket.socket(fileno=number)
        bystander = subprocess.Popen(["sleep", "60"], pass_fds=[number], start_new_session=True)
        os.killpg(tp.pid, signal.SIGKILL)
        assert finish(tp).error == "supervisor died"
        assert pid_gone(escaped), "the escaped grandchild outlived its run's end"
        assert bystander.poll() is None, "a process holding the number's new socket was killed"
        other.close()
    finally:
        first.close()
        if bystander is not None:
            bystander.kill()
            bystander.wait()
