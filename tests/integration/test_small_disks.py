"""A full disk and a read-only file system: each message names the file, and nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd import faults
from agentd.core.clock import FakeClock
from agentd.run.daemon import Daemon
from tests.conftest import run_agentd

ROLES = '[roles.builder]\nclaims = "ready"\nworking = "in_progress"\non_success = "done"\ncommand = ["true"]\n'


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256-kB tmpfs of its own (mounting needs root: skipped with the reason where it is not allowed)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "agentd.toml").write_text(ROLES, encoding="utf-8")
    (root / "SPRINT_QUEUE.json").write_text(json.dumps({"tasks": [{"id": "T1", "status": "ready"}]}, indent=2))
    return root


def _fill(folder: Path) -> None:
    """Write until the file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    for size in (512, 64, 1):  # the last partial page too
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"x" * size)
        except OSError:
            pass
        finally:
            os.close(fd)


def _daemon(root: Path) -> Daemon:
    return Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)


def test_a_full_disk_when_the_token_mark_is_written_names_it_and_leaves_no_temp_file(small_fs: Path) -> None:
    """ENOSPC writing .leases/.tokens: the message names that file, and .tokens.tmp does not stay behind."""
    root = _project(small_fs / "p")
    daemon = _daemon(root)
    (root / ".leases").mkdir(exist_ok=True)
    _fill(small_fs)
    report = daemon.tick()
    assert report.error is not None and "No space left on device" in report.error
    assert ".leases/.tokens" in report.error
    assert sorted(p.name for p in (root / ".leases").iterdir()) == []
    assert json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"][0]["status"] == "ready"


def test_a_full_disk_when_the_lease_is_written_names_the_lease_file(small_fs: Path) -> None:
    """ENOSPC writing a new lease file: the message names it (not 'cannot use it' alone), and it is removed."""
    root = _project(small_fs / "p")
    daemon = _daemon(root)
    faults.on("tokens.after-write", lambda: _fill(small_fs))
    try:
        report = daemon.tick()
    finally:
        faults.on("tokens.after-write", None)
    assert report.error is not None and "No space left on device" in report.error
    assert ".leases/T1.json" in report.error, report.error
    assert not (root / ".leases" / "T1.json").exists()
    assert json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"][0]["status"] == "ready"


def test_a_read_only_file_system_says_so(small_fs: Path) -> None:
    """A daemon started on a read-only file system is told that, not that another user may hold its PID file."""
    root = _project(small_fs / "p")
    (root / ".agentd" / "run").mkdir(parents=True)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], capture_output=True, text=True, check=False)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {remount.stderr.strip()}")
    done = run_agentd("--root", str(root), "--role", "builder", "--once", cwd=root)
    assert done.returncode != 0
    assert "Read-only file system" in done.stderr, done.stderr
    assert "another user" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_full_disk_is_tried_again_within_seconds_and_a_bad_queue_after_it_waits_for_its_edit(small_fs: Path) -> None:
    """A pass that failed on a full disk is due again after 1 s, then 2 s (no file event says the disk has room again),
    not at the 60 s interval; once the disk has room but the queue is broken (a data error, which its edit announces),
    the daemon waits for that edit or the interval again, never for a retry time already past (a busy loop)."""
    root = _project(small_fs / "p")
    clock = FakeClock()
    daemon = Daemon(config_mod.load(root=root, environ={}), "builder", watch=False, clock=clock)
    (root / ".leases").mkdir(exist_ok=True)
    _fill(small_fs)
    assert "No space left on device" in (daemon.tick().error or "")
    assert daemon._next_timeout() == pytest.approx(1.0)
    clock.advance(1.0)
    assert "No space left on device" in (daemon.tick().error or "")
    assert daemon._next_timeout() == pytest.approx(2.0)
    (small_fs / "filler").unlink()
    (root / "SPRINT_QUEUE.json").write_text('{"tasks": [')
    clock.advance(2.0)
    assert "not valid JSON" in (daemon.tick().error or "")
    clock.advance(5.0)  # (past the last retry time)
    assert daemon._next_timeout() == pytest.approx(60.0)
