"""The suite's agentd processes start from bytecode compiled before the run, and its xdist workers import test modules
whose asserts pytest rewrote once, before they started (tests/conftest.py pytest_configure)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import COMPILED, PROJECT, rewrite_api_missing, rewritten


def test_every_module_has_bytecode_as_new_as_its_source() -> None:
    """Every .py under src/ and tests/ has a .pyc at least as new as itself, whatever PYTHONDONTWRITEBYTECODE says."""
    stale = []
    for folder in COMPILED:
        for source in sorted((PROJECT / folder).rglob("*.py")):
            cached = Path(importlib.util.cache_from_source(str(source)))
            if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
                stale.append(str(source.relative_to(PROJECT)))
    assert not stale, f"{len(stale)} modules without current bytecode: {stale[:10]}"


def test_every_test_module_has_its_rewritten_code_cached(pytestconfig: pytest.Config) -> None:
    """Every test module and conftest has pytest's rewritten code cached, current with its source, whatever
    PYTHONDONTWRITEBYTECODE says: the xdist workers read it instead of rewriting each module again."""
    missing = rewrite_api_missing()
    if missing:
        pytest.skip(f"this pytest has not {missing}: each xdist worker rewrites the test modules itself")
    from _pytest.assertion import rewrite

    modules = rewritten(pytestconfig)
    assert any(source.name == "test_bytecode.py" for source, _ in modules), "this module is not among them"
    stale = [str(path.relative_to(PROJECT)) for path, cached in modules if rewrite._read_pyc(path, cached) is None]
    assert not stale, f"{len(stale)} test modules without current rewritten code: {stale[:10]}"
