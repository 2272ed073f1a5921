"""scripts/bench_pg.py: its proof that a recovered task's new run started only after its old run was dead, and its
section of docs/benchmarks.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def order_violations(monkeypatch: pytest.MonkeyPatch) -> object:
    """The script's pure history check (the script imports only light modules at its top)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.delitem(sys.modules, "bench_pg", raising=False)
    import bench_pg

    return bench_pg


def run(
    bench_pg: object, token: int, start: float, end: float | None, *, host: str = "alpha", free: bool = True
) -> object:
    return bench_pg.RunRecord("R1", token, host, start, free, end)  # type: ignore[attr-defined]


def test_a_new_run_after_the_old_one_ended_is_sound(order_violations: object) -> None:
    """Old run dead at 10.0, new run starting at 10.5 with the guard free: no violation."""
    runs = [run(order_violations, 1, 1.0, 10.0), run(order_violations, 2, 10.5, None, host="beta")]
    assert order_violations.order_violations(runs) == []  # type: ignore[attr-defined]


def test_a_new_run_before_the_old_one_ended_is_a_violation(order_violations: object) -> None:
    """The new run started 0.25 s before the old run's end: one violation naming both tokens and hosts."""
    runs = [run(order_violations, 2, 9.75, None, host="beta"), run(order_violations, 1, 1.0, 10.0)]
    found = order_violations.order_violations(runs)  # type: ignore[attr-defined]
    assert len(found) == 1
    assert "token 2 on beta after token 1 on alpha" in found[0]
    assert "0.250 s before" in found[0]


def test_an_old_run_with_no_recorded_end_or_a_held_guard_is_a_violation(order_violations: object) -> None:
    """No end recorded for the earlier run, and the later run found the guard lock held: two violations."""
    runs = [run(order_violations, 1, 1.0, None), run(order_violations, 2, 10.5, None, host="beta", free=False)]
    found = order_violations.order_violations(runs)  # type: ignore[attr-defined]
    assert any("no recorded end" in problem for problem in found)
    assert any("guard lock held" in problem for problem in found)
    assert len(found) == 2


def test_the_issue_13_section_is_replaced_in_place_and_kept_by_bench(order_violations: object, tmp_path: Path) -> None:
    """`bench_pg.py --update FILE` puts its page between markers (the second time replacing the first, the rest
    untouched), and bench.py's rewrite of the page keeps it."""
    bench_pg = order_violations
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nbefore\n", encoding="utf-8")
    bench_pg.update_section(page, "## Issue 13: PostgreSQL\n\nfirst\n")  # type: ignore[attr-defined]
    bench_pg.update_section(page, "## Issue 13: PostgreSQL\n\nsecond\n")  # type: ignore[attr-defined]
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nbefore\n")
    assert "second" in text
    assert "first" not in text
    assert text.count("## Issue 13: PostgreSQL") == 1
    kept = bench_pg.bench.kept_sections(page)  # type: ignore[attr-defined]
    assert "## Issue 13: PostgreSQL\n\nsecond" in kept
    assert "before" not in kept
