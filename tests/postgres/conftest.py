"""Fixtures of the PostgreSQL tests (the session-wide server and a fresh database per test: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import pg


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[pg.Server]:
    """A server of this test's own, for tests that restart or stop it (the session-wide one is shared)."""
    missing = pg.unavailable()
    if missing:
        pytest.skip(f"no PostgreSQL test server: {missing}")
    server = pg.start_server(tmp_path / "pg")
    try:
        yield server
    finally:
        server.stop("immediate")
