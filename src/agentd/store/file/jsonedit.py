"""Minimal-diff editing of a JSON document's text.

The sprint queue is a JSON file that humans, agents and agentd all edit, and that is kept in git. When agentd
changes a value it must rewrite only the text of what changed: ``apply(text, old, new)`` walks ``old`` and ``new``
together and replaces, inserts or removes only the spans of ``text`` whose values differ, so everything else
(indentation, key order, escaping, separators, number formatting, blank lines, the trailing newline or its
absence) stays byte-for-byte, and ``git diff`` after changing one task's ``"status"`` shows that one line.

Speed: the document is never parsed by hand. Spans are found with the C pieces of :mod:`json` (the scanner that
``raw_decode`` uses, ``scanstring``) and a whitespace regex, and only the containers on the path to a change are
walked member by member; every unchanged sibling is skipped with one C scanner call. One change in a 10 MB queue
costs about one ``json.loads`` of it.

Equality is Python's ``==`` (the contract is ``json.loads(result) == new``), made stricter only where a changed
value is compared directly: ``1``, ``1.0`` and ``true`` are different scalars there, as are ``0.0`` and ``-0.0``.
So a change of a number's kind alone (``1`` to ``true``) inside a container that is otherwise ``==`` is not
written; ``json.loads(result) == new`` holds all the same.

Lists are edited item by item over their common prefix and suffix; when items were inserted or removed in between,
the middles are aligned on equal items (a cheap greedy pass, difflib on JSON fingerprints when that fails), so
a task removed, another changed and one appended in one call still touch only their own lines.

``old`` must be what ``json.loads(text)`` gives (read under the same lock): values skipped as unchanged are not
checked against the text, so a stale ``old`` yields a wrong document, not an error.
"""

from __future__ import annotations

import _json
import json
import math
import operator
from collections.abc import Iterable, Mapping
from itertools import compress, count

from agentd.core.lazyre import LazyPattern
from agentd.core.record import Record, set_field
from agentd.store.file.incremental import utf8_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Style",
    "apply",
    "apply_where",
    "detect_style",
    "dumps",
    "edits",
    "first_non_ascii_escape",
    "render",
    "restyle",
]

_Edit = tuple[int, int, str]  # replace text[start:end] with the string

_WS = LazyPattern(r"[ \t\n\r]*")
_COLON = LazyPattern(r"[ \t\n\r]*:[ \t\n\r]*")
# After an entry: a comma and the whitespace up to the next entry, or the closing bracket (group 1).
_AFTER_MEMBER = LazyPattern(r"[ \t\n\r]*(?:,[ \t\n\r]*|(\}))")
_AFTER_ITEM = LazyPattern(r"[ \t\n\r]*(?:,[ \t\n\r]*|(\]))")
_INDENT = LazyPattern(r"[ \t]*")
_FIRST_INDENTED_LINE = LazyPattern(r"\n([ \t]+)[^ \t\r\n]")
# A \uXXXX escape of U+007F or above: what json.dumps(ensure_ascii=True) writes and ensure_ascii=False does not.
_NON_ASCII_ESCAPE = LazyPattern(r"\\u(?!00[0-6][0-9a-fA-F]|007[0-9a-eA-E])[0-9a-fA-F]{4}")
# One token of a JSON text with the whitespace before it; group 2 is set for "," and ":".
_TOKEN = LazyPattern(r'([ \t\r\n]*)(?:"[^"\\]*(?:\\.[^"\\]*)*"|([,:])|[{}\[\]]|[^ \t\r\n{}\[\],:"]+)')
_STYLE_TOKEN_LIMIT = 4096

# The C accelerators of the json module (what json.loads runs on CPython).
_scan_once = _json.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # (text, index) -> (value, end)
_scan_keeping_ints = _json.make_scanner(json.JSONDecoder(parse_int=str))  # type: ignore[arg-type]  # integers left as their text
_scanstring = _json.scanstring  # (text, index after the opening quote) -> (string, end)


