"""The tests' hosts are real: namespaces with their own hostnames and addresses reach one PostgreSQL server, and a
partition cuts one of them off while the other carries on."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import hosts, pg

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")

ASK = """
import socket, sys, psycopg
try:
    with psycopg.connect(sys.argv[1], connect_timeout=3) as conn:
        addr = conn.execute("SELECT host(inet_client_addr())").fetchone()[0]
    print(socket.gethostname(), addr)
except psycopg.OperationalError:
    print(socket.gethostname(), "unreachable")
"""


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[hosts.Network, pg.Server]]:
    """Two namespaces (alpha, beta) and a server listening on their bridge."""
    missing = hosts.unavailable() or pg.unavailable()
    if missing:
        pytest.skip(f"no test hosts: {missing}")
    with hosts.network(["alpha", "beta"]) as net:
        server = pg.start_server(tmp_path / "pg", listen=net.gateway, trust=(net.cidr,))
        server.host = net.gateway
        try:
            yield net, server
        finally:
            server.stop("immediate")


def ask(host: hosts.Host, dsn: str) -> list[str]:
    done = host.run([sys.executable, "-c", ASK, dsn])
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_hosts_have_their_own_names_and_addresses_and_a_partition_cuts_one_off(
    two_hosts: tuple[hosts.Network, pg.Server],
) -> None:
    """Each host connects under its own hostname from its own address; with alpha's link down alpha cannot reach
    the server while beta can; healed, alpha reaches it again."""
    net, server = two_hosts
    alpha, beta = net.hosts
    dsn = server.dsn()
    assert ask(alpha, dsn) == ["alpha", alpha.address]
    assert ask(beta, dsn) == ["beta", beta.address]
    net.partition(alpha)
    assert ask(alpha, dsn) == ["alpha", "unreachable"]
    assert ask(beta, dsn) == ["beta", beta.address]
    net.heal(alpha)
    assert ask(alpha, dsn) == ["alpha", alpha.address]
