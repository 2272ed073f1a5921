"""The first hour with real daemons: a hot loop stopped, background flags, SIGHUP from a terminal that went away."""

from __future__ import annotations

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
