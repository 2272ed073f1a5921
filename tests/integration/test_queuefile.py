"""The queue store: format-preserving writes, hand edits survive, atomic replace, locking, concurrency."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentd import faults
from agentd.core.model import index_by_id, walk
from agentd.errors import LockTimeout, QueueInvalid
from agentd.store.file import queuefile
from agentd.store.file.queuefile import QueueStore
from tests.conftest import FIXTURE_NAMES, run_agentd, sha, small_queue


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_set_status_on_real_queues_changes_one_line(name: str, oodatcaa: Path, tmp_path: Path) -> None:
    """`agentd queue set-status` on each real queue changes exactly that task's status line (git diff)."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    shutil.copyfile(oodatcaa / name, queue)
    original = queue.read_text(encoding="utf-8")
    for _, task, _ in list(walk(json.loads(original)["tasks"]))[:4]:
        before = queue.read_text(encoding="utf-8")
        result = run_agentd("queue", "set-status", task["id"], "needs_adapt", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        after = queue.read_text(encoding="utf-8")
        diff = changed_lines(before, after)
        assert len(diff) == 2, diff
        assert diff[0].startswith("-") and f'"status": "{task["status"]}"' in diff[0]
        assert diff[1] == diff[0].replace(task["status"], "needs_adapt").replace("-", "+", 1)
    assert original.endswith("\n") == queue.read_text(encoding="utf-8").endswith("\n")


def test_git_diff_shows_exactly_one_line(oodatcaa: Path, tmp_path: Path) -> None:
    """In a git checkout of a real queue, `git diff --numstat` after set-status reports 1 added, 1 removed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copyfile(oodatcaa / "SPRINT_QUEUE.78605cf.json", repo / "SPRINT_QUEUE.json")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "queue"], check=True)
    assert run_agentd("queue", "set-status", "T001-B02", "ready", cwd=repo).returncode == 0
    numstat = subprocess.run([*git, "diff", "--numstat"], capture_output=True, text=True, check=True).stdout
    assert numstat.split() == ["1", "1", "SPRINT_QUEUE.json"]


def test_hand_edit_between_read_and_write_survives(tmp_path: Path) -> None:
    """A plain open/write (no lock) after agentd read the queue and before it renames is re-read, not overwritten."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2) + "\n")
    store = QueueStore(queue)
    calls: list[int] = []

    def hand_edit() -> None:
        if calls:
            return
        calls.append(1)
        data = json.loads(queue.read_text())
        data["tasks"][3]["title"] = "edited by a human"
        with open(queue, "w") as handle:  # no lock, no rename: the way a careless script writes
            handle.write(json.dumps(data, indent=2) + "\n")

    faults.on("queue.after-temp-write", hand_edit)
    try:
        applied: list[int] = []

        def change(doc: dict) -> None:  # type: ignore[type-arg]
            applied.append(1)
            index_by_id(doc)["B1"]["status"] = "in_progress"

        store.transaction(change)
    finally:
        faults.on("queue.after-temp-write", None)
    data = json.loads(queue.read_text())
    assert data["tasks"][3]["title"] == "edited by a human"
    assert data["tasks"][1]["status"] == "in_progress"
    assert len(applied) == 2  # re-read and re-applied


def test_file_mode_and_missing_trailing_newline_are_kept(tmp_path: Path) -> None:
    """A rewrite keeps the file's permission bits and its (absent) trailing newline."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=4))
    os.chmod(queue, 0o640)
    QueueStore(queue).transaction(lambda doc: index_by_id(doc)["B1"].update(status="done"))
    assert stat.S_IMODE(queue.stat().st_mode) == 0o640
    text = queue.read_text()
    assert not text.endswith("\n") and '\n    "tasks": [' in text


def test_symlinked_queue_is_written_through(tmp_path: Path) -> None:
    """A queue that is a symlink stays a symlink; its target gets the change."""
    real = tmp_path / "real.json"
    real.write_text(json.dumps(small_queue(), indent=2))
    link = tmp_path / "SPRINT_QUEUE.json"
    link.symlink_to(real)
    QueueStore(link).transaction(lambda doc: index_by_id(doc)["B1"].update(status="done"))
    assert link.is_symlink() and json.loads(real.read_text())["tasks"][1]["status"] == "done"


def test_invalid_result_is_never_written(tmp_path: Path) -> None:
    """A change that would make the queue invalid is refused and the bytes stay as they were."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2))
    before = sha(queue)
    with pytest.raises(QueueInvalid, match=r"\$\.tasks\[1\]\.status: refusing to write"):
        QueueStore(queue).transaction(lambda doc: index_by_id(doc)["B1"].update(status=5))
    with pytest.raises(QueueInvalid, match="duplicate task id"):
        QueueStore(queue).transaction(lambda doc: doc["tasks"].append({"id": "B1", "status": "ready"}))
    assert sha(queue) == before


def test_lock_timeout_is_a_clear_error(tmp_path: Path) -> None:
    """While another process holds the queue lock, a write waits for lock_timeout and fails with exit code 5."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2))
    (tmp_path / "agentd.toml").write_text("lock_timeout = 0.3\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f,fcntl.LOCK_EX); print('held',flush=True);"
            " time.sleep(30)",
            str(queue) + ".lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = run_agentd("queue", "set-status", "B1", "done", cwd=tmp_path)
        assert result.returncode == 5
        assert "could not take the queue lock within 0.3 s" in result.stderr
        with pytest.raises(LockTimeout):
            QueueStore(queue, lock_timeout=0.1).transaction(lambda doc: None)
    finally:
        holder.kill()
        holder.wait()


def test_parallel_adds_lose_nothing_and_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    """8 processes add 20 tasks each through the CLI at once while a reader parses the file in a loop."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"wip_limits": {}, "tasks": []}, indent=2) + "\n")
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json,sys,os\n"
            "reads=bad=0\n"
            "while not os.path.exists(sys.argv[2]):\n"
            "    try:\n"
            "        d=json.load(open(sys.argv[1])); assert isinstance(d['tasks'], list); reads+=1\n"
            "    except Exception as e:\n"
            "        bad+=1; print('BAD', repr(e), flush=True)\n"
            "print('reads', reads, 'bad', bad, flush=True)\n",
            str(queue),
            str(tmp_path / "stop"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    script = (
        "import sys\nfrom agentd.cli import main\n"
        "w=sys.argv[1]\n"
        "for i in range(20):\n"
        "    try:\n"
        "        main(['--root', sys.argv[2], 'queue', 'add', f'W{w}-{i}', '--title', f'task {i} of {w}'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(w), str(tmp_path)], stdout=subprocess.DEVNULL)
        for w in range(8)
    ]
    deadline = time.monotonic() + 120
    for worker in workers:
        assert worker.wait(timeout=max(1, deadline - time.monotonic())) == 0
    (tmp_path / "stop").touch()
    out, _ = reader.communicate(timeout=30)
    assert "BAD" not in out, out
    reads = int(out.split()[1])
    assert reads > 0
    ids = [t["id"] for t in json.loads(queue.read_text())["tasks"]]
    assert len(ids) == 160 and len(set(ids)) == 160


@pytest.mark.parametrize("point", ["queue.after-temp-write", "queue.before-rename", "queue.after-rename"])
def test_crash_inside_a_transaction_leaves_old_or_new(point: str, tmp_path: Path) -> None:
    """A process that dies at any step of a write leaves a queue that parses: the old one or the new one."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2) + "\n")
    old = queue.read_bytes()
    result = run_agentd("queue", "set-status", "B1", "done", cwd=tmp_path, env={"AGENTD_CRASH_AT": point})
    assert result.returncode == faults.CRASH_EXIT_CODE
    data = json.loads(queue.read_text())
    assert data["tasks"][1]["status"] in ("ready", "done")
    assert (queue.read_bytes() == old) == (point != "queue.after-rename")
    result = run_agentd("queue", "set-status", "B2", "done", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".agentd-tmp")]
    assert leftovers == []


def test_two_names_for_one_queue_share_one_lock(tmp_path: Path) -> None:
    """The lock sits beside the real file, so a symlinked name and the real name exclude each other."""
    real = tmp_path / "real.json"
    real.write_text(json.dumps(small_queue(), indent=2))
    link = tmp_path / "SPRINT_QUEUE.json"
    link.symlink_to(real)
    assert QueueStore(link).lock_path == QueueStore(real).lock_path == tmp_path / "real.json.lock"


def test_only_changed_tasks_are_validated_again(tmp_path: Path) -> None:
    """A write that breaks one task is refused by name even when every other task was validated before."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2))
    store = QueueStore(queue)
    store.transaction(lambda doc: index_by_id(doc)["B1"].update(status="in_progress"))
    with pytest.raises(QueueInvalid, match=r"\$\.tasks\[2\]\.priority: refusing to write"):
        store.transaction(lambda doc: index_by_id(doc)["B2"].update(priority="high"))
    with pytest.raises(QueueInvalid, match=r"dependency cycle"):
        store.transaction(lambda doc: index_by_id(doc)["B1"].update(dependencies=["T1"]))
    with pytest.raises(QueueInvalid, match=r"unknown dependency 'NOPE'"):
        store.transaction(lambda doc: doc["tasks"].append({"id": "N", "status": "ready", "dependencies": ["NOPE"]}))
    assert json.loads(queue.read_text())["tasks"][1]["status"] == "in_progress"


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda tasks: tasks[2].update(priority="high"), r"\$\.tasks\[2\]\.priority: 'high' is not of type"),
        (lambda tasks: tasks[2].update(id="B1"), r"\$\.tasks\[2\]\.id: duplicate task id 'B1'"),
        (lambda tasks: tasks[1].update(dependencies=["B2"]), r"dependency cycle"),
        (lambda tasks: tasks[3].update(dependencies=["GONE"]), r"unknown dependency 'GONE'"),
        (
            lambda tasks: tasks.append({"id": "../x", "status": "ready"}),
            r"\$\.tasks\[\d+\]\.id: '\.\./x' is not a valid task id",
        ),
    ],
)
def test_a_store_reading_again_still_validates_what_changed(edit: Any, error: str, tmp_path: Path) -> None:
    """Reads reuse unchanged tasks and the last answer on ids and dependencies: a change is still caught (the task
    is quarantined, its problem one of the read's errors)."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    data = small_queue()
    data["tasks"][2]["dependencies"] = ["B1"]
    queue.write_text(json.dumps(data, indent=2))
    store = QueueStore(queue)
    assert len(store.read().tasks) == len(data["tasks"])
    edit(data["tasks"])
    queue.write_text(json.dumps(data, indent=2))  # a hand edit
    snapshot = store.read()
    lines = [f"{problem.path}: {problem.message}" for problem in snapshot.errors]
    assert any(re.search(error, line) for line in lines), lines
    assert snapshot.quarantined


def test_a_store_reading_again_sees_conflict_markers(tmp_path: Path) -> None:
    queue = tmp_path / "SPRINT_QUEUE.json"
    text = json.dumps(small_queue(), indent=2)
    queue.write_text(text)
    store = QueueStore(queue)
    store.read()
    lines = text.splitlines()
    lines[5:5] = ["<<<<<<< HEAD", "=======", ">>>>>>> theirs"]
    queue.write_text("\n".join(lines))
    with pytest.raises(QueueInvalid, match="line 6: unresolved git conflict marker '<<<<<<<'"):
        store.read()


def test_views_of_reused_tasks_follow_their_new_places(tmp_path: Path) -> None:
    """A task inserted before others moves them: their (reused) views get their new index and path."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    data = small_queue()
    queue.write_text(json.dumps(data, indent=2))
    store = QueueStore(queue)
    store.read().tasks  # noqa: B018 - views made and remembered
    data["tasks"].insert(1, {"id": "NEW", "status": "ready", "subtasks": [{"id": "NEW.1", "status": "ready"}]})
    data["tasks"][3]["status"] = "done"
    queue.write_text(json.dumps(data, indent=2))
    again = store.read().tasks
    fresh = QueueStore(queue).read().tasks
    assert again == fresh
    assert [(t.id, t.index, t.path, t.parent) for t in again][:4] == [
        ("S1", 0, "$.tasks[0]", None),
        ("NEW", 1, "$.tasks[1]", None),
        ("NEW.1", 2, "$.tasks[1].subtasks[0]", "NEW"),
        ("B1", 3, "$.tasks[2]", None),
    ]


