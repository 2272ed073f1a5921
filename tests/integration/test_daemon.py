"""Role daemons as real processes: racing, SIGKILL, SIGSTOP, SIGTERM, outcomes, retries, pickup latency."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentd.store.file.queuefile import QueueStore
from tests.conftest import run_agentd
from tests.helpers.daemons import (
    alive,
    assert_survives_sighup_storm,
    events,
    max_concurrency,
    recorder,
    start,
    stop_all,
    task,
    tasks_by_id,
    wait_for,
    write_config,
    write_queue,
)

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}


def test_four_daemons_race_over_forty_tasks(tmp_path: Path) -> None:
    """4 builders, 40 tasks, WIP 3: every task runs exactly once and never more than 3 at once."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log, "--sleep", "0.05")}})
    write_queue(tmp_path, [task(f"T{i:02d}") for i in range(40)], {"builder": 3})
    daemons = [start(tmp_path, "builder", "--drain", "--instance", f"b{n}") for n in range(4)]
    try:
        for proc in daemons:
            assert proc.wait(timeout=120) == 0
    finally:
        stop_all(daemons)
    records = events(log)
    starts = [r["task"] for r in records if r["event"] == "start"]
    assert sorted(starts) == [f"T{i:02d}" for i in range(40)]
    assert not [r for r in records if r["event"] == "overlap"]
    assert max_concurrency(records) <= 3
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"awaiting_test"}
    assert list((tmp_path / ".leases").glob("*.json")) == []


def test_sigkilled_daemon_task_is_gone_and_a_peer_reclaims(tmp_path: Path) -> None:
    """SIGKILL a daemon mid-task: its command dies with it and an idle peer, woken by the lock's release (its poll
    interval is an hour), re-runs it with a higher token."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep-token", "1:60")}},
        defaults={"interval": 3600},
    )
    write_queue(tmp_path, [task("K1")], {"builder": 1})
    first = start(tmp_path, "builder", "--instance", "one")
    try:
        started = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the first run to start")
        second = start(tmp_path, "builder", "--instance", "two")
        time.sleep(0.5)  # let the peer reach its idle wait: it must be woken, not poll
        first.kill()
        first.wait(timeout=10)
        # The task's command sleeps 60 s: gone well before that means it died with its daemon, not of old age.
        wait_for(lambda: not alive(started[0]["pid"]), 30, "the task command to die with its daemon")
        # The peer polls once an hour: a re-run within a minute means a file event woke it.
        rerun = wait_for(
            lambda: [r for r in events(log) if r["event"] == "start" and r["token"] == 2], 60, "the peer's re-run"
        )
        assert rerun[0]["token"] > started[0]["token"]
        wait_for(lambda: tasks_by_id(tmp_path)["K1"]["status"] == "awaiting_test", 60, "the re-run to finish")
        record = tasks_by_id(tmp_path)["K1"]
        assert record["attempts"] == 0 and record["last_run"]["token"] == 2
    finally:
        stop_all([first, second])
    assert not [r for r in events(log) if r["event"] == "overlap"]


def test_stopped_daemon_lease_goes_stale_and_the_task_runs_once_more(tmp_path: Path) -> None:
    """SIGSTOP a daemon: after lease_ttl its lease is stale; its group and the daemon are killed, and once the lease's
    lock is free a peer re-runs the task once."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep-token", "1:60")}},
        defaults={"interval": 0.5, "lease_ttl": 2, "heartbeat": 0.5},
    )
    write_queue(tmp_path, [task("S1")], {"builder": 1})
    hung = start(tmp_path, "builder", "--instance", "hung")
    peer = None
    try:
        first = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the first run")[0]
        hung.send_signal(signal.SIGSTOP)
        peer = start(tmp_path, "builder", "--instance", "peer")
        wait_for(lambda: tasks_by_id(tmp_path)["S1"]["status"] == "awaiting_test", 30, "the peer to finish the task")
        assert not alive(first["pid"]), "the hung daemon's task should have been killed"
        assert hung.wait(10) == -signal.SIGKILL, "the hung daemon itself should have been killed"
        runs = [r for r in events(log) if r["event"] == "start"]
        assert [r["token"] for r in runs] == [1, 2]
        assert not [r for r in events(log) if r["event"] == "overlap"]
        final = tasks_by_id(tmp_path)["S1"]
        assert final["status"] == "awaiting_test" and final["last_run"]["token"] == 2
    finally:
        stop_all([p for p in (hung, peer) if p is not None])


