"""Self-fencing: a run's supervisor kills its command's whole tree once its daemon has not renewed the lease for
``lease_ttl - fence_margin``, so that the run is gone before any peer may take the task over. Real processes, real
signals; when each run lived is read from the beats its own processes wrote (tests/helpers/beater.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd.core.clock import boottime
from agentd.hostinfo import boot_id
from agentd.run.runner import ExitInfo, LaunchSpec, TaskProcess, launch
from tests.conftest import run_agentd
from tests.helpers.daemons import alive, events, start, stop_all, task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

BEATER = Path(__file__).resolve().parents[1] / "helpers" / "beater.py"
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}


def beater(log: Path, *args: str) -> list[str]:
    return [sys.executable, str(BEATER), str(log), *args]


def launch_beater(tmp_path: Path, *args: str, **fence: Any) -> TaskProcess:
    return launch(
        LaunchSpec(
            argv=beater(tmp_path / "beats.jsonl", *args),
            cwd=tmp_path,
            env={"AGENTD_LEASE_TOKEN": "1"},
            log_path=tmp_path / "task.log",
            timeout=None,
            **fence,
        )
    )


def finish(proc: TaskProcess) -> ExitInfo:
    info = proc.wait(60)
    assert info is not None, "the supervisor did not report within 60 s"
    return info


def pids(log: Path, token: int | None = None) -> dict[str, int]:
    """The pid of each process ("command", "grandchild") that beat for ``token``."""
    return {r["who"]: r["pid"] for r in events(log) if token is None or r["token"] == token}


@pytest.fixture
def renewing() -> Iterator[threading.Event]:
    """Set to stop the renewal threads a test starts."""
    stop = threading.Event()
    yield stop
    stop.set()


def renew_every(proc: TaskProcess, seconds: float, stop: threading.Event, stamp: float | None = None) -> None:
    """Tell the supervisor "renewed" every ``seconds`` (with the boot clock now, or always ``stamp``) until stopped."""

    def loop() -> None:
        while not stop.wait(seconds) and proc.poll() is None:
            proc.renewed(boottime() if stamp is None else stamp)

    threading.Thread(target=loop, daemon=True).start()


# -- the supervisor alone --------------------------------------------------------------------------------------------


def test_without_renewals_the_supervisor_kills_the_whole_tree(tmp_path: Path, renewing: threading.Event) -> None:
    """Renewals stop: after fence_after the command and a grandchild that escaped into its own session are killed."""
    log = tmp_path / "beats.jsonl"
    proc = launch_beater(tmp_path, "--seconds", "120", fence_after=1.0)
    renew_every(proc, 0.1, renewing)  # until both processes run
    found = wait_for(lambda: len(pids(log)) == 2 and pids(log), 30, "both processes to beat")
    renewing.set()
    info = finish(proc)
    assert info.killed_by == "fence" and info.signal == signal.SIGKILL, info
    assert not alive(found["command"]) and not alive(found["grandchild"])
    assert "self-fencing" in (tmp_path / "task.log").read_text()


def test_renewals_keep_a_run_alive_past_its_fence(tmp_path: Path, renewing: threading.Event) -> None:
    """A run renewed every 0.2 s outlives three fence periods and ends by itself."""
    proc = launch_beater(tmp_path, "--seconds", "3", fence_after=1.0)
    renew_every(proc, 0.2, renewing)
    info = finish(proc)
    assert (info.returncode, info.killed_by) == (0, None), info
    assert [r for r in events(tmp_path / "beats.jsonl") if r.get("event") == "end"]


def test_a_renewal_reported_late_buys_no_time(tmp_path: Path, renewing: threading.Event) -> None:
    """A renewal stamped before the fence's start (a daemon stopped between renewing and telling) does not extend it."""
    before = boottime()
    proc = launch_beater(tmp_path, "--seconds", "120", fence_after=1.0, fence_from=before)
    renew_every(proc, 0.1, renewing, stamp=before)
    assert finish(proc).killed_by == "fence"


def test_a_run_past_its_fence_before_it_starts_never_starts(tmp_path: Path) -> None:
    """A supervisor whose deadline passed before the command started (its daemon hung meanwhile) never starts it."""
    proc = launch_beater(tmp_path, "--seconds", "120", fence_after=1.0, fence_from=boottime() - 5)
    info = finish(proc)
    assert info.killed_by == "fence" and info.returncode is None, info
    assert not (tmp_path / "beats.jsonl").exists()
    assert "not starting it" in (tmp_path / "task.log").read_text()


# -- daemons -----------------------------------------------------------------------------------------------------------


def journal(root: Path) -> list[dict[str, Any]]:
    return events(root / ".agentd" / "events.jsonl")