def test_a_new_workflow_forgets_what_earlier_reads_found(tmp_path: Path) -> None:
    """Warnings depend on the workflow (SIGHUP reloads it): a store must not serve an earlier read's answer."""
    from agentd.config import build

    queue = tmp_path / "SPRINT_QUEUE.json"
    data = small_queue()
    data["tasks"][1]["status"] = "review"
    queue.write_text(json.dumps(data, indent=2))
    plain = build({}, root=tmp_path, path=None).workflow
    reviewer = {"claims": "review", "working": "reviewing", "on_success": "done", "command": ["true"]}
    reviewing = build({"roles": {"reviewer": reviewer}}, root=tmp_path, path=None).workflow
    store = QueueStore(queue, workflow=plain)
    assert [w.path for w in store.read().warnings] == ["$.tasks[1].status"]
    store.workflow = reviewing  # (its only role is the reviewer: other statuses are unknown to it)
    assert "$.tasks[1].status" not in [w.path for w in store.read().warnings]


def test_a_store_knows_its_own_write_from_anyone_elses(tmp_path: Path) -> None:
    """A daemon skips the file event of its own write, and only that one."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2))
    mine, peer = QueueStore(queue), QueueStore(queue)
    assert not mine.is_own_write()  # it has written nothing yet
    mine.transaction(lambda doc: index_by_id(doc)["B1"].update(status="in_progress"))
    assert mine.is_own_write()
    peer.transaction(lambda doc: index_by_id(doc)["B1"].update(status="ready"))
    assert not mine.is_own_write() and peer.is_own_write()
    mine.transaction(lambda doc: index_by_id(doc)["B1"].update(status="in_progress"))
    with queue.open("a") as handle:  # an edit in place: same inode, new size and times
        handle.write("\n")
    assert not mine.is_own_write()


def test_its_own_write_is_known_as_such_the_moment_it_is_renamed_in(tmp_path: Path) -> None:
    """The file event of a write can be handled (on the watcher's thread) before the write returns: from the rename
    on, the store already takes the new file as its own (not as someone else's change to look at again)."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2))
    store = QueueStore(queue)
    seen: list[bool] = []
    faults.on("queue.after-rename", lambda: seen.append(store.is_own_write()))
    try:
        store.transaction(lambda doc: index_by_id(doc)["B1"].update(status="in_progress"))
    finally:
        faults.on("queue.after-rename", None)
    assert seen == [True]


def test_a_whole_document_transaction_hands_on_the_read_s_own_unchanged_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change to one task of 2,000 through ``transaction`` (a private copy of the whole document): the check and
    the text edit get the read's own objects for the 1,999 others (found by identity, not compared one by one), and
    only that task's line changes."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks = [{"id": f"T{n}", "status": "done", "priority": 1} for n in range(2000)]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    before = queue.read_text()
    store = QueueStore(queue, parse_retry=0)
    read = store.read()
    seen: list[list[Any]] = []
    check = QueueStore._check_new

    def spying(self: QueueStore, loaded: Any, new: dict[str, Any], hint: Any = None, valid: Any = None) -> Any:
        seen.append(new["tasks"])
        return check(self, loaded, new, hint, valid)

    monkeypatch.setattr(QueueStore, "_check_new", spying)

    def change(doc: dict[str, Any]) -> None:
        doc["tasks"][700]["status"] = "ready"
        doc["tasks"][900]["priority"] = True  # (equal to 1 in Python and in the text edit: not written)

    store.transaction(change)
    shared = [a is b for a, b in zip(read.data["tasks"], seen[0], strict=True)]
    assert shared.count(False) == 1 and not shared[700]
    assert changed_lines(before, queue.read_text()) == ['-      "status": "done",', '+      "status": "ready",']


def test_the_lock_taken_again_by_its_holder_resolves_no_path_and_still_excludes_other_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction inside a held lock (as FileStore's) takes it again without resolving the queue's path, and two
    threads doing that in turn never hold it at once."""
    import threading

    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": [{"id": "T1", "status": "ready"}]}))
    store = QueueStore(queue, parse_retry=0)
    resolved: list[int] = []
    target = QueueStore._target

    def counting(self: QueueStore) -> str:
        resolved.append(threading.get_ident())
        return target(self)

    monkeypatch.setattr(QueueStore, "_target", counting)
    with store.locked():
        before = len(resolved)
        with store.locked():
            pass
        assert len(resolved) == before
    inside: list[int] = []
    overlaps: list[int] = []

    def work() -> None:
        for _ in range(200):
            with store.locked(), store.locked():
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == []


def test_a_big_queue_s_old_version_is_freed_after_its_rename(tmp_path: Path) -> None:
    """A queue of 1 MiB or more keeps its old version under a second (temporary) name through the rename, so the
    rename does not free its blocks (2-3.5 ms of waiting for the disk on a 6 MB queue, with the lock held); a thread
    removes that name after the transaction, and a process that exits leaves none behind."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    doc = small_queue()
    doc["tasks"].append({"id": "PAD", "title": "padding", "type": "Build", "status": "done", "notes": "x" * (1 << 20)})
    queue.write_text(json.dumps(doc, indent=2) + "\n")
    old, old_inode = queue.read_bytes(), queue.stat().st_ino
    store = QueueStore(queue)
    seen: list[list[tuple[int, bool]]] = []

    def look() -> None:  # right after the rename
        names = [p for p in tmp_path.iterdir() if p.name.endswith(".agentd-tmp")]
        seen.append([(p.stat().st_ino, p.read_bytes() == old) for p in names])

    faults.on("queue.after-rename", look)
    try:
        store.transaction(lambda d: d["tasks"][1].update(status="done"))
    finally:
        faults.on("queue.after-rename", None)
    assert seen == [[(old_inode, True)]]
    assert json.loads(queue.read_text())["tasks"][1]["status"] == "done"
    deadline = time.monotonic() + 10
    while [p for p in tmp_path.iterdir() if p.name.endswith(".agentd-tmp")]:
        assert time.monotonic() < deadline, "the old version's second name was not removed"
        time.sleep(0.01)
    result = run_agentd("queue", "set-status", "B2", "done", cwd=tmp_path)  # a process that exits at once
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".agentd-tmp")] == []


def test_a_transaction_leaves_its_process_s_pending_second_names_to_its_thread(tmp_path: Path) -> None:
    """The second name of a big queue's replaced version that this process's thread has yet to remove is not a dead
    writer's leftover: the next transaction leaves it to the thread (removing it would free the blocks with the lock
    held after all); a name no writer of this process is to remove still goes."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2) + "\n")
    names = [tmp_path / f".SPRINT_QUEUE.json.1.{n}.agentd-tmp" for n in ("started", "pending", "stale")]
    for name in names:
        name.write_bytes(b"an old version")
    retirer = queuefile._RETIRER
    retirer.drop(str(names[0]))  # (its thread started)
    deadline = time.monotonic() + 10
    while names[0].exists():
        assert time.monotonic() < deadline, "the thread did not remove the name"
        time.sleep(0.005)
    with retirer._wake:  # (the thread cannot take a name meanwhile)
        retirer.drop(str(names[1]))
        QueueStore(queue).transaction(lambda d: d["tasks"][1].update(status="done"))
        assert names[1].exists() and not names[2].exists()
    while names[1].exists():
        assert time.monotonic() < deadline, "the thread did not remove the name"
        time.sleep(0.005)


@pytest.mark.parametrize("later", [False, True], ids=["folder-synced-by-the-write", "folder-synced-later"])
def test_a_transaction_that_leaves_its_folder_s_sync_for_later_wakes_the_thread_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: bool
) -> None:
    """The thread that removes a big queue's replaced version is woken at the rename by a write that syncs its
    folder itself, and by the folder's sync (a daemon's settle, after its starts) for one that leaves it for later:
    not while the daemon still works (it took the interpreter from it). The name goes either way."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    doc = small_queue()
    doc["tasks"].append({"id": "PAD", "title": "padding", "type": "Build", "status": "done", "notes": "x" * (1 << 20)})
    queue.write_text(json.dumps(doc, indent=2) + "\n")
    retirer = queuefile._RETIRER
    dummy = tmp_path / ".dummy.agentd-tmp"
    dummy.write_bytes(b"")
    retirer.drop(str(dummy))  # (the thread started, if no earlier test of this process started it)
    deadline = time.monotonic() + 10
    while retirer._pending:  # (a name still pending would have the next one wake the thread at once)
        assert time.monotonic() < deadline, "the thread did not remove the names pending"
        time.sleep(0.005)
    events: list[str] = []
    real_notify = retirer._wake.notify
    monkeypatch.setattr(retirer._wake, "notify", lambda *a: events.append("woken") or real_notify(*a))
    store = QueueStore(queue)
    store.folder_sync_later = later
    faults.on("queue.after-rename", lambda: events.append("renamed"))
    try:
        store.transaction(lambda d: d["tasks"][1].update(status="done"))
    finally:
        faults.on("queue.after-rename", None)
    events.append("returned")
    store.sync_folder()
    events.append("folder synced")
    returned = events.index("returned")
    assert events[: returned + 1] == (["renamed", "returned"] if later else ["renamed", "woken", "returned"])
    if later:  # (woken by the folder's sync; after a write that woke it, the name may be gone by then)
        assert events[returned + 1 :] == ["woken", "folder synced"]
    deadline = time.monotonic() + 10
    while [p for p in tmp_path.iterdir() if p.name.endswith(".agentd-tmp")]:
        assert time.monotonic() < deadline, "the old version's second name was not removed"
        time.sleep(0.01)
    assert json.loads(queue.read_text())["tasks"][1]["status"] == "done"


