"""`agentd status` on a store shared by hosts: every host's daemons, judged by their beats on the database's clock."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_agentd
from tests.helpers import hosts, pg
from tests.helpers.daemons import wait_for

ROLES = (
    "roles_replace_defaults = true\n[defaults]\nheartbeat = 0.5\nlease_ttl = 3\n"
    '[roles.builder]\nclaims = "ready"\nworking = "in_progress"\non_success = "done"\ncommand = ["true"]\n'
)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[hosts.Network, str]]:
    """Two hosts (alpha, beta) and a fresh database on a server listening on their bridge; its DSN."""
    missing = hosts.unavailable() or pg.unavailable()
    if missing:
        pytest.skip(f"no test hosts: {missing}")
    with hosts.network(["alpha", "beta"]) as net:
        server = pg.start_server(tmp_path / "pg", listen=net.gateway, trust=(net.cidr,))
        server.host = net.gateway
        try:
            yield net, pg.fresh_database(server)
        finally:
            server.stop("immediate")


def status(root: Path, dsn: str) -> dict[str, Any]:
    done = run_agentd("status", "--json", cwd=root, env={"AGENTD_STORE": dsn})
    assert done.returncode in (0, 3), done.stderr
    return {f"{r['role']}.{r['instance']}": r for r in json.loads(done.stdout)["roles"]}


def test_status_lists_every_hosts_daemons_and_judges_them_by_the_databases_clock(
    tmp_path: Path, shared: tuple[hosts.Network, str]
) -> None:
    """A builder on alpha (its wall clock 2 h behind) and one on beta: status from a third place lists both with
    their hosts, both responding; alpha's SIGSTOPped daemon is then not responding (its beats stopped on the
    database's clock) while beta's is, and is responding again once resumed."""
    net, dsn = shared
    alpha, beta = net.hosts
    root = tmp_path / "project"
    root.mkdir()
    (root / "agentd.toml").write_text(ROLES)
    for args in (("store", "init"), ("init",)):
        done = run_agentd(*args, cwd=root, env={"AGENTD_STORE": dsn})
        assert done.returncode == 0, done.stderr
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for host, skew in ((alpha, "-7200"), (beta, "0")):
            argv = [sys.executable, "-m", "agentd", "--root", str(root), "run", "--role", "builder"]
            env = {"AGENTD_STORE": dsn, "AGENTD_FAULT_CLOCK_SKEW": skew, "PATH": "/usr/bin:/bin"}
            procs.append(host.popen([*argv, "--instance", host.name], env=env, stderr=subprocess.DEVNULL))

        def both(alpha_ok: bool) -> dict[str, Any] | None:
            seen = status(root, dsn)
            a, b = seen.get("builder.alpha"), seen.get("builder.beta")
            if not (a and b and a["running"] and b["running"] and b["not_responding_s"] is None):
                return None
            return seen if (a["not_responding_s"] is None) == alpha_ok else None

        seen = wait_for(lambda: both(True), 60, "both daemons registered and beating")
        assert seen["builder.alpha"]["host"] == "alpha" and seen["builder.beta"]["host"] == "beta"
        assert seen["builder.alpha"]["pid"] == procs[0].pid and seen["builder.beta"]["pid"] == procs[1].pid
        table = run_agentd("status", cwd=root, env={"AGENTD_STORE": dsn}).stdout
        assert "HOST" in table and "LAST BEAT" in table and " alpha " in table and " beta " in table
        procs[0].send_signal(signal.SIGSTOP)
        wait_for(lambda: both(False), 60, "alpha's daemon to be judged not responding")
        procs[0].send_signal(signal.SIGCONT)
        wait_for(lambda: both(True), 60, "alpha's daemon to respond again")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