class Style(Record):
    """How a JSON document is laid out, so that new values can be written to match it."""

    _fields = ("indent", "item_separator", "key_separator", "ensure_ascii", "newline")

    indent: str | None  # one indentation unit, e.g. "  ", "    ", "\t"; None when the document is on one line
    item_separator: str  # "," or ", " ("," plus any spaces json.dumps(indent=...) would write before a newline)
    key_separator: str  # ": " or ":"
    ensure_ascii: bool  # True when non-ASCII text in the document is written as \uXXXX escapes
    newline: str  # "\n" or "\r\n"

    def __init__(
        self,
        indent: str | None,
        item_separator: str,
        key_separator: str,
        ensure_ascii: bool,
        newline: str,
    ) -> None:
        set_field(self, "indent", indent)
        set_field(self, "item_separator", item_separator)
        set_field(self, "key_separator", key_separator)
        set_field(self, "ensure_ascii", ensure_ascii)
        set_field(self, "newline", newline)


def detect_style(text: str, *, escape: bool | None = None) -> Style:
    """Infer the :class:`Style` of the JSON document ``text``.

    The indentation unit is the leading whitespace of the first indented line (``""`` for a multi-line document
    without indentation, None for a one-line document). The separators are those around the first ``,`` and
    ``:`` outside strings (a multi-line document's item separator is taken from a comma that ends a line).
    ``ensure_ascii`` is True when the document has ``\\uXXXX`` escapes of non-ASCII characters (or of U+007F,
    which only ``json.dumps(ensure_ascii=True)`` escapes) and no literal non-ASCII character. ``newline`` is
    ``"\\r\\n"`` when the first line ends with it. ``escape``: whether the text has such an escape, when the caller
    knows (see :func:`restyle`): the scan of the whole text for one is skipped.
    """
    first_nl = text.find("\n")
    newline = "\r\n" if first_nl > 0 and text[first_nl - 1] == "\r" else "\n"
    indent: str | None = None
    m = _WS.match(text)
    body_start = m.end() if m else 0
    body_end = len(text)
    while body_end > body_start and text[body_end - 1] in " \t\r\n":
        body_end -= 1
    if text.find("\n", body_start, body_end) >= 0:
        first = _FIRST_INDENTED_LINE.search(text)
        indent = first.group(1) if first else ""
    key_separator, item_separator = _detect_separators(text, multiline=indent is not None)
    if key_separator is None:
        key_separator = ": "
    if item_separator is None:
        item_separator = "," if indent is not None else ", "
    return Style(
        indent=indent,
        item_separator=item_separator,
        key_separator=key_separator,
        ensure_ascii=text.isascii() and (_has_non_ascii_escape(text) if escape is None else escape),
        newline=newline,
    )


def _detect_separators(text: str, *, multiline: bool) -> tuple[str | None, str | None]:
    """The key separator and the item separator of the first ``:`` and ``,`` tokens (None where not seen)."""
    key_sep: str | None = None
    item_sep: str | None = None
    pos = 0
    for _ in range(_STYLE_TOKEN_LIMIT):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        pos = m.end()
        punct = m.group(2)
        if punct is not None:
            spaces = _INDENT.match(text, pos)
            after = spaces.group() if spaces else ""
            at_eol = text.startswith(("\n", "\r"), pos + len(after))
            if punct == ":" and key_sep is None:
                key_sep = m.group(1).replace("\r", "").replace("\n", "") + ":" + ("" if at_eol else after)
            elif punct == "," and item_sep is None and at_eol == multiline:
                item_sep = "," + after
            if key_sep is not None and item_sep is not None:
                break
    return key_sep, item_sep


def _has_non_ascii_escape(text: str) -> bool:
    """Whether ``text`` has a ``\\uXXXX`` escape (not itself escaped) of U+007F or a non-ASCII character."""
    return first_non_ascii_escape(text) >= 0


