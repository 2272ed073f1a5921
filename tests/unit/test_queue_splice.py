"""The bytes a write of the queue makes from the bytes it read and its edits (queuefile._splice): byte for byte the
whole text edited and encoded, for any text (ASCII or not, with a BOM or not) and any edits, and the count of leading
bytes it reports shared with the bytes read is one they do share."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.store.file import jsonedit
from agentd.store.file.queuefile import _splice, _utf8_offsets

BOM = "\ufeff"
# Characters of every UTF-8 length: 1 (ASCII), 2 ("é"), 3 ("—", "→"), 4 (an emoji); no lone surrogates (a text read
# from a file has none, and the store refuses to write one).
CHARS = st.sampled_from(["a", "{", '"', "\n", " ", "é", "ß", "—", "→", "\U0001f680", "汉"])
TEXTS = st.lists(CHARS, max_size=300).map("".join)


@st.composite
def edited(draw: st.DrawFn) -> tuple[str, str, list[tuple[int, int, str]]]:
    """(prefix, text, edits): ordered, non-overlapping edits of the text, each replacing a span with any text."""
    text = draw(TEXTS)
    places = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    if len(places) % 2:
        places.pop()
    edits = [(places[n], places[n + 1], draw(TEXTS.filter(lambda t: len(t) < 40))) for n in range(0, len(places), 2)]
    return draw(st.sampled_from(["", BOM])), text, edits


def _loaded(prefix: str, text: str) -> Any:
    return SimpleNamespace(prefix=prefix, text=text, raw=(prefix + text).encode("utf-8"))


@settings(max_examples=400)
@given(case=edited())
def test_the_spliced_bytes_are_the_edited_text_encoded(case: tuple[str, str, list[tuple[int, int, str]]]) -> None:
    prefix, text, edits = case
    loaded = _loaded(prefix, text)
    payload, spliced, shared = _splice(loaded, edits)
    expected = jsonedit.render(text, edits)
    assert payload == (prefix + expected).encode("utf-8")
    assert spliced is None if text.isascii() else spliced == expected
    assert shared is not None and 0 <= shared <= min(len(loaded.raw), len(payload))
    assert payload[:shared] == loaded.raw[:shared]
    if edits:  # (exactly where the first edit begins)
        assert shared == len((prefix + text[: edits[0][0]]).encode("utf-8"))


@settings(max_examples=300)
@given(text=TEXTS, places=st.lists(st.integers(0, 300), max_size=10), bom=st.booleans())
def test_each_character_offset_is_found_in_bytes_from_either_end(text: str, places: list[int], bom: bool) -> None:
    places = sorted(min(place, len(text)) for place in places)
    prefix = BOM if bom else ""
    size = len((prefix + text).encode("utf-8"))
    skip = len(prefix.encode("utf-8"))
    found = _utf8_offsets(text, size, skip, places)
    assert found == [skip + len(text[:place].encode("utf-8")) for place in places]


def test_an_edit_near_the_end_of_a_long_text_is_placed_without_encoding_its_head() -> None:
    """The places of a pass's edits near the end of a big queue are counted from the end: a text whose head cannot
    be encoded (a lone surrogate, which a read never makes) shows the head is never encoded."""
    text = "\ud800" + "é" * 10_000 + "tail → end"
    size = 3 + 2 * 10_000 + len("tail → end".encode())  # (as if the head's 3 bytes were there)
    assert _utf8_offsets(text, size, 0, [len(text) - 3]) == [size - 3]
