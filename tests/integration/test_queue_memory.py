"""Transactions on a big queue reuse the memory of their copies instead of faulting in fresh pages each time."""

from __future__ import annotations

import gc
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.store.file.queuefile import QueueStore

SCRIPT = r"""
import resource, sys
from pathlib import Path
from agentd import config
from agentd.store import open_store

store = open_store(config.load(root=Path(sys.argv[1]), environ={}))
store.read()
lease = {"owner": "o", "role": "builder", "host": "h", "pid": 1, "acquired": "2026-01-01T00:00:00Z", "ttl": 60}

def run(n):  # what a daemon's pass does: complete one task, claim the next
    def change(txn):
        if n:
            txn.task(f"T{n - 1:03d}").update(status="done", lease=None)
        txn.task(f"T{n:03d}").update(status="in_progress", lease={**lease, "token": n + 1})
    store.read().tasks
    store.transaction(change)

for n in range(3):  # (the first ones set up what a transaction keeps)
    run(n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for n in range(3, 23):
    run(n)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def big_queue(path: Path) -> int:
    """A 6 MB queue: 10,000 done tasks of ~600 bytes, then 30 ready ones; returns its size."""
    done = [
        {
            "id": f"F{n:05d}",
            "title": f"Step {n}: implement, wire up and document the changes",
            "type": "Build",
            "status": "done",
            "priority": n % 7 + 1,
            "dependencies": [],
            "branch": f"feat/F{n:05d}",
            "notes": "Follow the plan; keep the public API stable; add tests for every acceptance criterion " * 4,
        }
        for n in range(10_000)
    ]
    ready = [{"id": f"T{n:03d}", "title": "t", "type": "Build", "status": "ready"} for n in range(30)]
    path.write_text(json.dumps({"tasks": [*done, *ready]}, indent=2) + "\n")
    return path.stat().st_size


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds raised are glibc malloc's (mallopt)")
def test_a_transaction_on_a_big_queue_faults_in_few_new_pages(tmp_path: Path) -> None:
    """A transaction on a 6 MB queue touches under 1 MB of new pages (it copied the file twice into fresh ones)."""
    size = big_queue(tmp_path / "SPRINT_QUEUE.json")
    assert size > 5_000_000
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600, check=True
    )
    per_transaction = float(done.stdout.split()[-1])
    faulted = per_transaction * resource.getpagesize()
    assert faulted < 1_000_000, f"{per_transaction:.0f} pages ({faulted:,.0f} bytes) faulted in per transaction"


def test_a_big_queue_s_parse_is_not_interrupted_by_cyclic_collections(tmp_path: Path) -> None:
    """A read of a queue of 1 MiB or more and its task views make a hundred thousand objects and more, with the
    cyclic garbage collector paused meanwhile: it used to run every 700 of them (dozens of runs, some through every
    object of the process: twice in a 10,000-task queue's first read) and runs a few times now, after the parse. The
    collector is on again afterwards."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    title = tmp_path.name
    tasks = [{"id": f"F{n:05d}", "title": f"{title} {n}", "type": "Build", "status": "done"} for n in range(12000)]
    queue.write_text(json.dumps({"tasks": [{"id": "T1", "title": "t", "status": "ready"}, *tasks]}, indent=2))
    assert queue.stat().st_size >= 1 << 20
    runs: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    store = QueueStore(queue)
    threshold = gc.get_threshold()
    gc.callbacks.append(counted)
    try:
        views = store.read().tasks
    finally:
        gc.callbacks.remove(counted)
        gc.unfreeze()  # (the read froze this process's objects: given back to the collector for the tests after it)
        gc.set_threshold(*threshold)  # (and made its young runs rarer)
    assert len(views) == 12001
    assert len(runs) <= 5, runs
    assert gc.isenabled()


FROZEN = r"""
import gc, json, sys
from pathlib import Path
from agentd.store.file.queuefile import QueueStore

def tracked(objects):  # how many of ``objects`` the collector would go through (frozen ones it does not)
    mine = {id(o) for o in objects}
    return sum(1 for o in gc.get_objects() if id(o) in mine)

small = QueueStore(Path(sys.argv[2]))
tasks = small.read().data["tasks"]
print("small", gc.get_freeze_count(), tracked([tasks, *tasks]), gc.get_threshold()[0])
store = QueueStore(Path(sys.argv[1]))
read = store.read()
views = read.tasks
tasks = read.data["tasks"]
frozen = gc.get_freeze_count()
print("big", frozen, tracked([tasks, *tasks]), tracked(views), len(tasks), gc.get_threshold()[0])
store.edit(lambda draft: draft.task("T000").update(status="in_progress"))
read = store.read()
read.tasks
print("after", gc.get_freeze_count() <= frozen, read.data["tasks"][-30]["status"], gc.isenabled())
"""


def test_a_big_queue_s_first_read_is_frozen_out_of_the_cyclic_collector(tmp_path: Path) -> None:
    """The 300,000 objects of a 6 MB queue's first read and views are taken out of the collector's reach
    (``gc.freeze()``): it no longer goes through them all twice more as they age; its young runs then come every
    10,000 objects made, not 700 (each went through the lists of 10,000 a pass keeps). A small queue's read changes
    neither, and a transaction's and a read's work on a few tasks afterwards freeze nothing."""
    big_queue(tmp_path / "SPRINT_QUEUE.json")
    small = tmp_path / "small" / "SPRINT_QUEUE.json"
    small.parent.mkdir()
    small.write_text(json.dumps({"tasks": [{"id": "S1", "title": "t", "status": "ready", "dependencies": []}]}))
    done = subprocess.run(
        [sys.executable, "-c", FROZEN, str(tmp_path / "SPRINT_QUEUE.json"), str(small)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert lines["small"] == ["0", "2", "700"]
    frozen, tasks_tracked, views_tracked, count, young_every = map(int, lines["big"])
    assert count == 10_030
    assert frozen > 10 * count  # (the tasks, their values, their pieces and views)
    assert tasks_tracked == 0
    assert views_tracked == 0
    assert young_every == 10_000
    assert lines["after"] == ["True", "in_progress", "True"]