def first_non_ascii_escape(text: str) -> int:
    """Where the first ``\\uXXXX`` escape (not itself escaped) of U+007F or a non-ASCII character in ``text`` starts,
    or -1 when there is none."""
    if "\\" not in text:  # (a one-character search is ~30 times faster than one for "\\u" over a large text)
        return -1
    for m in _NON_ASCII_ESCAPE.finditer(text):
        k = m.start()
        while k > 0 and text[k - 1] == "\\":
            k -= 1
        if (m.start() - k) % 2 == 0:
            return m.start()
    return -1


def restyle(escape_at: int, out: list[_Edit], text: str) -> tuple[Style, int]:
    """The style of ``text``, made by the edits ``out`` (from :func:`edits`) to a text whose first non-ASCII
    escape was at ``escape_at`` (-1: none), and where the first one in ``text`` is, without a scan of all of
    ``text`` when that can be told from the edits: an edit replaces whole values or members and never cuts into a
    string, so an escape (with the backslashes before it) lies wholly inside an unchanged stretch or inside a
    replacement. One before the first edit stays where it was; with none before, none outside the replacements."""
    if escape_at >= 0 and (not out or escape_at + 6 <= out[0][0]):
        found = escape_at
    elif escape_at < 0 and not any(first_non_ascii_escape(replacement) >= 0 for _, _, replacement in out):
        found = -1
    else:  # (an escape at or after the first edit: where it is now is looked for again)
        found = first_non_ascii_escape(text)
    return detect_style(text, escape=found >= 0), found


_STRING = {True: json.encoder.encode_basestring_ascii, False: json.encoder.encode_basestring}  # (C, when built)
_CONSTANTS = {id(None): "null", id(True): "true", id(False): "false"}


class _Unusual(Exception):
    """A value :func:`_indented` leaves to json.dumps (a type other than JSON's own, a float not finite)."""


def _indented(value: Any, string: Any, indent: str, items: str, keys: str, line: str) -> str:
    """json.dumps(value, indent=indent, separators=(items, keys)) for a value of JSON's own types, its line breaks
    ``line`` (the newline and the indentation of the value's own line): json.dumps with an indent runs the encoder
    written in Python (the C one does no indent), which for the few small values an edit writes costs more than
    this. Raises _Unusual for anything else (subclasses, non-str keys, NaN and infinities), and for containers in
    themselves (json.dumps says so)."""
    kind = type(value)
    if kind is str:
        return string(value)  # type: ignore[no-any-return]
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Unusual
        return float.__repr__(value)
    constant = _CONSTANTS.get(id(value))
    if constant is not None:
        return constant
    inner = line + indent
    if kind is dict:
        if not value:
            return "{}"
        parts = []
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual
            parts.append(string(key) + keys + _indented(item, string, indent, items, keys, inner))
        return "{" + inner + (items + inner).join(parts) + line + "}"
    if kind is list:
        if not value:
            return "[]"
        parts = [_indented(item, string, indent, items, keys, inner) for item in value]
        return "[" + inner + (items + inner).join(parts) + line + "]"
    raise _Unusual


def dumps(value: Any, style: Style, base_indent: str = "", level_indent: int = 0) -> str:
    """Serialize ``value`` in ``style``; continuation lines are prefixed by ``base_indent`` and ``level_indent``
    more indentation units (the first line is not: it continues the line the value is written into)."""
    if style.indent is None:
        return json.dumps(
            value,
            ensure_ascii=style.ensure_ascii,
            separators=(style.item_separator, style.key_separator),
        )
    line = style.newline + base_indent + style.indent * level_indent
    try:
        return _indented(
            value, _STRING[style.ensure_ascii], style.indent, style.item_separator, style.key_separator, line
        )
    except (_Unusual, RecursionError):
        pass
    out = json.dumps(
        value,
        ensure_ascii=style.ensure_ascii,
        indent=style.indent,
        separators=(style.item_separator, style.key_separator),
    )
    prefix = base_indent + style.indent * level_indent
    if prefix or style.newline != "\n":
        # json.dumps escapes newlines inside strings, so every "\n" in its output is a line break.
        out = out.replace("\n", style.newline + prefix)
    return out


