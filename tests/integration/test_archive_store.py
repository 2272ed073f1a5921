"""The archive seen by a long-lived queue store: what a daemon's store concludes follows the archive as it changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _archive(tmp_path: Path, ids: list[str]) -> None:
    lines = [
        json.dumps({"archived_at": "2026-11-01T10:00:00.000+00:00", "task": {"id": i, "status": "done"}}) for i in ids
    ]
    (tmp_path / "SPRINT_QUEUE.archive.jsonl").write_text("".join(line + "\n" for line in lines))


def test_the_archive_is_read_only_for_a_dependency_outside_the_queue(tmp_path: Path) -> None:
    """A big archive takes a while to read (20,000 tasks: about 0.14 s, which every `queue list` and a daemon's first
    claim waited for): a read, or tasks added, whose dependencies are all in the queue leave it unread; the first
    dependency on a task that is not in the queue reads it, and is found there."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, object]] = [
        {"id": "T1", "status": "ready"},
        {"id": "T2", "status": "ready", "dependencies": ["T1"]},
    ]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    _archive(tmp_path, [f"A{n}" for n in range(100)])
    store = QueueStore(queue, parse_retry=0)
    assert not store.read().quarantined
    archive = store.archive
    assert archive._cache is None  # (the archive's contents are kept once read: nothing was)
    tasks.append({"id": "T3", "status": "ready", "dependencies": ["T2"]})
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    assert not store.read().quarantined
    assert archive._cache is None
    tasks.append({"id": "T4", "status": "ready", "dependencies": ["A7"]})
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    snapshot = store.read()
    assert not snapshot.quarantined
    assert archive._cache is not None and snapshot.archived["A7"] == "done"
    tasks.append({"id": "T5", "status": "ready", "dependencies": ["A100"]})  # in neither
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    assert store.read().quarantined["T5"].code == "unknown-dep"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.lists(st.lists(st.sampled_from(["B0", "B1", "B2", "A0", "A1", "U0", "N0", "N1"]), max_size=2), max_size=3),
    added=st.lists(
        st.tuples(
            st.sampled_from(["N0", "N1", "A0", "A1", "B0", "U0"]),
            st.lists(st.sampled_from(["B0", "B1", "A0", "A1", "U0", "N0", "N1"]), max_size=2),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_tasks_added_are_judged_as_a_fresh_read_judges_them(
    tmp_path: Path, base: list[list[str]], added: list[tuple[str, list[str]]]
) -> None:
    """The structural check of tasks added at the end (the incremental one, which reads the archive only for a
    dependency outside the queue) quarantines what a fresh store's read of the same files does: added ids that take
    an archived id, one an earlier task depends on (archived or unknown), or one already in the queue."""
    folder = tmp_path / str(len(list(tmp_path.iterdir())))
    folder.mkdir()
    queue = folder / "SPRINT_QUEUE.json"
    _archive(folder, ["A0", "A1"])
    tasks: list[dict[str, object]] = [
        {"id": f"B{n}", "status": "ready", "dependencies": deps} for n, deps in enumerate(base)
    ]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    store = QueueStore(queue, parse_retry=0)
    store.read()
    tasks += [{"id": task_id, "status": "ready", "dependencies": deps} for task_id, deps in added]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    seen = store.read().quarantined
    fresh = QueueStore(queue, parse_retry=0).read().quarantined
    assert {key: value.code for key, value in seen.items()} == {key: value.code for key, value in fresh.items()}
