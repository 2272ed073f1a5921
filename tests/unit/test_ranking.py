"""A pass's ranking of the claimable tasks (agentd.run.dispatch._Ranking): judged only as far as asked for."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from agentd.run.dispatch import _Ranking


def _source(items: list[int], pulled: list[int]) -> Iterator[int]:
    for item in items:
        pulled.append(item)
        yield item


@given(st.lists(st.integers(), max_size=30), st.lists(st.sampled_from(["first", "iter", "all"]), max_size=6), st.data())
def test_every_way_of_asking_gives_the_same_order_and_pulls_no_further_than_asked(
    items: list[int], asks: list[str], data: st.DataObject
) -> None:
    """first(n), a partial iteration and all() see one sequence, the source's, and pull from it only as far as the
    furthest ask so far (a pass measuring one past its room, then claiming, judges no task beyond those)."""
    pulled: list[int] = []
    ranking = _Ranking(_source(items, pulled))
    furthest = 0
    for ask in asks:
        if ask == "first":
            count = data.draw(st.integers(0, len(items) + 2))
            assert ranking.first(count) == items[:count]
            furthest = max(furthest, min(count, len(items)))
        elif ask == "iter":
            count = data.draw(st.integers(0, len(items) + 2))
            seen = list(itertools.islice(ranking, count))
            assert seen == items[:count]
            furthest = max(furthest, min(count, len(items)))
        else:
            assert ranking.all() == items
            furthest = len(items)
        assert pulled == items[:furthest]
    assert list(ranking) == items
    assert ranking.done
