"""The bad inputs that are not file contents: folders and FIFOs where lease files belong, files agentd may not read,
a folder it may not write. Each gets one clear line naming the file, the documented exit code, a daemon that stays
up and carries on once the problem is gone, and the files left byte for byte as they were.

Permissions are made to bite with real processes: run as root (CI containers are), the child drops
CAP_DAC_OVERRIDE first (tests/helpers/access.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon
from tests.conftest import sha
from tests.helpers.access import permissions_bite
from tests.helpers.daemons import events, recorder, task, tasks_by_id, wait_for, write_config, write_queue

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "command": ["true"]}
STUCK = task("L1", "in_progress", agent="builder", lease={"token": 3, "role": "builder"})


def agentd(
    root: Path, *args: str, preexec: Callable[[], None] | None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process that meets file permissions."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("AGENTD_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "agentd", "--root", str(root), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
        check=False,
    )


class Foreground:
    """A foreground builder daemon (``--interval 0.1`` unless told) that meets file permissions (``preexec``); its
    stderr is kept in a file."""

    def __init__(self, root: Path, preexec: Callable[[], None] | None, interval: float = 0.1) -> None:
        self.err = root.parent / f"{root.name}.daemon.err"
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("AGENTD_ROOT", None)
        argv = [sys.executable, "-m", "agentd", "--root", str(root), "--role", "builder", "--interval", str(interval)]
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=preexec,
            )

    def log(self) -> str:
        return self.err.read_text()

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log().splitlines() if text in line]

    def stays_up(self, seconds: float) -> None:
        """Alive for ``seconds`` (a span of many 0.1 s passes), checked all along."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def carries_on(self, project: Path, task_id: str, reported: str) -> None:
        """The problem is gone: the task runs, the daemon stops cleanly, and it reported the problem just once."""
        done = lambda: tasks_by_id(project)[task_id]["status"] == "awaiting_test"  # noqa: E731
        wait_for(done, 30, f"{task_id} to run once the problem was gone")
        assert self.stop() == 0, self.log()
        assert len(self.lines(reported)) == 1, self.log()


@pytest.fixture
def foreground() -> Iterator[Callable[..., Foreground]]:
    """Starts :class:`Foreground` daemons; any a failed test leaves running are killed."""
    started: list[Foreground] = []

    def start(root: Path, preexec: Callable[[], None] | None, interval: float = 0.1) -> Foreground:
        started.append(Foreground(root, preexec, interval))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    write_config(root, {"builder": BUILDER})
    return root


def one_line(result: subprocess.CompletedProcess[str], code: int, *expect: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("agentd: "), result.stderr
    for text in expect:
        assert text in result.stderr, result.stderr


# -- what sits where a lease file belongs ------------------------------------------------------------------------------


def test_a_lease_path_that_is_a_folder_with_files(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    foreground: Callable[..., Foreground],
) -> None:
    """Never deleted, never a crash: reported once, its task held back; once a person removes it, work goes on."""
    monkeypatch.chdir(project)
    write_queue(project, [STUCK, task("L2")], {"builder": 2})
    kept = {}
    for task_id in ("L1", "L2"):
        folder = project / ".leases" / f"{task_id}.json"
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text(f"someone's notes on {task_id}\n")
        kept[task_id] = sha(folder / "notes.txt")
    listed = agentd(project, "leases", "list", preexec=None)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("L1"))
    assert "LEFT ALONE" in row and ".leases/L1.json: is a folder with files in it" in row, row
    doctor = agentd(project, "doctor", preexec=None)
    assert doctor.returncode == 1 and "[blocked-lease-path] .leases/L1.json" in doctor.stdout, doctor.stdout
    assert "rm -r .leases/L1.json" in doctor.stdout
    pruned = agentd(project, "leases", "prune", preexec=None)
    assert pruned.returncode == 0 and "no stale leases" in pruned.stderr + pruned.stdout, pruned.stderr
    why = agentd(project, "queue", "why", "L2", preexec=None)
    assert "left alone" in why.stdout, why.stdout

    daemon = Daemon(config_mod.load(root=project, environ={}), "builder", watch=False)
    with caplog.at_level(logging.WARNING, logger="agentd"):
        reports = [daemon.tick() for _ in range(3)]
    assert all(r.error is None and not r.recovered and not r.claimed for r in reports), reports
    warned = [r.getMessage() for r in caplog.records if "is a folder with files in it" in r.getMessage()]
    assert sorted(m.split(":")[0] for m in warned) == [".leases/L1.json", ".leases/L2.json"], warned  # once each
    assert {t: sha(project / ".leases" / f"{t}.json" / "notes.txt") for t in kept} == kept
    assert tasks_by_id(project)["L1"]["status"] == "in_progress" and tasks_by_id(project)["L2"]["status"] == "ready"

    # A real daemon at --interval 60: the removal's file event, not the interval, makes it carry on.
    running = foreground(project, None, interval=60)
    wait_for(lambda: len(running.lines("left alone")) == 2, 30, "the daemon to report both folders")
    for task_id in kept:  # as a person would: the notes, then the folder (the daemon may clear it once empty)
        folder = project / ".leases" / f"{task_id}.json"
        (folder / "notes.txt").unlink()
        with contextlib.suppress(FileNotFoundError):
            folder.rmdir()
    done = lambda: all(t["status"] == "awaiting_test" for t in tasks_by_id(project).values())  # noqa: E731
    wait_for(done, 60, "both tasks to run once the folders were removed")
    assert running.stop() == 0, running.log()


