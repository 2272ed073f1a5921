"""Every writer of .agentd/state.json (pauses, automation switches) takes the queue's lock, so none loses another's
change."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from tests.conftest import run_agentd

CONFIG = """lock_timeout = 1

[[schedule]]
name = "daily"
every = "1h"
task = { title = "x" }
"""


def test_automation_switches_and_pauses_share_the_queue_lock_and_keep_each_other(tmp_path: Path) -> None:
    """While another process holds the queue lock, `automation disable` waits for it (here: times out, exit 5,
    nothing written); once free, a switch and a pause written one after the other are both in the file."""
    (tmp_path / "agentd.toml").write_text(CONFIG)
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": []}\n')
    state = tmp_path / ".agentd" / "state.json"
    with open(tmp_path / "SPRINT_QUEUE.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        held = run_agentd("automation", "disable", "daily", cwd=tmp_path)
        assert held.returncode == 5, (held.stdout, held.stderr)
        assert not state.exists()
    assert run_agentd("automation", "disable", "daily", cwd=tmp_path).returncode == 0
    paused = run_agentd("pause", "builder", "--reason", "usage limit", cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    data = json.loads(state.read_text())
    assert data["automation"]["disabled"] == ["daily"]
    assert [pause["role"] for pause in data["pauses"]] == ["builder"]
    assert run_agentd("automation", "enable", "daily", cwd=tmp_path).returncode == 0
    data = json.loads(state.read_text())
    assert data["automation"]["disabled"] == [] and [p["role"] for p in data["pauses"]] == ["builder"]