def as_another_host(root: Path, argv: list[str], name: str) -> subprocess.Popen[bytes]:
    """``argv`` as if on another host sharing the project's folder (a network file system): its own hostname and a
    boot id of its own, so peers judge its leases by their heartbeats alone, as they would a remote host's."""
    fake = root / f"{name}.boot_id"
    fake.write_text("00000000-0000-4000-8000-0000000000b0\n")
    setup = 'mount --bind "$1" /proc/sys/kernel/random/boot_id && hostname "$2" && shift 2 && exec "$@"'
    env = {key: value for key, value in os.environ.items() if key != "AGENTD_ROOT"}
    with open(root / f"{name}.err", "wb") as err:
        return subprocess.Popen(
            ["unshare", "--mount", "--uts", "sh", "-c", setup, "sh", str(fake), name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=root,
        )


def another_host_refused() -> str | None:
    """Why this test cannot fake another host here (None: it can)."""
    if boot_id() is None:
        return "no /proc/sys/kernel/random/boot_id"
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "sh", "-c", "mount --bind /proc/version /proc/sys/kernel/random/boot_id"],
        capture_output=True,
    )
    return None if probe.returncode == 0 else "unshare --mount --uts with a bind mount is not permitted here"


@pytest.mark.skipif(another_host_refused() is not None, reason=str(another_host_refused()))
def test_a_stopped_daemon_on_another_host_is_fenced_before_a_peer_takes_over(tmp_path: Path) -> None:
    """SIGSTOP a daemon on another host: its run's whole tree is gone before the peer's run begins (from the times the
    processes wrote), and after SIGCONT it records no completion for the fenced run."""
    log = tmp_path / "beats.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": beater(log, "--seconds-token", "1:120", "--seconds", "1")}},
        defaults={"interval": 0.5, "lease_ttl": 3, "heartbeat": 0.5, "max_attempts": 20},
    )
    write_queue(tmp_path, [task("F1")], {"builder": 1})
    argv = [sys.executable, "-m", "agentd", "--root", str(tmp_path), "--role", "builder", "--instance", "remote"]
    remote = as_another_host(tmp_path, argv, "host-b")
    peer = None
    try:
        old = wait_for(lambda: len(pids(log, 1)) == 2 and pids(log, 1), 30, "the first run and its grandchild")
        remote.send_signal(signal.SIGSTOP)
        peer = start(tmp_path, "builder", "--instance", "peer")
        wait_for(lambda: tasks_by_id(tmp_path)["F1"]["status"] == "awaiting_test", 60, "the peer to run the task")
        beats = events(log)
        last_old = max(r["t"] for r in beats if r["token"] == 1)
        first_new = min(r["t"] for r in beats if r["token"] > 1)
        assert last_old < first_new, "the old run beat after the peer's run began: it ran twice at once"
        assert not alive(old["command"]) and not alive(old["grandchild"])
        assert remote.poll() is None, "a daemon on another host is not the peer's to kill"

        remote.send_signal(signal.SIGCONT)
        wait_for(lambda: [e for e in journal(tmp_path) if e["event"] == "fenced"], 30, "the fenced run to be reported")
        wait_for(lambda: [e for e in journal(tmp_path) if e["event"] == "refused"], 30, "its completion refused")
        fenced = [e for e in journal(tmp_path) if e["event"] == "fenced"]
        assert [(e["task"], e["token"]) for e in fenced][:1] == [("F1", 1)]  # (a later run, too, on a stalled machine)
        assert not [e for e in journal(tmp_path) if e["event"] == "finished" and e["token"] == 1]
        final = tasks_by_id(tmp_path)["F1"]
        assert final["status"] == "awaiting_test" and final["last_run"]["token"] >= 2
        assert final["last_run"]["outcome"] == "success"
    finally:
        stop_all([p for p in (remote, peer) if p is not None])


