"""A task's whole process tree ends with the task (cancel, escaped grandchildren, a SIGKILLed daemon), and agentd's own
failures to start a command are not charged to the task: real daemons, real processes, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import (
    alive,
    events,
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


def journal(root: Path) -> list[dict[str, object]]:
    """The daemons' event journal."""
    path = root / ".agentd" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["cancel", "set-status"])
def test_cancel_stops_the_running_command_and_the_status_stands(tmp_path: Path, how: str) -> None:
    """`queue cancel` (or `set-status done`) on a running task stops its command, records the run, keeps the status
    and releases the lease."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", "120")}},
        defaults={"interval": 60, "grace": 5, "kill_after": 1},
    )
    write_queue(tmp_path, [task("C1")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        run = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the run to start")[0]
        if how == "cancel":
            done = run_agentd("queue", "cancel", "C1", "--note", "superseded", cwd=tmp_path)
            status, note = "cancelled", "superseded"
        else:
            done = run_agentd("queue", "set-status", "C1", "done", "--note", "done by hand", cwd=tmp_path)
            status, note = "done", "done by hand"
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not alive(run["pid"]), 60, "the cancelled command to be stopped")
        final = wait_for(
            lambda: (t := tasks_by_id(tmp_path)["C1"]).get("last_run") and t, 60, "the stopped run to be recorded"
        )
        assert final["status"] == status and final["status_note"] == note
        assert final["lease"] is None and final.get("attempts", 0) == 0
        assert final["last_run"]["outcome"] == "stopped" and final["last_run"]["next_status"] == status
        wait_for(lambda: not list((tmp_path / ".leases").glob("*.json")), 60, "the lease to be released")
        # (a pass appends its lines together once its work is done: the journal may trail the lease's release)
        kinds = wait_for(
            lambda: (k := [e["event"] for e in journal(tmp_path) if e.get("task") == "C1"]) and "released" in k and k,
            60,
            "the run's end journaled",
        )
        assert kinds.index("stopping") < kinds.index("finished") < kinds.index("released")
        assert daemon.poll() is None, "the daemon carries on"
    finally:
        stop_all([daemon])
    assert not [r for r in events(log) if r["event"] == "end"], "the command was stopped, not run to its end"


def test_tools_name_and_prune_kills_the_real_holder_of_a_lease(tmp_path: Path) -> None:
    """Daemon and supervisor SIGKILLed at once: `leases list` and `doctor` name the escaped process still holding the
    lease's lock (not the dead daemon), and `leases prune` kills it and requeues the task."""
    bg = tmp_path / "bg.pid"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": ["sh", "-c", f"setsid sleep 120 & echo $! > '{bg}'; sleep 120"]}},
        defaults={"interval": 60, "lease_ttl": 1, "heartbeat": 0.3},
    )
    write_queue(tmp_path, [task("H1")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    escaped = None
    try:
        escaped = int(wait_for(lambda: bg.exists() and bg.read_text().strip(), 30, "the escaped process"))
        lease = tmp_path / ".leases" / "H1.json"
        shim = wait_for(lambda: json.loads(lease.read_text()).get("pgid"), 60, "the lease to name its supervisor")
        os.kill(shim, signal.SIGSTOP)  # so that it cannot see its daemon die (as when the OOM killer takes both)
        daemon.kill()
        daemon.wait(10)
        os.kill(shim, signal.SIGKILL)
        wait_for(lambda: not alive(shim), 60, "the supervisor to die")
        assert alive(escaped)
        listing = run_agentd("leases", "list", "--json", cwd=tmp_path)
        held_by = {h["pid"]: h["name"] for h in json.loads(listing.stdout)[0]["held_by"]}
        assert held_by.get(escaped) == "sleep" and daemon.pid not in held_by
        text = run_agentd("leases", "list", cwd=tmp_path).stdout
        assert f"{escaped} sleep" in text
        wait_for(lambda: "STALE" in run_agentd("leases", "list", cwd=tmp_path).stdout, 60, "the lease to go stale")
        doctor = run_agentd("doctor", cwd=tmp_path)
        assert f"pid {escaped} (sleep)" in doctor.stdout, doctor.stdout
        pruned = run_agentd("leases", "prune", cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        assert "cleared H1" in pruned.stdout, pruned.stdout
        assert wait_for(lambda: not alive(escaped), 60, "the escaped holder to be killed")
        final = tasks_by_id(tmp_path)["H1"]
        assert final["status"] == "ready" and final["lease"] is None
    finally:
        stop_all([daemon])
        if escaped is not None and alive(escaped):
            os.kill(escaped, signal.SIGKILL)


def test_a_sigkilled_daemon_takes_the_escaped_grandchild_down_and_a_peer_reclaims(tmp_path: Path) -> None:
    """SIGKILL a daemon whose command left a setsid grandchild: the grandchild dies with it, the lease's lock is freed,
    and a peer re-runs the task at once (not after the grandchild's own end)."""
    bg = tmp_path / "bg.pid"
    log = tmp_path / "runs.jsonl"
    command = f'if [ "$AGENTD_LEASE_TOKEN" = 1 ]; then setsid sleep 120 & echo $! > "{bg}"; sleep 120; fi'
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": ["sh", "-c", command + f"; echo $AGENTD_LEASE_TOKEN >> '{log}'"]}},
        defaults={"interval": 60},
    )
    write_queue(tmp_path, [task("G1")], {"builder": 1})
    first = start(tmp_path, "builder", "--instance", "one")
    second = None
    try:
        escaped = int(wait_for(lambda: bg.exists() and bg.read_text().strip(), 30, "the escaped process"))
        second = start(tmp_path, "builder", "--instance", "two")
        first.kill()
        first.wait(10)
        wait_for(lambda: not alive(escaped), 60, "the escaped grandchild to die with its daemon")
        wait_for(lambda: tasks_by_id(tmp_path)["G1"]["status"] == "awaiting_test", 30, "the peer to re-run the task")
        assert log.read_text().split() == ["2"]
    finally:
        stop_all([p for p in (first, second) if p is not None])


def start_limited(root: Path, role: str, nofile: int, *extra: str) -> subprocess.Popen[bytes]:
    """A real daemon under `ulimit -n NOFILE` (its stderr to a file in ``root``)."""
    err = open(root / f"daemon-{role}-limited.err", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if k != "AGENTD_ROOT"}
    argv = [sys.executable, "-m", "agentd", "--root", str(root), "--role", role, *extra]
    return subprocess.Popen(
        ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *argv],
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=env,
        cwd=root,
    )


def test_descriptor_exhaustion_is_not_charged_to_tasks(tmp_path: Path) -> None:
    """Under `ulimit -n 32` with WIP 10, every one of 40 tasks runs once and succeeds: agentd's own failure to start
    a command spends no attempt, the daemon claims no more than it can start, and it says so once."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log, "--sleep", "0.2")}})
    write_queue(tmp_path, [task(f"F{i:02d}") for i in range(40)], {"builder": 10})
    daemon = start_limited(tmp_path, "builder", 32, "--drain")
    try:
        assert daemon.wait(timeout=240) == 0, (tmp_path / "daemon-builder-limited.err").read_text()[-2000:]
    finally:
        stop_all([daemon])
    final = tasks_by_id(tmp_path)
    assert {t["status"] for t in final.values()} == {"awaiting_test"}, {
        i: (t["status"], t.get("status_note")) for i, t in final.items() if t["status"] != "awaiting_test"
    }
    assert all(not t.get("attempts") for t in final.values())
    for t in final.values():
        assert (tmp_path / t["last_run"]["log"]).exists(), t["last_run"]
    starts = sorted(r["task"] for r in events(log) if r["event"] == "start")
    assert starts == sorted(final)
    capped = [e for e in journal(tmp_path) if e["event"] == "start-capped"]
    assert len(capped) <= 2, capped  # said once (and once more when it recovers), not on every pass


def test_a_daemon_that_cannot_start_commands_spends_no_attempt_and_says_so_once(tmp_path: Path) -> None:
    """Under `ulimit -n 12` the supervisor cannot be started at all: the task is tried again and again, never spends
    an attempt or gets a last_run, and the daemon journals the failure once."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}}, defaults={"max_attempts": 2})
    write_queue(tmp_path, [task("N1")], {"builder": 1})
    daemon = start_limited(tmp_path, "builder", 12)
    try:
        wait_for(
            lambda: len([e for e in journal(tmp_path) if e["event"] == "claimed"]) >= 3, 30, "three tries to start N1"
        )
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
    finally:
        stop_all([daemon])
    final = tasks_by_id(tmp_path)["N1"]
    assert final["status"] == "ready" and not final.get("attempts") and "last_run" not in final, final
    assert "not started: agentd could not start it" in final["status_note"]
    failed = [e for e in journal(tmp_path) if e["event"] == "start-failed"]
    assert len(failed) == 1 and "Too many open files" in str(failed[0]["error"]), failed
    assert not [e for e in journal(tmp_path) if e["event"] == "retry-scheduled"]


def test_a_cancelled_command_that_ignores_term_is_killed_at_grace(tmp_path: Path) -> None:
    """A cancelled command that ignores SIGTERM is SIGKILLed once the role's grace is over, even when kill_after is
    longer: the run is recorded as stopped by SIGKILL long before kill_after."""
    ready = tmp_path / "ready"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": ["sh", "-c", f"trap '' TERM; touch '{ready}'; sleep 120"]}},
        defaults={"interval": 60, "grace": 1, "kill_after": 300},
    )
    write_queue(tmp_path, [task("K1")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        wait_for(ready.exists, 30, "the command to trap SIGTERM")
        done = run_agentd("queue", "cancel", "K1", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        # kill_after is 300 s: a record within a minute means the daemon's own SIGKILL at grace did it.
        final = wait_for(lambda: (t := tasks_by_id(tmp_path)["K1"]).get("last_run") and t, 60, "the run's record")
        assert final["status"] == "cancelled" and final["lease"] is None
        assert (final["last_run"]["outcome"], final["last_run"]["signal"]) == ("stopped", signal.SIGKILL)
    finally:
        stop_all([daemon])


def test_prune_kills_a_hung_holders_escaped_process_that_closed_its_descriptors(tmp_path: Path) -> None:
    """A hung daemon's task left a setsid process that closed every descriptor (as a daemonising dev server does):
    it holds no lock, yet `leases prune`, killing the hung holder, kills it too (the supervisor's tree)."""
    bg = tmp_path / "bg.pid"
    escape = "import os, time; os.closerange(3, 65536); time.sleep(120)"
    command = f'setsid {sys.executable} -c "{escape}" & echo $! > "{bg}"; sleep 120'
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": ["sh", "-c", command]}},
        defaults={"interval": 60, "lease_ttl": 1, "heartbeat": 0.3},
    )
    write_queue(tmp_path, [task("E1")], {"builder": 1})
    hung = start(tmp_path, "builder")
    escaped = None
    try:
        escaped = int(wait_for(lambda: bg.exists() and bg.read_text().strip(), 30, "the escaped process"))
        wait_for(lambda: os.getsid(escaped) == escaped, 60, "it to leave the task's session")
        hung.send_signal(signal.SIGSTOP)
        wait_for(lambda: "STALE: no heartbeat" in run_agentd("leases", "list", cwd=tmp_path).stdout, 60, "staleness")
        pruned = run_agentd("leases", "prune", cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        assert hung.wait(10) == -signal.SIGKILL
        wait_for(lambda: not alive(escaped), 60, "the escaped process to be killed with the hung holder")
        wait_for(lambda: tasks_by_id(tmp_path)["E1"]["status"] == "ready", 60, "the task to be requeued")
    finally:
        stop_all([hung])
        if escaped is not None and alive(escaped):
            os.kill(escaped, signal.SIGKILL)


def test_a_run_s_escaped_process_ends_before_its_crash_is_recorded_when_its_supervisor_is_killed(
    tmp_path: Path,
) -> None:
    """A live daemon's run leaves a process in a session of its own; the run's whole process group (its supervisor
    too: ``kill -9 -PGID``) is then SIGKILLed. By the time the daemon records the run's end (a crash), the escaped
    process, found by the lease's lock it inherited, is gone: the task is never claimed again beside it."""
    escaped_file, command_file = tmp_path / "escaped.pid", tmp_path / "command.pid"
    script = f"setsid sleep 600 & echo $! > '{escaped_file}'; echo $$ > '{command_file}'; exec sleep 600"
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["sh", "-c", script]}})
    write_queue(tmp_path, [task("E1")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: escaped_file.exists() and command_file.exists(), 60, "the command and its escaped process")
        escaped = int(escaped_file.read_text())
        wait_for(lambda: os.getsid(escaped) == escaped, 30, "the process to leave the run's session")
        os.killpg(os.getpgid(int(command_file.read_text())), signal.SIGKILL)
        wait_for(
            lambda: (tasks_by_id(tmp_path)["E1"].get("last_run") or {}).get("outcome") == "crash",
            60,
            "the run's end to be recorded",
        )
        state = Path(f"/proc/{escaped}/stat")
        gone = not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        assert gone, "the escaped process outlived its run's recorded end"
    finally:
        stop_all([daemon])
        if escaped_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(escaped_file.read_text()), signal.SIGKILL)
