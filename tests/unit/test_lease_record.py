"""A lease record's bytes: the same as json.dumps of its fields gives, whatever its fields hold."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from agentd.store.base import LeaseRecord

_text = st.text(max_size=20)
_maybe_int = st.none() | st.integers(min_value=0, max_value=2**62)


@given(
    task_id=_text,
    token=st.integers(min_value=1, max_value=2**62),
    ttl=st.floats(min_value=0.1, max_value=1e6),
    instance=st.none() | _text,
    pgid=_maybe_int,
    beat=st.none() | st.floats(),  # NaN and the infinities too: written as json writes them
)
def test_dumps_matches_asdict(
    task_id: str, token: int, ttl: float, instance: str | None, pgid: int | None, beat: float | None
) -> None:
    """dumps() writes every field in declaration order, as json.dumps(record.asdict(), indent=2) would."""
    record = LeaseRecord(
        task_id,
        token,
        "builder",
        "host",
        42,
        "2026-12-03T00:00:00Z",
        ttl,
        instance=instance,
        pgid=pgid,
        heartbeat_boot=beat,
    )
    assert record.dumps() == (json.dumps(record.asdict(), indent=2) + "\n").encode("utf-8")
