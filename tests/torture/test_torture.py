"""The torture test's short profile, run by `make test` (the full one is `make torture`)."""

from __future__ import annotations

import pytest

from tests.torture.run import main

pytestmark = pytest.mark.slow


def test_quick_torture_profile_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    """5 daemons (one under a low `ulimit -n`), 450 tasks (some leave escaped grandchildren), 40 SIGKILL/SIGSTOP/
    SIGTERMs at random, a hand editor and a reader: zero violations."""
    code = main(["--profile", "quick"])
    out = capsys.readouterr().out
    print(out)
    assert "violations = 0" in out, out
    assert code == 0
