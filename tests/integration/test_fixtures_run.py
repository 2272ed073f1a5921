"""The real OODATCAA queues run as they are: every task that can reach done does, and only agentd's fields change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon, Mode
from tests.conftest import FIXTURE_NAMES
from tests.helpers.daemons import write_config

ROLES = ("planner", "builder", "tester", "refiner", "integrator")
OWNED = {
    "status",
    "agent",
    "lease",
    "lease_token",
    "attempts",
    "not_before",
    "status_note",
    "last_run",
    "blocked_reason",
}
PIPELINE = {
    "planner": ("needs_plan", "planning", "planning_complete"),
    "builder": ("ready", "in_progress", "awaiting_test"),
    "tester": ("awaiting_test", "testing", "ready_for_integrator"),
    "refiner": ("needs_adapt", "adapting", "awaiting_test"),
    "integrator": ("ready_for_integrator", "integrating", "done"),
}


def flat(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        out[t["id"]] = t
        out.update(flat(t.get("subtasks") or []))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_real_queue_runs_to_done(name: str, oodatcaa: Path, tmp_path: Path) -> None:
    """With `true` as every command and drain passes until nothing moves, every task that can be done is done."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    shutil.copyfile(oodatcaa / name, queue)
    before_text = queue.read_text(encoding="utf-8")
    roles = {
        role: {"claims": c, "working": w, "on_success": s, "command": ["true"]} for role, (c, w, s) in PIPELINE.items()
    }
    write_config(tmp_path, roles, defaults={"interval": 0.2})
    cfg = config_mod.load(root=tmp_path, environ={})
    for _ in range(30):
        snapshot = queue.read_bytes()
        for role in ROLES:
            assert Daemon(cfg, role, watch=False).run(Mode.DRAIN) == 0
        if queue.read_bytes() == snapshot:
            break
    before = json.loads(before_text)
    after = json.loads(queue.read_text(encoding="utf-8"))
    assert {k: v for k, v in before.items() if k != "tasks"} == {k: v for k, v in after.items() if k != "tasks"}
    old, new = flat(before["tasks"]), flat(after["tasks"])
    assert list(old) == list(new)
    for task_id, task in new.items():
        keys = (set(task) | set(old[task_id])) - {"subtasks"}  # nested tasks are compared on their own
        changed = {key for key in keys if task.get(key) != old[task_id].get(key)}
        assert changed <= OWNED, (task_id, changed - OWNED)
        assert [k for k in old[task_id]] == [k for k in task if k in old[task_id]], "key order changed"
    claimable = {status for c, w, _ in PIPELINE.values() for status in (c, w)}
    for task_id, task in new.items():
        deps_done = all(new[d]["status"] in ("done", "completed") for d in task.get("dependencies", []))
        if task["status"] in claimable:  # only a dependency that cannot finish may hold a task back
            assert not deps_done, f"{task_id} left in {task['status']} with every dependency done"
        if task["status"] == "blocked":
            assert task.get("blocked_reason") or not deps_done, f"{task_id} blocked for no reason"
    assert sum(t["status"] == "done" for t in new.values()) > sum(t["status"] == "done" for t in old.values())
    assert list((tmp_path / ".leases").glob("*.json")) == []
