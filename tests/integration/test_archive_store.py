"""The archive seen by a long-lived queue store: what a daemon's store concludes follows the archive as it changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from agentd.store.file.queuefile import QueueStore


def test_a_long_lived_store_follows_the_archive(tmp_path: Path) -> None:
    """A peer archives D1: the daemon's store counts R1's dependency as archived, done (not unknown); the archive
    removed by hand: R1 is quarantined for its unknown dependency."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks = [{"id": f"T{n}", "status": "ready"} for n in range(50)]
    tasks += [{"id": "D1", "status": "done"}, {"id": "R1", "status": "ready", "dependencies": ["D1"]}]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    daemon = QueueStore(queue, parse_retry=0)
    assert not daemon.read().quarantined
    peer = QueueStore(queue, parse_retry=0)
    assert peer.archive_tasks(lambda task: task["id"] == "D1", datetime.now(UTC)) == ["D1"]
    snapshot = daemon.read()
    assert not snapshot.quarantined and snapshot.archived == {"D1": "done"}
    assert "D1" not in {task.id for task in snapshot.tasks}
    (tmp_path / "SPRINT_QUEUE.archive.jsonl").unlink()
    snapshot = daemon.read()
    assert snapshot.archived == {}
    assert snapshot.quarantined["R1"].code == "unknown-dep"


def test_an_added_task_depending_on_an_archived_one_is_not_quarantined(tmp_path: Path) -> None:
    """Tasks added at the end (the incremental check) may depend on an archived task; one taking an archived id is
    a new task of the queue, and its dependents follow it."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, object]] = [{"id": "D1", "status": "done"}, {"id": "T1", "status": "ready"}]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    daemon = QueueStore(queue, parse_retry=0)
    daemon.archive_tasks(lambda task: task["id"] == "D1", datetime.now(UTC))
    tasks = json.loads(queue.read_text())["tasks"]
    daemon.read()
    tasks.append({"id": "N1", "status": "ready", "dependencies": ["D1"]})
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    assert not daemon.read().quarantined
    tasks.append({"id": "D1", "status": "ready", "dependencies": ["N1"]})  # D1 again, new: a cycle with N1
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    assert set(daemon.read().quarantined) == {"N1", "D1"}
    assert set(QueueStore(queue, parse_retry=0).read().quarantined) == {"N1", "D1"}
