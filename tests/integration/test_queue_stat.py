"""The queue store skips reading an unchanged queue by ``stat`` alone, and still sees every outside save."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentd import faults
from agentd.store.file import queuefile, stamps
from agentd.store.file.derived import views_of
from agentd.store.file.queuefile import STAT_FROM, QueueStore

TASKS = 6


def queue_doc(pad_size: int = STAT_FROM) -> dict[str, Any]:
    """Six tasks to change, and one big one that makes the file big enough (STAT_FROM) for the stat shortcut (or
    ``pad_size`` bytes of notes: a smaller file trusts its identity only once the store has written it)."""
    pad = {"id": "PAD", "title": "padding", "type": "Build", "status": "done", "notes": "x" * pad_size}
    return {
        "wip_limits": {"builder": 2},
        "tasks": [
            *(
                {"id": f"T{n}", "title": f"title-{n:03d}", "type": "Build", "status": "ready", "priority": 1}
                for n in range(TASKS)
            ),
            pad,
        ],
    }


def bytes_read() -> int:
    """The bytes this process has read with read(2) and its kin so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


class Outside:
    """Another program saving the queue, in each of the ways programs do, right after whatever came before."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.count = 0
        self.titles: dict[str, str] = {}  # what the saves changed: every one must stay in the file

    def save(self, kind: str) -> None:
        real = Path(os.path.realpath(self.link))
        before = os.stat(real)
        doc = json.loads(real.read_bytes())
        self.count += 1
        task = doc["tasks"][self.count % TASKS]
        old = task["title"]
        # The same length (so the same size), except for a truncation, which shortens the file.
        title = f"h{self.count:0{max(len(old) - 1, 1)}d}"[-len(old) :] if kind != "truncated" else old[:-1] or "x"
        task["title"] = title
        self.titles[task["id"]] = title
        text = json.dumps(doc, indent=2).encode()
        if kind == "in place":  # same inode, same size: an editor writing over the file
            with open(real, "r+b") as handle:
                handle.write(text)
        elif kind == "in place, times put back":  # same inode, size and mtime (`touch -r`): only the ctime moves
            with open(real, "r+b") as handle:
                handle.write(text)
            os.utime(real, ns=(before.st_atime_ns, before.st_mtime_ns))
        elif kind == "truncated":  # same inode, shorter
            with open(real, "wb") as handle:
                handle.write(text)
        elif kind == "renamed":  # a new file renamed over it, with the old one's times
            temp = real.with_name(real.name + ".new")
            temp.write_bytes(text)
            os.utime(temp, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.replace(temp, real)
        elif kind == "symlink swapped":  # the queue's link pointed at another file with the same size and times
            other = real.with_name("b.json" if real.name == "a.json" else "a.json")
            other.write_bytes(text)
            os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
            link = self.link.with_name(self.link.name + ".new")
            link.symlink_to(other.name)
            os.replace(link, self.link)
        else:
            raise AssertionError(kind)


KINDS = ["in place", "in place, times put back", "truncated", "renamed", "symlink swapped"]
STEPS = st.lists(
    st.one_of(
        st.just(("ours", "")),
        st.just(("read", "")),
        st.tuples(st.just("outside"), st.sampled_from(KINDS)),
        st.tuples(st.just("outside during ours"), st.sampled_from(KINDS)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("pad_size", [STAT_FROM, 1000], ids=["big", "small"])
@pytest.mark.parametrize("trust_stat", [None, False], ids=["probed", "always-read"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_every_outside_save_is_seen_and_kept(
    steps: list[tuple[str, str]], trust_stat: bool | None, pad_size: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After any mix of our writes and outside saves (same size, same mtime, truncation, rename, symlink swap), a
    read gives the file's very content and a write keeps every outside change (a small queue: its identity trusted
    from the store's first write on)."""
    folder = tmp_path_factory.mktemp("q")
    (folder / "a.json").write_text(json.dumps(queue_doc(pad_size), indent=2))
    link = folder / "SPRINT_QUEUE.json"
    link.symlink_to("a.json")
    store = QueueStore(link, trust_stat=trust_stat, parse_retry=0)
    outside = Outside(link)
    priorities: dict[str, int] = {}  # what our writes changed
    ours = 0
    for action, kind in steps:
        if action == "read":
            assert store.read().data == json.loads(Path(os.path.realpath(link)).read_bytes())
            continue
        if action == "outside":
            outside.save(kind)
            continue
        ours += 1
        saved: list[bool] = []

        def save_once(kind: str = kind, saved: list[bool] = saved) -> None:
            if not saved:
                saved.append(True)
                outside.save(kind)

        def change(doc: dict[str, Any], n: int = ours) -> None:
            task = doc["tasks"][n % TASKS]
            task["priority"] = n
            priorities[task["id"]] = n

        if action == "outside during ours":  # between our read and our rename
            faults.on("queue.after-temp-write", save_once)
        try:
            store.transaction(change)
        finally:
            faults.on("queue.after-temp-write", None)
        now = json.loads(Path(os.path.realpath(link)).read_bytes())
        assert store.read().data == now
        tasks = {task["id"]: task for task in now["tasks"]}
        assert {key: tasks[key]["title"] for key in outside.titles} == outside.titles
        assert {key: tasks[key]["priority"] for key in priorities} == priorities


