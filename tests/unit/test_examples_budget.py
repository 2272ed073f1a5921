"""The switch between a property test's quick and full example counts (tests/helpers/examples.py)."""

from __future__ import annotations

import pytest

from tests.helpers.examples import examples


@pytest.mark.parametrize(("value", "want"), [(None, 100), ("", 100), ("0", 100), ("1", 300), ("yes", 300)])
def test_agentd_test_full_picks_the_full_count(value: str | None, want: int) -> None:
    """AGENTD_TEST_FULL unset, empty or 0 gives the quick count; any other value the full one."""
    environ = {} if value is None else {"AGENTD_TEST_FULL": value}
    assert examples(300, 100, environ) == want
