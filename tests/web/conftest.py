"""A real project with a real pipeline run for the dashboard tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import recorder, task, write_config, write_queue

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}
TESTER = {"claims": "awaiting_test", "working": "testing", "on_success": "done", "on_failure": "blocked"}


def pipeline(root: Path, count: int = 4, fail: str | None = None) -> None:
    """A two-role project whose builder and tester record each run; ``fail`` exits 1 for that task."""
    log = root / "runs.jsonl"
    fails = [sys.executable, "-c", f"import os,sys; sys.exit(1 if os.environ['AGENTD_TASK_ID'] == {fail!r} else 0)"]
    write_config(
        root,
        {
            "builder": {**BUILDER, "command": fails if fail else recorder(log), "max_attempts": 1},
            "tester": {**TESTER, "command": recorder(log)},
        },
        defaults={"interval": 0.2},
    )
    write_queue(root, [task(f"X{n}", title=f"<b>task {n}</b> & co", type="Build") for n in range(1, count + 1)])


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose builder and tester have drained the queue (X2 failed in the builder)."""
    root = tmp_path_factory.mktemp("ran")
    pipeline(root, fail="X2")
    for role in ("builder", "tester"):
        result = run_agentd("--role", role, "--drain", cwd=root, timeout=120)
        assert result.returncode in (0, 1), result.stderr
    return root
