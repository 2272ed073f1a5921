"""The first hour with real daemons: a hot loop stopped, background flags, SIGHUP from a terminal that went away."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import events, recorder, task, tasks_by_id, write_config, write_queue

pytestmark = pytest.mark.slow


def test_a_looping_role_is_stopped_after_max_repeats(tmp_path: Path) -> None:
    """A role that opted into allow_loop runs a task max_repeats times, then sends it to on_failure and journals it."""
    log = tmp_path / "runs.jsonl"
    looper = {"claims": "ready", "working": "in_progress", "on_success": "ready", "allow_loop": True, "max_repeats": 3}
    write_config(tmp_path, {"builder": {**looper, "command": recorder(log)}})
    write_queue(tmp_path, [task("L1")], {"builder": 1})
    result = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len({run["token"] for run in events(log)}) == 3
    final = tasks_by_id(tmp_path)["L1"]
    assert final["status"] == "blocked" and "ran 3 times in a row" in final["blocked_reason"]
    assert "repeat_runs" not in final
    journal = events(tmp_path / ".agentd" / "events.jsonl")
    assert [e["task"] for e in journal if e["event"] == "hot-loop"] == ["L1"]
    assert "ran 3 times in a row without its status changing" in result.stderr


def _pid_file(root: Path, role: str) -> dict[str, object]:
    return dict(json.loads((root / ".agentd" / "run" / f"{role}.pid").read_text()))


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_background_passes_its_flags_on_and_restart_keeps_them(tmp_path: Path) -> None:
    """--background keeps --interval and --concurrency; restart starts it again with them; stop returns once the
    process has exited; --once/--drain with --background and --background without --role are usage errors."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"grace": 1, "kill_after": 1})
    write_queue(tmp_path, [], {"builder": 2})
    try:
        for args in (["--background"], ["--role", "builder", "--background", "--once"], ["--drain", "--background"]):
            refused = run_agentd(*args, cwd=tmp_path)
            assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
            assert refused.stderr.splitlines()[-1].startswith("Error: --")
            assert not (tmp_path / ".agentd" / "run" / "builder.pid").exists()
        started = run_agentd("--role", "builder", "--background", "--interval", "7", "--concurrency", "2", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        first = _pid_file(tmp_path, "builder")
        argv = first["argv"]
        assert isinstance(argv, list) and argv[argv.index("--concurrency") + 1] == "2"
        assert first["interval"] == 7.0
        restarted = run_agentd("restart", "builder", cwd=tmp_path)
        assert restarted.returncode == 0, restarted.stderr
        assert _gone(int(str(first["pid"])))  # restart's stop returned only once the old process had exited
        second = _pid_file(tmp_path, "builder")
        assert second["pid"] != first["pid"] and second["interval"] == 7.0
        argv = second["argv"]
        assert isinstance(argv, list) and argv[argv.index("--concurrency") + 1] == "2"
        stopped = run_agentd("stop", "builder", cwd=tmp_path)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert _gone(int(str(second["pid"])))
    finally:
        run_agentd("stop", cwd=tmp_path, timeout=60)


BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}


def test_once_on_a_bad_queue_does_not_promise_a_retry(tmp_path: Path) -> None:
    """--once over a queue with a trailing comma: one line naming the comma and its line, no "(retrying)", exit 4."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": [\n  {"id": "A", "status": "ready"},\n]}\n')
    result = run_agentd("--role", "builder", "--once", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "a trailing comma at line 2 column 33" in result.stderr
    assert "retrying" not in result.stderr


def _attached_daemon(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A foreground builder whose stdin/stdout/stderr and controlling terminal are a real pty; returns the master."""
    master, slave = os.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("AGENTD_ROOT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentd", "--role", "builder", "-v"],
        cwd=root,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(slave)
    return proc, master


def _read_until(master: int, text: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {text!r}; saw {seen[-500:]!r}")
        ready, _, _ = select.select([master], [], [], left)
        if ready:
            seen += os.read(master, 4096)
    return seen


def test_a_foreground_daemon_stops_when_its_terminal_closes(tmp_path: Path) -> None:
    """SIGHUP with the terminal alive re-reads the config; closing the terminal (SIGHUP, terminal gone) stops the
    daemon gracefully (exit 0) and journals a hangup event."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"grace": 1})
    write_queue(tmp_path, [], {"builder": 1})
    proc, master = _attached_daemon(tmp_path)
    try:
        _read_until(master, b"builder daemon started", 30)
        proc.send_signal(signal.SIGHUP)  # `kill -HUP` by hand: the terminal is still there
        _read_until(master, b"configuration re-read", 30)
        assert proc.poll() is None
        os.close(master)  # the terminal window closes: the kernel hangs up the pty and sends SIGHUP
        master = -1
        assert proc.wait(timeout=30) == 0
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    journal = events(tmp_path / ".agentd" / "events.jsonl")
    kinds = [e["event"] for e in journal]
    assert kinds.count("hangup") == 1 and kinds[-1] == "daemon-stopped"
    assert (
        "its terminal closed (SIGHUP); stopping gracefully"
        in next(e for e in journal if e["event"] == "hangup")["message"]
    )
