"""Shared test helpers: real temporary projects, the agentd CLI as a real process, the shared fixtures."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# A suite started as a background job of a script (`make test &`) inherits SIGINT ignored, as POSIX shells without job
# control do, and so would every process it starts: an agentd follower sent Ctrl-C by a test would never stop. The
# tests that interrupt a process need the default, which exec passes on to the processes the tests start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Timing is not what these properties test: on a loaded CI machine a generated case may take seconds. No deadline,
# and no health check that fails a test for being slow to generate data.
settings.register_profile("agentd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("agentd")

# The longest tests, placed so that they start early instead of alone at the end of the run. `make test` runs
# pytest-xdist `--dist worksteal`: worker k first gets the k-th of as many consecutive slices of the collection as
# there are workers, and an idle worker steals from the end of a busy one's. The quick torture profile begins the
# first slice; the others start a third of the way into the other slices, once it is over (beside it, they would
# load the machine it judges heartbeats on). Without workers, all of them go first, in this order.
LONGEST_FIRST = (
    "tests/torture/test_torture.py::test_quick_torture_profile",
    "tests/postgres/test_hosts_torture.py::test_quick_multi_host_torture",
    "tests/torture/test_torture.py::test_worktree_torture_profile",
    "tests/postgres/test_outage.py::test_daemons_ride_out_a_server_restart",
    "tests/corpus/test_special_files.py::test_a_50_mb_queue",
    "tests/postgres/test_outage.py::test_daemons_ride_out_an_outage",
)


def arrange(ids: list[str], workers: int) -> list[int]:
    """The order (indices into ``ids``) that places the LONGEST_FIRST tests as its comment says; the others keep
    theirs."""

    def rank(index: int) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if ids[index].startswith(prefix)), len(LONGEST_FIRST))

    longest = sorted((i for i in range(len(ids)) if rank(i) < len(LONGEST_FIRST)), key=rank)
    others = iter([i for i in range(len(ids)) if rank(i) == len(LONGEST_FIRST)])
    if workers < 2 or not longest:
        return [*longest, *others]
    heads: list[list[int]] = [[longest[0]]] + [[] for _ in range(workers - 1)]
    for n, index in enumerate(longest[1:]):
        heads[1 + n % (workers - 1)].append(index)
    ordered: list[int] = []
    left = len(ids)
    for k in range(workers):  # the slices of worksteal's first split
        size = left // (workers - k)
        left -= size
        body = list(itertools.islice(others, max(0, size - len(heads[k]))))
        at = len(body) // 3 if k else 0
        ordered += [*body[:at], *heads[k], *body[at:]]
    return [*ordered, *others]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Place the LONGEST_FIRST tests as its comment says (on an xdist worker: for its number of workers)."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    items[:] = [items[i] for i in arrange([item.nodeid for item in items], workers)]


PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
OODATCAA = SHARED / "fixtures" / "oodatcaa"
FIXTURE_NAMES = ("SPRINT_QUEUE.78605cf.json", "SPRINT_QUEUE.cf0ac9d.json", "SPRINT_QUEUE.32dcdc7.json")
COMPILED = ("src", "tests")


def pytest_configure(config: pytest.Config) -> None:
    """Compile src/ and tests/ to bytecode once, before any xdist worker starts.

    The suite starts thousands of agentd processes. Where nothing writes bytecode (PYTHONDONTWRITEBYTECODE=1, a
    read-only cache) each of them compiled every agentd module it imports, again: about 40% of its CPU. compileall
    writes the .pyc files whatever that setting says, and skips those already up to date."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    import compileall

    for folder in COMPILED:
        compileall.compile_dir(PROJECT / folder, quiet=2)
    rewrite_test_modules(config)


def rewritten(config: pytest.Config) -> list[tuple[Path, Path]]:
    """The modules pytest rewrites the asserts of (test_*.py and conftest.py under tests/), each with the file
    pytest caches its rewritten code in."""
    from _pytest.assertion import rewrite

    return [
        (source, rewrite.get_cache_dir(source) / (source.name[:-3] + rewrite.PYC_TAIL))
        for source in sorted((PROJECT / "tests").rglob("*.py"))
        if source.name.startswith("test_") or source.name == "conftest.py"
    ]


