"""`agentd queue import` / `agentd queue export` on the file store: round trips, refusals, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.cli import main
from agentd.store import open_store
from agentd.store.base import HeldLease, Txn, new_record
from agentd.store.file.queuefile import render
from tests.conftest import FIXTURE_NAMES, run_agentd, small_queue

Agentd = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def agentd(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Agentd:
    """The CLI's entry point run in this process, in ``cwd`` (the same error boundary as the real program)."""
    for name in ("AGENTD_ROOT", "AGENTD_QUEUE", "AGENTD_CONFIG", "AGENTD_STORE"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), int(info.value.code or 0), out, err)

    return run


def ordered(raw: bytes) -> Any:
    """A JSON document with every object as its list of (key, value) pairs: equality includes key order."""
    return json.loads(raw, object_pairs_hook=list)


def fresh_project(tmp_path: Path, how: str, agentd: Agentd) -> Path:
    """A project folder whose store is empty: only an agentd.toml (no queue yet), or `agentd init`'s empty queue."""
    root = tmp_path / "proj"
    root.mkdir()
    if how == "toml":
        (root / "agentd.toml").write_text("", encoding="utf-8")
    else:
        assert agentd("init", cwd=root).returncode == 0
        assert json.loads((root / "SPRINT_QUEUE.json").read_bytes())["tasks"] == []
    return root


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["toml", "init"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_export_of_an_import_is_the_fixture(
    oodatcaa: Path, tmp_path: Path, agentd: Agentd, name: str, how: str
) -> None:
    """Each real queue imported into an empty file store exports as the same JSON, key order included, and as the
    very bytes of the store's queue file; a fixture already in the file store's format comes back byte for byte."""
    fixture = oodatcaa / name
    before = fixture.read_bytes()
    root = fresh_project(tmp_path, how, agentd)
    result = agentd("queue", "import", str(fixture), cwd=root)
    assert result.returncode == 0, result.stderr
    assert ": imported " in result.stdout
    result = agentd("queue", "export", "out.json", cwd=root)
    assert result.returncode == 0, result.stderr
    exported = (root / "out.json").read_bytes()
    assert ordered(exported) == ordered(before)
    assert exported == (root / "SPRINT_QUEUE.json").read_bytes()
    assert exported == render(json.loads(before))
    assert (exported == before) == (before == render(json.loads(before)))
    assert fixture.read_bytes() == before
    assert not list(root.glob(".*agentd-tmp"))


def test_export_to_stdout_is_the_queue_files_bytes(project: Any) -> None:
    """`agentd queue export` with no FILE writes the queue's bytes to standard output and nothing else."""
    root = project(small_queue())
    result = run_agentd("queue", "export", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode("utf-8") == render(small_queue())
    assert result.stderr == ""


def test_replace_swaps_the_whole_queue_in_its_own_key_order(tmp_path: Path, agentd: Agentd) -> None:
    """--replace makes the file's queue the store's: top-level fields, tasks and key order; without it, exit 7."""
    root = fresh_project(tmp_path, "init", agentd)
    first = tmp_path / "first.json"
    first.write_bytes(render(small_queue()))
    assert agentd("queue", "import", str(first), cwd=root).returncode == 0
    other = {"tasks": [{"id": "Z9", "title": "Other", "status": "ready", "priority": 1}], "sprint": 7, "extra": [1]}
    second = tmp_path / "second.json"
    second.write_bytes(render(other))
    queue = root / "SPRINT_QUEUE.json"
    kept = queue.read_bytes()
    refused = agentd("queue", "import", str(second), cwd=root)
    assert refused.returncode == 7
    assert "holds 4 task(s) already" in refused.stderr and "--replace" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert queue.read_bytes() == kept
    done = agentd("queue", "import", str(second), "--replace", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "replacing 4 task(s)" in done.stdout
    assert queue.read_bytes() == render(other)


BAD_INPUTS = {
    "not JSON": (b'{"tasks": [', "not valid JSON"),
    "not an object": (b"[1, 2]\n", "$"),
    "tasks not a list": (b'{"tasks": {}}\n', "$.tasks"),
    "task without id": (b'{"tasks": [{"title": "x", "status": "ready"}]}\n', "$.tasks[0]"),
    "duplicate id": (
        b'{"tasks": [{"id": "A1", "title": "a", "status": "ready"}, {"id": "A1", "title": "b", "status": "ready"}]}\n',
        "$.tasks[0].id",
    ),
    "unknown dependency": (
        b'{"tasks": [{"id": "A1", "title": "a", "status": "ready", "dependencies": ["NOPE"]}]}\n',
        "$.tasks[0].dependencies",
    ),
    "conflict markers": (b'{\n<<<<<<< HEAD\n"tasks": []\n=======\n"tasks": [1]\n>>>>>>> x\n}\n', "conflict"),
    "not UTF-8": (b'{"tasks": [], "x": "\xff"}\n', "not UTF-8"),
    "empty": (b"", "empty file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("replace", [False, True])
def test_bad_input_is_one_line_exit_4_and_changes_nothing(
    tmp_path: Path, agentd: Agentd, case: str, replace: bool
) -> None:
    """A bad file to import: one line naming the file and where it is wrong, exit 4, store and file untouched."""
    root = fresh_project(tmp_path, "init", agentd)
    if replace:
        good = tmp_path / "good.json"
        good.write_bytes(render(small_queue()))
        assert agentd("queue", "import", str(good), cwd=root).returncode == 0
    content, where = BAD_INPUTS[case]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bad = inbox / "bad.json"
    bad.write_bytes(content)
    before = files_of(root)
    result = agentd("queue", "import", str(bad), *(["--replace"] if replace else []), cwd=root)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad.json" in lines[0] and where in lines[0]
    assert files_of(root) == before
    assert files_of(inbox) == {"bad.json": content}


def test_a_missing_input_is_exit_8(tmp_path: Path, agentd: Agentd) -> None:
    """A file that is not there: one line naming it, exit 8 (the I/O code), the store untouched."""
    root = fresh_project(tmp_path, "init", agentd)
    before = files_of(root)
    result = agentd("queue", "import", str(tmp_path / "nope.json"), cwd=root)
    assert result.returncode == 8
    assert "nope.json" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert files_of(root) == before


@pytest.fixture
def held_lease(project: Any) -> Iterator[tuple[Path, HeldLease]]:
    """A project whose task B1 has a lease held by this test process (its lease file locked, as a daemon holds it)."""
    root = project(small_queue())
    store = open_store(config_mod.load(root=root))

    def claim(txn: Txn) -> HeldLease | None:
        token = txn.issue_tokens([0])[0]
        return txn.claim(new_record("B1", token, "builder", now=txn.now, ttl=600, heartbeat=60, attempt=1))

    held = store.transaction(claim)
    assert held is not None
    try:
        yield root, held
    finally:
        held.release()
        store.close()


def test_replace_is_refused_while_a_lease_is_held_unless_forced(tmp_path: Path, held_lease: Any) -> None:
    """--replace with a lease held (by another process): exit 7 naming the task, nothing changed; --force replaces."""
    root, _held = held_lease
    other = tmp_path / "other.json"
    other.write_bytes(render({"tasks": [{"id": "N1", "title": "New", "status": "ready", "priority": 1}]}))
    queue = root / "SPRINT_QUEUE.json"
    before = queue.read_bytes()
    refused = run_agentd("queue", "import", str(other), "--replace", cwd=root)
    assert refused.returncode == 7, refused.stderr
    assert "1 lease(s) are held (B1)" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert queue.read_bytes() == before
    forced = run_agentd("queue", "import", str(other), "--replace", "--force", cwd=root)
    assert forced.returncode == 0, forced.stderr
    assert queue.read_bytes() == other.read_bytes()


CLAIMER = r"""
import sys
from datetime import UTC, datetime
from pathlib import Path
from agentd import config
from agentd.store import open_store
from agentd.store.base import new_record
store = open_store(config.load(root=Path(sys.argv[1])))
def claim(txn):
    token = txn.issue_tokens([0])[0]
    return txn.claim(new_record("B1", token, "builder", now=datetime.now(UTC), ttl=600, heartbeat=60, attempt=1))
assert store.transaction(claim) is not None
print("claimed", flush=True)
sys.stdin.read()
"""


def test_a_lease_whose_holder_died_does_not_block_a_replace(project: Any, tmp_path: Path) -> None:
    """A lease left by a SIGKILLed holder holds nothing: --replace goes ahead without --force."""
    root = project(small_queue())
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
    child.kill()
    child.wait(timeout=60)
    assert [p.stem for p in (root / ".leases").glob("*.json")] == ["B1"]
    other = tmp_path / "other.json"
    other.write_bytes(render({"tasks": [{"id": "N1", "title": "New", "status": "ready", "priority": 1}]}))
    done = run_agentd("queue", "import", str(other), "--replace", cwd=root)
    assert done.returncode == 0, done.stderr
    assert (root / "SPRINT_QUEUE.json").read_bytes() == other.read_bytes()


def test_export_replaces_a_file_atomically_and_never_the_queue_itself(
    project: Any, tmp_path: Path, agentd: Agentd
) -> None:
    """export over an existing file replaces it whole (no temp left); onto the store's own queue file: exit 7, and
    into a folder that is not there: exit 8; neither touches the queue."""
    root = project(small_queue())
    queue = root / "SPRINT_QUEUE.json"
    before = queue.read_bytes()
    target = tmp_path / "out.json"
    target.write_bytes(b"old content that is longer than nothing at all" * 100)
    assert agentd("queue", "export", str(target), cwd=root).returncode == 0
    assert target.read_bytes() == render(small_queue())
    assert [p.name for p in tmp_path.iterdir() if "agentd-tmp" in p.name] == []
    own = agentd("queue", "export", "SPRINT_QUEUE.json", cwd=root)
    assert own.returncode == 7 and "store's own queue file" in own.stderr
    missing = agentd("queue", "export", str(tmp_path / "no" / "such" / "dir.json"), cwd=root)
    assert missing.returncode == 8 and len(missing.stderr.strip().splitlines()) == 1
    assert queue.read_bytes() == before
