"""A task's whole process tree ends with the task (cancel, escaped grandchildren, a SIGKILLed daemon), and agentd's own
failures to start a command are not charged to the task: real daemons, real processes, real signals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import (
    alive,
    events,
    recorder,
    start,
    stop_all,
    task,
    tasks_by_id,
    wait_for,
    write_config,
    write_queue,
)

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}


def journal(root: Path) -> list[dict[str, object]]:
    """The daemons' event journal."""
    path = root / ".agentd" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["cancel", "set-status"])
def test_cancel_stops_the_running_command_and_the_status_stands(tmp_path: Path, how: str) -> None:
    """`queue cancel` (or `set-status done`) on a running task stops its command, records the run, keeps the status
    and releases the lease."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", "120")}},
        defaults={"interval": 60, "grace": 5, "kill_after": 1},
    )
    write_queue(tmp_path, [task("C1")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        run = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the run to start")[0]
        if how == "cancel":
            done = run_agentd("queue", "cancel", "C1", "--note", "superseded", cwd=tmp_path)
            status, note = "cancelled", "superseded"
        else:
            done = run_agentd("queue", "set-status", "C1", "done", "--note", "done by hand", cwd=tmp_path)
            status, note = "done", "done by hand"
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not alive(run["pid"]), 10, "the cancelled command to be stopped")
        final = wait_for(
            lambda: (t := tasks_by_id(tmp_path)["C1"]).get("last_run") and t, 10, "the stopped run to be recorded"
        )
        assert final["status"] == status and final["status_note"] == note
        assert final["lease"] is None and final.get("attempts", 0) == 0
        assert final["last_run"]["outcome"] == "stopped" and final["last_run"]["next_status"] == status
        wait_for(lambda: not list((tmp_path / ".leases").glob("*.json")), 10, "the lease to be released")
        kinds = [e["event"] for e in journal(tmp_path) if e.get("task") == "C1"]
        assert kinds.index("stopping") < kinds.index("finished") < kinds.index("released")
        assert daemon.poll() is None, "the daemon carries on"
    finally:
        stop_all([daemon])
    assert not [r for r in events(log) if r["event"] == "end"], "the command was stopped, not run to its end"
