"""Parse the queue's text again, reusing every task whose text did not change since the last parse.

A daemon reads the queue after every write anyone makes, and a write changes one or a few tasks of thousands. The
decoder remembers the exact text of each top-level task from its previous parse; where the same text is found at the
next position, byte for byte, the task is not parsed again: its parsed value, and what was derived from it (its
validity, its views), is reused. Only changed, added or moved tasks are parsed, with the C scanner ``json.loads``
itself runs on.

Exactness: a JSON object's extent is fixed by its own characters (it ends at its matching brace), so text that starts
with a remembered object's exact text holds that very object there. Anything unexpected (not an object at the top,
no ``tasks`` list, a syntax error) falls back to ``json.loads``, which gives the same document or the same error as
always. The result equals ``json.loads(text)`` (tested with hypothesis).

Reused values are shared between parses, so a decoded document is read-only: code that changes a document parses
its own copy (as :meth:`agentd.store.file.queuefile.QueueStore.transaction` does).

The text may be a file's UTF-8 bytes read as Latin-1 (``Decoder(latin1=True)``: one character a byte, see
:func:`utf8_text`): the queue store's text. JSON's structure (brackets, quotes, commas, whitespace, escapes) is ASCII,
and no byte of a character outside ASCII is an ASCII byte in UTF-8, so every value starts and ends where it does in
the decoded text; only the strings that hold such characters differ, and a value whose text is not ASCII is parsed
again from its text decoded (strictly: a byte that is not UTF-8 raises ``UnicodeDecodeError``). Python holds a text
with one character outside Latin-1 at 2 or 4 bytes a character, and a queue that holds one "→" would be decoded and
copied at that width, whole, at every write; read as Latin-1, its text is its bytes, as an ASCII queue's.
"""

from __future__ import annotations

import _json
import bisect
import json
import operator
from collections.abc import Iterator, Mapping
from itertools import compress, count

from agentd.core.lazyre import LazyPattern
from agentd.core.record import Record, set_field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = LazyPattern(r"[ \t\n\r]*")
# After an item: a comma and the whitespace up to the next item, or the closing bracket (group 1).
_AFTER_ITEM = LazyPattern(r"[ \t\n\r]*(?:,[ \t\n\r]*|(\]))")
_scan_once = _json.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # (text, index) -> (value, end)
_scanstring = _json.scanstring  # (text, index after the opening quote) -> (string, end)
_TEXT = operator.attrgetter("text")


def utf8_text(text: str) -> str:
    """The text of ``text``, UTF-8 bytes read as Latin-1 (the text itself when it is ASCII: no copy). Raises
    UnicodeDecodeError for bytes that are not UTF-8 (strict: no encoded surrogate either)."""
    return text if text.isascii() else text.encode("latin-1").decode("utf-8")


class _Unexpected(Exception):
    """The text is not in the shape the fast path handles; json.loads decides."""


class Piece:
    """One top-level task: its exact text (UTF-8 bytes read as Latin-1 where the decoder reads such a text: see
    :func:`utf8_text`), the same as characters (``key``: the same object where the two are alike, an ASCII task's),
    its parsed value (never mutated), and caches derived from it."""

    __slots__ = ("derived", "key", "reusable", "text", "value")

    text: str
    key: str  # the text as characters: what json.loads parses, and what the checks' cache knows the task by
    value: Any
    derived: dict[str, Any]
    reusable: bool

    def __init__(self, text: str, value: Any, derived: dict[str, Any] | None = None, key: str | None = None) -> None:
        self.text = text
        self.key = text if key is None else key
        self.value = value
        self.derived = {} if derived is None else derived
        self.reusable = isinstance(value, dict)

    def __repr__(self) -> str:
        return f"Piece(text={self.text!r}, value={self.value!r}, derived={self.derived!r}, reusable={self.reusable!r})"


class Spans(Mapping[int, int]):
    """Where each top-level task starts in the text -> where it ends: two lists in order, shared between parses and
    never changed once made (a read of a large queue makes its lists by slicing the last read's, at C speed, instead
    of a dict of every task)."""

    __slots__ = ("ends", "starts")

    def __init__(self, starts: list[int] | None = None, ends: list[int] | None = None) -> None:
        self.starts: list[int] = starts if starts is not None else []
        self.ends: list[int] = ends if ends is not None else []

    def _find(self, start: object) -> int:
        k = bisect.bisect_left(self.starts, start) if isinstance(start, int) else len(self.starts)
        return k if k < len(self.starts) and self.starts[k] == start else -1

    def __getitem__(self, start: int) -> int:
        k = self._find(start)
        if k < 0:
            raise KeyError(start)
        return self.ends[k]

    def get(self, start: int, default: int | None = None) -> int | None:  # type: ignore[override]
        k = self._find(start)
        return self.ends[k] if k >= 0 else default

    def __contains__(self, start: object) -> bool:
        return self._find(start) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self.starts)

    def __len__(self) -> int:
        return len(self.starts)

    def __repr__(self) -> str:
        return f"Spans({dict(zip(self.starts, self.ends, strict=True))!r})"