def apply(text: str, old: Any, new: Any, spans: Mapping[int, int] | None = None) -> str:
    """Return `text` (a JSON document whose json.loads() == old) edited so that json.loads(result) == new,
    changing only the parts of the text whose values differ.

    Returns ``text`` itself when nothing differs. Raises ValueError when the text visibly does not hold ``old``
    (a container of another kind, a key or an item count that does not match) or is not valid JSON where it is
    read; values that are skipped unchanged are not compared with ``old``.

    ``spans`` maps the offsets where values of ``text`` start to where they end, for values the caller has found
    already (a queue's tasks, by :mod:`agentd.store.file.incremental`): those are skipped without scanning them again.
    """
    return apply_where(text, old, new, spans)[0]


def apply_where(text: str, old: Any, new: Any, spans: Mapping[int, int] | None = None) -> tuple[str, tuple[int, int]]:
    """:func:`apply`, and how many characters at the start and at the end of ``text`` the result keeps as they were
    (at least: the text before the first edit and after the last)."""
    out = edits(text, old, new, spans)
    if not out:
        return text, (len(text), len(text))
    return render(text, out), (out[0][0], len(text) - out[-1][1])


def edits(
    text: str,
    old: Any,
    new: Any,
    spans: Mapping[int, int] | None = None,
    *,
    style: Style | None = None,
    changed: tuple[list[Any], list[Any], list[int]] | None = None,
    latin1: bool = False,
) -> list[_Edit]:
    """The edits :func:`apply` makes: ``(start, end, replacement)``, in order, none overlapping (none when nothing
    differs). A caller that holds ``text``'s bytes can splice them itself (:func:`render` for the text). ``style``:
    ``detect_style(text)``, when the caller knows it. ``changed``: ``(a list in old, the list in its place in new,
    the places in order where new's holds other objects than old's)``, when the caller knows them (a list of
    thousands of tasks of which a transaction changed two): not looked for. ``latin1``: ``text`` is UTF-8 bytes read
    as Latin-1 (see :func:`agentd.store.file.incremental.utf8_text`), and so are the replacements (their characters
    outside ASCII as their UTF-8 bytes; UnicodeEncodeError for a lone surrogate, which no bytes hold)."""
    if _same(old, new):
        return []
    editor = _Editor(text, spans, style, latin1)
    editor.changed = changed
    start = editor.ws(0)
    out: list[_Edit] = []
    end = editor.edit(start, old, new, False, out)
    if editor.ws(end) != len(text):
        raise ValueError(f"extra data after the JSON value at offset {editor.ws(end)}")
    out.sort(key=lambda e: (e[0], e[1]))
    cursor = 0
    for start, end, _ in out:
        if start < cursor:
            raise AssertionError(f"overlapping edits at offset {start}")  # a bug in this module
        cursor = end
    if latin1:
        # Only the values and keys written anew hold characters outside ASCII: what a replacement takes from the text
        # (separators, indentation) is JSON's whitespace and punctuation.
        out = [edit if edit[2].isascii() else (edit[0], edit[1], _as_latin1(edit[2])) for edit in out]
    return out