def _said(root: Path, text: str) -> bool:
    return any(text in path.read_text(errors="replace") for path in root.glob("daemon-*.err"))


def test_a_holder_that_comes_back_before_the_confirming_look_is_not_killed(tmp_path: Path) -> None:
    """A holder looks hung for an instant as it comes back (on PostgreSQL it takes its lease's lock again just before
    it beats; resumed after SIGSTOP it beats at once): a peer that saw it so killed a healthy daemon. Now the peer
    only suspects it, says so, and kills it only if a look 5 s later still finds the same stale beat: SIGCONT the
    stopped holder as soon as the peer suspects it, and the peer lets it be, saying so, and it lives on."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep-token", "1:60")}},
        defaults={"interval": 0.5, "lease_ttl": 2, "heartbeat": 0.5},
    )
    write_queue(tmp_path, [task("S1")], {"builder": 1})
    holder = start(tmp_path, "builder", "--instance", "holder")
    peer = None
    try:
        wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 60, "the first run")
        holder.send_signal(signal.SIGSTOP)
        peer = start(tmp_path, "builder", "--instance", "peer")
        wait_for(lambda: _said(tmp_path, "S1: its holder looks hung"), 60, "the peer to suspect the stopped holder")
        holder.send_signal(signal.SIGCONT)
        wait_for(lambda: _said(tmp_path, "S1: its holder no longer looks hung"), 60, "the peer to let it be")
        assert holder.poll() is None, "the holder came back before the confirming look: it must not be killed"
        assert not _said(tmp_path, "its holder is hung")
    finally:
        stop_all([p for p in (holder, peer) if p is not None])


def test_a_daemon_hung_between_claim_and_start_is_killed_not_raced(tmp_path: Path) -> None:
    """The torture found it: a daemon that hangs after writing its claim but before starting the task holds a lease
    with no task group yet. A peer that judged the lease stale used to remove it and run the task, and the hung
    daemon, on waking, started it too. Now the peer kills the hung daemon and takes the task once the kernel has
    released the lease's lock: whatever happens to the hung daemon, the task never runs twice at once."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", "0.5")}},
        defaults={"interval": 0.5, "lease_ttl": 1, "heartbeat": 0.3},
    )
    write_queue(tmp_path, [task("S1")], {"builder": 1})
    hung = start(tmp_path, "builder", "--instance", "hung", env={"AGENTD_CRASH_AT": "claim.after-queue-write:stop"})
    peer = None
    try:
        wait_for(lambda: tasks_by_id(tmp_path)["S1"]["status"] == "in_progress", 30, "the claim")
        wait_for(lambda: Path(f"/proc/{hung.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", 60, "a hang")
        peer = start(tmp_path, "builder", "--instance", "peer")
        wait_for(lambda: tasks_by_id(tmp_path)["S1"]["status"] == "awaiting_test", 30, "the peer to run the task")
        assert hung.wait(10) == -signal.SIGKILL  # killed by the peer, not left to wake up and start the task
        runs = [r for r in events(log) if r["event"] == "start"]
        assert len(runs) == 1 and runs[0]["token"] == 2
        assert not [r for r in events(log) if r["event"] == "overlap"]
    finally:
        stop_all([p for p in (hung, peer) if p is not None])


def test_sigterm_drains_within_grace_and_requeues_unspent(tmp_path: Path) -> None:
    """SIGTERM with a long task: exit 0 within grace + 5 s, task back to ready, attempts unchanged, no lease."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", "60")}},
        defaults={"grace": 1, "kill_after": 1},
    )
    write_queue(tmp_path, [task("L1", attempts=1)], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        run = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the task to start")[0]
        daemon.send_signal(signal.SIGTERM)
        # The command sleeps 60 s: an exit well before that means the grace ran out and the command was stopped.
        assert daemon.wait(timeout=40) == 0
        assert not alive(run["pid"])
    finally:
        stop_all([daemon])
    final = tasks_by_id(tmp_path)["L1"]
    assert final["status"] == "ready" and final["attempts"] == 1 and final["lease"] is None
    assert final["status_note"] == "interrupted by shutdown"
    assert list((tmp_path / ".leases").glob("*.json")) == []


def _state(pid: int) -> str:
    """The state letter of *pid* in /proc ("gone" once it was reaped)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "gone"
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def test_sigterm_as_soon_as_the_daemon_is_seen_running_stops_it_cleanly(tmp_path: Path) -> None:
    """A stop sent the moment `agentd status` first sees the daemon run (its PID file just written, its loop not yet
    begun: crash point daemon.after-register, as a SIGSTOP there) is honoured: exit 0, nothing claimed, the PID file
    removed. Before, the daemon took its signals only in its loop's set-up, and SIGTERM's default action killed it
    (-15; seen under load from a service unit's test)."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [task("S1")], {"builder": 1})
    daemon = start(tmp_path, "builder", env={"AGENTD_CRASH_AT": "daemon.after-register:stop"})
    try:
        wait_for(lambda: _state(daemon.pid) == "T", 60, "the daemon to stop at daemon.after-register")
        assert run_agentd("status", "builder", cwd=tmp_path).returncode == 0  # seen running
        daemon.send_signal(signal.SIGTERM)
        daemon.send_signal(signal.SIGCONT)
        assert daemon.wait(timeout=60) == 0
    finally:
        stop_all([daemon])
    assert tasks_by_id(tmp_path)["S1"]["status"] == "ready"
    assert not log.exists()
    assert run_agentd("status", "builder", cwd=tmp_path).returncode != 0  # its PID file went with it


def test_a_daemon_killed_right_after_registering_leaves_nothing_that_stops_the_next(tmp_path: Path) -> None:
    """SIGKILL at daemon.after-register leaves its PID file: the next daemon replaces it (stale) and runs the task."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [task("K1")], {"builder": 1})
    crashed = run_agentd(
        "--role", "builder", "--drain", cwd=tmp_path, env={"AGENTD_CRASH_AT": "daemon.after-register:kill"}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert tasks_by_id(tmp_path)["K1"]["status"] == "ready" and not log.exists()
    again = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert tasks_by_id(tmp_path)["K1"]["status"] == "awaiting_test"
    assert len([r for r in events(log) if r["event"] == "start"]) == 1


def test_result_file_and_outcome_codes_route_to_needs_adapt(tmp_path: Path) -> None:
    """A tester's exit code listed in outcomes, or a result file, sends the task to needs_adapt."""
    log = tmp_path / "runs.jsonl"
    tester = {
        "claims": "awaiting_test",
        "working": "testing",
        "on_success": "ready_for_integrator",
        "outcomes": {"3": "needs_adapt"},
    }
    result = '{"status": "needs_adapt", "note": "2 tests fail", "fields": {"test_result": "2 failed"}}'
    write_config(tmp_path, {"tester": {**tester, "command": recorder(log, "--exit", "3")}})
    write_queue(
        tmp_path,
        [
            task("E1", "awaiting_test"),
            task("R1", "awaiting_test", command=recorder(log, "--exit", "1", "--result", result)),
        ],
        {"tester": 2},
    )
    done = run_agentd("--role", "tester", "--once", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    final = tasks_by_id(tmp_path)
    assert final["E1"]["status"] == "needs_adapt" and final["E1"]["last_run"]["outcome"] == "exit-code"
    assert final["R1"]["status"] == "needs_adapt" and final["R1"]["test_result"] == "2 failed"
    assert final["R1"]["status_note"] == "2 tests fail" and final["R1"]["last_run"]["outcome"] == "result"


def test_retries_back_off_then_end_in_on_failure(tmp_path: Path) -> None:
    """A failing command is retried after a growing backoff, then lands in on_failure with a blocked_reason."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--exit", "1")}},
        defaults={"max_attempts": 3, "backoff": {"initial": 0.3, "factor": 2, "max": 10}},
    )
    write_queue(tmp_path, [task("F1")], {"builder": 1})
    done = run_agentd("--role", "builder", "--drain", cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    starts = [r["t"] for r in events(log) if r["event"] == "start"]
    assert len(starts) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps
    final = tasks_by_id(tmp_path)["F1"]
    assert final["status"] == "blocked" and final["attempts"] == 3
    assert final["blocked_reason"] == "failed 3 attempts (exit code 1)"
    assert "retry-scheduled" in (tmp_path / ".agentd" / "events.jsonl").read_text()


def test_pickup_latency_with_a_long_interval(tmp_path: Path) -> None:
    """With --interval 3600, a task added to the queue starts without waiting for the poll (file events wake the
    daemon; how fast is measured by `make bench`, not asserted here)."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [], {"builder": 1})
    daemon = start(tmp_path, "builder", "--interval", "3600")
    try:
        wait_for(
            lambda: "daemon started" in "".join(p.read_text() for p in tmp_path.glob("daemon-*.err")),
            30,
            "the daemon to start",
        )
        script = "from agentd.cli import main; main(['queue', 'add', 'P1', '--title', 'quick'])"
        added = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=False, capture_output=True)
        assert added.returncode == 0, added.stderr
        wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 60, "the task to start before the poll")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)


