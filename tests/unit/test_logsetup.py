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


def test_a_task_log_over_the_cap_keeps_its_head_and_tail(tmp_path: Path) -> None:
    """Over max_task_log: the first and last lines stay, a line says how much was cut between; under it: untouched."""
    from agentd.service.logsetup import cap_task_log

    log = tmp_path / "1.log"
    lines = [f"line {n:06d} {'x' * 40}\n" for n in range(20_000)]
    log.write_text("".join(lines))
    size = log.stat().st_size
    assert cap_task_log(log, size) == 0 and log.stat().st_size == size
    cut = cap_task_log(log, 10_000)
    text = log.read_text()
    assert 0 < cut < size and len(text.encode()) <= 10_000 + 200
    assert text.startswith(lines[0]) and text.endswith(lines[-1])
    marker = [line for line in text.splitlines() if "bytes cut" in line]
    assert len(marker) == 1 and f"{cut} bytes cut" in marker[0] and "max_task_log" in marker[0]
    kept = [line + "\n" for line in text.splitlines() if line.startswith("line ")]
    assert all(line in lines for line in kept)  # whole lines only
    assert [p.name for p in tmp_path.iterdir()] == ["1.log"]  # no temporary file left


def test_a_cap_of_zero_means_no_cap(tmp_path: Path) -> None:
    """max_task_log = 0 keeps every byte."""
    from agentd.service.logsetup import cap_task_log

    log = tmp_path / "1.log"
    log.write_text("x" * 100_000)
    assert cap_task_log(log, 0) == 0 and log.stat().st_size == 100_000