class Decoded(Record):
    """A parsed queue: the document and, when the fast path applied, one :class:`Piece` per item of its tasks."""

    _fields = ("data", "pieces", "reused", "spans", "tasks_end", "changed")

    data: Any
    pieces: list[Piece] | None
    reused: int = 0
    spans: Spans  # where each top-level task starts -> where it ends
    tasks_end: int = -1  # where the tasks list ends (after its closing bracket), when there are pieces
    # (the previous call's pieces, the places where these pieces are not the same objects), when there are as many
    # pieces as then: what the caches derived from pieces need not find again by comparing the two lists
    changed: tuple[list[Piece], list[int]] | None = None

    def __init__(
        self,
        data: Any,
        pieces: list[Piece] | None,
        reused: int = 0,
        spans: Spans | None = None,
        tasks_end: int = -1,
        changed: tuple[list[Piece], list[int]] | None = None,
    ) -> None:
        set_field(self, "data", data)
        set_field(self, "pieces", pieces)
        set_field(self, "reused", reused)
        set_field(self, "spans", Spans() if spans is None else spans)
        set_field(self, "tasks_end", tasks_end)
        set_field(self, "changed", changed)


class Decoder:
    """``json.loads`` for one queue file read again and again (one decoder per file; not thread-safe). ``latin1``:
    the texts given are UTF-8 bytes read as Latin-1 (see :func:`utf8_text`); what a decode gives is then what
    ``json.loads`` gives for their text, and its pieces' texts and spans are in the bytes' terms."""

    def __init__(self, *, latin1: bool = False) -> None:
        self._latin1 = latin1
        self._previous: list[Piece] = []
        self._text = ""  # the text of the previous call, when its tasks were parsed piece by piece
        self._tasks_at = -1  # where its tasks list opened
        self._starts: list[int] = []  # where each of its pieces started
        self._ends: list[int] = []  # and ended
        self._items: list[Any] = []  # its tasks
        self._tasks_end = -1  # where its tasks list ended (after the closing bracket)
        self._same: tuple[int, int] | None = None  # what this call's text shares with it, when a writer said
        self._diff: list[int] = []  # the places where this call's pieces are not the previous call's

    def decode(self, text: str, *, base: str | None = None, same: tuple[int, int] | None = None) -> Decoded:
        """The document ``json.loads(text)`` gives (or its error), reusing unchanged tasks of the previous call.

        ``same``: how many characters ``text`` shares at least with ``base`` at its start and at its end (a writer
        that edited ``base`` knows): used, instead of comparing the texts, when ``base`` is the previous call's very
        text."""
        self._same = same if same is not None and base is not None and base is self._text else None
        try:
            if self._latin1 and not self._previous and not text.isascii():
                decoded = self._decode_characters(text)
            else:
                decoded = self._decode(text)
        except (_Unexpected, StopIteration, ValueError, RecursionError):
            decoded = None
        if decoded is None:
            self._previous, self._text, self._starts, self._ends, self._items = [], "", [], [], []
            self._tasks_end = -1
            return Decoded(json.loads(utf8_text(text) if self._latin1 else text), None)
        pieces = decoded.pieces is not None
        self._previous = decoded.pieces if decoded.pieces is not None else []
        self._text = text if pieces else ""
        self._starts = decoded.spans.starts if pieces else []  # (shared with the Spans: never changed)
        self._ends = decoded.spans.ends if pieces else []
        self._items = decoded.data.get("tasks", []) if pieces else []
        self._tasks_end = decoded.tasks_end if pieces else -1
        return decoded

    def _decode_characters(self, text: str) -> Decoded:
        """:meth:`_decode` of a Latin-1 text outside ASCII when no task can be reused (a first read): parsed from its
        characters, each task once, its places then counted in bytes. (Parsed in bytes, each task outside ASCII would
        be parsed twice: a 10,000-task queue whose every title holds an "→" was read in 197-200 ms that way, in
        174-183 ms this way.)"""
        characters = utf8_text(text)
        self._latin1 = False
        try:
            decoded = self._decode(characters)
        finally:
            self._latin1 = True
        if decoded.pieces is None:
            return decoded
        if not decoded.pieces:  # (no task: only where the list ends is a place)
            return decoded.replace(tasks_end=_utf8_length(characters[: decoded.tasks_end]))
        pieces, starts_c, ends_c = decoded.pieces, decoded.spans.starts, decoded.spans.ends
        # Each task's places move by the bytes more than characters before it: the head's (up to the first task), and
        # the tasks outside ASCII before it (between two tasks: JSON's whitespace and a comma). Shifted run by run
        # between those tasks, at C speed (most tasks of a big queue are ASCII).
        shift = _utf8_length(characters[: starts_c[0]]) - starts_c[0]
        self._tasks_at += shift
        starts: list[int] = []
        ends: list[int] = []
        at = 0
        for k in compress(count(), map(operator.not_, map(str.isascii, map(_TEXT, pieces)))):
            starts += map(shift.__add__, starts_c[at : k + 1])
            ends += map(shift.__add__, ends_c[at:k])
            piece, start = pieces[k], starts[-1]
            size = len(piece.text.encode("utf-8"))
            piece.text = text[start : start + size]  # (its bytes: its key stays the characters)
            shift += size - (ends_c[k] - starts_c[k])
            ends.append(start + size)
            at = k + 1
        starts += map(shift.__add__, starts_c[at:])
        ends += map(shift.__add__, ends_c[at:])
        tasks_end = decoded.tasks_end + shift
        return Decoded(decoded.data, decoded.pieces, decoded.reused, Spans(starts, ends), tasks_end, decoded.changed)

    def _decode(self, text: str) -> Decoded:
        idx = _WS.match(text, 0).end()  # type: ignore[union-attr]
        if text[idx : idx + 1] != "{":
            raise _Unexpected
        idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
        data: dict[str, Any] = {}
        pieces: list[Piece] | None = None
        spans = Spans()
        reused = 0
        tasks_end = -1
        if text[idx : idx + 1] == "}":
            idx += 1
        else:
            while True:
                if text[idx : idx + 1] != '"':
                    raise _Unexpected
                opened = idx
                key, idx = _scanstring(text, idx + 1)
                if self._latin1 and not key.isascii():
                    key = _scanstring(utf8_text(text[opened:idx]), 1)[0]
                idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
                if text[idx : idx + 1] != ":":
                    raise _Unexpected
                idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
                if key == "tasks" and text[idx : idx + 1] == "[":
                    value, pieces, reused, spans, idx = self._tasks(text, idx)
                    tasks_end = idx
                else:
                    value, idx = self._scan(text, idx)
                    if key == "tasks":
                        pieces = None  # a later duplicate key wins, as in json.loads
                data[key] = value
                idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
                char = text[idx : idx + 1]
                if char == ",":
                    idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
                    continue
                if char == "}":
                    idx += 1
                    break
                raise _Unexpected
        if _WS.match(text, idx).end() != len(text):  # type: ignore[union-attr]
            raise _Unexpected
        if pieces is None:
            return Decoded(data, None, reused)
        same = len(pieces) == len(self._previous)
        return Decoded(data, pieces, reused, spans, tasks_end, (self._previous, self._diff) if same else None)

    def _scan(self, text: str, idx: int) -> tuple[Any, int]:
        """The value at ``idx`` and where it ends."""
        value, end = _scan_once(text, idx)
        if self._latin1 and not text.isascii() and not text[idx:end].isascii():
            value = _scan_once(utf8_text(text[idx:end]), 0)[0]
        return value, end

    def _tasks(self, text: str, idx: int) -> tuple[list[Any], list[Piece], int, Spans, int]:
        """The tasks list at ``text[idx] == '['``: (items, pieces, how many were reused, their spans, end)."""
        previous = self._previous
        count = len(previous)
        items: list[Any] = []
        pieces: list[Piece] = []
        starts: list[int] = []
        ends: list[int] = []
        reused = 0
        expect = 0  # the previous piece expected next
        diff = self._diff = []  # the places where a piece is not the previous call's piece at that place
        by_text: dict[str, int] | None = None
        by_id: dict[Any, int] = {}
        opened = idx
        idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
        if text[idx : idx + 1] == "]":
            return items, pieces, 0, Spans(), idx + 1
        startswith = text.startswith
        # The tasks before the first character that differs from the previous text are where they were: taken whole
        # (a write usually changes one task or adds one at the end; this skips the loop below for the others).
        if opened == self._tasks_at and count and len(self._items) == count:
            same = self._same[0] if self._same is not None else _common_prefix(self._text, text)
            # The tasks that end before the first difference (the character after each is the same too: its
            # separator is unchanged).
            expect = bisect.bisect_left(self._ends, same)
            if expect:
                pieces = previous[:expect]
                items = self._items[:expect]
                starts, ends = self._starts[:expect], self._ends[:expect]
                reused = expect
                after = _AFTER_ITEM.match(text, self._ends[expect - 1])
                if after is None:
                    raise _Unexpected
                idx = after.end()
                if after.group(1):
                    return items, pieces, reused, Spans(starts, ends), idx
        self._tasks_at = opened
        # The tail of the text that is the same as the previous text's: once an item starts there at a place where
        # one started before, the rest of the list is the previous parse's, each task shifted by ``delta`` (an edit
        # in the middle of a large queue parses only what lies between the first and last difference).
        delta = len(text) - len(self._text)
        same_from = len(text)
        if count and len(self._items) == count:
            same_from -= self._same[1] if self._same is not None else _common_suffix(self._text, text)
        old_starts = self._starts
        while True:
            if idx >= same_from:
                k = bisect.bisect_left(old_starts, idx - delta)
                if k < count and old_starts[k] == idx - delta:
                    if len(pieces) != k:  # (moved: not at their places)
                        diff += range(len(pieces), len(pieces) + count - k)
                    pieces += previous[k:]
                    items += self._items[k:]
                    if delta:
                        starts += map(delta.__add__, old_starts[k:])
                        ends += map(delta.__add__, self._ends[k:])
                    else:
                        starts += old_starts[k:]
                        ends += self._ends[k:]
                    return items, pieces, reused + count - k, Spans(starts, ends), self._tasks_end + delta
            piece = None
            # The expected task unchanged, or the one after it (the expected one was removed). Only objects are
            # reused: an object's text ends where the object ends (a number's text may begin another number's).
            if expect < count and previous[expect].reusable and startswith(previous[expect].text, idx):
                piece = previous[expect]
                expect += 1
                reused += 1
            elif expect + 1 < count and previous[expect + 1].reusable and startswith(previous[expect + 1].text, idx):
                piece = previous[expect + 1]
                expect += 2
                reused += 1
            else:
                value, end = _scan_once(text, idx)
                piece = Piece(text[idx:end], value)
                if self._latin1 and not piece.text.isascii():
                    piece.key = utf8_text(piece.text)
                    piece.value = value = _scan_once(piece.key, 0)[0]
                # Realign on the previous parse: the expected task changed (the common case); else the same text
                # moved (keep what was derived from it), or another task changed: the next is expected after it. A
                # new task leaves the expectation as it was. Tasks after the last one expected are taken as new
                # (appending is common; looking a moved one up there would index the whole previous parse).
                if expect < count and _same_id(value, previous[expect].value):
                    expect += 1
                elif expect < count:
                    if by_text is None:
                        by_text = {p.text: n for n, p in enumerate(previous) if p.reusable}
                        by_id = {p.value["id"]: n for n, p in enumerate(previous) if _has_id(p.value)}
                    position = by_text.get(piece.text)
                    if position is not None:
                        piece = previous[position]
                        reused += 1
                    elif _has_id(value):
                        position = by_id.get(value["id"])
                    if position is not None:
                        expect = position + 1
            if len(pieces) >= count or previous[len(pieces)] is not piece:
                diff.append(len(pieces))
            items.append(piece.value)
            pieces.append(piece)
            end = idx + len(piece.text)
            starts.append(idx)
            ends.append(end)
            after = _AFTER_ITEM.match(text, end)
            if after is None:
                raise _Unexpected
            idx = after.end()
            if after.group(1):
                return items, pieces, reused, Spans(starts, ends), idx