def rewrite_test_modules(config: pytest.Config) -> None:
    """Rewrite the asserts of every test module once and cache the result where pytest looks for it.

    pytest caches the modules it rewrote, unless nothing may write bytecode (PYTHONDONTWRITEBYTECODE=1): then every
    xdist worker rewrote all of them, about 5 s of CPU each. It reads its cache whatever that setting says. This uses
    pytest's own functions (tests/unit/test_bytecode.py fails if they change)."""
    if config.getoption("assertmode") != "rewrite" or rewrite_api_missing():
        return  # (a pytest without these functions: each worker rewrites the modules itself, as pytest does)
    from _pytest.assertion import rewrite

    state = config.stash[rewrite.assertstate_key]
    for source, cached in rewritten(config):
        if rewrite._read_pyc(source, cached) is not None:
            continue
        source_hash, code = rewrite._rewrite_test(source, config)
        cached.parent.mkdir(exist_ok=True)
        rewrite._write_pyc(state, code, source_hash, cached)


def rewrite_api_missing() -> str | None:
    """What of pytest's private assert-rewriting functions this pytest lacks (None: all there)."""
    try:
        from _pytest.assertion import rewrite
    except ImportError:
        return "_pytest.assertion.rewrite"
    wanted = ("assertstate_key", "get_cache_dir", "PYC_TAIL", "_read_pyc", "_rewrite_test", "_write_pyc")
    missing = [name for name in wanted if not hasattr(rewrite, name)]
    return ", ".join(f"_pytest.assertion.rewrite.{name}" for name in missing) or None


def sha(path: Path) -> str:
    """Hex digest of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_agentd(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the agentd CLI as a real process."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("AGENTD_ROOT", None) if "AGENTD_ROOT" not in (env or {}) else None
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


@pytest.fixture
def oodatcaa() -> Path:
    """The folder of real OODATCAA queues (read-only; never copied into the project)."""
    if not OODATCAA.is_dir():
        pytest.skip(f"real queues not found at {OODATCAA}: ../shared/fixtures/oodatcaa sits beside the project in CI")
    return OODATCAA


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """Make a project folder with a queue (a dict) and an optional agentd.toml text."""

    def make(queue: dict[str, Any] | None = None, config: str | None = None, *, indent: int = 2) -> Path:
        root = tmp_path / "proj"
        root.mkdir(exist_ok=True)
        if config is not None:
            (root / "agentd.toml").write_text(config, encoding="utf-8")
        if queue is not None:
            (root / "SPRINT_QUEUE.json").write_text(json.dumps(queue, indent=indent) + "\n", encoding="utf-8")
        return root

    return make


def small_queue() -> dict[str, Any]:
    """A five-role sprint in miniature."""
    return {
        "sprint": 1,
        "wip_limits": {"planner": 1, "builder": 2, "tester": 1, "refiner": 1, "integrator": 1},
        "tasks": [
            {
                "id": "S1",
                "title": "Story",
                "type": "Story",
                "status": "needs_plan",
                "priority": 1,
                "agent": None,
                "lease": None,
                "dependencies": [],
            },
            {
                "id": "B1",
                "title": "Build one",
                "type": "Build",
                "status": "ready",
                "priority": 2,
                "agent": None,
                "lease": None,
                "dependencies": [],
            },
            {
                "id": "B2",
                "title": "Build two",
                "type": "Build",
                "status": "ready",
                "priority": 1,
                "agent": None,
                "lease": None,
                "dependencies": ["B1"],
            },
            {
                "id": "T1",
                "title": "Test",
                "type": "Test",
                "status": "blocked",
                "priority": 3,
                "agent": None,
                "lease": None,
                "dependencies": ["B1", "B2"],
            },
        ],
        "metadata": {"note": "caf\u00e9"},
    }


@pytest.fixture(scope="session")
def pg_server() -> Any:
    """A real PostgreSQL server for this test process (Debian's binaries; see tests/helpers/pg.py), or a skip
    naming what is missing."""
    from tests.helpers import pg

    missing = pg.unavailable()
    if missing:
        pytest.skip(f"no PostgreSQL test server: {missing}")
    with pg.running_server() as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: Any) -> str:
    """A new, empty database of its own on the test server; its DSN."""
    from tests.helpers import pg

    return pg.fresh_database(pg_server)
