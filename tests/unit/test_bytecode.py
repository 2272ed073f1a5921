"""The suite's agentd processes start from bytecode compiled before the run (tests/conftest.py pytest_configure)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import COMPILED, PROJECT


def test_every_module_has_bytecode_as_new_as_its_source() -> None:
    """Every .py under src/ and tests/ has a .pyc at least as new as itself, whatever PYTHONDONTWRITEBYTECODE says."""
    stale = []
    for folder in COMPILED:
        for source in sorted((PROJECT / folder).rglob("*.py")):
            cached = Path(importlib.util.cache_from_source(str(source)))
            if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
                stale.append(str(source.relative_to(PROJECT)))
    assert not stale, f"{len(stale)} modules without current bytecode: {stale[:10]}"