def _common_prefix(old: str, new: str, chunk: int = 1 << 16) -> int:
    """How many leading characters ``old`` and ``new`` share (compared a chunk at a time, at C speed)."""
    limit = min(len(old), len(new))
    low = 0
    while low < limit:
        high = min(limit, low + chunk)
        if old[low:high] == new[low:high]:
            low = high
            continue
        while high - low > 1:  # the first difference is in [low, high): halve
            middle = (low + high) // 2
            if old[low:middle] == new[low:middle]:
                low = middle
            else:
                high = middle
        return low
    return limit


def _common_suffix(old: str, new: str, chunk: int = 1 << 16) -> int:
    """How many trailing characters ``old`` and ``new`` share (compared a chunk at a time, at C speed)."""
    limit = min(len(old), len(new))
    old_end, new_end = len(old), len(new)
    low = 0  # the last ``low`` characters are the same
    while low < limit:
        high = min(limit, low + chunk)
        if old[old_end - high : old_end - low] == new[new_end - high : new_end - low]:
            low = high
            continue
        while high - low > 1:  # the first difference from the end is within the last ``high`` characters
            middle = (low + high) // 2
            if old[old_end - middle : old_end - low] == new[new_end - middle : new_end - low]:
                low = middle
            else:
                high = middle
        return low
    return limit


def _utf8_length(part: str) -> int:
    return len(part) if part.isascii() else len(part.encode("utf-8"))


def _same_id(new: Any, old: Any) -> bool:
    return _has_id(new) and _has_id(old) and new["id"] == old["id"]


def _has_id(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), str)