def test_daemon_survives_a_broken_queue_and_resumes(tmp_path: Path) -> None:
    """A queue broken by hand is reported once; the daemon keeps running and resumes when it is fixed."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}}, defaults={"interval": 0.2})
    queue = write_queue(tmp_path, [], {"builder": 1})
    good = queue.read_text()
    daemon = start(tmp_path, "builder")
    try:
        wait_for(
            lambda: (
                list(tmp_path.glob("daemon-*.err")) and "started" in next(tmp_path.glob("daemon-*.err")).read_text()
            ),
            30,
            "start",
        )
        queue.write_text('{"tasks": {"X": {"id": "X", "status": "ready"}}}')  # the file's own problem
        broken = queue.read_bytes()
        said = "$.tasks: {'X': {'id': 'X', 'status': 'ready'}} is not of type 'array'"
        err_file = next(tmp_path.glob("daemon-*.err"))
        # (polled: the message comes from jsonschema, imported by the first invalid document, which takes a while
        # on a loaded machine)
        wait_for(lambda: said in err_file.read_text(), 60, "the broken queue to be reported")
        time.sleep(1.5)  # several more passes at 0.2 s: the report is not repeated
        assert daemon.poll() is None
        assert queue.read_bytes() == broken
        assert err_file.read_text().count(said) == 1
        queue.write_text(good.replace('"tasks": []', '"tasks": [{"id": "X", "status": "ready"}]'))
        wait_for(lambda: [r for r in events(log) if r["event"] == "end"], 60, "the task to run after the fix")
        assert "valid again" in next(tmp_path.glob("daemon-*.err")).read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)


def _immutable(folder: Path, on: bool) -> None:
    """``chattr +i`` / ``-i`` on a folder: nothing can be created or renamed in it, by root either (whom permission
    bits do not stop); the test skips, saying why, where the file system or the user cannot do that."""
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr (Debian's e2fsprogs) to make a folder unwritable for root")
    done = subprocess.run(["chattr", "+i" if on else "-i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        assert on, done.stderr  # (taking it off again must work)
        pytest.skip(f"this file system or user cannot make a folder immutable: {done.stderr.strip()}")


def test_a_pass_that_failed_on_the_system_is_tried_again_without_an_event(tmp_path: Path) -> None:
    """A pass that fails on the system (here the folder made immutable: EPERM for the queue's lock file or its
    temporary file) is reported once and tried again within seconds once the folder is writable again, although the
    interval is 120 s and nothing announces the change (no file event): the daemon's own retry, backing off, finds
    it."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"interval": 120})
    queue = write_queue(tmp_path, [], {"builder": 1})
    daemon = start(tmp_path, "builder")
    err_file = next(tmp_path.glob("daemon-builder-*.err"))
    try:
        wait_for(lambda: "started" in err_file.read_text(), 30, "start")
        _immutable(tmp_path, True)
        try:
            # (written in place: an immutable folder still lets its files be rewritten, and the close wakes the daemon)
            queue.write_text(queue.read_text().replace('"tasks": []', '"tasks": [{"id": "R1", "status": "ready"}]'))
            wait_for(lambda: "Operation not permitted" in err_file.read_text(), 30, "the failure to be reported")
        finally:
            _immutable(tmp_path, False)
        final = wait_for(
            lambda: (t := tasks_by_id(tmp_path)["R1"])["status"] == "awaiting_test" and t, 30, "R1 to run after all"
        )
        assert final["lease"] is None and final["last_run"]["outcome"] == "success", final
        assert err_file.read_text().count("cannot use the queue") == 1, err_file.read_text()
        assert "valid again" in err_file.read_text()
    finally:
        stop_all([daemon])


