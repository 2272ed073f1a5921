"""The torture test's short profile, run by `make test` (the full one is `make torture`)."""

from __future__ import annotations

import pytest

from tests.torture.run import main

pytestmark = pytest.mark.slow


def test_quick_torture_profile_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    """5 daemons (one under a low `ulimit -n`), 250 tasks (some leave escaped grandchildren), 40 SIGKILL/SIGSTOP/
    SIGTERMs at random, a hand editor and a reader: zero violations."""
    code = main(["--profile", "quick"])
    out = capsys.readouterr().out
    print(out)
    assert "violations = 0" in out, out
    assert code == 0


def test_worktree_torture_profile_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    """Worktree mode under the same chaos (4 daemons, 40 tasks, SIGKILL/SIGSTOP/SIGTERM): every done task's branch is
    merged into main, the root checkout stays clean, no worktree of a done task is left, zero violations."""
    code = main(["--profile", "worktree"])
    out = capsys.readouterr().out
    print(out)
    assert "violations = 0" in out and "merge commits in main" in out, out
    assert code == 0
