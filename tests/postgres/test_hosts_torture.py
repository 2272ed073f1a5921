"""The multi-host torture profile's short run, by `make test` (the long one is `make torture-hosts`).

`make test` runs it at about half size (tasks and signals alike); `make test-full` (AGENTD_TEST_FULL=1) at its own.
"""

from __future__ import annotations

import pytest

from tests.helpers.examples import examples
from tests.torture import hosts_run

pytestmark = pytest.mark.slow


def test_quick_multi_host_torture_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    """Two hosts (network namespaces) of two daemons each on one PostgreSQL server, 60 tasks, SIGKILLs, SIGSTOPs,
    SIGTERMs, a partition past the lease ttl and a server restart: no overlap, none lost, WIP held, tokens grow."""
    missing = hosts_run.unavailable()
    if missing:
        pytest.skip(f"no test hosts or PostgreSQL: {missing}")
    full = hosts_run.PROFILES["quick"]
    sizes = {"tasks": (full.tasks, 60), "kills": (full.kills, 4), "stops": (full.stops, 2), "terms": (full.terms, 1)}
    argv = ["--profile", "quick"]
    for name, (own, quick) in sizes.items():
        argv += [f"--{name}", str(examples(own, quick))]
    code = hosts_run.main(argv)
    out = capsys.readouterr().out
    print(out)
    assert "violations = 0" in out, out
    assert "partitions ['" in out and "server restarts 1" in out, out
    assert code == 0
