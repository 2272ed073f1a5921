"""A daemon's start-up: what it does before its first claim, and what it leaves until after its first pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import daemons

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done"}


def test_a_drain_with_nothing_to_do_never_starts_the_change_watch(tmp_path: Path) -> None:
    """The change watch (watchdog, inotify) starts after the first pass: a drain of an empty queue ends before."""
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    daemons.write_queue(tmp_path, [])
    env = {k: v for k, v in os.environ.items() if k != "AGENTD_ROOT"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agentd", "--root", str(tmp_path), "--role", "builder", "--drain"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")]
    assert "agentd.daemon" in imported or "agentd.run.daemon" in imported, imported[-5:]
    assert not [name for name in imported if name.startswith("watchdog")]


def test_a_task_added_as_the_daemon_starts_is_run_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """A task written while the first pass runs (before the change watch is up) is seen by the look that follows
    the watch's start, not an interval (an hour here) later."""
    log = tmp_path / "runs.jsonl"
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": daemons.recorder(log)}})
    queue = daemons.write_queue(tmp_path, [])
    daemon = daemons.start(tmp_path, "builder", "--interval", "3600")
    try:
        daemons.wait_for(lambda: (tmp_path / ".agentd" / "events.jsonl").exists(), 60, "the daemon's start")
        doc = json.loads(queue.read_text())
        doc["tasks"].append(daemons.task("A1"))
        tmp = queue.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.rename(queue)
        daemons.wait_for(lambda: daemons.tasks_by_id(tmp_path)["A1"]["status"] == "done", 60, "A1 run and done")
    finally:
        daemons.stop_all([daemon])
