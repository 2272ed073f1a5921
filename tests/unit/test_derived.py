"""What a read derives per task (agentd.store.file.derived) is, after any sequence of reads, what a fresh derive
gives, and costs the pieces that changed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.store.file.derived import PerPiece, differing
from agentd.store.file.incremental import Piece
from tests.helpers.examples import examples


def parts(position: int, piece: Piece, start: int) -> list[tuple[int, int, Any, int]]:
    """0 to 2 items per piece (a task with subtasks has more), naming its place and where its items start."""
    return [(position, start + k, piece.value, k) for k in range(piece.value % 3)]


class Looked(dict[str, Any]):
    """A piece's cache that counts the looks into it."""

    looks = 0

    def get(self, key: str, default: Any = None) -> Any:
        Looked.looks += 1
        return super().get(key, default)


def piece(value: int) -> Piece:
    return Piece(str(value), value, Looked())


@st.composite
def next_read(draw: st.DrawFn, pieces: list[Piece]) -> list[Piece]:
    """The pieces of the next read: some replaced at their place, some removed, some added anywhere."""
    out = list(pieces)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "replace", "insert", "remove"]))
        at = draw(st.integers(0, len(out)))
        if action == "insert":
            out.insert(at, piece(draw(st.integers(0, 9))))
        elif out and at < len(out):
            if action == "replace":
                out[at] = piece(draw(st.integers(0, 9)))
            else:
                del out[at]
    return out


@settings(max_examples=examples(300, 100), deadline=None)
@given(
    data=st.data(),
    first=st.lists(st.integers(0, 9), max_size=30),
    by_start=st.booleans(),
    per_piece=st.booleans(),
    sparse=st.booleans(),
)
def test_derived_parts_after_any_reads_are_a_fresh_derive(
    data: st.DataObject, first: list[int], by_start: bool, per_piece: bool, sparse: bool
) -> None:
    """After any sequence of reads (some skipped, as a cache asked only now and then is), the items and counts are
    those of a fresh derive, whether each piece keeps its part or not, or only a part with items."""
    kept = PerPiece("parts", parts, by_start=by_start, kept=per_piece, sparse=sparse)
    pieces = [piece(value) for value in first]
    for _ in range(5):
        if data.draw(st.booleans()):
            items, counts = kept.derive(pieces)
            fresh_items, fresh_counts = PerPiece("fresh", parts, by_start=by_start).derive(pieces)
            # (without by_start a part may keep the start it was made with: only the places and values count)
            strip = (lambda found: found) if by_start else (lambda found: [(p, v, k) for p, _, v, k in found])
            assert strip(items) == strip(fresh_items) and counts == fresh_counts
        pieces = data.draw(next_read(pieces))


def test_changes_far_apart_cost_the_changed_pieces_only() -> None:
    """A cache asked again after two writes, one near the end and one near the start of a big queue, looks into the
    two changed pieces, not the thousands between them."""
    kept = PerPiece("parts", parts, by_start=True)
    pieces = [piece(n % 2) for n in range(5000)]  # (0 or 1 item each: every start stays put)
    kept.derive(pieces)
    pieces = list(pieces)
    pieces[4990] = piece(0)  # (a new task of as many items in place of each: nothing after them moves)
    pieces[3] = piece(1)
    Looked.looks = 0
    items, counts = kept.derive(pieces)
    assert Looked.looks <= 2
    assert (items, counts) == PerPiece("fresh", parts, by_start=True).derive(pieces)


@settings(max_examples=examples(300, 100), deadline=None)
@given(data=st.data(), first=st.lists(st.integers(0, 9), max_size=30), by_start=st.booleans())
def test_the_places_said_changed_between_two_copies_hold_every_item_that_is_not_the_same(
    data: st.DataObject, first: list[int], by_start: bool
) -> None:
    """Between any two copies handed out lately (with derives between them that were not handed out), the places
    said changed hold every place whose item is another object; None where it is not known."""
    kept = PerPiece("parts", parts, by_start=by_start)
    pieces = [piece(value) for value in first]
    handed: list[list[Any]] = []
    for _ in range(6):
        items = kept.derive(pieces)[0]
        if data.draw(st.booleans()):
            handed.append(kept.hand(items))
            assert handed[-1] == items and handed[-1] is not items
        pieces = data.draw(next_read(pieces))
    for before in handed:
        for after in handed:
            said = kept.changed_between(before, after)
            if said is not None:
                assert len(before) == len(after)
                assert {k for k in range(len(after)) if after[k] is not before[k]} <= said