def test_an_empty_folder_or_a_fifo_at_a_lease_path_is_cleared(project: Path) -> None:
    """Nothing agentd made and nothing anyone keeps: removed by recovery, and the tasks run."""
    write_queue(project, [STUCK, task("L2")], {"builder": 2})
    leases = project / ".leases"
    (leases / "L1.json").mkdir(parents=True)
    os.mkfifo(leases / "L2.json")
    daemon = Daemon(config_mod.load(root=project, environ={}), "builder", watch=False)
    report = daemon.tick()
    assert report.error is None and sorted(report.recovered) == ["L1", "L2"], report

    def both_ran() -> bool:
        daemon.tick()
        return all(t["status"] == "awaiting_test" for t in tasks_by_id(project).values())

    wait_for(both_ran, 30, "both tasks to run")
    assert list(leases.glob("*.json")) == []


# -- files agentd may not read -----------------------------------------------------------------------------------------


def test_an_unreadable_queue(project: Path, foreground: Callable[..., Foreground]) -> None:
    """CLI: exit 4 and one line. A running daemon reports it once, stays up, and runs the task once it is readable."""
    preexec = permissions_bite()
    queue = write_queue(project, [task("a")])
    before = sha(queue)
    os.chmod(queue, 0)
    for command in (["queue", "validate"], ["queue", "list"], ["queue", "set-status", "a", "done"]):
        one_line(agentd(project, *command, preexec=preexec), 4, "SPRINT_QUEUE.json: cannot read: Permission denied")
    once = agentd(project, "--role", "builder", "--once", preexec=preexec)
    assert once.returncode == 4 and "cannot use the queue: SPRINT_QUEUE.json: cannot read" in once.stderr
    daemon = foreground(project, preexec)
    wait_for(lambda: daemon.lines("cannot use the queue"), 30, "the daemon to report the queue")
    daemon.stays_up(1.0)
    assert sha(queue) == before
    os.chmod(queue, 0o644)
    daemon.carries_on(project, "a", reported="cannot use the queue")
    assert len(daemon.lines("is valid again")) == 1, daemon.log()


def test_an_unreadable_config(project: Path, foreground: Callable[..., Foreground]) -> None:
    """CLI: exit 4 and one line. A running daemon told to reload keeps its configuration and goes on working."""
    preexec = permissions_bite()
    write_queue(project, [])
    config = project / "agentd.toml"
    before = sha(config)
    daemon = foreground(project, preexec)
    try:
        wait_for(lambda: daemon.lines("daemon started"), 30, "the daemon to start")
        os.chmod(config, 0)
        one_line(agentd(project, "queue", "list", preexec=preexec), 4, "agentd.toml: cannot read: Permission denied")
        started = agentd(project, "--role", "builder", "--once", preexec=preexec)
        one_line(started, 4, "agentd.toml: cannot read: Permission denied")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.lines("keeping the old configuration"), 30, "the reload to be refused")
        assert "agentd.toml: cannot read: Permission denied" in daemon.lines("keeping the old configuration")[0]
        added = agentd(project, "queue", "add", "b", "--title", "after the reload", preexec=None)
        assert added.returncode == 0, added.stderr
        daemon.carries_on(project, "b", reported="keeping the old configuration")
        assert sha(config) == before
    finally:
        os.chmod(config, 0o644)


