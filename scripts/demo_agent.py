#!/usr/bin/env python3
"""A stand-in for a real coding agent, for the demo: says what it does, works a little, and sometimes sends work back.

Run by agentd as a role command (see examples/sprint/agentd.toml). It reads its task from the environment agentd
sets, sleeps a short, task-dependent time, and:
  - as the tester, fails (exit 3 -> needs_adapt) the first time for one task in three;
  - as the refiner, writes a result file that marks the task as adapted (so the tester passes it next time).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def task_field(task_id: str, field: str) -> object:
    with open(os.environ["AGENTD_QUEUE"], encoding="utf-8") as handle:
        stack = list(json.load(handle)["tasks"])
    while stack:
        task = stack.pop()
        if task.get("id") == task_id:
            return task.get(field)
        stack.extend(task.get("subtasks") or [])
    return None


def main() -> int:
    task_id = os.environ["AGENTD_TASK_ID"]
    role = os.environ["AGENTD_ROLE"]
    digest = int(hashlib.sha256(task_id.encode()).hexdigest(), 16)
    pause = 0.2 + (digest % 5) / 10
    prompt = sys.argv[1] if len(sys.argv) > 1 else ""
    print(f"[{role}] {task_id}: {prompt}", flush=True)
    time.sleep(pause)
    if role == "tester" and digest % 3 == 0 and not task_field(task_id, "adapted"):
        print(f"[{role}] {task_id}: 2 tests fail; sending it back to the refiner", flush=True)
        return 3
    if role == "refiner":
        with open(os.environ["AGENTD_RESULT"], "w", encoding="utf-8") as handle:
            json.dump({"note": "fixed the failing tests", "fields": {"adapted": True}}, handle)
    print(f"[{role}] {task_id}: done in {pause:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
