"""`agentd queue archive`: finished tasks move to SPRINT_QUEUE.archive.jsonl, stay readable, and a crash loses none."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentd import faults
from tests.conftest import run_agentd
from tests.helpers.daemons import task, tasks_by_id, write_config, write_queue

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "command": ["true"]}


def _ended(days: float) -> dict[str, Any]:
    stamp = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    return {"last_run": {"role": "builder", "ended_at": stamp}}


def _queue(root: Path) -> Path:
    write_config(root, {"builder": BUILDER}, defaults={"interval": 60})
    return write_queue(
        root,
        [
            task("D1", "done", **_ended(10)),
            task("R1", "ready", dependencies=["D1"]),
            task("C1", "cancelled"),
            task("P1", "done", subtasks=[task("P1.1", "ready")]),  # a subtask still open: the parent stays
            task("D2", "done", **_ended(0.01)),
            task("B1", "blocked", dependencies=["D2"]),
        ],
    )


def _archive_lines(root: Path) -> list[dict[str, Any]]:
    path = root / "SPRINT_QUEUE.archive.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_archive_moves_final_tasks_and_they_stay_readable(tmp_path: Path) -> None:
    """Done and cancelled tasks move; open ones (and parents of open subtasks) stay; show and history find them."""
    queue = _queue(tmp_path)
    before = queue.read_text()
    done = run_agentd("queue", "archive", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "archived 3 task(s) to SPRINT_QUEUE.archive.jsonl: D1, C1, D2"
    assert list(tasks_by_id(tmp_path)) == ["R1", "P1", "P1.1", "B1"]
    assert [line["task"]["id"] for line in _archive_lines(tmp_path)] == ["D1", "C1", "D2"]
    remaining = json.loads(before)
    remaining["tasks"] = [t for t in remaining["tasks"] if t["id"] in {"R1", "P1", "B1"}]
    assert queue.read_text() == json.dumps(remaining, indent=2) + "\n"  # the rest of the file as it was
    assert run_agentd("queue", "validate", cwd=tmp_path).returncode == 0  # R1 and B1 depend on archived tasks
    shown = run_agentd("queue", "show", "D1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("(archived at ") and "status" in shown.stdout
    assert json.loads(run_agentd("queue", "show", "C1", "--json", cwd=tmp_path).stdout)["status"] == "cancelled"
    why = run_agentd("queue", "why", "R1", "--json", cwd=tmp_path)
    assert json.loads(why.stdout)["claimable"] is True, why.stdout  # its dependency D1 is archived, done
    history = run_agentd("queue", "history", "D2", "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)["queue"]["status"] == "done"
    again = run_agentd("queue", "archive", cwd=tmp_path)
    assert again.stdout.strip() == "archived 0 task(s) to SPRINT_QUEUE.archive.jsonl"
    assert len(_archive_lines(tmp_path)) == 3


def test_older_than_moves_only_tasks_whose_last_run_ended_before(tmp_path: Path) -> None:
    """--older-than 7d: D1 (ended 10 days ago) moves; D2 (minutes ago) and C1 (no run recorded) stay."""
    _queue(tmp_path)
    dry = run_agentd("queue", "archive", "--older-than", "7d", "--dry-run", cwd=tmp_path)
    assert dry.stdout.strip() == "would archive 1 task(s) to SPRINT_QUEUE.archive.jsonl: D1"
    assert not (tmp_path / "SPRINT_QUEUE.archive.jsonl").exists()
    done = run_agentd("queue", "archive", "--older-than", "7d", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "D1" not in tasks_by_id(tmp_path) and {"D2", "C1"} <= set(tasks_by_id(tmp_path))


def test_a_bad_duration_is_a_usage_error(tmp_path: Path) -> None:
    """A duration it cannot read: exit 2, one line naming the option, the queue untouched."""
    queue = _queue(tmp_path)
    before = queue.read_bytes()
    bad = run_agentd("queue", "archive", "--older-than", "soon", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--older-than" in bad.stderr and "'soon' is not a duration" in bad.stderr
    assert queue.read_bytes() == before


def test_a_daemon_counts_an_archived_dependency_as_done(tmp_path: Path) -> None:
    """R1 depends on archived D1 and is claimed; B1 (blocked on archived D2) is unblocked and claimed."""
    _queue(tmp_path)
    assert run_agentd("queue", "archive", cwd=tmp_path).returncode == 0
    ran = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    tasks = tasks_by_id(tmp_path)
    assert tasks["R1"]["status"] == "awaiting_test"
    assert tasks["B1"]["status"] == "awaiting_test"


def test_a_crash_between_the_archive_and_the_queue_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Die after the archive is fsynced, before the queue is written: the tasks are in both (the queue wins); the
    next run only removes them from the queue."""
    queue = _queue(tmp_path)
    before = queue.read_bytes()
    crashed = run_agentd("queue", "archive", cwd=tmp_path, env={"AGENTD_CRASH_AT": "archive.after-append"})
    assert crashed.returncode == faults.CRASH_EXIT_CODE, crashed.stderr
    assert queue.read_bytes() == before
    assert [line["task"]["id"] for line in _archive_lines(tmp_path)] == ["D1", "C1", "D2"]
    shown = run_agentd("queue", "show", "D1", cwd=tmp_path)
    assert not shown.stdout.startswith("(archived")  # the queue's copy
    assert run_agentd("queue", "validate", cwd=tmp_path).returncode == 0
    again = run_agentd("queue", "archive", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert list(tasks_by_id(tmp_path)) == ["R1", "P1", "P1.1", "B1"]
    assert [line["task"]["id"] for line in _archive_lines(tmp_path)] == ["D1", "C1", "D2"]


def test_a_torn_last_line_is_skipped_and_the_next_move_starts_a_new_line(tmp_path: Path) -> None:
    """A line cut short by a crash is not a task; the next append does not glue onto it."""
    _queue(tmp_path)
    (tmp_path / "SPRINT_QUEUE.archive.jsonl").write_text('{"archived_at": "2026-01-01T00:00:00+00:00", "task": {"id"')
    done = run_agentd("queue", "archive", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "SPRINT_QUEUE.archive.jsonl").read_text().splitlines()
    assert len(lines) == 4 and lines[0].endswith('{"id"')
    assert run_agentd("queue", "show", "D1", cwd=tmp_path).returncode == 0


def test_an_unreadable_archive_is_one_line_and_daemons_carry_on(tmp_path: Path) -> None:
    """A folder where the archive should be: `queue show` of an unknown id says so in one line (exit 8), the move is
    refused with the queue unchanged, and a daemon still works (archived ids just count as unknown)."""
    queue = _queue(tmp_path)
    before = queue.read_bytes()
    (tmp_path / "SPRINT_QUEUE.archive.jsonl").mkdir()
    shown = run_agentd("queue", "show", "NOPE", cwd=tmp_path)
    assert shown.returncode == 8 and shown.stderr.count("\n") == 1, shown.stderr
    assert "SPRINT_QUEUE.archive.jsonl: cannot read the archive" in shown.stderr
    moved = run_agentd("queue", "archive", cwd=tmp_path)
    assert moved.returncode == 8 and moved.stderr.count("\n") == 1, moved.stderr
    assert queue.read_bytes() == before
    ran = run_agentd("--role", "builder", "--once", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert tasks_by_id(tmp_path)["R1"]["status"] == "awaiting_test"


def test_a_quarantined_finished_task_stays_in_the_queue(tmp_path: Path) -> None:
    """A done task with a problem of its own is left as it is (its bytes are a person's to fix), the others move."""
    queue = _queue(tmp_path)
    doc = json.loads(queue.read_text())
    doc["tasks"][0]["priority"] = "high"  # D1: done, but quarantined
    queue.write_text(json.dumps(doc, indent=2) + "\n")
    dry = run_agentd("queue", "archive", "--dry-run", cwd=tmp_path)
    assert dry.stdout.strip() == "would archive 2 task(s) to SPRINT_QUEUE.archive.jsonl: C1, D2"
    done = run_agentd("queue", "archive", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "archived 2 task(s) to SPRINT_QUEUE.archive.jsonl: C1, D2"
    assert tasks_by_id(tmp_path)["D1"]["priority"] == "high"
