"""`agentd queue import` / `export` on a PostgreSQL store: the real queues round-trip, refusals change nothing.

Every command is a real ``agentd`` process against a real server (a fresh database per test); no queue file exists in
the project, so the export can only come from the database.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentd.store.file.queuefile import render
from tests.conftest import FIXTURE_NAMES, run_agentd, small_queue


def agentd(root: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``agentd ARGS`` in ``root`` with the store named by AGENTD_STORE."""
    return run_agentd(*args, cwd=root, env={"AGENTD_STORE": dsn})


def ordered(raw: bytes) -> Any:
    """A JSON document with every object as its list of (key, value) pairs: equality includes key order."""
    return json.loads(raw, object_pairs_hook=list)


def database(root: Path, dsn: str, how: str) -> None:
    """An agentd schema in the database, and either no queue yet (``toml``) or `agentd init`'s empty one."""
    (root / "agentd.toml").write_text("", encoding="utf-8")
    done = agentd(root, dsn, "store", "init")
    assert done.returncode == 0, done.stderr
    if how == "init":
        done = agentd(root, dsn, "init")
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("how", ["toml", "init"])
def test_each_real_queue_round_trips_through_postgresql(oodatcaa: Path, tmp_path: Path, pg_dsn: str, how: str) -> None:
    """Each real queue imported into PostgreSQL (the first into an empty store, the next with --replace) exports as
    the same JSON, key order included, and as the very bytes a file store holding it has."""
    database(tmp_path, pg_dsn, how)
    for n, name in enumerate(FIXTURE_NAMES):
        fixture = oodatcaa / name
        before = fixture.read_bytes()
        done = agentd(tmp_path, pg_dsn, "queue", "import", str(fixture), *(["--replace"] if n else []))
        assert done.returncode == 0, done.stderr
        exported = agentd(tmp_path, pg_dsn, "queue", "export", "out.json")
        assert exported.returncode == 0, exported.stderr
        out = (tmp_path / "out.json").read_bytes()
        assert ordered(out) == ordered(before), name
        assert out == render(json.loads(before)), name
        assert fixture.read_bytes() == before
    assert not (tmp_path / "SPRINT_QUEUE.json").exists()


def test_refusals_on_postgresql_change_nothing(tmp_path: Path, pg_dsn: str) -> None:
    """On PostgreSQL: a bad file (exit 4, one line naming file and JSON path) and an import into a store with tasks
    without --replace (exit 7) leave the stored queue exactly as it was."""
    database(tmp_path, pg_dsn, "toml")
    good = tmp_path / "good.json"
    good.write_bytes(render(small_queue()))
    assert agentd(tmp_path, pg_dsn, "queue", "import", str(good)).returncode == 0
    stored = agentd(tmp_path, pg_dsn, "queue", "export").stdout
    assert stored.encode("utf-8") == render(small_queue())
    bad = tmp_path / "bad.json"
    bad.write_text('{"tasks": [{"id": "A1", "title": "a", "status": "ready", "priority": "high"}]}\n')
    refused = agentd(tmp_path, pg_dsn, "queue", "import", str(bad), "--replace")
    assert refused.returncode == 4, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json: $.tasks[0].priority" in lines[0], lines
    again = agentd(tmp_path, pg_dsn, "queue", "import", str(good))
    assert again.returncode == 7 and "--replace" in again.stderr, again.stderr
    assert agentd(tmp_path, pg_dsn, "queue", "export").stdout == stored