def test_a_name_left_for_the_next_wake_waits_for_one_other_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names dropped without waking the thread (a daemon's writes, before their folder's sync) do not pile up: the
    second one pending wakes it, and both go."""
    retirer = queuefile._RETIRER
    names = [tmp_path / f".SPRINT_QUEUE.json.1.{n}.agentd-tmp" for n in ("first", "second", "started")]
    for name in names:
        name.write_bytes(b"an old version")
    retirer.drop(str(names[2]))  # (the thread started, if no earlier test of this process started it)
    deadline = time.monotonic() + 10
    while retirer._pending:
        assert time.monotonic() < deadline, "the thread did not remove the names pending"
        time.sleep(0.005)
    woken: list[int] = []
    real_notify = retirer._wake.notify
    monkeypatch.setattr(retirer._wake, "notify", lambda *a: woken.append(len(retirer._pending)) or real_notify(*a))
    with retirer._wake:  # (the thread cannot take a name meanwhile: the condition's lock is held)
        retirer.drop(str(names[0]), wake=False)
        assert woken == []
        retirer.drop(str(names[1]), wake=False)
        assert woken == [2]
    while any(name.exists() for name in names):
        assert time.monotonic() < deadline, "the names were not removed"
        time.sleep(0.005)


def test_a_plain_queue_path_is_resolved_once_and_a_symlink_put_there_is_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue path with no symlink on the way is resolved once (then one lstat a look): later transactions resolve
    nothing; when the queue's name is made a symlink, the next write goes through it to the file it names."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2))
    store = QueueStore(str(queue.resolve()))
    bump = lambda d: d["tasks"][0].update(priority=d["tasks"][0].get("priority", 0) + 1)  # noqa: E731
    store.transaction(bump)
    resolved: list[str] = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda path, **kw: resolved.append(path) or real(path, **kw))
    for _ in range(3):
        store.transaction(bump)
        store.read()
    assert resolved == []
    before = store.read().data["tasks"][0]["priority"]
    other = tmp_path / "elsewhere.json"
    os.replace(queue, other)
    queue.symlink_to(other.name)
    store.transaction(bump)
    assert queue.is_symlink() and os.readlink(queue) == other.name
    assert json.loads(other.read_bytes())["tasks"][0]["priority"] == before + 1


def test_a_task_in_a_known_status_is_not_walked_for_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unknown-status warnings of a read are those of every task walked, but a task without subtasks in a status
    the workflow knows (nearly all of a big queue) is told at a glance: only the others are walked for them."""
    from agentd.config import build
    from agentd.core.validate import status_warnings

    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks: list[dict[str, Any]] = [{"id": f"D{n}", "title": "t", "status": "done"} for n in range(100)]
    tasks += [
        {"id": "U1", "title": "t", "status": "invented"},
        {"id": "P1", "title": "t", "status": "ready", "subtasks": [{"id": "P1.a", "title": "t", "status": "odd"}]},
        {"id": "E1", "title": "t", "status": "ready", "subtasks": []},
        {"id": "N1", "title": "t", "status": 5},
    ]
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    workflow = build({}, root=tmp_path, path=None).workflow
    store = QueueStore(queue, workflow=workflow)
    walked: list[int] = []
    real = queuefile.walk_of

    def spied(position: int, piece: Any, start: int) -> Any:
        walked.append(position)
        return real(position, piece, start)

    monkeypatch.setattr(queuefile, "walk_of", spied)  # (the store's own caches hold the real one)
    read = store.read()
    assert sorted(set(walked)) == [100, 101, 103]
    assert [(w.path, w.code) for w in read.warnings] == [
        (w.path, w.code) for w in status_warnings(walk(tasks, "$.tasks"), workflow)
    ]
    assert [w.path for w in read.warnings] == ["$.tasks[100].status", "$.tasks[101].subtasks[0].status"]


