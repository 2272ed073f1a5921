"""How many examples a property test generates: a share in `make test`, every one with AGENTD_TEST_FULL=1.

`make test` runs each property test with its quick count, so the suite keeps to its time budget; `make test-full`
(AGENTD_TEST_FULL=1) runs the full count: run it after changing code that a property covers. Hypothesis draws new
examples on every run and replays the failures it saved in .hypothesis/, so quick runs still add up to many cases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def examples(full: int, quick: int, environ: Mapping[str, str] = os.environ) -> int:
    """``full`` under AGENTD_TEST_FULL=1 (any value but empty or 0), else ``quick``."""
    assert 0 < quick <= full
    return full if environ.get("AGENTD_TEST_FULL", "") not in ("", "0") else quick