def test_an_unchanged_queue_is_not_read_again(tmp_path: Path) -> None:
    """After its own write, and after a read, the store looks at an unchanged queue by stat only (no read(2))."""
    if not stamps.fine_timestamps(tmp_path, ".probe-{}"):
        pytest.skip("this file system stamps changes coarsely: the store reads the queue every time here")
    queue = tmp_path / "SPRINT_QUEUE.json"
    doc = queue_doc()
    doc["tasks"] += [{**doc["tasks"][0], "id": f"F{n}", "status": "done"} for n in range(2000)]
    queue.write_text(json.dumps(doc, indent=2))
    size = queue.stat().st_size
    store = QueueStore(queue)
    store.read()
    for _ in range(3):
        start = bytes_read()
        store.read()  # unchanged since the read before
        assert bytes_read() - start < size // 4
        start = bytes_read()
        store.transaction(lambda d: d["tasks"][0].update(priority=d["tasks"][0]["priority"] + 1))
        assert bytes_read() - start < size // 4  # no read of the file before the rename, nor after
        start = bytes_read()
        store.read()  # our own write
        assert bytes_read() - start < size // 4
    text = queue.read_bytes()
    with open(queue, "r+b") as handle:  # then one outside save, in place: read once, in full
        handle.write(text.replace(b'"priority": ', b'"priority":  ', 1))
    expected = json.loads(queue.read_bytes())
    start = bytes_read()
    assert store.read().data == expected
    assert bytes_read() - start >= size


