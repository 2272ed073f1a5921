"""Task output logs are pruned by count per task and by age; the daemon's log lines cost what they show."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

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


def test_the_daemon_s_text_lines_are_logging_s_with_each_second_formatted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TextFormatter writes what logging.Formatter writes, for records in the same second and across seconds, and
    formats the time of each second once."""
    import logging

    from agentd.service.logsetup import DATE_FORMAT, TEXT_FORMAT, TextFormatter

    fmt = TEXT_FORMAT.format(name="builder")
    plain, fast = logging.Formatter(fmt, DATE_FORMAT), TextFormatter(fmt, DATE_FORMAT)
    converted: list[float] = []
    real = fast.converter
    monkeypatch.setattr(fast, "converter", lambda secs: converted.append(secs) or real(secs))
    base = 1_790_000_000.0
    for n, at in enumerate([base + 0.1, base + 0.5, base + 0.99, base + 1.0, base + 1.2, base + 3.7, base + 3.9]):
        record = logging.LogRecord("agentd.daemon", logging.INFO, "", 0, f"claimed T{n}", (), None)
        record.created = at
        assert fast.format(record) == plain.format(record)
    assert len(converted) == 3  # the seconds base, base + 1, base + 3


def test_a_daemon_s_log_lines_look_nothing_up_that_they_do_not_show() -> None:
    """After the daemon's logging setup, a record is made without its caller's file and line, its thread's name,
    multiprocessing's process name (none shown by either format); the process id, which both show, stays."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "from agentd.service import logsetup\n"
        "logsetup.setup('builder')\n"
        "r = logging.getLogger('agentd.daemon').makeRecord('agentd.daemon', 20, '', 0, 'm', (), None)\n"
        "print(logging._srcfile is None, r.threadName, r.processName, r.process is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "None", "None", "True"], done.stdout
