"""Where the suite's longest tests run under pytest-xdist's worksteal split (tests/conftest.py arrange)."""

from __future__ import annotations

import pytest

from tests.conftest import LONGEST_FIRST, arrange


def _slices(order: list[str], workers: int) -> list[list[str]]:
    """worksteal's first split: worker k gets the k-th of ``workers`` consecutive slices."""
    out, left, at = [], len(order), 0
    for k in range(workers):
        size = left // (workers - k)
        out.append(order[at : at + size])
        at, left = at + size, left - size
    return out


@pytest.mark.parametrize("workers", [2, 3, 4, 6])
def test_the_quick_torture_starts_first_and_the_other_long_ones_early_on_other_workers(workers: int) -> None:
    """The quick torture heads the first slice; every other long test sits in another slice, within its first
    half; every test is there once and the others keep their order."""
    ids = [f"tests/x/test_{n:04d}.py::test_it" for n in range(1000)]
    for n, prefix in enumerate(reversed(LONGEST_FIRST)):  # at the end of the collection, as tests/torture is
        ids.insert(len(ids) - 10 * n, f"{prefix}_finds_it")
    order = [ids[i] for i in arrange(ids, workers)]
    assert sorted(order) == sorted(ids)
    slices = _slices(order, workers)
    assert slices[0][0].startswith(LONGEST_FIRST[0])
    for prefix in LONGEST_FIRST[1:]:
        k, where = next((k, s.index(t)) for k, s in enumerate(slices) for t in s if t.startswith(prefix))
        assert k > 0 and where < len(slices[k]) // 2, (prefix, k, where)
    plain = [t for t in order if not t.startswith(LONGEST_FIRST)]
    assert plain == [t for t in ids if not t.startswith(LONGEST_FIRST)]


def test_one_process_runs_the_longest_first_in_their_order() -> None:
    """Without workers, the long tests come first in LONGEST_FIRST's order."""
    ids = ["a::t", *(f"{prefix}_x" for prefix in reversed(LONGEST_FIRST)), "b::t"]
    order = [ids[i] for i in arrange(ids, 1)]
    assert order == [*(f"{prefix}_x" for prefix in LONGEST_FIRST), "a::t", "b::t"]
