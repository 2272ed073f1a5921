"""Self-fencing on PostgreSQL: a daemon on a host cut off from the database (a network partition) cannot renew its
leases; its runs are fenced before a peer on another host judges the lease stale on the database's clock and re-runs
the task. Real hosts (network namespaces), a real server, real processes; when each run lived is read from the beats
its own processes wrote (tests/helpers/beater.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers import hosts, pg
from tests.helpers.daemons import alive, events, start, stop_all, wait_for, write_config

pytest.importorskip("agentd.store.postgres", reason="the PostgreSQL store is not in this tree")

BEATER = Path(__file__).resolve().parents[1] / "helpers" / "beater.py"
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}
OTHER_KERNEL = 'mount --bind "$1" /proc/sys/kernel/random/boot_id && shift && exec "$@"'


@pytest.fixture
def alpha_and_server() -> Iterator[tuple[hosts.Network, pg.Server]]:
    """One host (alpha) and a server listening on the bridge, reachable from alpha and from this namespace."""
    missing = hosts.unavailable() or pg.unavailable()
    if missing:
        pytest.skip(f"no test hosts: {missing}")
    base = Path(tempfile.mkdtemp(prefix="agentd-pg-fence-"))  # not under pytest's folder: a pytest starting meanwhile
    try:  # makes that 0700 again, and the server's user could not reach its data
        with hosts.network(["alpha"]) as net:
            server = pg.start_server(base, listen=net.gateway, trust=(net.cidr,))
            server.host = net.gateway
            try:
                yield net, server
            finally:
                server.stop("immediate")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def beats(log: Path, token: int) -> dict[str, int]:
    return {r["who"]: r["pid"] for r in events(log) if r["token"] == token}


def status(root: Path, task_id: str) -> str | None:
    listed = run_agentd("queue", "list", "--json", cwd=root)
    found = (
        [t["status"] for t in json.loads(listed.stdout or "[]") if t["id"] == task_id] if listed.returncode == 0 else []
    )
    return found[0] if found else None


@pytest.mark.slow
def test_a_partitioned_daemon_is_fenced_before_a_peer_takes_over(
    tmp_path: Path, alpha_and_server: tuple[hosts.Network, pg.Server]
) -> None:
    """Cut a daemon's host off from the database while its task runs: the run's whole tree (an escaped grandchild
    included) is gone before the peer's run of the task begins."""
    net, server = alpha_and_server
    (alpha,) = net.hosts
    project = tmp_path / "project"
    project.mkdir()
    log = project / "beats.jsonl"
    command = [sys.executable, str(BEATER), str(log), "--seconds-token", "1:120", "--seconds", "1"]
    write_config(
        project,
        {"builder": {**BUILDER, "command": command}},
        store=server.dsn(),
        defaults={"interval": 0.5, "lease_ttl": 3, "heartbeat": 0.5, "max_attempts": 20},
    )
    assert run_agentd("store", "init", cwd=project).returncode == 0
    made = run_agentd("init", cwd=project)
    assert made.returncode == 0, made.stderr
    added = run_agentd("queue", "add", "P1", "--title", "one task", cwd=project)
    assert added.returncode == 0, added.stderr
    fake = project / "alpha.boot_id"  # another kernel, as a real remote host is: peers cannot kill its processes
    fake.write_text("00000000-0000-4000-8000-0000000000a1\n")
    env = {key: value for key, value in os.environ.items() if key != "AGENTD_ROOT"}
    daemon = [sys.executable, "-m", "agentd", "--root", str(project), "--role", "builder", "--instance", "alpha"]
    with open(project / "alpha.err", "wb") as err:
        remote = alpha.popen(
            ["unshare", "--mount", "sh", "-c", OTHER_KERNEL, "sh", str(fake), *daemon],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=project,
        )
    peer = None
    try:
        old = wait_for(lambda: len(beats(log, 1)) == 2 and beats(log, 1), 60, "the first run and its grandchild")
        net.partition(alpha)
        peer = start(project, "builder", "--instance", "peer")
        wait_for(lambda: status(project, "P1") == "awaiting_test", 90, "the peer to run the task")
        seen = events(log)
        last_old = max(r["t"] for r in seen if r["token"] == 1)
        first_new = min(r["t"] for r in seen if r["token"] > 1)
        assert last_old < first_new, "the partitioned host's run beat after the peer's run began: it ran twice at once"
        assert not alive(old["command"]) and not alive(old["grandchild"])
        assert remote.poll() is None, "a daemon on another host is not the peer's to kill"
    finally:
        net.heal(alpha)
        remote.send_signal(signal.SIGKILL)
        stop_all([p for p in (remote, peer) if p is not None])