def test_a_watch_the_kernel_refused_at_start_is_set_up_once_it_can_be(tmp_path: Path) -> None:
    """A daemon started while inotify's instance limit is reached (a user namespace whose max_inotify_instances is 1,
    that one instance held by another process) says once that it polls; once the holder has let go, a later look sets
    the watch up after all (the daemon then holds an inotify descriptor) and says so, once. Before, such a daemon
    polled for the rest of its life."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"interval": 1})
    write_queue(tmp_path, [], {"builder": 1})
    release, pid_file, err_path = tmp_path / "release", tmp_path / "daemon.pid", tmp_path / "daemon.err"
    driver = f"""
import os, subprocess, sys, time
open("/proc/sys/user/max_inotify_instances", "w").write("1")
from agentd.store.file.inotify import Inotify
held = Inotify()
with open({str(err_path)!r}, "wb") as err:
    daemon = subprocess.Popen([sys.executable, "-m", "agentd", "--root", {str(tmp_path)!r}, "--role", "builder"],
                              stderr=err, stdout=subprocess.DEVNULL)
open({str(pid_file)!r}, "w").write(str(daemon.pid))
while not os.path.exists({str(release)!r}):
    time.sleep(0.05)
held.close()
sys.exit(daemon.wait())
"""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"needs a user namespace (unshare --user) to lower inotify's limit: {probe.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if k != "AGENTD_ROOT"}
    outer = subprocess.Popen(["unshare", "--user", "--map-root-user", sys.executable, "-c", driver], env=env)
    try:
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the daemon's start"))
        wait_for(lambda: "file events unavailable" in err_path.read_text(), 30, "the watch to be refused")
        assert not _inotify_fds(pid)
        release.touch()
        wait_for(lambda: _inotify_fds(pid), 30, "the watch to be set up after all")
        wait_for(lambda: "file events available again" in err_path.read_text(), 30, "the daemon to say so")
        os.kill(pid, signal.SIGTERM)
        assert outer.wait(timeout=30) == 0, err_path.read_text()
        text = err_path.read_text()
        assert text.count("file events unavailable") == 1 and text.count("available again") == 1, text
    finally:
        if outer.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            outer.kill()
            outer.wait(timeout=30)


def _inotify_fds(pid: int) -> list[str]:
    """The inotify descriptors process ``pid`` holds."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                found.append(fd)
    return found