def test_a_change_in_place_is_known_between_copies_with_reads_between() -> None:
    """Two copies handed out three reads apart, each read changing a task in place (as many items): the places
    said are those of the changed pieces' items, found without comparing the lists."""
    kept = PerPiece("parts", parts, by_start=True)
    pieces = [piece(n % 3) for n in range(2000)]
    before = kept.hand(kept.derive(pieces)[0])
    changed = []
    for at in (1999, 4, 700):
        pieces = list(pieces)
        pieces[at] = piece(pieces[at].value)  # (another piece of as many items)
        changed.append(at)
        kept.derive(pieces)
    after = kept.hand(kept.derive(pieces)[0])
    counts = kept.derive(pieces)[1]
    said = kept.changed_between(before, after)
    assert said == {k for at in changed for k in range(counts[at], counts[at + 1])}
    assert {k for k in range(len(after)) if after[k] is not before[k]} <= said
    assert kept.changed_between(after, before) is None  # (backward: not a chain of its derives)
    assert kept.changed_between(list(after), after) is None  # (a list it did not hand out)
    never = PerPiece("never handed", parts, by_start=True)  # (a cache that hands out no copy keeps no old lists)
    for at in (3, 4):
        pieces = list(pieces)
        pieces[at] = piece(pieces[at].value)
        never.derive(pieces)
    assert never._steps == ()


@settings(max_examples=examples(300, 100), deadline=None)
@given(data=st.data(), old=st.lists(st.integers(0, 3), max_size=80))
def test_differing_finds_every_place_whose_item_differs(data: st.DataObject, old: list[int]) -> None:
    """The places found by halving are exactly those whose items are neither the same object nor equal."""
    before = [{"n": value} for value in old]
    after = list(before)
    for k in data.draw(st.lists(st.integers(0, max(len(after) - 1, 0)), max_size=6)) if after else []:
        after[k] = {"n": data.draw(st.integers(0, 3))}  # (a new object: equal or not to the one it replaces)
    assert differing(before, after) == [k for k in range(len(after)) if before[k] != after[k]]


def test_sparse_parts_are_kept_by_the_pieces_with_items_only() -> None:
    """A cache of parts nearly always empty keeps in a piece only a part with items: a big queue's first read
    makes no cache entry for the others; a later derive over the same pieces finds the kept ones in them and makes
    the empty ones again (as cheap as a look-up)."""
    made: list[int] = []

    def counted(position: int, piece: Piece, start: int) -> list[tuple[int, int, Any, int]]:
        made.append(position)
        return parts(position, piece, start)

    pieces = [piece(n % 3) for n in range(9)]
    first = PerPiece("sparse", counted, sparse=True).derive(pieces)
    assert [bool(p.derived.get("sparse")) for p in pieces] == [n % 3 > 0 for n in range(9)]
    made.clear()
    again = PerPiece("sparse", counted, sparse=True).derive(pieces)
    assert made == [0, 3, 6]
    assert first == again == PerPiece("fresh", parts).derive(pieces)


def test_parts_not_kept_by_the_pieces_leave_nothing_in_them_and_are_made_for_the_changed_pieces_only() -> None:
    """A cache of cheap parts (ids, walks) stores nothing in the pieces; a later read with one piece changed in
    place makes that piece's part alone."""
    made: list[int] = []

    def counted(position: int, piece: Piece, start: int) -> list[tuple[int, int, Any, int]]:
        made.append(position)
        return parts(position, piece, start)

    cheap = PerPiece("cheap", counted, kept=False)
    pieces = [piece(n % 3) for n in range(300)]
    assert cheap.derive(pieces) == PerPiece("fresh", parts).derive(pieces)
    assert made == list(range(300)) and all("cheap" not in p.derived for p in pieces)
    made.clear()
    pieces = list(pieces)
    pieces[151] = piece(4)  # (1 item, as the piece it replaces: no start after it moves)
    assert cheap.derive(pieces) == PerPiece("fresh2", parts).derive(pieces)
    assert made == [151]


def test_a_piece_changed_in_place_with_as_many_items_gives_its_new_items_and_keeps_the_counts() -> None:
    """A task changed where it was, with as many items as before (its status changed): its new items take the old
    ones' places, every other item is the last read's, and the counts are the last read's own list."""
    kept = PerPiece("parts", parts, by_start=True)
    pieces = [piece(value) for value in (1, 2, 4, 5, 7)]
    _, counts = kept.derive(pieces)
    later = list(pieces)
    later[2] = piece(7)  # (7 % 3 == 4 % 3: as many items)
    items, later_counts = kept.derive(later)
    assert items == PerPiece("fresh", parts, by_start=True).derive(later)[0]
    assert later_counts is counts
