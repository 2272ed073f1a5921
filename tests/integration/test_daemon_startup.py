"""A daemon's start-up: what it does before its first claim, and what it leaves until after its first pass."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon
from tests.helpers import daemons

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done"}


def _agentd(root: Path, *args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``python -m agentd --root ROOT ARGS`` run to its end, with no AGENTD_ variable of the suite's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    command = [sys.executable, *python, "-m", "agentd", "--root", str(root), *args]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_drain_with_nothing_to_do_never_starts_the_change_watch(tmp_path: Path) -> None:
    """The change watch (watchdog, inotify) starts after the first pass: a drain of an empty queue ends before."""
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    daemons.write_queue(tmp_path, [])
    done = _agentd(tmp_path, "--role", "builder", "--drain", python=("-X", "importtime"))
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")]
    assert "agentd.daemon" in imported or "agentd.run.daemon" in imported, imported[-5:]
    assert not [name for name in imported if name.startswith("watchdog")]


def test_a_task_added_as_the_daemon_starts_is_run_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """A task written while the first pass runs (before the change watch is up) is seen by the look that follows
    the watch's start, not an interval (an hour here) later."""
    log = tmp_path / "runs.jsonl"
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": daemons.recorder(log)}})
    queue = daemons.write_queue(tmp_path, [])
    daemon = daemons.start(tmp_path, "builder", "--interval", "3600")
    try:
        daemons.wait_for(lambda: (tmp_path / ".agentd" / "events.jsonl").exists(), 60, "the daemon's start")
        doc = json.loads(queue.read_text())
        doc["tasks"].append(daemons.task("A1"))
        tmp = queue.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.rename(queue)
        daemons.wait_for(lambda: daemons.tasks_by_id(tmp_path)["A1"]["status"] == "done", 60, "A1 run and done")
    finally:
        daemons.stop_all([daemon])


def _slow_watch(daemon: Daemon, until: Callable[[], bool]) -> list[bool]:
    """Make the daemon's store set its watch up only once ``until()`` holds (at most 30 s); returns a list that gets
    whether it did."""
    real = daemon.store.watch
    came: list[bool] = []

    def watch(wake: Callable[[str], None]) -> Any:
        deadline = time.monotonic() + 30
        while not until() and time.monotonic() < deadline:
            time.sleep(0.01)
        came.append(until())
        return real(wake)

    daemon.store.watch = watch  # type: ignore[method-assign]
    return came


def test_the_first_task_ends_and_the_next_starts_while_the_change_watch_is_set_up(tmp_path: Path) -> None:
    """The change watch is set up off the main thread: a chain's first task is recorded, and its successor claimed,
    while the set-up is still under way (before: the main thread did the set-up, ~46 M instructions, and recorded
    the first task's end only after it). The drain ends with the watch stopped."""
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"interval": 3600})
    daemons.write_queue(tmp_path, [daemons.task("A"), daemons.task("B", dependencies=["A"])], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=True)
    daemon.watch_after = 0  # (the watch set up right after the first pass, while A runs)
    came = _slow_watch(daemon, lambda: daemons.tasks_by_id(tmp_path)["B"]["status"] != "ready")
    assert daemons.drain_in_thread(daemon) == 0
    assert came == [True]
    assert {t["status"] for t in daemons.tasks_by_id(tmp_path).values()} == {"done"}
    assert daemon._watcher is None and not [t for t in threading.enumerate() if t.name == "agentd-watch-setup"]


def test_a_drain_that_ends_while_the_watch_is_set_up_stops_the_watch(tmp_path: Path) -> None:
    """One task: the drain is over before its watch's set-up is done; its stop waits for the set-up and stops the
    watch, leaving no watchdog thread behind."""
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"interval": 3600})
    daemons.write_queue(tmp_path, [daemons.task("A")], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=True)
    daemon.watch_after = 0  # (the watch set up right after the first pass, while A runs)
    before = set(threading.enumerate())
    came = _slow_watch(daemon, lambda: daemons.tasks_by_id(tmp_path)["A"]["status"] == "done")
    assert daemons.drain_in_thread(daemon) == 0
    assert came == [True]
    assert daemon._watcher is None
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    watching = ("agentd-watch", "agentd-watch-setup")
    assert not [t for t in left if "watchdog" in type(t).__module__ or t.name in watching], left