def test_missing_command_is_a_config_error(tmp_path: Path) -> None:
    """Starting a daemon for a role without a command fails at once with exit 4 and says what to set."""
    write_queue(tmp_path, [])
    result = run_agentd("--role", "builder", "--once", cwd=tmp_path)
    assert result.returncode == 4 and "role 'builder' has no command" in result.stderr


def test_leases_list_and_prune_recover_a_dead_worker(tmp_path: Path) -> None:
    """A task left in_progress with a lease nobody holds is listed as stale and put back by prune."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    write_queue(
        tmp_path,
        [task("D1", "in_progress", agent="builder", lease={"owner": "old", "acquired": "2025-10-03T22:28:13+02:00"})],
    )
    (tmp_path / ".leases").mkdir()
    (tmp_path / ".leases" / "GONE.json").write_text(
        '{"task_id": "GONE", "token": 2, "role": "builder", "host": "h", "pid": 1, "acquired": "2025-01-01T00:00:00Z",'
        ' "ttl": 60}'
    )
    listing = run_agentd("leases", "list", cwd=tmp_path)
    assert "GONE" in listing.stdout and "STALE: lock released" in listing.stdout
    dry = run_agentd("leases", "prune", "--dry-run", cwd=tmp_path)
    assert "would clear D1: in 'in_progress' with no lease file" in dry.stdout
    assert tasks_by_id(tmp_path)["D1"]["status"] == "in_progress"
    pruned = run_agentd("leases", "prune", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    final = tasks_by_id(tmp_path)["D1"]
    assert final["status"] == "ready" and final["attempts"] == 1 and final["lease"] is None
    assert "recovered" in final["status_note"]
    assert not (tmp_path / ".leases" / "GONE.json").exists()
    assert list((tmp_path / ".leases").glob("*.json")) == []


def test_prune_kills_a_hung_holder_and_clears_its_lease_once_the_lock_is_free(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", "60")}},
        defaults={"interval": 60, "lease_ttl": 1, "heartbeat": 0.3},
    )
    write_queue(tmp_path, [task("S1")], {"builder": 1})
    hung = start(tmp_path, "builder")
    try:
        first = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the run")[0]
        hung.send_signal(signal.SIGSTOP)
        wait_for(lambda: "STALE: no heartbeat" in run_agentd("leases", "list", cwd=tmp_path).stdout, 60, "staleness")
        pruned = run_agentd("leases", "prune", cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        assert "cleared S1: lock released" in pruned.stdout
        assert hung.wait(10) == -signal.SIGKILL and not alive(first["pid"])
        final = tasks_by_id(tmp_path)["S1"]
        assert final["status"] == "ready" and final["lease"] is None
        assert list((tmp_path / ".leases").glob("*.json")) == []
    finally:
        stop_all([hung])


def test_a_reverted_queue_never_gets_a_reused_token(tmp_path: Path) -> None:
    """git-checkout the queue back to before a run: the next claim still gets a larger token."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    queue = write_queue(tmp_path, [task("V1")], {"builder": 1})
    original = queue.read_bytes()
    assert run_agentd("--role", "builder", "--once", cwd=tmp_path).returncode == 0
    queue.write_bytes(original)
    assert run_agentd("--role", "builder", "--once", cwd=tmp_path).returncode == 0
    assert [r["token"] for r in events(log) if r["event"] == "start"] == [1, 2]