def test_an_unreadable_lease_file(project: Path, foreground: Callable[..., Foreground]) -> None:
    """Nothing proves its holder gone (it may be another user's): listed, reported once, never removed; once it can
    be read (and its lock is free), the task is recovered and runs."""
    preexec = permissions_bite()
    write_queue(project, [STUCK])
    lease = project / ".leases" / "L1.json"
    lease.parent.mkdir()
    lease.write_text('{"task_id": "L1"}\n')
    before = sha(lease)
    os.chmod(lease, 0)
    listed = agentd(project, "leases", "list", preexec=preexec)
    assert listed.returncode == 0, listed.stderr
    assert "LEFT ALONE: .leases/L1.json: cannot open: Permission denied" in listed.stdout, listed.stdout
    doctor = agentd(project, "doctor", preexec=preexec)
    assert doctor.returncode == 1 and "[blocked-lease-path] .leases/L1.json: cannot open" in doctor.stdout
    once = agentd(project, "--role", "builder", "--once", preexec=preexec)
    assert once.returncode == 0, once.stderr
    daemon = foreground(project, preexec)
    wait_for(lambda: daemon.lines("left alone"), 30, "the daemon to report the lease file")
    daemon.stays_up(1.0)
    assert lease.exists() and sha(lease) == before
    assert tasks_by_id(project)["L1"]["status"] == "in_progress"
    os.chmod(lease, 0o644)  # no file event: the next pass on the interval finds it
    daemon.carries_on(project, "L1", reported="left alone")
    assert len([line for line in once.stderr.splitlines() if "left alone" in line]) == 1, once.stderr


def test_an_unreadable_pid_file(project: Path) -> None:
    """status cannot tell (exit 4, "unknown"); a daemon refuses to start on it with one line; doctor says what to
    do; the file is untouched."""
    preexec = permissions_bite()
    write_queue(project, [])
    pid = project / ".agentd" / "run" / "builder.pid"
    pid.parent.mkdir(parents=True)
    pid.write_text('{"pid": 1}\n')
    before = sha(pid)
    os.chmod(pid, 0)
    status = agentd(project, "status", "builder", preexec=preexec)
    assert status.returncode == 4 and "unknown (PID file: cannot open: Permission denied)" in status.stdout
    one_line(
        agentd(project, "--role", "builder", "--once", preexec=preexec),
        4,
        ".agentd/run/builder.pid: cannot open the PID file: Permission denied",
    )
    doctor = agentd(project, "doctor", preexec=preexec)
    assert doctor.returncode == 1 and "[unreadable-pid-file] .agentd/run/builder.pid" in doctor.stdout
    fixed = agentd(project, "doctor", "--fix", preexec=preexec)
    assert pid.exists() and sha(pid) == before, fixed.stdout  # not a safe fix: a person decides


def test_an_unreadable_result_file(project: Path) -> None:
    """The attempt fails with a line naming the result file; the daemon records it and carries on."""
    preexec = permissions_bite()
    command = ["sh", "-c", 'echo \'{"status": "done"}\' > "$AGENTD_RESULT"; chmod 000 "$AGENTD_RESULT"']
    write_config(project, {"builder": {**BUILDER, "command": command}}, defaults={"max_attempts": 1})
    write_queue(project, [task("R1")])
    once = agentd(project, "--role", "builder", "--once", preexec=preexec)
    assert once.returncode == 1, once.stderr
    [line] = [line for line in once.stderr.splitlines() if "results/R1." in line]
    assert "cannot read: Permission denied" in line, line
    final = tasks_by_id(project)["R1"]
    assert "bad result file: cannot read: Permission denied" in final["status_note"], final