def test_a_small_queue_is_not_read_again_once_the_store_wrote_it(tmp_path: Path) -> None:
    """A queue under STAT_FROM, in a store that has written it once (a daemon's): its next reads, and its writes' look
    before the rename, are a stat of the unchanged file (no read(2)); an outside save is still read, in full."""
    if not stamps.fine_timestamps(tmp_path, ".probe-{}"):
        pytest.skip("this file system stamps changes coarsely: the store reads the queue every time here")
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(queue_doc(STAT_FROM // 4), indent=2))
    size = queue.stat().st_size
    assert size < STAT_FROM
    store = QueueStore(queue)
    bump = lambda d: d["tasks"][0].update(priority=d["tasks"][0]["priority"] + 1)  # noqa: E731
    store.transaction(bump)  # the first write, and the read after it: the file read and compared as before
    store.read()
    for _ in range(3):
        start = bytes_read()
        store.read()  # our own write
        assert bytes_read() - start < size // 4
        start = bytes_read()
        store.transaction(bump)
        assert bytes_read() - start < size // 4  # no read of the file before the rename, nor after
    text = queue.read_bytes()
    with open(queue, "r+b") as handle:  # one outside save, in place, same size: read once, in full
        handle.write(text.replace(b'"title": "title-000"', b'"title": "title-00X"', 1))
    expected = json.loads(queue.read_bytes())
    start = bytes_read()
    assert store.read().data == expected
    assert bytes_read() - start >= size


def test_the_probe_s_answer_holds_and_leaves_no_file(tmp_path: Path) -> None:
    """Where the probe finds fine timestamps, a same-size write right after a stat always changes the identity; the
    probe's scratch file is gone afterwards."""
    fine = stamps.fine_timestamps(tmp_path, ".probe-{}.agentd-tmp")
    assert list(tmp_path.iterdir()) == []
    if not fine:
        pytest.skip("coarse timestamps here: nothing is promised")
    target = tmp_path / "f"
    target.write_bytes(b"a" * 100)
    with open(target, "r+b") as handle:
        for n in range(300):
            seen = stamps.identity(target)
            handle.seek(0)
            handle.write(bytes([97 + n % 2]) * 100)
            handle.flush()
            assert stamps.identity(target) != seen


def test_a_big_queue_is_read_before_the_lock_is_taken(tmp_path: Path) -> None:
    """A transaction on a big queue reads it (and parses and checks it) while it waits for the queue lock, not once
    it holds it: the lock is then held for the change and the write (a process's first read of a 10,000-task queue
    takes ~0.4 s, every daemon of the queue waiting on it)."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(queue_doc(), indent=2))
    size = queue.stat().st_size
    holder = QueueStore(queue)
    store = QueueStore(queue)  # a fresh store (a CLI command's): nothing read yet
    failed: list[BaseException] = []

    def transaction() -> None:
        try:
            store.transaction(lambda d: d["tasks"][0].update(priority=7))
        except BaseException as exc:  # (reported by the test's thread)
            failed.append(exc)

    def read_by_it() -> int:  # what the waiting thread has read (its own counters: not the test's reads)
        for line in Path(f"/proc/self/task/{waiting.native_id}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in the thread's io")

    with holder.locked():
        waiting = threading.Thread(target=transaction)
        waiting.start()
        deadline = time.monotonic() + 10
        while read_by_it() < size:  # the queue read by the transaction waiting for the lock
            assert time.monotonic() < deadline, "the waiting transaction did not read the queue"
            assert waiting.is_alive(), failed
            time.sleep(0.005)
        assert waiting.is_alive()  # (still waiting: the lock is held here)
        assert json.loads(queue.read_bytes())["tasks"][0]["priority"] == 1
    waiting.join(timeout=30)
    assert not waiting.is_alive() and not failed, failed
    assert json.loads(queue.read_bytes())["tasks"][0]["priority"] == 7


def test_a_write_makes_task_views_only_for_a_store_that_uses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that never asked for task views (a CLI command's transaction) makes none when it writes (on a
    10,000-task queue, ~0.15 s under the queue lock); one that did keeps them in step, remaking the changed ones."""
    made: list[int] = []

    def counted(position: int, piece: Any, start: int) -> list[Any]:
        made.append(position)
        return views_of(position, piece, start)

    monkeypatch.setattr(queuefile, "views_of", counted)  # (before the stores are made: they keep it)
    queue = tmp_path / "SPRINT_QUEUE.json"
    doc = queue_doc()
    doc["tasks"] += [{**doc["tasks"][0], "id": f"F{n}", "status": "done"} for n in range(500)]
    queue.write_text(json.dumps(doc, indent=2))
    writer = QueueStore(queue)
    writer.transaction(lambda d: d["tasks"][0].update(priority=2))
    writer.transaction(lambda d: d["tasks"][1].update(priority=2))
    assert made == []
    daemon = QueueStore(queue)
    assert [task.priority for task in daemon.read().tasks[:2]] == [2, 2]
    assert len(made) == len(doc["tasks"])
    made.clear()
    daemon.transaction(lambda d: d["tasks"][2].update(priority=3))
    assert daemon.read().tasks[2].priority == 3
    assert made == [2]
