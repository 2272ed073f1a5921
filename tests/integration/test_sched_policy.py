"""The supervisors wake up without preempting the daemon (SCHED_BATCH), and the commands run in the daemon's own
scheduling policy. Real daemons, real supervisors and real commands: each command writes its own and its
supervisor's /proc/<pid>/stat, whose 41st field is the policy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.daemons import task, tasks_by_id, write_config, write_queue

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "SCHED_BATCH"), reason="needs Linux scheduling policies"
)

OTHER, BATCH, IDLE = 0, 3, 5  # <linux/sched.h>
REPORT = 'cat /proc/$$/stat > "command-$AGENTD_TASK_ID.stat"; cat /proc/$PPID/stat > "supervisor-$AGENTD_TASK_ID.stat"'


def policy(stat: Path) -> int:
    """The scheduling policy in a saved /proc/<pid>/stat (the 41st field; the 2nd, the name, may hold spaces)."""
    text = stat.read_text()
    return int(text[text.rindex(")") + 2 :].split()[38])


def drain(root: Path, preexec: Callable[[], None] | None = None) -> None:
    """Two tasks drained by a real daemon (started with ``preexec`` run in it first), both done."""
    builder = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["sh", "-c", REPORT]}
    write_config(root, {"builder": builder})
    write_queue(root, [task("A"), task("B")], {"builder": 2})
    env = {k: v for k, v in os.environ.items() if k != "AGENTD_ROOT"}
    done = subprocess.run(
        [sys.executable, "-m", "agentd", "--root", str(root), "--role", "builder", "--drain"],
        env=env,
        cwd=root,
        capture_output=True,
        timeout=120,
        preexec_fn=preexec,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert {t["id"]: t["status"] for t in tasks_by_id(root).values()} == {"A": "done", "B": "done"}


def _allowed(policy: str) -> bool:
    """Whether a process here may switch itself to ``os.<policy>`` (a seccomp filter may refuse it): tried in a
    child."""
    probe = f"import os; os.sched_setscheduler(0, os.{policy}, os.sched_param(0))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode == 0


def test_supervisors_yield_and_commands_run_in_the_daemons_policy(tmp_path: Path) -> None:
    assert os.sched_getscheduler(0) == OTHER, "the test suite itself must run in SCHED_OTHER"
    if not _allowed("SCHED_BATCH"):
        pytest.skip("this environment refuses sched_setscheduler(SCHED_BATCH) (a seccomp filter): nothing to switch")
    drain(tmp_path)
    for task_id in "AB":
        assert policy(tmp_path / f"supervisor-{task_id}.stat") == BATCH, f"{task_id}'s supervisor"
        assert policy(tmp_path / f"command-{task_id}.stat") == OTHER, f"{task_id}'s command"


def test_a_daemon_started_in_another_policy_keeps_it_for_all(tmp_path: Path) -> None:
    """``chrt --idle 0 agentd ...``: the person's choice holds for supervisors and commands alike."""
    if not _allowed("SCHED_IDLE"):
        pytest.skip("this environment refuses sched_setscheduler(SCHED_IDLE) (a seccomp filter)")
    drain(tmp_path, lambda: os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0)))
    for task_id in "AB":
        assert policy(tmp_path / f"supervisor-{task_id}.stat") == IDLE, f"{task_id}'s supervisor"
        assert policy(tmp_path / f"command-{task_id}.stat") == IDLE, f"{task_id}'s command"
