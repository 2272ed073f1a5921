"""The torture test's short profiles, run by `make test` (the full one is `make torture`).

`make test` runs them at about half their size (tasks and signals alike, so the tasks still outlast the signals);
`make test-full` (AGENTD_TEST_FULL=1, tests/helpers/examples.py) at the profiles' own size.
"""

from __future__ import annotations

import pytest

from tests.helpers.examples import examples
from tests.torture.run import PROFILES, main

pytestmark = pytest.mark.slow


def sized(profile: str, **quick: int) -> list[str]:
    """``--profile NAME`` and, unless AGENTD_TEST_FULL, the ``quick`` counts that replace the profile's own."""
    full = PROFILES[profile].__dict__
    argv = ["--profile", profile]
    for name, count in quick.items():
        argv += [f"--{name}", str(examples(full[name], count))]
    return argv


def test_quick_torture_profile_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    """5 daemons (one under a low `ulimit -n`, two in UTS namespaces, one 2 h ahead), 120 tasks (some leave escaped
    grandchildren), 20 SIGKILL/SIGSTOP/SIGTERMs at random, a hand editor and a reader: zero violations."""
    code = main(sized("quick", tasks=120, kills=15, stops=3, terms=2))
    out = capsys.readouterr().out
    print(out)
    assert "violations = 0" in out, out
    assert code == 0


def test_worktree_torture_profile_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    """Worktree mode under the same chaos (4 daemons, 24 tasks, SIGKILL/SIGSTOP/SIGTERM): every done task's branch is
    merged into main, the root checkout stays clean, no worktree of a done task is left, zero violations."""
    code = main(sized("worktree", tasks=24, kills=5, stops=2, terms=1))
    out = capsys.readouterr().out
    print(out)
    assert "violations = 0" in out and "merge commits in main" in out, out
    assert code == 0


def test_make_test_full_runs_the_profiles_at_their_own_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AGENTD_TEST_FULL the quick counts replace the profile's; with it, the profile's own counts are passed."""
    monkeypatch.delenv("AGENTD_TEST_FULL", raising=False)
    assert sized("quick", tasks=120, terms=2) == ["--profile", "quick", "--tasks", "120", "--terms", "2"]
    monkeypatch.setenv("AGENTD_TEST_FULL", "1")
    assert sized("quick", tasks=120, terms=2) == ["--profile", "quick", "--tasks", "250", "--terms", "4"]