def _as_latin1(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def render(text: str, out: list[_Edit]) -> str:
    """``text`` with the ordered, non-overlapping edits ``out`` made (the queue store splices bytes instead)."""
    parts: list[str] = []
    cursor = 0
    for start, end, replacement in out:
        parts.append(text[cursor:start])
        parts.append(replacement)
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def _identical_head(old: Iterable[Any], new: Iterable[Any], limit: int) -> int:
    """How many leading items (at most ``limit``) two sequences share as the very same objects (found in C)."""
    return min(limit, next(compress(count(), map(operator.is_not, old, new)), limit))


def _same(a: Any, b: Any) -> bool:
    """Python equality, except that scalars of different JSON kinds (1, 1.0, True) and 0.0/-0.0 differ, and NaN
    equals NaN."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):  # also a dict and a dict subclass: the caller then looks inside
        return False
    if kind is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    equal: bool = a == b
    return equal


def _fingerprint(value: Any) -> str:
    """A string equal for two values only when they are equal JSON values (for aligning list items)."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


_LOOKAHEAD = 16  # how far _align looks for the next equal pair of items after a difference
_ALIGN_BUDGET = 200_000  # item comparisons _align may make before it falls back to difflib


def _align(old: list[Any], new: list[Any], start: int, old_end: int, new_end: int) -> list[tuple[int, int, int, int]]:
    """Align ``old[start:old_end]`` with ``new[start:new_end]``: the blocks ``(i1, i2, j1, j2)`` where
    ``old[i1:i2]`` becomes ``new[j1:j2]``, separated by runs of equal items.

    Greedy and cheap (C-speed ``==`` on the items): after a difference, the nearest equal pair within
    ``_LOOKAHEAD`` items resynchronises. When there is none, the rest is aligned by difflib on fingerprints.
    """
    blocks: list[tuple[int, int, int, int]] = []
    i, j = start, start
    budget = _ALIGN_BUDGET
    while i < old_end and j < new_end:
        if _same(old[i], new[j]):
            i += 1
            j += 1
            continue
        found: tuple[int, int] | None = None
        # (only the resync points inside both lists are looked at: near the end of a short middle, a few)
        old_left, new_left = min(_LOOKAHEAD, old_end - 1 - i), min(_LOOKAHEAD, new_end - 1 - j)
        for cost in range(1, old_left + new_left + 1):
            # Among resync points as far away, prefer the one that changes as many items as it adds or drops.
            for di in sorted(range(max(0, cost - new_left), min(cost, old_left) + 1), key=lambda d: abs(2 * d - cost)):
                dj = cost - di
                budget -= 1
                if _same(old[i + di], new[j + dj]):
                    found = (di, dj)
                    break
            if found is not None or budget <= 0:
                break
        if found is None:
            break
        blocks.append((i, i + found[0], j, j + found[1]))
        i += found[0]
        j += found[1]
    if i < old_end or j < new_end:
        if old_end - i == new_end - j or i == old_end or j == new_end:
            blocks.append((i, old_end, j, new_end))
        else:
            import difflib  # (rarely needed: not imported by every CLI call)

            matcher = difflib.SequenceMatcher(
                None,
                [_fingerprint(v) for v in old[i:old_end]],
                [_fingerprint(v) for v in new[j:new_end]],
                autojunk=False,
            )
            for tag, a1, a2, b1, b2 in matcher.get_opcodes():
                if tag != "equal":
                    blocks.append((i + a1, i + a2, j + b1, j + b2))
    return blocks


class _Editor:
    """Collects the edits that turn the text of ``old`` into the text of ``new``."""

    def __init__(
        self, text: str, spans: Mapping[int, int] | None = None, style: Style | None = None, latin1: bool = False
    ) -> None:
        self.text = text
        self.latin1 = latin1  # the text is UTF-8 bytes read as Latin-1: its keys outside ASCII are decoded
        self.spans: Mapping[int, int] = spans or {}
        self._style: Style | None = style
        self.changed: tuple[list[Any], list[Any], list[int]] | None = None  # see edits()

    @property
    def style(self) -> Style:
        if self._style is None:
            self._style = detect_style(self.text)
        return self._style

    # --- reading -------------------------------------------------------------------------------------------

    def ws(self, pos: int) -> int:
        m = _WS.match(self.text, pos)
        return m.end() if m else pos

    def _known_items(self, first: int, count: int) -> bool:
        """Whether ``spans`` are exactly the items of the array whose first item starts at ``first``."""
        if len(self.spans) != count or not count:
            return False
        return next(iter(self.spans)) == first

    def skip(self, pos: int) -> int:
        """The end of the JSON value that starts at ``pos``."""
        known = self.spans.get(pos)
        if known is not None:
            return known
        try:
            return int(_scan_once(self.text, pos)[1])
        except StopIteration:
            raise ValueError(f"expected a JSON value at offset {pos}") from None
        except ValueError:  # an integer too long for int() inside it: skipped as text
            return int(_scan_keeping_ints(self.text, pos)[1])

    def char(self, pos: int) -> str:
        return self.text[pos : pos + 1]

    def line_indent(self, pos: int) -> str:
        """The leading whitespace of the line that ``pos`` is on."""
        m = _INDENT.match(self.text, self.text.rfind("\n", 0, pos) + 1)
        return m.group() if m else ""

    # --- writing -------------------------------------------------------------------------------------------

    def dump(self, value: Any, inline: bool, base_indent: str) -> str:
        """``value`` in the document's style; compact inside a one-line container of a multi-line document."""
        style = self.style
        if inline and style.indent is not None:
            style = style.replace(indent=None, item_separator=", ")
        return dumps(value, style, base_indent)

    def inline_separator(self) -> str:
        style = self.style
        return style.item_separator if style.indent is None else ", "

    def entry_separator(self, open_pos: int, starts: list[int], ends: list[int], inline: bool) -> str:
        """The text between two entries of the non-empty container at ``open_pos`` (comma included)."""
        if len(starts) >= 2:
            return self.text[ends[-2] : starts[-1]]
        lead = self.text[open_pos + 1 : starts[0]]
        if inline or "\n" not in lead:
            return self.inline_separator()
        return self.style.item_separator + self.style.newline + lead[lead.rfind("\n") + 1 :]

    def fill_empty(self, open_pos: int, close_pos: int, entries: list[str], inline: bool) -> _Edit:
        """The edit that writes ``entries`` into the empty container between ``open_pos`` and ``close_pos``."""
        if inline or self.style.indent is None:
            return (open_pos + 1, close_pos, self.inline_separator().join(entries))
        outer = self.line_indent(open_pos)
        inner = outer + self.style.indent
        nl = self.style.newline
        body = (self.style.item_separator + nl + inner).join(entries)
        return (open_pos + 1, close_pos, nl + inner + body + nl + outer)

    def entries_indent(self, open_pos: int, sep: str, inline: bool) -> str:
        """The indentation of the lines that new entries of a container start on."""
        if not inline and "\n" in sep:
            return sep[sep.rfind("\n") + 1 :]
        if inline or self.style.indent is None:
            return ""  # values are written on one line
        return self.line_indent(open_pos) + self.style.indent

    # --- editing -------------------------------------------------------------------------------------------

    def edit(self, pos: int, old: Any, new: Any, inline: bool, out: list[_Edit]) -> int:
        """Append to ``out`` the edits turning the value at ``pos`` (== ``old``, != ``new``) into ``new``;
        return the end of the value."""
        if isinstance(old, dict) and isinstance(new, dict):
            return self.edit_object(pos, old, new, inline, out)
        if isinstance(old, list) and isinstance(new, list):
            return self.edit_array(pos, old, new, inline, out)
        end = self.skip(pos)
        base = "" if inline or self.style.indent is None else self.line_indent(pos)
        out.append((pos, end, self.dump(new, inline, base)))
        return end

    def edit_object(self, pos: int, old: dict[str, Any], new: dict[Any, Any], inline: bool, out: list[_Edit]) -> int:
        text = self.text
        if self.char(pos) != "{":
            raise ValueError(f"expected an object at offset {pos}")
        changed = {k for k, v in old.items() if k in new and not _same(v, new[k])}
        added = [k for k in new if k not in old]
        for k in added:
            if not isinstance(k, str):
                raise TypeError(f"JSON object keys must be str, not {type(k).__name__}: {k!r}")

        keys: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        member_edits: dict[str, list[_Edit]] = {}  # the last occurrence of a key is the one that counts
        i = self.ws(pos + 1)
        if self.char(i) == "}":
            close = i
        else:
            inline = "\n" not in text[pos + 1 : i]
            colon = _COLON.match
            after = _AFTER_MEMBER.match
            while True:
                if text.startswith('"', i):
                    key, j = _scanstring(text, i + 1)
                    if self.latin1 and not key.isascii():
                        key = _scanstring(utf8_text(text[i:j]), 1)[0]
                else:
                    raise ValueError(f"expected a key at offset {i}")
                if key not in old:
                    raise ValueError(f"key {key!r} at offset {i} is not in the old value")
                m = colon(text, j)
                if m is None:
                    raise ValueError(f"expected ':' at offset {j}")
                v = m.end()
                if key in changed:
                    sub: list[_Edit] = []
                    end = self.edit(v, old[key], new[key], inline, sub)
                    member_edits[key] = sub
                else:
                    end = self.skip(v)
                keys.append(key)
                starts.append(i)
                ends.append(end)
                m = after(text, end)
                if m is None:
                    raise ValueError(f"expected ',' or '}}' at offset {self.ws(end)}")
                if m.start(1) >= 0:
                    close = m.start(1)
                    break
                i = m.end()
        if len(set(keys)) != len(old):
            raise ValueError(f"the object at offset {pos} does not have the keys of the old value")
        for sub in member_edits.values():
            out.extend(sub)

        n = len(keys)
        kept = [k in new for k in keys]
        sep = self.entry_separator(pos, starts, ends, inline) if n and added else ""
        base = self.entries_indent(pos, sep, inline)
        new_entries = [self.key_text(k) + self.style.key_separator + self.dump(new[k], inline, base) for k in added]
        if n == 0:
            if new_entries:
                out.append(self.fill_empty(pos, close, new_entries, inline))
            return close + 1
        if not any(kept):
            if new_entries:
                out.append((starts[0], ends[-1], sep.join(new_entries)))
            else:
                out.append((pos + 1, close, ""))
            return close + 1
        self.remove_runs(kept, starts, ends, pos, close, out)
        if new_entries:
            last = max(idx for idx in range(n) if kept[idx])
            out.append((ends[last], ends[last], sep + sep.join(new_entries)))
        return close + 1

    def key_text(self, key: str) -> str:
        return json.dumps(key, ensure_ascii=self.style.ensure_ascii)

    def remove_runs(
        self, kept: list[bool], starts: list[int], ends: list[int], open_pos: int, close_pos: int, out: list[_Edit]
    ) -> None:
        """Remove every maximal run of entries that are not kept, with the separators and whitespace around them."""
        n = len(kept)
        idx = 0
        while idx < n:
            if kept[idx]:
                idx += 1
                continue
            run_end = idx
            while run_end < n and not kept[run_end]:
                run_end += 1
            out.append(self.removal(idx, run_end, starts, ends, open_pos, close_pos))
            idx = run_end

    @staticmethod
    def removal(a: int, b: int, starts: list[int], ends: list[int], open_pos: int, close_pos: int) -> _Edit:
        """The edit removing entries ``a`` to ``b - 1``."""
        if a > 0:  # from the end of the entry before: its comma and the line break go with the run
            return (ends[a - 1], ends[b - 1], "")
        if b < len(starts):  # from the run's first entry up to the next one
            return (starts[a], starts[b], "")
        return (open_pos + 1, close_pos, "")

    def edit_array(self, pos: int, old: list[Any], new: list[Any], inline: bool, out: list[_Edit]) -> int:
        text = self.text
        if self.char(pos) != "[":
            raise ValueError(f"expected an array at offset {pos}")
        n_old, n_new = len(old), len(new)
        shortest = min(n_old, n_new)
        told = self.changed
        if told is not None and told[0] is old and told[1] is new and n_old == n_new:
            places = told[2]  # (the caller knows where the items are other objects)
            p = places[0] if places else shortest
        else:
            places = None
            p = _identical_head(old, new, shortest)  # (at C speed: a queue's tasks are mostly the very same objects)
        while p < shortest and _same(old[p], new[p]):
            p += 1
        if places is not None:
            s = n_old - 1 - places[-1] if places and places[-1] >= p else shortest - p
        else:
            s = _identical_head(reversed(old), reversed(new), shortest - p)  # (the same, from the end)
        while s < shortest - p and _same(old[n_old - 1 - s], new[n_new - 1 - s]):
            s += 1
        old_mid, new_mid = n_old - p - s, n_new - p - s

        # What to do, on old indices: pairs of items to edit in place, runs of items to delete, new items to
        # insert before an old index, runs of old items to write over with new ones.
        pairs: dict[int, int] = {}
        deletes: list[tuple[int, int]] = []
        inserts: list[tuple[int, list[Any]]] = []
        replaces: list[tuple[int, int, list[Any]]] = []

        differing = 0
        if old_mid == new_mid:
            differing = sum(1 for k in range(p, p + old_mid) if not _same(old[k], new[k]))
        if old_mid == new_mid and 2 * differing <= old_mid + 1:
            blocks = [(p, p + old_mid, p, p + new_mid)]
        else:
            # Items were inserted or removed (or shifted: most pairs differ): align the middles on equal items.
            blocks = _align(old, new, p, n_old - s, n_new - s)
        for i1, i2, j1, j2 in blocks:
            if i2 - i1 == j2 - j1:
                for k in range(i2 - i1):
                    if not _same(old[i1 + k], new[j1 + k]):
                        pairs[i1 + k] = j1 + k
            elif i1 == i2:
                inserts.append((i1, new[j1:j2]))
            elif j1 == j2:
                deletes.append((i1, i2))
            else:
                replaces.append((i1, i2, new[j1:j2]))

        starts: list[int] = []
        ends: list[int] = []
        i = self.ws(pos + 1)
        if self.char(i) == "]":
            close = i
        elif self._known_items(i, n_old):
            # The items' extents are known (a queue's tasks, from the parse): no walk over thousands of them.
            inline = "\n" not in text[pos + 1 : i]
            # (a parse's Spans hold the lists already, never changed: used as they are)
            starts = getattr(self.spans, "starts", None) or list(self.spans)
            ends = getattr(self.spans, "ends", None) or list(self.spans.values())
            for k in sorted(pairs):
                if self.edit(starts[k], old[k], new[pairs[k]], inline, out) != ends[k]:
                    raise ValueError(f"the item at offset {starts[k]} does not end where it was parsed to end")
            m = _AFTER_ITEM.match(text, ends[-1])
            if m is None or m.start(1) < 0:
                raise ValueError(f"expected ']' at offset {self.ws(ends[-1])}")
            close = m.start(1)
        else:
            inline = "\n" not in text[pos + 1 : i]
            after = _AFTER_ITEM.match
            k = 0
            while True:
                if k >= n_old:
                    raise ValueError(f"the array at offset {pos} has more items than the old value")
                starts.append(i)
                j = pairs.get(k)
                end = self.skip(i) if j is None else self.edit(i, old[k], new[j], inline, out)
                ends.append(end)
                m = after(text, end)
                if m is None:
                    raise ValueError(f"expected ',' or ']' at offset {self.ws(end)}")
                if m.start(1) >= 0:
                    close = m.start(1)
                    break
                i = m.end()
                k += 1
        if len(starts) != n_old:
            raise ValueError(f"the array at offset {pos} has {len(starts)} items, the old value {n_old}")

        if not (deletes or inserts or replaces):
            return close + 1
        if n_old == 0:
            base = self.entries_indent(pos, "", inline)
            out.append(self.fill_empty(pos, close, [self.dump(v, inline, base) for v in new], inline))
            return close + 1
        sep = self.entry_separator(pos, starts, ends, inline)
        base = self.entries_indent(pos, sep, inline)

        def joined(values: list[Any]) -> str:
            return sep.join(self.dump(v, inline, base) for v in values)

        for a, b in deletes:
            out.append(self.removal(a, b, starts, ends, pos, close))
        for a, values in inserts:
            if a > 0:
                out.append((ends[a - 1], ends[a - 1], sep + joined(values)))
            else:
                out.append((starts[0], starts[0], joined(values) + sep))
        for a, b, values in replaces:
            out.append((starts[a], ends[b - 1], joined(values)))
        return close + 1
