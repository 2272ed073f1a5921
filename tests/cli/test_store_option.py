"""``--store``, ``AGENTD_STORE`` and ``store`` in agentd.toml: the file store by default; a store that cannot be
opened is refused in one line (exit 4 for an unknown kind, 8 for a database out of reach) without echoing a database
URI's password, and the queue left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_agentd, small_queue

URI = "postgresql://agentd:s3cret@db.example:5432/agentd"


def project(root: Path) -> bytes:
    raw = (json.dumps(small_queue(), indent=2) + "\n").encode()
    (root / "SPRINT_QUEUE.json").write_bytes(raw)
    return raw


def test_the_file_store_is_the_default_and_can_be_named(tmp_path: Path) -> None:
    """With no store named, and with --store file, commands work on the queue file as before."""
    project(tmp_path)
    assert run_agentd("queue", "list", cwd=tmp_path).returncode == 0
    named = run_agentd("--store", "file", "queue", "set-status", "S1", "ready", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert json.loads((tmp_path / "SPRINT_QUEUE.json").read_text())["tasks"][0]["status"] == "ready"


def test_config_show_names_the_store_and_where_it_was_set(tmp_path: Path) -> None:
    """config show lists the store with its origin, and a URI only by its scheme (never its password)."""
    project(tmp_path)
    shown = json.loads(run_agentd("config", "show", "--json", cwd=tmp_path).stdout)
    assert shown["settings"]["store"] == {"value": "file", "from": "default"}
    flagged = json.loads(run_agentd("--store", URI, "config", "show", "--json", cwd=tmp_path).stdout)
    assert flagged["settings"]["store"] == {"value": "postgresql://…", "from": "flag --store"}


@pytest.mark.parametrize("how", ["flag", "env", "toml"])
def test_an_unreachable_postgresql_store_is_refused_in_one_line_without_its_password(tmp_path: Path, how: str) -> None:
    """A postgresql:// store that cannot be reached: one line naming it and where it was set, exit 8, no password,
    the queue file kept."""
    raw = project(tmp_path)
    args: list[str] = ["queue", "set-status", "S1", "ready"]
    env = {}
    if how == "flag":
        args = ["--store", URI, *args]
    elif how == "env":
        env = {"AGENTD_STORE": URI}
    else:
        (tmp_path / "agentd.toml").write_text(f'store = "{URI}"\n')
    done = run_agentd(*args, cwd=tmp_path, env=env)
    assert done.returncode == 8, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "postgresql://agentd@db.example:5432/agentd: cannot connect" in lines[0], lines
    assert "s3cret" not in done.stderr
    where = {"flag": "flag --store", "env": "env AGENTD_STORE", "toml": "agentd.toml: $.store"}[how]
    assert where in lines[0], lines
    assert (tmp_path / "SPRINT_QUEUE.json").read_bytes() == raw


def test_an_unknown_store_kind_is_named(tmp_path: Path) -> None:
    """A store kind agentd does not know is named with the kinds it does know."""
    project(tmp_path)
    done = run_agentd("--store", "redis", "queue", "list", cwd=tmp_path)
    assert done.returncode == 4 and "unknown store 'redis'; known: file" in done.stderr, done.stderr


def test_doctor_reports_a_store_it_cannot_open(tmp_path: Path) -> None:
    """doctor names a store agentd cannot open as one finding (exit 1), without the URI's password."""
    project(tmp_path)
    done = run_agentd("doctor", "--json", cwd=tmp_path, env={"AGENTD_STORE": URI})
    assert done.returncode == 1, done.stderr
    found = json.loads(done.stdout)
    assert [f["code"] for f in found] == ["store-unavailable"], found
    assert "s3cret" not in done.stdout
