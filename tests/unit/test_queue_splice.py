"""The store's text is the file's bytes read as Latin-1, whatever characters the file holds: the decoder, the text
editor and the splice work in the bytes' terms, and what they give is what the decoded text gives (the document of
``json.loads``, the edits of :func:`jsonedit.apply`, byte for byte). Hypothesis drives texts with characters of every
UTF-8 length, escaped or not, in values and in keys, with or without a byte-order mark."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.store.file import jsonedit
from agentd.store.file.incremental import Decoder, utf8_text
from agentd.store.file.queuefile import _splice
from tests.helpers.examples import examples

BOM = "\ufeff"
# Characters of every UTF-8 length: 1 (ASCII), 2 ("é", and "\x80" whose Latin-1 reading is a C1 control), 3 ("—",
# "→"), 4 (an emoji); quotes and backslashes; no lone surrogates (a file's text has none; a write refuses them).
CHARS = st.sampled_from(["a", '"', "\\", "\n", "é", "\x80", "ÿ", "—", "→", "\U0001f680", "汉", "Ã", "©"])
STRINGS = st.lists(CHARS, max_size=12).map("".join)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRINGS, inner, max_size=3),
    max_leaves=8,
)
TASKS = st.lists(st.fixed_dictionaries({"id": STRINGS}, optional={"title": STRINGS, "x": VALUES}), max_size=6)
# Keys before the tasks and after them: a key or a value outside ASCII before the tasks moves every place in bytes.
DOCS = st.builds(
    lambda head, tasks, tail: {**head, "tasks": tasks, **{k: v for k, v in tail.items() if k not in head}},
    st.dictionaries(st.sampled_from(["wip_limits", "é → 🚀"]), VALUES, max_size=2),
    TASKS,
    st.dictionaries(st.sampled_from(["ü", "wip_limits"]), VALUES, max_size=2),
)


def latin1(text: str) -> str:
    """A text's UTF-8 bytes read as Latin-1: the store's text of a file holding it."""
    return text.encode("utf-8").decode("latin-1")


def dumps(doc: Any, indent: Any, escaped: bool | None) -> str:
    """The document's text: characters outside ASCII escaped (True), as they are (False), or both, some of them
    escaped and the rest not, within one string too (None: what people's and tools' edits leave)."""
    if escaped is None:
        text = json.dumps(doc, indent=indent, ensure_ascii=False)
        return text.replace("é", "\\u00e9", 1).replace("\U0001f680", "\\ud83d\\ude80", 1).replace("汉", "\\u6c49", 2)
    return json.dumps(doc, indent=indent, ensure_ascii=escaped)


@st.composite
def changed(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with tasks changed, added and removed, and its other keys changed, as a daemon or a person would."""
    new = json.loads(json.dumps(doc))
    tasks = new["tasks"]
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["title", "add", "remove", "key"]))
        if action == "title" and tasks:
            tasks[draw(st.integers(0, len(tasks) - 1))]["title"] = draw(STRINGS)
        elif action == "remove" and tasks:
            tasks.pop(draw(st.integers(0, len(tasks) - 1)))
        elif action == "key":
            new[draw(st.sampled_from(["wip_limits", "é → 🚀", "ü"]))] = draw(VALUES)
        else:
            tasks.insert(draw(st.integers(0, len(tasks))), {"id": draw(STRINGS), "title": draw(STRINGS)})
    return new


@settings(max_examples=examples(400, 100), deadline=None)
@given(data=st.data(), doc=DOCS, indent=st.sampled_from([None, 2, "\t"]), escaped=st.sampled_from([True, False, None]))
def test_a_sequence_of_reads_of_the_bytes_decodes_as_json_loads_of_the_text(
    data: st.DataObject, doc: dict[str, Any], indent: Any, escaped: bool | None
) -> None:
    """Pieces are reused and parsed anew across edits; each decode is json.loads's document, each piece's text its
    bytes and its key its characters, and the places are a decoder of the characters' counted in bytes."""
    decoder = Decoder(latin1=True)
    for _ in range(3):
        text = dumps(doc, indent, escaped)
        view = latin1(text)
        decoded = decoder.decode(view)
        assert decoded.data == json.loads(text) == doc
        assert decoded.pieces is not None
        raw = text.encode("utf-8")
        for piece, (start, end) in zip(decoded.pieces, decoded.spans.items(), strict=True):
            assert piece.text == raw[start:end].decode("latin-1")
            assert piece.key == utf8_text(piece.text)
            assert piece.value == json.loads(piece.key)
        characters = Decoder().decode(text)
        assert decoded.spans.starts == [len(text[:place].encode()) for place in characters.spans.starts]
        assert decoded.spans.ends == [len(text[:place].encode()) for place in characters.spans.ends]
        assert decoded.tasks_end == len(text[: characters.tasks_end].encode())
        doc = data.draw(changed(doc))


