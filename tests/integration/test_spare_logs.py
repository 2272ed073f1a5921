"""A spare supervisor makes its task's log folder and log file while it waits (``_shim._prepare``): the hand-over only
renames and links them, and falls back to making them as before on any refusal. Real zygotes, spares and files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.run.runner import LaunchSpec, launch
from agentd.run.zygote import Zygote
from agentd.service.logsetup import prune_task_logs
from tests.conftest import run_agentd
from tests.helpers.daemons import events, recorder, task, write_config, write_queue
from tests.integration.test_runner import finish, pid_gone, wait_for
from tests.integration.test_zygote import children_of

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "O_TMPFILE"), reason="needs Linux /proc and O_TMPFILE"
)


BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The folder of the task logs (a daemon's ``.agentd/logs/tasks``)."""
    folder = tmp_path / "logs" / "tasks"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def zygote(root: Path) -> Iterator[Zygote]:
    """A zygote of the test's own whose spares prepare in *root*."""
    z = Zygote()
    z.prepare_logs(str(root))
    yield z
    z.close()


def unnamed_file(pid: int, root: Path) -> int | None:
    """The inode of the unnamed (O_TMPFILE) file *pid* holds open in *root*, None if it holds none."""
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{name}")  # ("<root>/#<inode> (deleted)")
                if target.startswith(f"{root}/#") and target.endswith(" (deleted)"):
                    return os.stat(f"/proc/{pid}/fd/{name}").st_ino
    return None


def prepared_spare(z: Zygote, root: Path) -> tuple[int, int, int]:
    """(pid, folder inode, file inode) of the one spare waiting, once it has made its folder and file."""
    z.prestart(1)
    assert wait_for(lambda: z.pid is not None and len(children_of(z.pid)) == 1, 60)
    (pid,) = children_of(z.pid or 0)
    folder = root / f".spare-{pid}"
    assert wait_for(lambda: folder.is_dir() and unnamed_file(pid, root) is not None, 60), os.listdir(root)
    inode = unnamed_file(pid, root)
    assert inode is not None
    return pid, folder.stat().st_ino, inode


def left(root: Path, z: Zygote, used: int) -> list[str]:
    """What *root* holds, but the folder of the spare forked (for the next task) once *used* was handed its task."""
    fresh = lambda: [pid for pid in children_of(z.pid or 0) if pid != used and not pid_gone(pid)]  # noqa: E731
    assert wait_for(lambda: len(fresh()) == 1, 60), children_of(z.pid or 0)
    (spare,) = fresh()
    return sorted(name for name in os.listdir(root) if name != f".spare-{spare}")


def run(z: Zygote, tmp_path: Path, log: Path, text: str = "out") -> int:
    """Run ``echo text`` logging to *log*; the supervisor's pid."""
    tp = launch(LaunchSpec(["sh", "-c", f"echo {text}"], tmp_path, {}, log, 20.0), zygote=z)
    assert finish(tp, 60).returncode == 0
    return tp.pid


