"""What a read of the queue derives from its top-level tasks (their walk, problems, warnings, views, structural
findings), kept for the next read so that it costs what changed.

A store reads the queue after every write anyone makes, and a write changes one task of thousands or adds one at the
end. The decoder (:mod:`agentd.store.file.incremental`) hands out the same :class:`Piece` objects for unchanged
tasks, and the same leading run of them for the unchanged head of the file; what was derived from that head is
taken by slicing (lists compared and cut in C), and only the pieces after it are looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping

from agentd import schema
from agentd.core.model import Task, walk_one
from agentd.core.record import Record, set_field
from agentd.core.validate import Finding, structural, structural_and_ids, structural_phase
from agentd.store.file.incremental import Piece

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar

    D = TypeVar("D")
else:  # (typing is not imported at run time on the CLI's hot path: PerPiece[...] is written in annotations only)
    D = None
    Generic = {None: object}


class PerPiece(Generic[D]):
    """A list derived from a read's pieces, piece by piece (its entries, its task views), kept for the next read:
    the part derived from the pieces it shares at the start with the last read (the same objects: the unchanged head
    of the file) is taken by slicing, at C speed, and only the pieces after it are looked at."""

    def __init__(
        self,
        name: str,
        make: Callable[[int, Piece, int], list[D]],
        *,
        by_start: bool = False,
        kept: bool = True,
        sparse: bool = False,
    ) -> None:
        self.name = name  # the key of each piece's own cache of its part
        self.make = make  # (position, piece, how many items come before it) -> its part
        self.by_start = by_start  # whether a part depends on how many items come before it (not only on its place)
        # Whether each piece keeps its part (to be found again at the same place and start): False for a part that
        # costs no more to make than to look up (an id, a walk of a task without subtasks), which then costs a big
        # queue's first read no cache entry per piece and per part (a third of its time).
        self.kept = kept
        # Whether a piece keeps its part only when it has items: for a part nearly always empty, and then as cheap to
        # make again as to look up (a task's problems once its text is known valid, its unknown statuses), which
        # costs a big queue's first read no cache entry per piece (5.4 → 2 ms and 7.4 → 4.3 ms for 10,000 tasks).
        self.sparse = sparse
        self._last: tuple[list[Piece], list[D], list[int]] = ([], [], [0])
        # The last STEPS_KEPT changes of the items list: (before, after, where after holds other items than before,
        # None where not known), oldest first; and the last HANDED_KEPT copies handed out, with the list each copies
        # (see changed_between). Each replaced in one assignment: a reader in another thread sees the old or the new.
        self._steps: tuple[tuple[list[D], list[D], tuple[int, ...] | None], ...] = ()
        self._handed: tuple[tuple[list[D], list[D]], ...] = ()

    def derive(self, pieces: list[Piece]) -> tuple[list[D], list[int]]:
        """(the items of every piece in order, and where each piece's items start: ``counts[k]`` items come from
        the first ``k`` pieces). Both are shared: read-only."""
        old, old_items, old_counts = self._last
        head = common_head(old, pieces)
        total = len(pieces)
        if head == len(old) == total:
            return old_items, old_counts
        if len(old) == total:
            return self._patch(pieces)
        # The same pieces at the same places at the end too (one task changed in the middle): their part is taken
        # as it was, by slicing (counts shifted by how many items the middle gained or lost).
        tail = min(common_tail(old, pieces), total - head) if len(old) == total else 0
        items, counts = old_items[: old_counts[head]], old_counts[: head + 1]
        name = self.name
        if not self.kept:
            make, append = self.make, counts.append
            for position in range(head, total - tail):  # (a big queue's first read: 10,000 turns, kept lean)
                items += make(position, pieces[position], len(items))
                append(len(items))
        elif self.sparse:
            make, append, by_start = self.make, counts.append, self.by_start
            for position in range(head, total - tail):  # (as the loop below, the empty parts not kept)
                piece = pieces[position]
                cached = piece.derived.get(name)
                if cached is None or cached[0] != position or (by_start and cached[1] != len(items)):
                    part = make(position, piece, len(items))
                    if part:
                        piece.derived[name] = (position, len(items), part)
                    items += part
                else:
                    items += cached[2]
                append(len(items))
        else:
            for position in range(head, total - tail):
                piece = pieces[position]
                cached = piece.derived.get(name)
                if cached is None or cached[0] != position or (self.by_start and cached[1] != len(items)):
                    cached = (position, len(items), self.make(position, piece, len(items)))
                    piece.derived[name] = cached
                items.extend(cached[2])
                counts.append(len(items))
        if tail:
            shift = len(items) - old_counts[total - tail]
            if shift and self.by_start:  # (what the tail's parts are depends on where they start: made again)
                self._last = (pieces[: total - tail], items, counts)
                self._step(old_items, items, None)
                return self.derive(pieces)
            items += old_items[old_counts[total - tail] :]
            counts += map(shift.__add__, old_counts[total - tail + 1 :]) if shift else old_counts[total - tail + 1 :]
        self._last = (pieces, items, counts)  # (one assignment: a reader in another thread sees the old or the new)
        self._step(old_items, items, None)
        return items, counts

    def follow(self, pieces: list[Piece]) -> None:
        """:meth:`derive` for ``pieces`` if this cache was asked for before (a cache kept in step with every read
        compares each read with the one before it, whose differences the decoder tells; one left behind compares
        lists of 10,000 pieces), else nothing (a process that never asks for it does not pay for it)."""
        if self._last[0]:
            self.derive(pieces)

    def _patch(self, pieces: list[Piece]) -> tuple[list[D], list[int]]:
        """:meth:`derive` for a read with as many pieces as the last: only the pieces that differ from the last
        read's at their place (found in C) are looked at, the runs between them taken by slicing, however far apart
        the changes are (an outside save near the start and this store's own write near the end of a big queue)."""
        old, old_items, old_counts = self._last
        name = self.name
        places = changed_places(old, pieces)
        # Each changed piece with as many items as before (a task's status or notes changed): the counts stay as
        # they were (shared), and the items are the last read's with those pieces' put in their places.
        parts = []
        for position in places:
            start, end = old_counts[position], old_counts[position + 1]
            part = self._part(position, pieces[position], start, name)
            if len(part) != end - start:
                break
            parts.append(part)
        else:
            items = old_items.copy()
            for position, part in zip(places, parts, strict=True):
                items[old_counts[position] : old_counts[position + 1]] = part
            self._last = (pieces, items, old_counts)
            self._step(old_items, items, tuple(k for p in places for k in range(old_counts[p], old_counts[p + 1])))
            return items, old_counts
        items = []
        counts = [0]
        at = 0
        for position in [*places, len(pieces)]:
            if position > at:  # pieces at..position-1: the last read's, at the same places
                shift = len(items) - old_counts[at]
                if shift and self.by_start:  # (their parts depend on where they start: made again)
                    for k in range(at, position):
                        self._add(k, pieces[k], items, name)
                        counts.append(len(items))
                else:
                    items += old_items[old_counts[at] : old_counts[position]]
                    run = old_counts[at + 1 : position + 1]
                    counts += map(shift.__add__, run) if shift else run
            if position < len(pieces):
                self._add(position, pieces[position], items, name)
                counts.append(len(items))
            at = position + 1
        self._last = (pieces, items, counts)
        self._step(old_items, items, None)
        return items, counts

    def _step(self, before: list[D], after: list[D], places: tuple[int, ...] | None) -> None:
        if self._handed:  # (only a cache that hands copies out is asked: the others keep no old lists alive)
            self._steps = (*self._steps[1 - STEPS_KEPT :], (before, after, places))

    def hand(self, items: list[D]) -> list[D]:
        """A copy of ``items`` (a list :meth:`derive` returned) for a caller to keep, remembered with the list it
        copies: :meth:`changed_between` compares two such copies."""
        copy = list(items)
        self._handed = (*self._handed[1 - HANDED_KEPT :], (copy, items))
        return copy

    def changed_between(self, before: list[D], after: list[D]) -> set[int] | None:
        """The places where ``after`` may hold other items than ``before`` (a superset), two copies :meth:`hand` made
        lately, found from the derivations between them (the places each one changed; a list of as many items, each
        changed where its pieces changed): None where that is not known (a list made otherwise, or long ago, or a
        change in the number of items on the way)."""
        if before is after:
            return set()
        sources = {id(copy): made for copy, made in self._handed if copy is before or copy is after}
        start, end = sources.get(id(before)), sources.get(id(after))
        if start is None or end is None:
            return None
        found: set[int] = set()
        at = start
        for old, new, places in self._steps:
            if at is end:
                break
            if old is at:
                if places is None:
                    return None
                found.update(places)
                at = new
        return found if at is end else None

    def _add(self, position: int, piece: Piece, items: list[D], name: str) -> None:
        """Append the part of ``piece`` at ``position`` (made, or the one it keeps for that place and start)."""
        items.extend(self._part(position, piece, len(items), name))

    def _part(self, position: int, piece: Piece, start: int, name: str) -> list[D]:
        """The part of ``piece`` at ``position`` after ``start`` items (made, or the one it keeps for them)."""
        if not self.kept:
            return self.make(position, piece, start)
        cached = piece.derived.get(name)
        if cached is None or cached[0] != position or (self.by_start and cached[1] != start):
            made = self.make(position, piece, start)
            if made or not self.sparse:
                piece.derived[name] = (position, start, made)
            return made
        part: list[D] = cached[2]
        return part


STEPS_KEPT = 8  # the changes of a derived list that are kept (see PerPiece.changed_between): a pass makes 2 or 3
HANDED_KEPT = 4  # the copies handed out that are remembered with the list each copies

# The last pair of reads compared, and what they share: the caches of one store (entries, problems, warnings, views,
# structure) all compare the same two reads in turn. (One assignment each: a thread sees the old or the new answer.)
_last_head: tuple[list[Piece], list[Piece], int] = ([], [], 0)
_last_tail: tuple[list[Piece], list[Piece], int] = ([], [], 0)


_last_changed: tuple[list[Piece], list[Piece], list[int]] = ([], [], [])
# The places where the decoder's last parse holds other pieces than the one before (it knows them as it parses):
# the caches compare exactly those two reads, so none of them compares the lists (three scans of a 10,000-task list,
# each touching every piece, per read).
_known: tuple[list[Piece], list[Piece], list[int]] = ([], [], [])


def known(old: list[Piece], new: list[Piece], places: list[int]) -> None:
    """Say that ``new`` (as long as ``old``) holds other objects than ``old`` exactly at ``places`` (in order):
    what :func:`changed_places`, :func:`common_head` and :func:`common_tail` answer for that pair, not compared."""
    global _known
    _known = (old, new, places)


def changed_places(old: list[Piece], new: list[Piece]) -> list[int]:
    """:func:`differing` for two reads of as many pieces (a Piece equals only itself), shared by the caches that
    compare the same two reads in turn."""
    global _last_changed
    told = _known
    if told[0] is old and told[1] is new:
        return told[2]
    memo = _last_changed
    if memo[0] is old and memo[1] is new:
        return memo[2]
    found = differing(old, new)
    _last_changed = (old, new, found)
    return found


def common_head(old: list[Piece], new: list[Piece]) -> int:
    """How many leading pieces two reads share (the same objects: a Piece equals only itself), found by halving
    with list comparisons, which run in C."""
    global _last_head
    if old is new:
        return len(old)
    told = _known
    if told[0] is old and told[1] is new:
        return told[2][0] if told[2] else len(new)
    memo = _last_head
    if memo[0] is old and memo[1] is new:
        return memo[2]
    low, high = 0, min(len(old), len(new))
    if old[:high] == new[:high]:
        low = high
    while high - low > 1:  # old[:low] == new[:low], and they differ before ``high``
        middle = (low + high) // 2
        if old[low:middle] == new[low:middle]:
            low = middle
        else:
            high = middle
    _last_head = (old, new, low)
    return low


def common_tail(old: list[Piece], new: list[Piece]) -> int:
    """How many trailing pieces two reads share (the same objects), found by halving as :func:`common_head` does."""
    global _last_tail
    if old is new:
        return len(old)
    told = _known
    if told[0] is old and told[1] is new:
        return len(new) - 1 - told[2][-1] if told[2] else len(new)
    memo = _last_tail
    if memo[0] is old and memo[1] is new:
        return memo[2]
    low, high = 0, min(len(old), len(new))
    if old[len(old) - high :] == new[len(new) - high :]:
        low = high
    while high - low > 1:  # the last ``low`` are the same, and they differ within the last ``high``
        middle = (low + high) // 2
        if old[len(old) - middle : len(old) - low] == new[len(new) - middle : len(new) - low]:
            low = middle
        else:
            high = middle
    _last_tail = (old, new, low)
    return low


def views_of(position: int, piece: Piece, start: int) -> list[Task]:
    """The views of a top-level task and its subtasks (lazy ones: a piece's value is never changed)."""
    value = piece.value
    if type(value) is dict:
        children = value.get("subtasks")
        if not (isinstance(children, list) and children):  # (the common case: no walk)
            return [Task.lazy(value, index=start, path=f"$.tasks[{position}]")]
    return [
        Task.lazy(task, index=start + offset, path=path, parent=parent)
        if type(task) is dict
        else Task.from_dict(task, index=start + offset, path=path, parent=parent)
        for offset, (path, task, parent) in enumerate(walk_one(value, f"$.tasks[{position}]"))
    ]


def problems_of(position: int, piece: Piece, _start: int) -> list[Finding]:
    if piece.key in schema.VALID_TASKS:  # (nearly every task of a read: judged valid already, by its very text)
        return []
    return schema.task_problems(piece.value, f"$.tasks[{position}]", piece.key)


def walk_of(position: int, piece: Piece, _start: int) -> list[tuple[str, Any, str | None]]:
    return walk_one(piece.value, f"$.tasks[{position}]")


def differing(old: list[Any], new: list[Any]) -> list[int]:
    """The positions, in order, where two lists of one length hold items that differ (neither the same object nor
    ``==``): found by halving with list comparisons, which run in C and take the same object as equal without a
    look inside, at the cost of a few compares of the whole list and a look at each difference (a transaction
    changes a few of thousands of tasks)."""
    found: list[int] = []
    spans = [(0, len(new))]
    while spans:
        low, high = spans.pop()
        if old[low:high] == new[low:high]:
            continue
        if high - low <= 16:
            found += (k for k in range(low, high) if old[k] is not new[k] and old[k] != new[k])
            continue
        middle = (low + high) // 2
        spans += ((middle, high), (low, middle))  # (the lower half next: the places come out in order)
    return found


class _Structure(Record):
    """The structural findings of one read, with what deciding them for tasks added after it takes."""

    _fields = ("pieces", "findings", "ids", "outside")

    pieces: list[Piece]
    findings: list[Finding]
    ids: frozenset[str]  # every string id of the tasks
    outside: frozenset[str]  # the ids their dependencies name and no task has (archived ones, or unknown)

    def __init__(
        self,
        pieces: list[Piece],
        findings: list[Finding],
        ids: frozenset[str],
        outside: frozenset[str],
    ) -> None:
        set_field(self, "pieces", pieces)
        set_field(self, "findings", findings)
        set_field(self, "ids", ids)
        set_field(self, "outside", outside)


class _Known(Container[str]):
    """The ids a dependency may name outside the tasks checked: those of the tasks before them, then the archive's
    (looked up only for a name the first do not have: see :class:`agentd.store.file.archive.Statuses`)."""

    def __init__(self, ids: frozenset[str], archived: Mapping[str, str]) -> None:
        self.ids = ids
        self.archived = archived

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.ids or task_id in self.archived


def _outside(entries: list[tuple[str, Any, str | None]], ids: Container[str]) -> frozenset[str]:
    """The ids the dependencies of ``entries`` name that ``ids`` does not have."""
    found: set[str] = set()
    for _, task, _ in entries:
        deps = task.get("dependencies") if isinstance(task, dict) else None
        if deps and isinstance(deps, list):
            found.update(dep for dep in deps if isinstance(dep, str) and dep not in ids)
    return frozenset(found)


def _shape(piece: Piece) -> tuple[tuple[str, Any, Any], ...]:
    """What the structural checks see of one top-level task: the places, ids and dependencies of it and its
    subtasks (made once per piece)."""
    cached: tuple[tuple[str, Any, Any], ...] | None = piece.derived.get("shape")
    if cached is None:
        cached = tuple(
            (path, task.get("id"), task.get("dependencies")) if isinstance(task, dict) else (path, None, None)
            for path, task, _ in walk_one(piece.value, "")
        )
        piece.derived["shape"] = cached
    return cached


class StructuralChecks:
    """Duplicates, unknown dependencies and cycles: exactly what :func:`agentd.core.validate.structural` finds over
    every task, found at the cost of what changed. They depend on ids, dependencies and places alone: most writes
    change none of them (the last answer stands), and most others add tasks at the end: then only the added tasks are
    checked, against the ids known before, whenever that cannot change a finding about the earlier tasks."""

    def __init__(self) -> None:
        self._last: _Structure | None = None

    def forget(self) -> None:
        """Drop the last answer (what counts as known changed: the archive)."""
        self._last = None

    def check(
        self,
        entries: list[tuple[str, Any, str | None]],
        pieces: list[Piece] | None,
        archived: Mapping[str, str],
    ) -> list[Finding]:
        """The findings over ``entries`` (every task of a read, whose top-level tasks are ``pieces``); a dependency
        on an ``archived`` id is known."""
        last = self._last
        if pieces is None or last is None or len(pieces) < len(last.pieces):
            return self._all(entries, pieces, archived)
        count = len(last.pieces)
        head = common_head(last.pieces, pieces)  # (the same pieces: the same shape, no need to look)
        end = count - min(common_tail(last.pieces, pieces), count - head) if len(pieces) == count else count
        # (len(pieces) >= count, checked above; only the pieces that differ at their place are looked into)
        if len(pieces) == count:
            changed = [k - head for k in changed_places(last.pieces, pieces) if head <= k < end]
        else:
            changed = differing(last.pieces[head:end], pieces[head:end])
        if not all(_shape(pieces[head + k]) == _shape(last.pieces[head + k]) for k in changed):
            return self._all(entries, pieces, archived)
        if len(pieces) == count:
            self._last = _Structure(pieces, last.findings, last.ids, last.outside)
            return last.findings
        added = [entry for n in range(count, len(pieces)) for entry in walk_of(n, pieces[n], 0)]
        new_ids = [task["id"] for _, task, _ in added if _has_id(task)]
        fresh = frozenset(new_ids)
        # An added id that is taken already, or that an earlier task depends on (one it was missing, or found in the
        # archive), changes what the earlier tasks are. (Not the archive itself: it is read only for a dependency.)
        if len(fresh) < len(new_ids) or not fresh.isdisjoint(last.ids) or not fresh.isdisjoint(last.outside):
            return self._all(entries, pieces, archived)
        # (The earlier tasks depend on none of the added ones, so a cycle through an added task has only added ones.)
        ids = last.ids | fresh
        found = structural(added, known=_Known(last.ids, archived))
        merged = sorted(last.findings + found, key=structural_phase) if found else last.findings
        self._last = _Structure(pieces, merged, ids, last.outside | _outside(added, ids))
        return merged

    def _all(
        self, entries: list[tuple[str, Any, str | None]], pieces: list[Piece] | None, archived: Mapping[str, str]
    ) -> list[Finding]:
        found, named = structural_and_ids(entries, known=archived)
        if pieces is not None:
            ids = frozenset(named)
            self._last = _Structure(pieces, found, ids, _outside(entries, ids))
        return found


def _has_id(task: Any) -> bool:
    return isinstance(task, dict) and isinstance(task.get("id"), str)