@settings(max_examples=examples(400, 100), deadline=None)
@given(
    data=st.data(),
    doc=DOCS,
    indent=st.sampled_from([None, 2, 4]),
    escaped=st.sampled_from([True, False, None]),
    bom=st.booleans(),
)
def test_edits_of_the_bytes_spliced_are_the_text_edited_and_encoded(
    data: st.DataObject, doc: dict[str, Any], indent: Any, escaped: bool | None, bom: bool
) -> None:
    """jsonedit.edits on the Latin-1 text, spliced into the bytes: byte for byte jsonedit.apply's edit of the text,
    encoded; the count of shared leading bytes is where the first edit begins; the decode of the result told what the
    edit kept gives a fresh parse's document and spans."""
    text = dumps(doc, indent, escaped)
    prefix = BOM if bom else ""
    decoder = Decoder(latin1=True)
    view = latin1(text)
    decoded = decoder.decode(view)
    for _ in range(3):
        new = data.draw(changed(decoded.data))
        out = jsonedit.edits(view, decoded.data, new, decoded.spans, latin1=True)
        loaded = SimpleNamespace(text=view, raw=(prefix + text).encode("utf-8"))
        payload, shared = _splice(loaded, out)  # type: ignore[arg-type]
        expected = jsonedit.apply(text, decoded.data, new)
        assert payload == (prefix + expected).encode("utf-8")
        assert payload[:shared] == loaded.raw[:shared]
        if out:
            assert shared == len((prefix + text).encode("utf-8")) - len(view) + out[0][0]
        size = len(view)
        same = (out[0][0], size - out[-1][1]) if out else (size, size)
        text, new_view = expected, payload.decode("latin-1").removeprefix(latin1(prefix))
        decoded = decoder.decode(new_view, base=view, same=same)
        view = new_view
        fresh = Decoder(latin1=True).decode(view)
        assert decoded.data == json.loads(text) == new
        assert decoded.spans == fresh.spans


def test_a_key_outside_ascii_is_found_in_the_bytes() -> None:
    """A key's text is decoded before it is looked up: the edit of a member under a key with an "é" (or a key
    written as an escape of the same character) finds it."""
    for text in ('{"tasks": [{"id": "A", "priorité": 1}]}', '{"tasks": [{"id": "A", "priorit\\u00e9": 1}]}'):
        old = json.loads(text)
        new = {"tasks": [{"id": "A", "priorité": 2}]}
        out = jsonedit.edits(latin1(text), old, new, latin1=True)
        assert _splice(SimpleNamespace(text=latin1(text), raw=text.encode()), out)[0] == text.replace("1", "2").encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"tasks": [{"id": "A", "title": "caf\xe9"}]}',  # Latin-1's "é", not UTF-8
        b'{"tasks": [{"id": "A", "title": "\xed\xa0\x80"}]}',  # an encoded surrogate
        b'{"tasks": [], "caf\xc3": 1}',  # a cut character in a key
        b'{"tasks": [{"id": "A"}]}\n\xff',  # outside any value
        b'{"tasks": [{"id": "\xc3\xa9"}, {"id": "B", "x": "\xf0\x9f"}]}',  # a good one, then a cut emoji
    ],
)
def test_bytes_that_are_not_utf8_are_refused_at_the_byte_a_decode_of_them_refuses(raw: bytes) -> None:
    with pytest.raises(UnicodeDecodeError) as caught:
        Decoder(latin1=True).decode(raw.decode("latin-1"))
    with pytest.raises(UnicodeDecodeError) as expected:
        raw.decode("utf-8")
    assert caught.value.start == expected.value.start