def test_once_runs_a_single_pass(tmp_path: Path) -> None:
    """--once claims what there is room for in one pass and runs only that, even when room opens again."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}})
    write_queue(tmp_path, [task("O1"), task("O2"), task("O3")], {"builder": 1})
    assert run_agentd("--role", "builder", "--once", cwd=tmp_path).returncode == 0
    assert [r["task"] for r in events(log) if r["event"] == "start"] == ["O1"]
    assert [t["status"] for t in tasks_by_id(tmp_path).values()] == ["awaiting_test", "ready", "ready"]


def test_a_signal_in_the_middle_of_a_wake_up_never_hangs_the_daemon(tmp_path: Path) -> None:
    """A signal handler runs in the main thread between any two of its bytecodes, so a SIGHUP or SIGTERM may come
    while the loop clears or sets its wake-up. The handler wakes the loop too: with a threading.Event there it waited
    for the Event's lock, held by the code it had interrupted, for ever (a daemon hung on SIGHUP, then on SIGTERM).
    2,000 real SIGHUPs while the main thread does nothing but clear and set the wake-up: it carries on."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    write_queue(tmp_path, [], {"builder": 1})
    setup = (
        "from agentd import config as config_mod\n"
        "from agentd.run.daemon import Daemon\n"
        "daemon = Daemon(config_mod.load(root=sys.argv[1], environ={}), 'builder', watch=False)\n"
        "daemon.take_signals()\n"
    )
    assert_survives_sighup_storm(setup, "daemon._wake", tmp_path)


