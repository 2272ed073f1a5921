"""spare.common_prefix: how many bytes two versions share from their start, found without copies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.store.file import spare


def _slow(old: bytes, new: bytes) -> int:
    n = 0
    while n < min(len(old), len(new)) and old[n] == new[n]:
        n += 1
    return n


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1 << 18])
@settings(max_examples=150, deadline=None)
@given(
    base=st.binary(max_size=300),
    cut=st.integers(min_value=0, max_value=300),
    tail_a=st.binary(max_size=40),
    tail_b=st.binary(max_size=40),
)
def test_the_shared_start_is_found_whatever_the_block(
    block: int, base: bytes, cut: int, tail_a: bytes, tail_b: bytes
) -> None:
    """Two versions that share a start and then go their ways (or one is the other's start): the count is the
    byte-by-byte one, with the comparison's block as small as one byte or bigger than both."""
    old, new = base[:cut] + tail_a, base[:cut] + tail_b
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spare, "_BLOCK", block)
        assert spare.common_prefix(old, new) == _slow(old, new)
        assert spare.common_prefix(new, old) == _slow(old, new)


def test_a_big_queue_s_versions() -> None:
    """6 MB versions differing at the last byte, at a block's edge, at the first byte; equal; one a start of the
    other."""
    old = bytes(range(256)) * (6 << 12)
    for at in (len(old) - 1, 1 << 18, (1 << 18) - 1, (1 << 18) + 1, 0, 12345):
        new = old[:at] + bytes([old[at] ^ 1]) + old[at + 1 :]
        assert spare.common_prefix(old, new) == at
    assert spare.common_prefix(old, old) == len(old)
    assert spare.common_prefix(old, old[:1000]) == 1000
    assert spare.common_prefix(b"", old) == 0