def test_a_read_says_where_its_views_may_differ_from_an_earlier_read_s(tmp_path: Path) -> None:
    """A store's read tells where its task views may differ from an earlier read's of the same store (every place
    whose view is another object, at least): after its own writes of a task in place, after a person's save of
    another, and across reads whose views were not asked for; None for a list no read of it handed out, or once
    the number of tasks changed."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    doc = {"tasks": [{"id": f"T{n}", "title": "t", "status": "ready"} for n in range(40)]}
    doc["tasks"][5]["subtasks"] = [{"id": "T5.a", "title": "t", "status": "ready"}]
    queue.write_text(json.dumps(doc, indent=2) + "\n")
    store = QueueStore(queue)
    lists = [store.read().tasks]

    def same_objects_but(earlier: list[Any], later: list[Any]) -> set[int]:
        return {k for k in range(len(later)) if later[k] is not earlier[k]}

    store.edit(lambda d: d.task("T30").update(status="in_progress"))  # type: ignore[union-attr]
    lists.append(store.read().tasks)
    store.edit(lambda d: d.task("T2").update(status="done"))  # type: ignore[union-attr]
    store.read()  # (a read whose views nobody asks for)
    store.edit(lambda d: d.task("T5.a").update(status="done"))  # type: ignore[union-attr]
    text = queue.read_text().replace('"id": "T9",\n      "title": "t"', '"id": "T9",\n      "title": "saved"')
    queue.write_text(text)  # (a person's save)
    snapshot = store.read()
    lists.append(snapshot.tasks)
    for earlier in lists:
        said = snapshot.tasks_changed_since(earlier)
        assert said is not None
        assert same_objects_but(earlier, snapshot.tasks) <= set(said)
    said = snapshot.tasks_changed_since(lists[0])
    assert said is not None and {2, 5, 6, 10, 31} <= set(said) and len(said) <= 6  # (T5.a is at 6, T30 at 31)
    assert snapshot.tasks_changed_since(list(lists[0])) is None
    store.edit(lambda d: d.doc["tasks"].append({"id": "NEW", "title": "t", "status": "ready"}))
    later = store.read()
    assert later.tasks_changed_since(snapshot.tasks) is None