@pytest.mark.skipif(another_host_refused() is not None, reason=str(another_host_refused()))
def test_a_daemon_on_another_host_stopped_between_claim_and_start_never_starts_the_task(tmp_path: Path) -> None:
    """A daemon on another host stopped after writing its claim, resumed once a peer took the task over: its
    supervisor's deadline counts from before the claim, so the command is never started a second time."""
    log = tmp_path / "beats.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": beater(log, "--seconds", "3")}},
        defaults={"interval": 0.5, "lease_ttl": 3, "heartbeat": 0.5, "max_attempts": 20},
    )
    write_queue(tmp_path, [task("F4")], {"builder": 1})
    argv = [sys.executable, "-m", "agentd", "--root", str(tmp_path), "--role", "builder", "--instance", "remote"]
    os.environ["AGENTD_CRASH_AT"] = "claim.after-queue-write:stop"
    try:
        remote = as_another_host(tmp_path, argv, "host-c")
    finally:
        del os.environ["AGENTD_CRASH_AT"]
    peer = None
    try:
        wait_for(lambda: Path(f"/proc/{remote.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", 30, "hang")
        peer = start(tmp_path, "builder", "--instance", "peer")
        wait_for(lambda: pids(log, 2), 60, "the peer's run to start")
        remote.send_signal(signal.SIGCONT)
        old = tmp_path / ".agentd" / "logs" / "tasks" / "F4" / "1.log"  # the old claim's supervisor writes here

        def said() -> str:
            text = old.read_text() if old.exists() else ""
            return text if "exec " in text or "not starting it" in text else ""

        text = wait_for(said, 30, "the old claim's supervisor to start the command or refuse to")
        assert "exec " not in text, "the stopped daemon started the task after the peer took it over"
        wait_for(lambda: [e for e in journal(tmp_path) if e["event"] == "fenced" and e["token"] == 1], 30, "fenced")
        wait_for(lambda: tasks_by_id(tmp_path)["F4"]["status"] == "awaiting_test", 60, "the peer to finish the task")
        assert not pids(log, 1)
    finally:
        stop_all([p for p in (remote, peer) if p is not None])


def test_a_run_fenced_while_its_daemon_was_stopped_counts_as_one_interrupted_attempt(tmp_path: Path) -> None:
    """SIGSTOP a daemon alone until its run is fenced, then SIGCONT: the run is recorded as fenced (never a success),
    one attempt is counted, and the task runs again."""
    log = tmp_path / "beats.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": beater(log, "--seconds-token", "1:120", "--seconds", "0.5")}},
        defaults={"interval": 0.5, "lease_ttl": 3, "heartbeat": 0.5, "max_attempts": 20},
    )
    write_queue(tmp_path, [task("F2")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        old = wait_for(lambda: len(pids(log, 1)) == 2 and pids(log, 1), 30, "the first run and its grandchild")
        daemon.send_signal(signal.SIGSTOP)
        wait_for(lambda: not alive(old["command"]) and not alive(old["grandchild"]), 30, "the fence")
        daemon.send_signal(signal.SIGCONT)
        success = lambda: [e for e in journal(tmp_path) if e["event"] == "finished" and e["outcome"] == "success"]  # noqa: E731
        wait_for(success, 60, "the task to run again")  # (the journal is written after the queue)
        finished = [(e["token"], e["outcome"]) for e in journal(tmp_path) if e["event"] == "finished"]
        # Every run but the last was fenced (a loaded machine may stall the heartbeat thread past a later run's fence
        # too), each counted once as an attempt; no fenced run is ever recorded as a success.
        assert finished[0] == (1, "fenced") and finished[-1][1] == "success", finished
        assert all(outcome == "fenced" for _, outcome in finished[:-1]), finished
        fenced = [e["token"] for e in journal(tmp_path) if e["event"] == "fenced"]
        assert fenced == [token for token, _ in finished[:-1]]
        beats = events(log)
        assert max(r["t"] for r in beats if r["token"] == 1) < min(r["t"] for r in beats if r["token"] > 1)
        final = tasks_by_id(tmp_path)["F2"]
        assert final["last_run"]["attempt"] == len(finished) == final["last_run"]["token"]
        history = run_agentd("queue", "history", "F2", cwd=tmp_path)
        assert history.returncode == 0, history.stderr
        runs = "1 fenced run" if len(fenced) == 1 else f"{len(fenced)} fenced runs"
        assert runs in history.stdout and "outcomes fenced, " in history.stdout, history.stdout
    finally:
        stop_all([daemon])


def test_a_daemon_whose_heartbeats_flow_is_never_fenced(tmp_path: Path) -> None:
    """A run of three lease ttls under a live daemon completes: every renewal reaches its supervisor."""
    log = tmp_path / "beats.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": beater(log, "--seconds", "9")}},
        defaults={"interval": 0.5, "lease_ttl": 3, "heartbeat": 0.3},
    )
    write_queue(tmp_path, [task("F3")], {"builder": 1})
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: tasks_by_id(tmp_path)["F3"]["status"] != "ready", 30, "the claim")
        wait_for(lambda: tasks_by_id(tmp_path)["F3"]["status"] != "in_progress", 90, "the run to end")
        final = tasks_by_id(tmp_path)["F3"]
        assert final["status"] == "awaiting_test" and final["last_run"]["outcome"] == "success", final
        assert not [e for e in journal(tmp_path) if e["event"] == "fenced"]
    finally:
        stop_all([daemon])
