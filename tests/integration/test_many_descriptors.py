"""A daemon with more than 1,024 descriptors open (a container's `ulimit -n` is often 65,536 or more, and a daemon
running hundreds of tasks holds several per task) runs and ends its tasks as any other: nothing on its path waits with
``select``, which refuses a descriptor numbered 1,024 or more. A real daemon process, its extra descriptors inherited
from the process that started it (as a service manager's or a shell's may be)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon
from tests.helpers.daemons import drain_in_thread, task, tasks_by_id, write_config, write_queue

OPEN = 1100  # descriptors opened before the daemon starts: every one it opens after them is numbered above 1,024
NEEDED = OPEN + 200

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (/proc/self/fd, pidfds)"),
    pytest.mark.skipif(
        resource.getrlimit(resource.RLIMIT_NOFILE)[1] != resource.RLIM_INFINITY
        and resource.getrlimit(resource.RLIMIT_NOFILE)[1] < NEEDED,
        reason=f"needs a hard `ulimit -n` of {NEEDED} or more, to open {OPEN} descriptors before the daemon",
    ),
]

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "on_failure": "blocked"}

# Raise the soft limit, open OPEN descriptors (inheritable), then become the daemon.
LAUNCH = f"""
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = {NEEDED} * 2 if hard == resource.RLIM_INFINITY else min(hard, {NEEDED} * 2)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
held = [os.open(os.devnull, os.O_RDONLY) for _ in range({OPEN})]
for fd in held:
    os.set_inheritable(fd, True)
os.execv(sys.executable, [sys.executable, "-m", "agentd", *sys.argv[1:]])
"""


def test_a_daemon_with_over_1024_descriptors_open_runs_and_ends_every_task(tmp_path: Path) -> None:
    count = "ls /proc/self/fd | wc -l > fds-$AGENTD_TASK_ID"
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["sh", "-c", count]}})
    write_queue(tmp_path, [task(f"T{n}") for n in range(6)], {"builder": 3})
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, "--root", str(tmp_path), "--role", "builder", "--drain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert {task_id: raw["status"] for task_id, raw in tasks_by_id(tmp_path).items()} == {
        f"T{n}": "done" for n in range(6)
    }
    # (The commands themselves were not handed the daemon's extra descriptors.)
    assert all(int((tmp_path / f"fds-T{n}").read_text()) < 50 for n in range(6))


def test_start_from_a_process_with_over_1024_descriptors_open_starts_the_daemon(tmp_path: Path) -> None:
    """`agentd start` waits for the daemon's readiness line on a pipe numbered above 1,024."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    write_queue(tmp_path, [], {"builder": 1})
    try:
        started = subprocess.run(
            [sys.executable, "-c", LAUNCH, "--root", str(tmp_path), "start", "builder"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr[-3000:]
        assert started.stdout.startswith("builder started (pid "), started.stdout + started.stderr[-3000:]
    finally:
        subprocess.run([sys.executable, "-m", "agentd", "--root", str(tmp_path), "stop"], timeout=60, check=False)


def test_an_in_process_daemon_leaves_no_descriptor_open_once_its_run_is_over(tmp_path: Path) -> None:
    """Daemons run in one process, one after another (a test suite, a tool built on agentd): each run's queue lock,
    lease folder, token mark and files made ahead are closed when it ends, so that descriptors do not pile up."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})

    def open_now() -> set[str]:
        return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _exists(fd)}

    before = open_now()
    for round_ in range(3):
        write_queue(tmp_path, [task(f"R{round_}-{n}") for n in range(4)], {"builder": 2})
        daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder")
        assert drain_in_thread(daemon, 60) == 0
        left = {name for name in open_now() - before if str(tmp_path) in name}
        assert not left, f"round {round_}: still open after the run: {sorted(left)}"


def _exists(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True