def test_a_tasks_first_run_gets_the_folder_and_file_its_spare_made(tmp_path: Path, root: Path, zygote: Zygote) -> None:
    """The spare waits with ``.spare-PID`` and an unnamed file made; handed a task's first run, that folder becomes the
    task's (same inode) and that file its log (same inode), holding the run's lines; no spare folder is left."""
    pid, folder_inode, file_inode = prepared_spare(zygote, root)
    log = root / "T1" / "7.log"
    assert run(zygote, tmp_path, log) == pid
    assert (root / "T1").stat().st_ino == folder_inode
    assert log.stat().st_ino == file_inode and oct(log.stat().st_mode & 0o777) == oct(0o644 & ~current_umask())
    text = log.read_text()
    assert "exec sh -c" in text and "\nout\n" in text and "exited returncode=0" in text
    assert left(root, zygote, pid) == ["T1"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_later_run_links_its_file_into_the_folder_there_and_drops_the_spare_folder(
    tmp_path: Path, root: Path, zygote: Zygote
) -> None:
    """The task's folder exists (an earlier run's log in it): the prepared file is linked beside that log, which is
    kept, and the unused spare folder is removed once the command has started."""
    (root / "T1").mkdir()
    (root / "T1" / "1.log").write_text("first run\n")
    pid, _folder_inode, file_inode = prepared_spare(zygote, root)
    assert run(zygote, tmp_path, root / "T1" / "2.log") == pid
    assert (root / "T1" / "2.log").stat().st_ino == file_inode
    assert (root / "T1" / "1.log").read_text() == "first run\n"
    assert left(root, zygote, pid) == ["T1"]


def test_a_log_that_exists_is_appended_to_as_before(tmp_path: Path, root: Path, zygote: Zygote) -> None:
    """A log of the run's own name exists (EEXIST at the link): it is opened for appending, as without a spare, its
    lines kept; the unnamed file is dropped."""
    (root / "T1").mkdir()
    log = root / "T1" / "3.log"
    log.write_text("before\n")
    inode = log.stat().st_ino
    pid, _folder_inode, file_inode = prepared_spare(zygote, root)
    assert run(zygote, tmp_path, log) == pid
    assert log.stat().st_ino == inode != file_inode
    text = log.read_text()
    assert text.startswith("before\nagentd: ") and "\nout\n" in text
    assert left(root, zygote, pid) == ["T1"]


NO_TMPFILE = """#!/bin/sh
# The zygote's interpreter as on a system without O_TMPFILE: its "-I -S -c BOOT" with O_TMPFILE removed first.
boot="$4"; shift 4
exec {python} -I -S -c "import os
del os.O_TMPFILE
$boot" "$@"
"""


def test_without_o_tmpfile_the_folder_is_still_used_and_the_log_made_as_before(tmp_path: Path, root: Path) -> None:
    """A zygote whose interpreter has no O_TMPFILE: its spare makes only the folder, which becomes the task's at the
    hand-over; the log is created in it as before."""
    python = tmp_path / "python-without-o-tmpfile"
    python.write_text(NO_TMPFILE.format(python=sys.executable))
    python.chmod(0o755)
    z = Zygote(executable=str(python))
    try:
        z.prepare_logs(str(root))
        z.prestart(1)
        assert wait_for(lambda: z.pid is not None and len(children_of(z.pid)) == 1, 60)
        (pid,) = children_of(z.pid or 0)
        assert wait_for(lambda: (root / f".spare-{pid}").is_dir(), 60)
        inode = (root / f".spare-{pid}").stat().st_ino
        assert unnamed_file(pid, root) is None
        log = root / "T1" / "8.log"
        assert run(z, tmp_path, log) == pid
        assert (root / "T1").stat().st_ino == inode and "\nout\n" in log.read_text()
        assert left(root, z, pid) == ["T1"]
    finally:
        z.close()


def test_a_task_folder_on_another_file_system_falls_back(tmp_path: Path, root: Path, zygote: Zygote) -> None:
    """The task's folder is a link to another file system: neither the rename (onto a symlink) nor the link (EXDEV)
    can be done, and the log is made there as before."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == root.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system")
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        (root / "T1").symlink_to(elsewhere)
        pid, _folder_inode, file_inode = prepared_spare(zygote, root)
        assert run(zygote, tmp_path, root / "T1" / "4.log") == pid
        log = elsewhere / "4.log"
        assert log.stat().st_ino != file_inode and "\nout\n" in log.read_text()
        assert left(root, zygote, pid) == ["T1"] and (root / "T1").is_symlink()
    finally:
        shutil.rmtree(elsewhere)


def test_a_log_root_removed_meanwhile_falls_back(tmp_path: Path, root: Path, zygote: Zygote) -> None:
    """The log root is removed after the spare made its folder in it (ENOENT for the rename and the link): the folders
    are made again and the log written, as before."""
    pid, _folder_inode, _file_inode = prepared_spare(zygote, root)
    shutil.rmtree(root)
    log = root / "T1" / "5.log"
    assert run(zygote, tmp_path, log) == pid
    assert "\nout\n" in log.read_text()
    assert left(root, zygote, pid) == ["T1"]


def test_a_log_outside_the_root_is_made_as_before(tmp_path: Path, root: Path, zygote: Zygote) -> None:
    """A log that is not in a task's folder of the root is made where it is asked for; the spare folder is dropped."""
    pid, _folder_inode, file_inode = prepared_spare(zygote, root)
    log = tmp_path / "other" / "6.log"
    assert run(zygote, tmp_path, log) == pid
    assert log.stat().st_ino != file_inode and "\nout\n" in log.read_text()
    assert left(root, zygote, pid) == []


def waiting_spares(z: Zygote, killed: int) -> list[int]:
    """The zygote's children that are running spares with their folder made (not *killed*, not a zombie)."""
    return [
        child
        for child in children_of(z.pid or 0)
        if child != killed and not pid_gone(child) and os.path.isdir(f"{z._log_root}/.spare-{child}")
    ]


def test_a_spare_killed_while_it_waits_leaves_an_empty_folder_the_full_prune_removes(
    tmp_path: Path, root: Path
) -> None:
    """SIGKILL a spare that has prepared: its unnamed file goes with it, its empty ``.spare-PID`` folder stays and the
    next task runs in another spare; a full prune removes that folder once its pid is gone (not counted as a log), and
    keeps a live spare's folder and a spare folder with something in it."""
    z = Zygote()
    try:
        z.prepare_logs(str(root))
        pid, _folder_inode, _file_inode = prepared_spare(z, root)
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: pid_gone(pid), 60)
        assert run(z, tmp_path, root / "T1" / "1.log") != pid
        # The spare that run's launch asked for: once the zygote is gone it reads EOF, drops its folder and exits, a
        # moment after close() returns (waited for below, or the prune could find its folder still there).
        assert wait_for(lambda: bool(waiting_spares(z, pid)), 60)
        spares = waiting_spares(z, pid)
    finally:
        z.close()  # (the killed spare's zombie is reaped by init once its zygote is gone)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 60)
    assert wait_for(lambda: all(pid_gone(spare) for spare in spares), 60)
    assert (root / f".spare-{pid}").is_dir()
    os.mkdir(root / f".spare-{os.getpid()}")  # a live one's
    ended = subprocess.Popen(["true"])
    ended.wait()
    full = root / f".spare-{ended.pid}"
    full.mkdir()
    (full / "x").write_text("")
    assert prune_task_logs(root, keep=5, max_age_days=1, now=time.time()) == 0
    assert sorted(os.listdir(root)) == sorted([f".spare-{os.getpid()}", full.name, "T1"])