# -- a folder agentd may not write -------------------------------------------------------------------------------------


def test_a_queue_folder_agentd_may_not_write(project: Path, foreground: Callable[..., Foreground]) -> None:
    """CLI and --once: exit 8 and one line, the queue byte for byte as it was and no temporary file; a daemon reports
    it once, runs nothing (its claim could not be written), and runs the task once the folder is writable again."""
    preexec = permissions_bite()
    queue = write_queue(project, [task("a")])
    for folder in (".leases", ".agentd"):
        (project / folder).mkdir()
    (project / "SPRINT_QUEUE.json.lock").touch()
    before = sha(queue)
    os.chmod(project, 0o555)
    try:
        changed = agentd(project, "queue", "set-status", "a", "done", preexec=preexec)
        one_line(changed, 8, "SPRINT_QUEUE.json: cannot write (left unchanged): Permission denied")
        once = agentd(project, "--role", "builder", "--once", preexec=preexec)
        assert once.returncode == 8 and "cannot write (left unchanged)" in once.stderr, once.stderr
        daemon = foreground(project, preexec)
        wait_for(lambda: daemon.lines("cannot use the queue"), 30, "the daemon to report the queue")
        daemon.stays_up(1.0)
        assert sha(queue) == before
        assert sorted(p.name for p in project.iterdir()) == [
            ".agentd",
            ".leases",
            "SPRINT_QUEUE.json",
            "SPRINT_QUEUE.json.lock",
            "agentd.toml",
        ]
        # Each retry creates the claim's lease and releases it when the queue cannot be written: none is kept.
        wait_for(lambda: not list((project / ".leases").glob("*.json")), 30, "the claim's lease to be released")
    finally:
        os.chmod(project, 0o755)
    daemon.carries_on(project, "a", reported="cannot use the queue")
    assert "cannot write (left unchanged): Permission denied" in daemon.lines("cannot use the queue")[0]


def test_a_daemon_that_cannot_record_its_finished_task_when_stopped(
    project: Path, foreground: Callable[..., Foreground]
) -> None:
    """Stopped while the queue's folder is read-only: it keeps trying to record the finished task, then gives up with
    exit 8 and one line, releasing its lease; a later daemon recovers the task and runs it again."""
    preexec = permissions_bite()
    log = project.parent / "runs.jsonl"
    write_config(project, {"builder": {**BUILDER, "command": recorder(log, "--sleep", "0.5")}})
    write_queue(project, [task("a")])
    daemon = foreground(project, preexec, interval=60)
    wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the task to start")
    os.chmod(project, 0o555)
    try:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=60) == 8, daemon.log()
        assert len(daemon.lines("shutdown: cannot record finished tasks")) == 1, daemon.log()
        assert tasks_by_id(project)["a"]["status"] == "in_progress"
        assert list((project / ".leases").glob("*.json")) == []
    finally:
        os.chmod(project, 0o755)
    drained = agentd(project, "--role", "builder", "--drain", preexec=None)
    assert drained.returncode == 0, drained.stderr
    assert tasks_by_id(project)["a"]["status"] == "awaiting_test"
    assert len([r for r in events(log) if r["event"] == "end"]) == 2


def test_any_other_file_agentd_may_not_write_is_one_line(tmp_path: Path) -> None:
    """An OSError no command foresaw (here: init in a read-only folder) is one line naming the file, exit 8."""
    preexec = permissions_bite()
    folder = tmp_path / "read-only"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        one_line(agentd(folder, "init", preexec=preexec), 8, "agentd.toml: ", "Permission denied")
    finally:
        os.chmod(folder, 0o755)
    assert list(folder.iterdir()) == []


