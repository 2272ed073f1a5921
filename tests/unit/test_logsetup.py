"""Task output logs are pruned by count per task and by age."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentd.service.logsetup import prune_task_logs


def test_keeps_the_newest_per_task_and_drops_old_ones(tmp_path: Path) -> None:
    """Only the newest `keep` logs of a task survive, and none older than the age limit."""
    now = time.time()
    for task, count in (("A", 5), ("B", 2)):
        folder = tmp_path / task
        folder.mkdir()
        for token in range(1, count + 1):
            log = folder / f"{token}.log"
            log.write_text(f"run {token}\n")
            os.utime(log, (now - 100 + token, now - 100 + token))
    old = tmp_path / "B" / "1.log"
    os.utime(old, (now - 3 * 86400, now - 3 * 86400))
    assert prune_task_logs(tmp_path, keep=3, max_age_days=2, now=now, only="A") == 2
    assert sorted(p.name for p in (tmp_path / "A").iterdir()) == ["3.log", "4.log", "5.log"]
    assert (tmp_path / "B" / "1.log").exists()
    assert prune_task_logs(tmp_path, keep=3, max_age_days=2, now=now) == 1
    assert sorted(p.name for p in (tmp_path / "B").iterdir()) == ["2.log"]