def test_spares_let_go_are_gone_with_their_folders_when_release_returns(root: Path) -> None:
    """release_spares() (a daemon's end): the spares forked ahead and unused have removed their folders and exited by
    the time it returns, so nothing of theirs appears or vanishes under the caller afterwards."""
    z = Zygote()
    try:
        z.prepare_logs(str(root))
        z.prestart(2)
        assert wait_for(lambda: z.pid is not None and len(children_of(z.pid)) == 2, 60)
        spares = children_of(z.pid or 0)
        assert wait_for(lambda: sorted(os.listdir(root)) == sorted(f".spare-{pid}" for pid in spares), 60)
        z.release_spares()
        assert os.listdir(root) == []
        assert all(pid_gone(pid) for pid in spares)
    finally:
        z.close()


def test_a_drained_daemon_leaves_no_spare_folder(tmp_path: Path) -> None:
    """A daemon returns only once the spares it did not use have removed the folders they made ahead: right after
    ``--drain`` exits, the task logs are the tasks' folders alone, a retried task's two runs in its one folder."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--exit-token", "1:1")}},
        defaults={"backoff": {"initial": 0.1}},
    )
    write_queue(tmp_path, [task("R1"), task("R2"), task("R3")], {"builder": 2})
    done = run_agentd("--role", "builder", "--drain", "--concurrency", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks = tmp_path / ".agentd" / "logs" / "tasks"
    assert sorted(os.listdir(tasks)) == ["R1", "R2", "R3"]
    assert sum(len(os.listdir(tasks / name)) for name in ("R1", "R2", "R3")) == 4  # (token 1 failed once)
    assert len([r for r in events(log) if r["event"] == "end"]) == 4