def test_sighup_rereads_the_config(tmp_path: Path) -> None:
    """SIGHUP makes a running daemon use the new agentd.toml; a broken one is reported and the old one kept."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(first)}})
    write_queue(tmp_path, [task("H1")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: [r for r in events(first) if r["event"] == "end"], 30, "the first task")
        write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(second)}})
        daemon.send_signal(signal.SIGHUP)
        err = next(tmp_path.glob("daemon-*.err"))
        wait_for(lambda: "configuration re-read" in err.read_text(), 60, "the reload")
        run_agentd("queue", "add", "H2", "--title", "after the reload", cwd=tmp_path)
        wait_for(lambda: [r for r in events(second) if r["event"] == "end"], 60, "the task under the new command")
        (tmp_path / "agentd.toml").write_text("[defaults]\nintervall = 1\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the old configuration" in err.read_text(), 60, "the refused reload")
        # (the CLI would refuse the broken agentd.toml too: add the task through the store itself)
        QueueStore(tmp_path / "SPRINT_QUEUE.json").transaction(lambda doc: doc["tasks"].append(task("H3")))
        wait_for(lambda: len([r for r in events(second) if r["event"] == "end"]) == 2, 60, "the daemon to carry on")
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)


def test_drain_exits_0_when_a_retried_task_succeeds(tmp_path: Path) -> None:
    """A task that fails once and then succeeds within the same --drain counts as succeeded (exit 0)."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--exit-token", "1:1")}},
        defaults={"backoff": {"initial": 0.1}},
    )
    write_queue(tmp_path, [task("R1")], {"builder": 1})
    done = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["exit"] for r in events(log) if r["event"] == "end"] == [1, 0]


def test_a_task_log_is_capped_at_max_task_log(tmp_path: Path) -> None:
    """A command that prints 2 MB leaves a log of about max_task_log bytes: its head and tail, and a cut line."""
    script = "import sys; [sys.stdout.write(f'out {n:07d}\\n') for n in range(200_000)]"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": [sys.executable, "-c", script]}},
        log={"max_task_log": 20_000},
    )
    write_queue(tmp_path, [task("L1")], {"builder": 1})
    done = run_agentd("--role", "builder", "--once", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (log,) = (tmp_path / ".agentd" / "logs" / "tasks" / "L1").glob("*.log")
    text = log.read_text()
    assert len(text.encode()) <= 20_000 + 300
    assert "out 0000000" in text and "out 0199999" in text
    assert "bytes cut here" in text
    assert text.splitlines()[-1].startswith("agentd: ") and "exited returncode=0" in text