def test_a_lease_folder_agentd_may_not_write(project: Path, foreground: Callable[..., Foreground]) -> None:
    """A claim needs a lease file: a daemon that cannot create one reports it once (naming the folder's file), writes
    nothing to the queue, stays up, and runs the task once the folder is writable again."""
    preexec = permissions_bite()
    queue = write_queue(project, [task("a")])
    leases = project / ".leases"
    leases.mkdir()
    (leases / ".tokens").write_text("7\n")
    before = sha(queue)
    os.chmod(leases, 0o555)
    try:
        daemon = foreground(project, preexec)
        wait_for(lambda: daemon.lines("cannot use the queue"), 30, "the daemon to report the lease folder")
        daemon.stays_up(1.0)
        assert sha(queue) == before
        [line] = daemon.lines("cannot use the queue")
        # (the token mark, a file of its own, is rewritten in place: the lease file is what cannot be made)
        assert ".leases/a.json: cannot create the lease file: Permission denied" in line, line
    finally:
        os.chmod(leases, 0o755)
    daemon.carries_on(project, "a", reported="cannot use the queue")
    assert tasks_by_id(project)["a"]["lease_token"] >= 8  # (above the mark; each failed try raised it)


# -- a lease folder out of the project, a queue too big for comfort ----------------------------------------------------


def test_a_symlinked_lease_folder_outside_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """.leases pointing outside the project: CLI one line and exit 4; a daemon reports it once per change, keeps
    retrying and works once the link is gone; nothing is written outside, no input file changes."""
    project = tmp_path / "project"
    project.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / ".leases").symlink_to(outside)
    write_config(project, {"builder": BUILDER})
    queue = write_queue(project, [task("a")])
    before = sha(queue), sha(project / "agentd.toml")
    monkeypatch.chdir(project)
    for command in (["leases", "list"], ["leases", "prune"]):
        one_line(
            agentd(project, *command, preexec=None, timeout=600),
            4,
            "agentd: .leases: is a symlink to",
            "outside the project",
        )
    once = agentd(project, "--role", "builder", "--once", preexec=None)
    assert once.returncode == 4 and "cannot use the queue: .leases: is a symlink to" in once.stderr, once.stderr
    daemon = Daemon(config_mod.load(root=project, environ={}), "builder", watch=False)
    with caplog.at_level(logging.ERROR, logger="agentd"):
        reports = [daemon.tick() for _ in range(3)]
    assert all("outside the project" in (r.error or "") for r in reports), reports
    assert sum("outside the project" in r.getMessage() for r in caplog.records) == 1
    assert list(outside.iterdir()) == []
    assert (sha(queue), sha(project / "agentd.toml")) == before
    (project / ".leases").unlink()

    def ran() -> bool:
        daemon.tick()
        return bool(tasks_by_id(project)["a"]["status"] == "awaiting_test")

    wait_for(ran, 30, "the task to run once the link was removed")
    assert list(outside.iterdir()) == []


def test_a_50_mb_queue_with_an_error_at_its_very_end(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A 50 MB queue is read and validated by the CLI and by a daemon pass; its one bad value, at the end, is named
    by its JSON path and quarantines that task alone: a write to another task goes through, the daemon reports it
    once and carries on; the bad task's bytes are untouched."""
    # 25,000 tasks of 2 KB: the size of a long-lived sprint's file (a count of tasks is what make bench measures).
    tasks = [
        {"id": f"T{i:06d}", "title": "x" * 1600, "status": "ready", "dependencies": [], "notes": "y" * 400}
        for i in range(25_000)
    ]
    tasks[-1]["status"] = 5
    queue = project / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": tasks}, indent=2))
    assert queue.stat().st_size > 50 * 1024 * 1024
    tail = queue.read_bytes()[-700:]
    monkeypatch.chdir(project)
    one_line(
        agentd(project, "queue", "validate", preexec=None, timeout=600),
        4,
        "$.tasks[24999].status: 5 is not of type 'string'",
    )
    assert agentd(project, "queue", "set-status", "T000000", "done", preexec=None, timeout=600).returncode == 0
    daemon = Daemon(config_mod.load(root=project, environ={}), "builder", watch=False)
    with caplog.at_level(logging.WARNING, logger="agentd"):
        reports = [daemon.tick() for _ in range(2)]
    assert all(r.error is None for r in reports), reports
    assert sum("T024999 is quarantined: $.tasks[24999].status" in r.getMessage() for r in caplog.records) == 1
    assert queue.read_bytes().endswith(tail)