def test_a_drain_whose_tasks_end_sooner_than_watch_after_never_sets_the_watch_up(tmp_path: Path) -> None:
    """Each of its waits ends with a task's end before ``watch_after`` (a minute here): each end's pass reads the queue
    anyway, so the watch is never set up (no store watch asked for, no watch thread), and the drain runs every task."""
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"interval": 3600})
    daemons.write_queue(tmp_path, [daemons.task(f"A{n}") for n in range(6)], {"builder": 2})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=True)
    daemon.watch_after = 60.0
    asked: list[bool] = []
    real = daemon.store.watch

    def watch(wake: Callable[[str], None]) -> Any:
        asked.append(True)
        return real(wake)

    daemon.store.watch = watch  # type: ignore[method-assign]
    assert daemons.drain_in_thread(daemon) == 0
    assert {t["status"] for t in daemons.tasks_by_id(tmp_path).values()} == {"done"}
    assert asked == []
    assert not [t for t in threading.enumerate() if t.name in ("agentd-watch", "agentd-watch-setup")]


def test_the_watch_is_set_up_once_the_daemon_has_waited_watch_after_and_sees_a_change(tmp_path: Path) -> None:
    """A task that runs longer than ``watch_after``: the watch is set up while it runs, and a task added to the queue
    by another process then is claimed at once (the interval is an hour)."""
    gate = tmp_path / "gate"
    script = f"import os, sys, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    daemons.write_config(
        tmp_path, {"builder": {**BUILDER, "command": [sys.executable, "-c", script]}}, defaults={"interval": 3600}
    )
    queue = daemons.write_queue(tmp_path, [daemons.task("A")], {"builder": 2})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=True)
    daemon.watch_after = 0.2
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    runner.start()
    try:
        daemons.wait_for(lambda: daemon._watcher is not None, 60, "the watch to be set up while A runs")
        assert daemons.tasks_by_id(tmp_path)["A"]["status"] == "in_progress"
        doc = json.loads(queue.read_text())
        doc["tasks"].append(daemons.task("B"))
        temporary = queue.with_suffix(".tmp")
        temporary.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(temporary, queue)  # (as an editor saves it; the daemon's wait is an hour long otherwise)
        daemons.wait_for(lambda: daemons.tasks_by_id(tmp_path)["B"]["status"] == "in_progress", 60, "B claimed")
    finally:
        gate.touch()
        daemons.wait_for(lambda: {t["status"] for t in daemons.tasks_by_id(tmp_path).values()} == {"done"}, 60, "done")
        daemon._signal(signal.SIGTERM, None)
        runner.join(60)
    assert codes == [0]


def test_the_task_logs_are_pruned_after_the_first_claim_and_before_the_daemon_stops(tmp_path: Path) -> None:
    """The start's prune of every task's logs (thousands of folders on an old project: tens of milliseconds, seconds
    with a cold cache) runs once the first pass has claimed, on a thread of its own, and is over before the daemon
    says it stopped: the old logs beyond ``keep_task_logs`` and a dead spare's folder are gone by then."""
    daemons.write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, log={"keep_task_logs": 2})
    daemons.write_queue(tmp_path, [daemons.task("T1")])
    old = tmp_path / ".agentd" / "logs" / "tasks" / "OLD"
    old.mkdir(parents=True)
    for token in range(1, 6):
        log = old / f"{token}.log"
        log.write_text(f"run {token}\n")
        os.utime(log, (time.time() - 600 + token, time.time() - 600 + token))
    dead_spare = old.parent / ".spare-999999999"  # (above any pid_max: no such process)
    dead_spare.mkdir()
    done = _agentd(tmp_path, "--role", "builder", "--once")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    claimed = next(n for n, line in enumerate(lines) if "claimed T1" in line)
    pruned = next(n for n, line in enumerate(lines) if "pruned 3 old task log(s)" in line)
    stopped = next(n for n, line in enumerate(lines) if "daemon stopped" in line)
    assert claimed < pruned < stopped, lines
    assert sorted(os.listdir(old)) == ["4.log", "5.log"]
    assert not dead_spare.exists()
