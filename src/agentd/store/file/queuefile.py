"""The queue file on disk. The only code that reads or writes it.

Every change is a transaction: take the sidecar lock (``<queue>.lock``, never deleted), read, validate, apply a pure
change to the parsed document, rewrite only the changed text (:mod:`agentd.store.file.jsonedit`), write a temporary file
in the same folder, fsync it, check that nobody edited the queue meanwhile (humans and agents do not take the lock: if
they did, re-read and re-apply), rename it over the queue, fsync the folder. Readers see the old or the new file, never
a partial one. A file that does not parse or validate is never written. In a process that writes the queue again and
again (a daemon), a thread of its own syncs the temporary file while the writer makes the state of its next read
(:class:`_Syncer`).
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import gc
import itertools
import json
import operator
import os
import stat
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from agentd import faults, schema
from agentd.core.model import Task, index_by_id, view_id, views, walk, walk_one
from agentd.core.record import Record, set_field
from agentd.core.validate import (
    STRUCTURAL,
    Finding,
    conflict_markers,
    status_warnings,
    structural,
)
from agentd.core.workflow import Workflow
from agentd.errors import Conflict, FileAccessError, LockTimeout, QueueInvalid, display_path
from agentd.lazylog import get_logger
from agentd.store.file import allocator, derived, spare, stamps, unnamed, writeback
from agentd.store.file import archive as archive_file
from agentd.store.file.archive import Archive
from agentd.store.file.derived import PerPiece, StructuralChecks, differing, problems_of, views_of, walk_of
from agentd.store.file.incremental import Decoded, Decoder, Piece, Spans, utf8_text
from agentd.store.file.sidelock import LockTimedOut, SidecarLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TypeVar

    T = TypeVar("T")
    # (a list of the read's tasks, the list in its place in a changed document, the places where it holds others)
    Changed = tuple[list[Any], list[Any], list[int]]
    # (the BOM prefix, the JSON text, the parse, the findings: the state a read starts from, made ahead of it)
    _Prepared = tuple[str, str, Decoded, list[Finding]]
    _Restyled = tuple[str, Any, int]  # (a text, its jsonedit.Style, its first non-ASCII escape)

log = get_logger(__name__)

BOM = "\ufeff"
_NOTHING = object()  # (equal to nothing but itself)
_BOM_BYTES = BOM.encode("utf-8")
EMPTY = "empty file (expected a JSON object with a 'tasks' list)"
MAX_REAPPLY = 20
LOCK_POLL = 0.005  # s between tries for a held queue lock
TMP_MARK = ".agentd-tmp"
STAT_FROM = 64 * 1024  # bytes: a smaller queue is read and compared (cheaper than probing its file system once)
FREEZE_FROM = 20_000  # objects made in one paused parse from which they are frozen out of the collector (see below)
YOUNG_EVERY = 10_000  # objects made between the collector's young runs once a process holds a big queue (else 700)


def render(data: dict[str, Any], *, indent: int = 2) -> bytes:
    """The bytes of a new queue file holding ``data``: keys in their order, two-space indentation, UTF-8 text as it
    is (no ``\\uXXXX`` escapes), one newline at the end (UnicodeEncodeError for a lone surrogate)."""
    return (json.dumps(data, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")


class _Whole(dict[str, "Any"]):
    """A transaction's new document that replaces the old one as a whole (not edited into the old text)."""


def json_problem(text: str, exc: json.JSONDecodeError) -> str:
    """What a JSON parse error means, in a person's words: a trailing comma is named, with its own line."""
    pos = exc.pos
    if exc.msg.startswith("Illegal trailing comma"):  # Python 3.13+ points at the comma itself
        comma = pos
    else:
        comma = pos - 1
        while comma >= 0 and text[comma] in " \t\r\n":
            comma -= 1
    closer = pos
    while closer < len(text) and text[closer] in " \t\r\n,":
        closer += 1
    if 0 <= comma < len(text) and text[comma] == "," and closer < len(text) and text[closer] in "]}":
        line = text.count("\n", 0, comma) + 1
        column = comma - (text.rfind("\n", 0, comma) + 1) + 1
        kind = "list" if text[closer] == "]" else "object"
        return f"a trailing comma at line {line} column {column} (nothing may follow the last item of a {kind})"
    return f"{exc.msg} (line {exc.lineno} column {exc.colno})"


class QueueMissing(QueueInvalid):
    """The queue file does not exist."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, None, "no such file (create it with `agentd init`)")


class _MaybeMidWrite(QueueInvalid):
    """A parse error that may be a writer caught mid-write (retried briefly before it is reported)."""


class Snapshot(Record):
    """One read of the queue: its bytes, the parsed document, the task views and any warnings.

    ``data`` is read-only: parts of it are shared with later reads of the same store (see
    :mod:`agentd.store.file.incremental`).
    """

    _fields: tuple[str, ...] = (
        "path",
        "raw",
        "data",
        "warnings",
        "errors",
        "pieces",
        "archived",
        "views_cache",
        "ids_cache",
    )
    _no_compare: tuple[str, ...] = (
        "pieces",
        "archived",
        "views_cache",
        "ids_cache",
    )
    _no_repr: tuple[str, ...] = (
        "pieces",
        "archived",
        "views_cache",
        "ids_cache",
    )

    file: str  # the queue file's name (``path`` is its Path)
    raw: bytes
    data: dict[str, Any]
    warnings: list[Finding]
    errors: list[Finding]  # each task's own problems: the task is quarantined
    pieces: list[Piece] | None = None
    archived: Mapping[str, str]  # archived id -> status
    views_cache: PerPiece[Task] | None = None
    ids_cache: PerPiece[Any] | None = None

    def __init__(
        self,
        path: str | Path,
        raw: bytes,
        data: dict[str, Any],
        warnings: list[Finding] | None = None,
        errors: list[Finding] | None = None,
        pieces: list[Piece] | None = None,
        archived: Mapping[str, str] | None = None,
        views_cache: PerPiece[Task] | None = None,
        ids_cache: PerPiece[Any] | None = None,
    ) -> None:
        set_field(self, "file", os.fspath(path))
        set_field(self, "raw", raw)
        set_field(self, "data", data)
        set_field(self, "warnings", list() if warnings is None else warnings)
        set_field(self, "errors", list() if errors is None else errors)
        set_field(self, "pieces", pieces)
        set_field(self, "archived", dict() if archived is None else archived)
        set_field(self, "views_cache", views_cache)
        set_field(self, "ids_cache", ids_cache)

    @property
    def path(self) -> Path:
        """The queue file."""
        return _as_path(self.file)

    @functools.cached_property
    def quarantined(self) -> dict[str, Finding]:
        """Task id (see :func:`agentd.core.model.view_id`) -> its first problem: the tasks nothing may claim, run,
        recover or change until a person fixes them (every other task flows)."""
        out: dict[str, Finding] = {}
        for finding in self.errors:
            if finding.task is not None:
                out.setdefault(finding.task, finding)
        return out

    @functools.cached_property
    def tasks(self) -> list[Task]:
        """Typed views of every task, nested ones included, in queue order (those of unchanged tasks reused)."""
        if self.pieces is None:
            return views(self.data)
        with _collection_paused(len(self.raw)):
            cache = self.views_cache or PerPiece("views", views_of, by_start=True)
            return cache.hand(cache.derive(self.pieces)[0])

    def tasks_changed_since(self, earlier: list[Task]) -> Collection[int] | None:
        """Where :attr:`tasks` may hold other views than ``earlier``, the tasks of an earlier read of this store
        (a superset: a look at these places alone finds every view that is not the same object), as the store's
        derivations between the two reads changed them; None when not known (then every place may differ)."""
        if self.views_cache is None or self.pieces is None:
            return None
        return self.views_cache.changed_between(earlier, self.tasks)

    @functools.cached_property
    def top_ids(self) -> list[Any]:
        """The id of each top-level task (None where it has none), in queue order (read-only: shared with later reads,
        made again only for the tasks that changed)."""
        if self.pieces is None or self.ids_cache is None:
            return [task["id"] if _has_id(task) else None for task in self.data["tasks"]]
        return self.ids_cache.derive(self.pieces)[0]

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The raw dict of one task, or None."""
        return index_by_id(self.data).get(task_id)

    @property
    def wip_limits(self) -> dict[str, int]:
        """The queue's own WIP limits (role -> int)."""
        limits = self.data.get("wip_limits") or {}
        return dict(limits)


class Draft:
    """The document a transaction changes, copied only where it changes.

    ``doc`` shares its tasks with the read it came from (and that read with later ones), so it is never changed
    directly: :meth:`task` hands out a task to change — on first use its whole top-level task is copied (parsed again
    from its own text) and put in the document's place. ``read`` is the file as read, for decisions.
    """

    def __init__(self, read: Snapshot) -> None:
        self.read = read
        self.doc: dict[str, Any] = dict(read.data)
        self.doc["tasks"] = list(read.data["tasks"])
        self._top: list[Any] | None = None  # the id of each top-level task
        self._nested: dict[str, int] | None = None  # subtask id -> the position of its top-level task
        self._copied: dict[int, dict[str, dict[str, Any]]] = {}  # position -> ids in its copied subtree -> dicts
        self._gone: list[int] = []  # the positions (in the read) of top-level tasks removed
        self._added: dict[str, dict[str, Any]] = {}  # id -> each task added at the top level, and their subtasks
        self._moved: dict[str, int | None] = {}  # id -> its position now, for ids added under or removed from the read
        self.whole = False  # the document was replaced as a whole (:meth:`replace`)
        self._tasks = self.doc["tasks"]  # the tasks list made here (a change may put another in its place)

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The task to change (a private copy, in the document), or None when there is no such task."""
        added = self._added.get(task_id)
        if added is not None:
            return added
        position = self._position(task_id)
        if position is None:
            return None
        subtree = self._copied.get(position)
        if subtree is None:
            pieces = self.read.pieces
            index = self._index(position)
            shared = self.doc["tasks"][index]
            if pieces is not None:
                mine = json.loads(pieces[position].key)
            else:
                import copy  # (only for a queue read without pieces)

                mine = copy.deepcopy(shared)
            self.doc["tasks"][index] = mine
            subtree = {raw["id"]: raw for _, raw, _ in walk_one(mine, "") if _has_id(raw)}
            self._copied[position] = subtree
        return subtree.get(task_id)

    def add(self, task: dict[str, Any], parent: str | None = None) -> None:
        """Add ``task`` at the end of the tasks, or of ``parent``'s subtasks (KeyError when there is none)."""
        if parent is None:
            self.doc["tasks"].append(task)
            self._added.update((raw["id"], raw) for _, raw, _ in walk_one(task, "") if _has_id(raw))
            return
        holder = self.task(parent)
        if holder is None:
            raise KeyError(parent)
        holder.setdefault("subtasks", []).append(task)
        position = None if parent in self._added else self._position(parent)
        for _, raw, _ in walk_one(task, ""):
            if _has_id(raw):
                if position is None:
                    self._added[raw["id"]] = raw
                else:
                    self._copied[position][raw["id"]] = raw
                    self._moved[raw["id"]] = position

    def remove(self, task_id: str) -> dict[str, Any] | None:
        """Remove a task and its subtasks from the document; returns it (None when there is no such task)."""
        raw = self.task(task_id)
        if raw is None:
            return None
        gone = {sub["id"] for _, sub, _ in walk_one(raw, "") if _has_id(sub)}
        position = None if task_id in self._added else self._position(task_id)
        if position is not None and self.doc["tasks"][self._index(position)] is raw:
            del self.doc["tasks"][self._index(position)]
            self._gone.append(position)
            self._copied.pop(position, None)
        else:
            _unlink(self.doc["tasks"], raw)
            if position is not None:
                for task in gone:
                    self._copied[position].pop(task, None)
        for task in gone:
            self._added.pop(task, None)
            if position is not None:
                self._moved[task] = None
        return raw

    def replace(self, doc: dict[str, Any]) -> None:
        """Make ``doc`` the whole document (in place: the caller holds :attr:`doc`); every task of it counts as
        added, every task of the read as gone."""
        self.doc.clear()
        self.doc.update(doc)
        self.doc["tasks"] = list(doc.get("tasks") or [])
        self._moved = {raw["id"]: None for _, raw, _ in walk(self.read.data["tasks"]) if _has_id(raw)}
        self._added = {raw["id"]: raw for _, raw, _ in walk(self.doc["tasks"]) if _has_id(raw)}
        self._copied = {}
        self._gone = []
        self.whole = True

    def changed(self) -> tuple[list[Any], list[Any], list[int]] | None:
        """(the read's tasks, the document's, the places in order where the document's hold other objects), when
        known without comparing them: no top-level task came or went, and every one put in its place was copied by
        :meth:`task` (the places of those copies)."""
        tasks = self.doc.get("tasks")
        if self.whole or self._gone or tasks is not self._tasks or len(tasks) != len(self.read.data["tasks"]):
            return None
        return self.read.data["tasks"], tasks, sorted(self._copied)

    def ids(self) -> list[str]:
        """Every task id in the document now, nested ones included, in queue order."""
        return [raw["id"] for _, raw, _ in walk(self.doc["tasks"]) if _has_id(raw)]

    def _index(self, position: int) -> int:
        """Where the top-level task at ``position`` of the read is in the document (after removals)."""
        return position - sum(1 for gone in self._gone if gone < position)

    def _position(self, task_id: str) -> int | None:
        if task_id in self._moved:
            return self._moved[task_id]
        if self._top is None:
            self._top = self.read.top_ids
        with contextlib.suppress(ValueError):  # (the last task with the id, searched from the end in C, no copy)
            return len(self._top) - 1 - operator.indexOf(reversed(self._top), task_id)
        if self._nested is None:  # (made only when a subtask is asked for: a claim of a top-level task needs none)
            self._nested = {}
            for n, task in enumerate(self.read.data["tasks"]):
                if isinstance(task, dict) and task.get("subtasks"):
                    for _, sub, _ in walk_one(task, ""):
                        if _has_id(sub):
                            self._nested.setdefault(sub["id"], n)
        return self._nested.get(task_id)


def _movable(read: Snapshot, select: Callable[[dict[str, Any]], bool]) -> list[int]:
    """The positions of the top-level tasks ``select`` picks, leaving out any with a quarantined task inside."""
    quarantined = read.quarantined
    return [
        n
        for n, task in enumerate(read.data["tasks"])
        if _has_id(task)
        and not any(view_id(raw, path) in quarantined for path, raw, _ in walk_one(task, f"$.tasks[{n}]"))
        and select(task)
    ]


def _unlink(tasks: list[Any], target: dict[str, Any]) -> bool:
    """Delete ``target`` (by identity) from ``tasks`` or the subtasks under them; whether it was found."""
    for n, task in enumerate(tasks):
        if task is target:
            del tasks[n]
            return True
        children = task.get("subtasks") if isinstance(task, dict) else None
        if isinstance(children, list) and _unlink(children, target):
            return True
    return False


def _has_id(task: Any) -> bool:
    return isinstance(task, dict) and isinstance(task.get("id"), str)


def _warnings_of(workflow: Workflow | None, position: int, piece: Piece, _start: int) -> list[Finding]:
    """The unknown statuses of one top-level task and its subtasks (see
    :func:`agentd.core.validate.status_warnings`): none, at a glance, for a task without subtasks in a status the
    workflow knows (nearly every task of a big queue's first read: no walk of it is made)."""
    task = piece.value
    if workflow is not None and type(task) is dict and not task.get("subtasks"):
        status = task.get("status")
        if type(status) is str and status in workflow.known_statuses():
            return []
    return status_warnings(walk_of(position, piece, 0), workflow)


def _id_of(_position: int, piece: Piece, _start: int) -> list[Any]:
    value = piece.value
    task_id = value.get("id") if isinstance(value, dict) else None
    return [task_id if isinstance(task_id, str) else None]


def _share_unchanged(old: dict[str, Any], new: Any) -> Changed | None:
    """Put the read's own objects back in ``new`` for the top-level tasks a change left equal (``==``, compared in
    C): what follows (the checks, the text edit) then finds the few changed tasks by identity, as for a
    :class:`Draft`, instead of comparing thousands of private copies. The text written is the same: an equal task is
    never rewritten. Returns where the tasks are other objects now (see :meth:`Draft.changed`), when as many."""
    old_tasks, new_tasks = old.get("tasks"), new.get("tasks") if isinstance(new, dict) else None
    if not isinstance(old_tasks, list) or not isinstance(new_tasks, list) or len(old_tasks) != len(new_tasks):
        return None
    equal = list(map(operator.eq, old_tasks, new_tasks))
    if all(equal):
        new["tasks"] = list(old_tasks)
    elif any(equal):
        new["tasks"] = [a if same else b for a, b, same in zip(old_tasks, new_tasks, equal, strict=True)]
    else:
        return old_tasks, new_tasks, list(range(len(new_tasks)))
    return old_tasks, new["tasks"], list(itertools.compress(itertools.count(), map(operator.not_, equal)))


def _same_top(old: dict[str, Any], new: dict[str, Any], hint: Changed) -> bool:
    """``new == old``, for documents whose tasks are the very same objects but at the places ``hint`` names."""
    old_tasks, new_tasks, places = hint
    if any(old_tasks[n] != new_tasks[n] for n in places):
        return False
    return old.keys() == new.keys() and all(new[key] == value for key, value in old.items() if key != "tasks")


def _own(task: Any) -> Any:
    """A task without its subtasks (each is an entry of its own): what a change to this very task changes."""
    if isinstance(task, dict) and isinstance(task.get("subtasks"), list):
        return {key: value for key, value in task.items() if key != "subtasks"}
    return task


class _Loaded(Record):
    """One validated read: the bytes, the BOM prefix, the JSON text, the document, its pieces, its findings.

    The text is the bytes after the BOM read as Latin-1, one character a byte (see
    :func:`agentd.store.file.incremental.utf8_text`): the spans, the pieces' texts and a write's edits are in the
    bytes' terms, so a write splices bytes and its next read's text is its bytes again, at one byte a character
    whatever the file holds (a queue with one "→" in it was held, decoded and copied at 2 or 4 bytes a character)."""

    _fields = (
        "raw",
        "prefix",
        "text",
        "data",
        "pieces",
        "spans",
        "findings",
        "archived",
        "views_cache",
        "ids_cache",
        "mark",
        "_snapshots",
    )
    _no_compare = (
        "views_cache",
        "ids_cache",
        "mark",
        "_snapshots",
    )
    _no_repr = (
        "views_cache",
        "ids_cache",
        "mark",
        "_snapshots",
    )

    raw: bytes
    prefix: str
    text: str  # the bytes after the BOM, read as Latin-1
    data: dict[str, Any]
    pieces: list[Piece] | None
    spans: Spans  # where each top-level task starts in ``text`` -> where it ends
    findings: list[Finding]
    archived: Mapping[str, str]  # the archive as it was for this read: archived id -> status
    views_cache: PerPiece[Task] | None = None  # the store's
    ids_cache: PerPiece[Any] | None = None  # the store's
    # The file's identity when these bytes were read or written, when it stands for them (see agentd.store.file.stamps):
    # while the file has it, it is unchanged and need not be read.
    mark: stamps.Identity | None = None
    _snapshots: dict[str, Snapshot]

    def __init__(
        self,
        raw: bytes,
        prefix: str,
        text: str,
        data: dict[str, Any],
        pieces: list[Piece] | None,
        spans: Spans,
        findings: list[Finding],
        archived: Mapping[str, str],
        views_cache: PerPiece[Task] | None = None,
        ids_cache: PerPiece[Any] | None = None,
        mark: stamps.Identity | None = None,
        _snapshots: dict[str, Snapshot] | None = None,
    ) -> None:
        set_field(self, "raw", raw)
        set_field(self, "prefix", prefix)
        set_field(self, "text", text)
        set_field(self, "data", data)
        set_field(self, "pieces", pieces)
        set_field(self, "spans", spans)
        set_field(self, "findings", findings)
        set_field(self, "archived", archived)
        set_field(self, "views_cache", views_cache)
        set_field(self, "ids_cache", ids_cache)
        set_field(self, "mark", mark)
        set_field(self, "_snapshots", dict() if _snapshots is None else _snapshots)

    def snapshot(self, path: str) -> Snapshot:
        """The read as a Snapshot (the same one each time: its task views are made once)."""
        made = self._snapshots.get(path)
        if made is None:
            warnings = [f for f in self.findings if f.severity == "warning"]
            errors = [f for f in self.findings if f.severity == "error"]
            made = self._snapshots[path] = Snapshot(
                path,
                self.raw,
                self.data,
                warnings,
                errors,
                self.pieces,
                self.archived,
                self.views_cache,
                self.ids_cache,
            )
        return made


@contextlib.contextmanager
def _collection_paused(size: int) -> Any:
    """No cyclic garbage collection meanwhile, for the parse of a queue of ``size`` bytes or characters of at least
    :data:`agentd.store.file.allocator.BIG`: a big queue's first read makes some 300,000 objects, and Python's
    collector, counting them, went through every object of the process twice in that read (~10 % of it), and as
    often in a whole-document transaction's private parse (under the lock). What a parse makes holds no reference
    cycle (JSON values, task views); the collector runs as usual once it is over.

    When the paused work made :data:`FREEZE_FROM` objects or more (a big queue's first read, its first views, a parse
    of a file saved anew as a whole), they are moved out of the collector's reach (``gc.freeze()``), with every other
    object of the process: the collector would otherwise go through all of them twice more as they age (its first
    young run and the next older one after the parse: 35-40 ms of a 10,000-task queue's first read, its views, and
    the daemon's first pass) only to find them alive. Frozen objects are freed as any other when the last reference
    to them goes (the old tasks of a later read, a transaction's private copy): only cycles are no longer looked for
    among them, so the cost is the reference cycles already garbage at that moment, kept (a few hundred objects
    at a daemon's start; such a freeze happens again only when that many objects are made in one paused parse)."""
    if size < allocator.BIG or not gc.isenabled():
        yield
        return
    gc.disable()
    made = gc.get_count()[0]  # (objects the collector tracks, made less freed: counted while it is paused too)
    try:
        yield
    finally:
        if gc.get_count()[0] - made >= FREEZE_FROM:
            gc.freeze()
            _collect_young_less_often()
        gc.enable()


def _collect_young_less_often() -> None:
    """Once a process holds a big queue: the collector's young runs every :data:`YOUNG_EVERY` objects made, not
    every 700. Each read and transaction of a 10,000-task queue makes a few lists and dicts of 10,000 entries (the
    parts derived from the read, copied where they changed, see :mod:`agentd.store.file.derived`) that live until the
    next one; a young run goes through each entry of those alive (a cache miss each: 2-6 ms a run, every 7 passes or
    so). Garbage cycles, rare here, wait longer to be freed (at most that many objects). Only ever raised."""
    threshold = gc.get_threshold()
    if threshold[0] < YOUNG_EVERY:
        gc.set_threshold(YOUNG_EVERY, *threshold[1:])


def _splice(loaded: _Loaded, edits: list[tuple[int, int, str]]) -> tuple[bytes, int]:
    """The bytes of ``loaded`` with ``edits`` made (see :func:`agentd.store.file.jsonedit.edits`: places and
    replacements in the bytes' terms, as :attr:`_Loaded.text` is), and how many leading bytes they share with the
    bytes read: where the first edit begins. One copy of the file: what comes before the first edit is the bytes read,
    as they were, each replacement is its own bytes. The text of the new bytes is made from them while they are
    synced (see QueueStore._ahead): the bytes read as Latin-1, one copy at one byte a character.

    Before the text was the bytes read as Latin-1, a queue with one character outside ASCII in it (a task's title
    with an "é", a "—", an emoji: most real queues) was held at 2 or 4 bytes a character, and a write made its whole
    new text at that width: 200 tasks after 10,000 finished ones, one with an emoji in its title, drained in 1,055 ms
    (text encoded whole at every write), then 865 ms (text spliced), against 633 ms for an ASCII queue."""
    raw = memoryview(loaded.raw)
    skip = len(loaded.raw) - len(loaded.text)  # (the BOM's bytes, if any)
    parts: list[bytes | memoryview] = []
    cursor = 0
    for start, end, replacement in edits:
        parts.append(raw[cursor : skip + start])
        parts.append(replacement.encode("latin-1"))
        cursor = skip + end
    parts.append(raw[cursor:])
    return b"".join(parts), skip + edits[0][0] if edits else len(loaded.raw)


def _first_change(
    known: bytes | None, read: bytes, payload: bytes, after: tuple[bytes, int] | None, shared: int | None
) -> int:
    """From which byte ``payload`` is to be written into the kept version, whose bytes are ``known`` (None: not known,
    the whole file): how many leading bytes the two share, at least. Where the version ``read`` is the one the write
    that kept ``known`` made of it (``after``: those bytes, the same object, and how many leading bytes they share
    with ``known``), and ``payload`` shares ``shared`` leading bytes with ``read``, the three agree up to the lesser
    of the two counts, known without a look; else the two are compared (see :func:`spare.common_prefix`)."""
    if known is None:
        return 0
    if after is not None and shared is not None and after[0] is read:
        return min(after[1], shared)
    return spare.common_prefix(known, payload)


class _Syncer:
    """One thread, kept, that syncs a process's temporary queue files while the writing thread makes the state the
    next read starts from (a big queue's write spends 2-5 ms waiting for the disk, and that state takes about 1 ms to
    make). For a big queue's writes; and for a small queue's where its write-out cannot be started without waiting
    (see :meth:`QueueStore._write`). A process's first write of a small queue syncs in its own thread, so that a
    command that writes it once starts no thread (starting one costs about what it would save).

    The sync waits for the disk without the interpreter while the next read's state is made. A second writer (another
    thread of the process) while the thread is busy syncs in its own thread, as before. The thread opens no
    descriptor: the folder's sync after the rename stays the writer's (a sync of it by this thread, the writer going
    on, took the last descriptor from the writer under a low ``ulimit -n``)."""

    def __init__(self) -> None:
        self._pid = 0  # the process whose thread it is (a forked child starts its own)
        self._idle = _thread.allocate_lock()  # held while a sync is handed to the thread or under way
        self._jobs: Any = None  # a queue.SimpleQueue of (fd, done lock, errors, begun lock), made with the thread

    def fsync_meanwhile(self, fd: int, meanwhile: Callable[[], None]) -> None:
        """``os.fsync(fd)`` in the thread while ``meanwhile`` runs in this one; returns, or raises the fsync's error,
        once both are over (``meanwhile``'s own error first)."""
        jobs = self._jobs if self._pid == os.getpid() else self._start()
        if jobs is None or not self._idle.acquire(False):  # (no thread, or another writer's sync under way)
            os.fsync(fd)
            meanwhile()
            return
        done, begun = _thread.allocate_lock(), _thread.allocate_lock()
        done.acquire()
        begun.acquire()
        failed: list[OSError] = []
        jobs.put((fd, done, failed, begun))
        # Until the thread is in its fsync: else it would wait for the interpreter, which ``meanwhile`` holds (the
        # switch interval is 5 ms), and the fsync would come after it rather than beside it.
        begun.acquire()
        try:
            meanwhile()
        finally:
            done.acquire()  # (the descriptor stays open until the fsync is over, whatever happened here)
        if failed:
            raise failed[0]

    def _start(self) -> Any:
        import queue
        import threading  # (loaded already in a daemon: its heartbeat thread)

        jobs: Any = queue.SimpleQueue()
        self._idle = _thread.allocate_lock()  # (a forked child's copy may be held by a sync of its parent's)
        self._pid = os.getpid()
        try:
            threading.Thread(target=self._run, args=(jobs,), name="agentd-queue-fsync", daemon=True).start()
        except RuntimeError:  # no thread to be had: each sync in the writer's thread
            self._jobs = None
            return None
        self._jobs = jobs
        return jobs

    def _run(self, jobs: Any) -> None:
        while True:
            fd, done, failed, begun = jobs.get()
            begun.release()  # (the writer goes on as this thread enters the fsync, letting go of the interpreter)
            try:
                os.fsync(fd)
            except OSError as exc:
                failed.append(exc)
            finally:
                self._idle.release()  # (before the writer goes on: its next write may hand over at once)
                done.release()


_SYNCER = _Syncer()


def _as_path(name: str) -> Path:
    from pathlib import Path  # (here: a queue command makes no Path, see agentd.config.Config)

    return Path(name)


def _os_reason(exc: OSError, target: str) -> str:
    """The system's reason, and the file it concerned when that is not ``target`` (a temporary file, the folder)."""
    reason = exc.strerror or str(exc)
    if exc.filename and str(exc.filename).endswith(TMP_MARK):  # named alike every time: the message repeats as is
        reason += " (creating a temporary file beside it)"
    elif exc.filename and os.path.normpath(os.fsdecode(exc.filename)) != target:
        reason += f" ({display_path(exc.filename)})"
    return reason


def _temp_beside(target: str) -> str:
    """A new temporary file's name beside ``target`` (``.NAME.PID.HEX`` + TMP_MARK)."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}{TMP_MARK}")


class _Retirer:
    """Frees the blocks of a big queue's replaced versions in a thread of its own, after the rename.

    The rename over a queue frees the old file's blocks in the renaming call: on ext4 mounted with ``discard``,
    2-3.5 ms of a transaction's wall time for a 6 MB queue (0.4 ms of CPU: the rest waits for the disk), every
    daemon waiting on the queue lock meanwhile. So the old version gets a second name first (a hard link: a
    temporary file's name, ``.NAME.PID.HEX`` + TMP_MARK), the rename only takes the queue's name from it, and that
    last name is removed here, in a thread, after the transaction. Nothing reads or writes the old version through
    its second name. A process that dies first leaves the name behind, as a dead writer leaves a temporary file:
    the next transaction removes it under the lock. Names still pending when the process exits are removed then.

    A daemon's transaction leaves the fsync of the queue's folder for later (:attr:`QueueStore.folder_sync_later`):
    the thread is woken once that fsync is over, not at the rename. Woken at the rename, it took the interpreter from
    the daemon at its next system call (the queue lock's release), and the daemon, back from it, waited for the thread
    to let go: the two cores busy with the tasks, 0.15-0.25 ms a transaction of a 6 MB queue. Woken before the
    folder's fsync, its removal made that fsync wait for it: 1.5 → 2.4 ms.
    """

    def __init__(self) -> None:
        self._pending: dict[str, None] = {}  # the names to remove, oldest first
        self._wake: Any = None  # a threading.Condition over them, made with the thread
        self._pid = 0  # the process that started the thread (a forked child starts its own)

    def keep(self, target: str) -> str | None:
        """A second name for ``target``, to :meth:`drop` once it is replaced (None where no hard link can be made:
        the rename then frees the file as before)."""
        name = _temp_beside(target)
        try:
            os.link(target, name, follow_symlinks=False)
        except OSError:
            return None
        faults.point("queue.after-link")
        return name

    def drop(self, name: str, *, wake: bool = True) -> None:
        """Remove ``name`` soon, in the thread: at once, or (``wake=False``) at the next :meth:`wake` (or drop: a name
        waits for one other at most)."""
        if self._pid != os.getpid():
            import atexit
            import threading

            self._wake = threading.Condition()
            self._pid = os.getpid()
            threading.Thread(target=self._run, args=(self._wake,), name="agentd-queue-unlink", daemon=True).start()
            atexit.register(self.finish)
        with self._wake:
            self._pending[name] = None
            if wake or len(self._pending) > 1:
                self._wake.notify()

    def wake(self) -> None:
        """Have the thread remove the names pending (nothing when there are none)."""
        if self._pending and self._pid == os.getpid():
            with self._wake:
                self._wake.notify()

    def pending(self, name: str) -> bool:
        """Whether ``name`` is one this process is to remove (not a dead writer's leftover)."""
        return name in self._pending and self._pid == os.getpid()

    def _run(self, wake: Any) -> None:
        while True:
            with wake:
                while not self._pending:
                    wake.wait()
                name = next(iter(self._pending))
            with contextlib.suppress(OSError):
                os.unlink(name)
            with wake:
                self._pending.pop(name, None)

    def finish(self) -> None:
        """Remove what is still pending (at exit)."""
        for name in list(self._pending):
            with contextlib.suppress(OSError):
                os.unlink(name)


_RETIRER = _Retirer()
_SPARES_AT_EXIT: set[str] = set()  # the versions this process keeps to write again, removed at exit (see spare)
_exit_hook = False  # whether _drop_spares_at_exit is registered


def _drop_spares_at_exit() -> None:
    for name in list(_SPARES_AT_EXIT):
        if spare.owner(name, TMP_MARK) == os.getpid():  # (a forked child's exit leaves its parent's alone)
            with contextlib.suppress(OSError):
                os.unlink(name)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class QueueStore:
    """Locked, atomic, format-preserving access to one queue file."""

    def __init__(
        self,
        path: str | Path,
        *,
        workflow: Workflow | None = None,
        lock_timeout: float = 30.0,
        parse_retry: float = 0.5,
        trust_stat: bool | None = None,
    ) -> None:
        self.file = os.fspath(path)  # (``path`` is its Path: a queue command makes none, see agentd.config.Config)
        self._trust_stat = trust_stat  # None: where the file system stamps changes finely (agentd.store.file.stamps)
        self.lock_timeout = lock_timeout
        self.parse_retry = parse_retry
        self._decoder = Decoder(latin1=True)
        self._sidecar: SidecarLock | None = None
        self._holder: tuple[int, SidecarLock] | None = None  # (the thread holding the lock, the lock)
        self._written: tuple[int, ...] | None = None  # the identity of the file this store wrote last (without ctime)
        self._written_mark: stamps.Identity | None = None  # the same, when it stands for the bytes written
        self._seen: stamps.Identity | None = None  # the file's identity as the last read found it or write left it
        self._wrote = False  # whether this store has replaced the queue (a process that writes it again: a daemon)
        # The folder where, from its second write on, the version each write replaces is kept to be written again
        # (see keep_versions): None for none (a command's store), and once leases proved not to be had here.
        self.spares: str | None = None
        self._spare: str | None = None  # the version its last write replaced, so kept
        self._spare_known: tuple[stamps.Identity, bytes] | None = None  # its identity and bytes, when proven (spare)
        # The bytes the write that kept it wrote, and how many leading bytes they share with it at least (known from
        # that write's edits): the next write, of the same bytes edited again, need not compare it to find them.
        self._spare_after: tuple[bytes, int] | None = None
        self._versions_asked = False  # whether keep_versions was called
        self.folder_sync_later = False  # a write leaves its folder's fsync to sync_folder (see FileStore.transaction)
        self._unsynced: str | None = None  # the folder of a rename not fsynced yet (left to sync_folder)
        self._unsynced_lock = _thread.allocate_lock()  # (a writer in another thread waits for a sync under way)
        self._plain: str | None = None  # the queue's path, when it last resolved to itself (see _target)
        self._made: tuple[int, str, int] | None = None  # the next write's file made ahead: fd, folder, pid
        self._made_lock = _thread.allocate_lock()
        self._unnamed = unnamed.AVAILABLE  # False once the folder refused an unnamed file or its naming
        self._archive: Archive | None = None
        self._archived: Mapping[str, str] = {}  # the archive's statuses the caches below were made with
        self._views: PerPiece[Task] = PerPiece("views", views_of, by_start=True)  # the task views of the last read,
        self._ids: PerPiece[Any] = PerPiece("ids", _id_of, kept=False)  # the ids of its top-level tasks,
        self._walks: PerPiece[tuple[str, Any, str | None]] = PerPiece("walk", walk_of, kept=False)  # its entries, and
        self._problems: PerPiece[Finding] = PerPiece("problems", problems_of, sparse=True)  # its tasks' own problems
        self.workflow = workflow  # (and the caches of what earlier reads found)

    @property
    def workflow(self) -> Workflow | None:
        """The workflow whose statuses reads check (warnings only)."""
        return self._workflow

    @workflow.setter
    def workflow(self, value: Workflow | None) -> None:
        self._workflow = value
        self._generation = getattr(self, "_generation", 0) + 1
        self._warnings: PerPiece[Finding] = PerPiece(  # unknown statuses, by this workflow
            f"warnings-{self._generation}", functools.partial(_warnings_of, value), sparse=True
        )
        # What earlier reads found, with the warnings of the old workflow: forgotten.
        self._validated: tuple[bytes, list[Finding]] | None = None  # (the bytes checked, their findings)
        self._style: tuple[str, Any, int] | None = None  # (a text, its jsonedit.Style, its first non-ASCII escape)
        self._structure = StructuralChecks()  # duplicates, unknown dependencies, cycles (with their last answer)
        self._last: _Loaded | None = None  # the last strict read (reused while the bytes are the same)

    @property
    def path(self) -> Path:
        """The queue file."""
        return _as_path(self.file)

    @property
    def lock_path(self) -> Path:
        """The sidecar lock file beside the queue's real file (never deleted): two names for one queue, one lock."""
        return _as_path(self._lock_file())

    def _lock_file(self) -> str:
        return self._target() + ".lock"

    @property
    def archive(self) -> Archive:
        """The archive beside the queue's real file (``SPRINT_QUEUE.archive.jsonl``)."""
        return self._archive_of(self._target())

    def _archive_of(self, target: str) -> Archive:
        """The archive beside ``target``, the queue's real file (resolved by the caller)."""
        name = archive_file.file_for(target)
        if self._archive is None or self._archive.file != name:
            self._archive = Archive(name)
        return self._archive

    def _archived_now(self, target: str | None = None) -> Mapping[str, str]:
        """The archive's statuses (an unreadable archive counts as empty, reported once); when they changed, what
        earlier reads concluded about dependencies is forgotten. ``target``: the queue's real file, when the caller
        has just resolved it."""
        archived = self._archive_of(target if target is not None else self._target()).statuses()
        if archived is not self._archived:
            self._archived = archived
            self._validated = None
            self._structure.forget()
            self._last = None
        return archived

    # -- reading ---------------------------------------------------------------------------------------------------

    def _target(self) -> str:
        """The real file behind the queue path (a symlinked queue is written through, not replaced).

        A path that resolved to itself (absolute, no symlink on the way) is looked at with one ``lstat`` the next
        times, not resolved again component by component: while the queue's own name is no symlink, the path names
        the real file (a folder on the way made a symlink since is followed by each call that uses the path, as by a
        new resolution)."""
        plain = self._plain
        if plain is not None:
            try:
                if not stat.S_ISLNK(os.lstat(plain).st_mode):
                    return plain
            except FileNotFoundError:  # (no file: what realpath gives too, with no symlinked folder on the way)
                return plain
            except OSError:
                pass
        resolved = os.path.realpath(self.file)
        self._plain = resolved if resolved == self.file else None
        return resolved

    def _stat_trusted(self, target: str, size: int) -> bool:
        """Whether an unchanged identity of ``target`` (``size`` bytes) is to stand for its bytes: where it proves
        them unchanged (see agentd.store.file.stamps), for a file big enough that reading it costs more, or once this
        store has written the queue (a process that reads and writes it again and again, a daemon: the file system's
        probe, once, costs less than its reads and compares, and a write's look before the rename is then a
        ``stat``)."""
        if self._trust_stat is not None:
            return self._trust_stat
        folder, name = os.path.split(target)
        return (size >= STAT_FROM or self._wrote) and stamps.fine_timestamps(folder, f".{name}.stamps-{{}}{TMP_MARK}")

    def _read_raw(self, target: str) -> bytes:
        try:
            with open(target, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise QueueMissing(self.path) from None
        except IsADirectoryError:
            raise QueueInvalid(self.path, None, "is a directory, not a file") from None
        except OSError as exc:
            raise QueueInvalid(self.path, None, f"cannot read: {exc.strerror or exc}") from None

    def _decode(self, raw: bytes) -> tuple[str, str]:
        """(BOM prefix, the bytes after it read as Latin-1: see :class:`_Loaded`)."""
        if raw.startswith(_BOM_BYTES):
            return BOM, str(memoryview(raw)[len(_BOM_BYTES) :], "latin-1")
        return "", raw.decode("latin-1")

    def _parse(self, raw: bytes, edited: tuple[str, tuple[int, int]] | None = None) -> tuple[str, str, Decoded]:
        prefix, text = self._decode(raw)
        return prefix, text, self._parse_text(text, edited, len(raw) - len(text))

    def _parse_text(self, text: str, edited: tuple[str, tuple[int, int]] | None = None, skip: int = 0) -> Decoded:
        """The parse of ``text`` (see :class:`_Loaded`), the bytes after ``skip`` bytes (a BOM) of the file."""
        if not text or text.isspace():  # (no copy of a 12-MB text, as strip() would make)
            raise _MaybeMidWrite(self.path, None, EMPTY)
        # A conflict marker line is never valid JSON, so markers are looked for only when the parse fails (a full
        # scan of a large file on every read would cost more than the parse of what changed). The decoder decodes
        # every value whose bytes are not ASCII (strictly), and a text that does not parse whole (see
        # agentd.store.file.incremental): a byte that is not UTF-8 is found before any JSON error, as it always was.
        try:
            try:
                data = (
                    self._decoder.decode(text, base=edited[0], same=edited[1]) if edited else self._decoder.decode(text)
                )
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise
            except ValueError:  # an integer too long for int() (over 4,300 digits): kept as text, its task quarantined
                data = Decoded(schema.loads_huge(utf8_text(text)), None)
        except UnicodeDecodeError as exc:
            raise QueueInvalid(self.path, None, f"not UTF-8 (invalid byte at offset {skip + exc.start})") from None
        except json.JSONDecodeError as exc:
            decoded = exc.doc  # (the text's characters: the decoder's last resort is json.loads of them)
            if decoded.isspace():  # (only whitespace outside ASCII, which JSON does not count as such)
                raise _MaybeMidWrite(self.path, None, EMPTY) from None
            self._refuse_markers(decoded)
            raise _MaybeMidWrite(self.path, None, f"not valid JSON: {json_problem(decoded, exc)}") from None
        except RecursionError:
            self._refuse_markers(utf8_text(text))
            raise QueueInvalid(self.path, None, "not valid JSON: nested too deeply") from None
        if data.changed is not None and data.pieces is not None:
            derived.known(data.changed[0], data.pieces, data.changed[1])
        return data

    def _refuse_markers(self, text: str) -> None:
        markers = conflict_markers(text)
        if markers:
            raise QueueInvalid(self.path, None, markers[0].message)

    def _validate(self, raw: bytes, decoded: Decoded) -> list[Finding]:
        """The findings of a read: each task's own problems and structural ones (errors: the task is quarantined),
        unknown statuses (warnings). A problem of the file as a whole raises :class:`QueueInvalid`."""
        # The very bytes checked before (compared, not hashed: a changed file usually differs in length).
        if self._validated is not None and self._validated[0] == raw:
            return self._validated[1]
        data = decoded.data
        if not isinstance(data, dict):
            raise QueueInvalid(self.path, "$", f"expected a JSON object, found {type(data).__name__}")
        # Without pieces (the rare parse outside the incremental decoder's fast path, such as one with an integer
        # too long to read), every task is also walked for such an integer.
        pieces = decoded.pieces
        if pieces is None:
            problem, findings = schema.queue_problems(data, thorough=True)
        else:
            problem, findings = schema.file_problem(data), []
        if problem is not None:
            raise QueueInvalid(self.path, problem[0], problem[1])
        if pieces is not None:
            if len(pieces) - decoded.reused >= schema.TASKS_BATCH_FROM:  # (many tasks parsed anew: judged in bulk)
                fresh = [(piece.value, piece.key) for piece in pieces if not piece.derived]
                schema.remember_valid_tasks(fresh, decoded=True)  # (the keys: the file's bytes, decoded strictly)
            findings = list(self._problems.derive(pieces)[0])
        entries = self._walks.derive(pieces)[0] if pieces is not None else walk(data["tasks"])
        findings += self._structure.check(entries, pieces, self._archived)
        findings += self._warnings.derive(pieces)[0] if pieces is not None else status_warnings(entries, self.workflow)
        self._validated = (raw, findings)
        return findings

    def _load(self, resolved: str | None = None, *, retry: bool = True) -> _Loaded:
        """Read, parse and validate, retrying briefly when the file may be caught mid-write by another writer.
        ``resolved``: the queue's real file, just resolved by the caller (used on the first try); ``retry``: False
        for no retry (the error is raised at once)."""

        def attempt() -> _Loaded:
            nonlocal resolved
            target = resolved if resolved is not None else self._target()
            resolved = None  # (a retry resolves the path again)
            self._archived_now(target)
            last = self._last
            if last is not None and last.mark is not None and stamps.identity(target) == last.mark:
                return last  # the very file read or written last (stat alone): nothing to read, parse or check
            # The identity before and after the read stands for the bytes read when it did not change meanwhile.
            before = stamps.identity(target)
            raw = self._read_raw(target)
            if len(raw) >= allocator.BIG:  # (a big queue's copies: from memory kept for them, not fresh pages)
                allocator.keep_large_blocks(len(raw))
            same = before is not None and stamps.identity(target) == before
            mark = before if same and self._stat_trusted(target, len(raw)) else None
            self._seen = before if same else None
            if last is not None and last.raw == raw:  # the file has not changed since the last strict read
                if mark is not None and mark != last.mark:
                    last = self._last = last.replace(mark=mark)
                return last
            with _collection_paused(len(raw)):
                prefix, text, decoded = self._parse(raw)
                findings = self._validate(raw, decoded)
                if decoded.pieces is not None:  # (kept in step: the next read or write compares two reads in a row)
                    self._views.follow(decoded.pieces)
                    self._ids.follow(decoded.pieces)
            self._last = self._loaded(raw, prefix, text, decoded, findings, mark)
            return self._last

        try:
            return attempt()
        except _MaybeMidWrite:
            if self.parse_retry <= 0 or not retry:
                raise
        import tenacity  # only when a read may have caught a write midway: not on every CLI start

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_MaybeMidWrite),
            stop=tenacity.stop_after_delay(self.parse_retry),
            wait=tenacity.wait_fixed(0.02),
            reraise=True,
        )
        return retrying(attempt)

    def read(self, *, lenient: bool = True) -> Snapshot:
        """The queue as it is now, validated (no lock taken: a rename is atomic, so readers never see a torn file).

        A problem of the file as a whole (not JSON, conflict markers, not an object, a bad top-level key) raises
        :class:`QueueInvalid`. A task's own problems (its schema, its id, a lone surrogate, a duplicate id, an unknown
        dependency, a cycle) do not: they are the snapshot's ``errors``, and the task is in ``quarantined``.
        (``lenient`` is kept for callers; every read is lenient about single tasks.)
        """
        del lenient
        return self._load().snapshot(self.file)

    # -- writing ---------------------------------------------------------------------------------------------------

    def _check_new(
        self, loaded: _Loaded, new: dict[str, Any], hint: Changed | None = None, valid: list[Any] | None = None
    ) -> list[Finding]:
        """Refuse to write a document worse than the one read; returns its findings. ``valid``, when given, gets the
        top-level tasks without subtasks this write changes, each found valid here (see :meth:`_prepare`).

        A write may not add a problem, nor change a quarantined task unless the change cures it (a person fixing the
        task through the CLI); the bytes of a bad task nobody changed stay as they are. The document read was checked,
        so only what changed is checked again: the tasks that differ (their own problems), and the ids and
        dependencies (duplicates, unknown dependencies, cycles) only when one of those changed.
        """
        if not isinstance(new.get("tasks"), list):
            raise QueueInvalid(self.path, "$.tasks", "refusing to write: 'tasks' must be a list")
        top = {key: value for key, value in new.items() if key != "tasks"}
        top["tasks"] = []
        problem = schema.first_error(top, "queue")
        if problem is not None:
            raise QueueInvalid(self.path, problem[0], f"refusing to write: {problem[1]}")
        old_tasks, new_tasks = loaded.data["tasks"], new["tasks"]
        if len(old_tasks) == len(new_tasks):
            # Tasks changed in place (the common case): only the changed top-level tasks are looked into, and the
            # others keep the walk made when the file was read.
            places = hint[2] if hint is not None else differing(old_tasks, new_tasks)
            changed = [n for n in places if new_tasks[n] != old_tasks[n]]
            before = [entry for n in changed for entry in walk_one(old_tasks[n], f"$.tasks[{n}]")]
            after = [entry for n in changed for entry in walk_one(new_tasks[n], f"$.tasks[{n}]")]
            whole: list[tuple[str, Any, str | None]] | None = None
            warnings: list[Finding] | None = None
            if loaded.pieces is not None:
                # The read's entries and warnings with those of the changed tasks replaced (slices: no loop over the
                # others).
                base, counts = self._walks.derive(loaded.pieces)
                said, said_counts = self._warnings.derive(loaded.pieces)
                whole, warnings = [], []
                at = 0
                for n in changed:
                    walked = walk_one(new_tasks[n], f"$.tasks[{n}]")
                    whole += base[counts[at] : counts[n]]
                    whole += walked
                    warnings += said[said_counts[at] : said_counts[n]]
                    warnings += status_warnings(walked, self.workflow)
                    at = n + 1
                whole += base[counts[at] :]
                warnings += said[said_counts[at] :]
        else:
            before = walk(old_tasks)
            after = walk(new_tasks)
            whole = after
            warnings = None
        same_shape = len(before) == len(after)
        previous = {view_id(task, path): task for path, task, _ in before} if not same_shape else {}
        touched: set[str] = set()  # the ids of the tasks this write changes
        for position, (path, task, _) in enumerate(after):
            counterpart = before[position][1] if same_shape else previous.get(view_id(task, path))
            if task is counterpart or _own(task) == _own(counterpart):
                continue
            touched.add(view_id(task, path))
            found = schema.entry_error(task)
            if found is not None:
                raise QueueInvalid(self.path, path + found[0][1:], f"refusing to write: {found[1]}")
            if valid is not None and isinstance(task, dict) and not task.get("subtasks") and ".subtasks" not in path:
                valid.append(task)
            if same_shape and isinstance(counterpart, dict) and isinstance(task, dict):
                same_shape = task.get("id") == counterpart.get("id") and task.get("dependencies") == counterpart.get(
                    "dependencies"
                )
        if whole is None:
            whole = walk(new_tasks)
        old_structure = [f for f in loaded.findings if f.code in STRUCTURAL]
        structure = old_structure if same_shape else structural(whole, known=self._archived_now())
        known = {f.key for f in old_structure}
        for finding in structure:
            if finding.key not in known or finding.task in touched:
                # A new problem, or a change to a task that leaves it quarantined: the file would be worse, or a
                # bad task's bytes would change without curing it.
                raise QueueInvalid(self.path, finding.path, f"refusing to write: {finding.message}")
        # The findings of the new document: the problems of the tasks left as they were (at the same places when no
        # top-level task came or went: then they can be remembered for the next read), and the rest found here.
        kept = [
            f for f in loaded.findings if f.severity == "error" and f.code not in STRUCTURAL and f.task not in touched
        ]
        return kept + structure + (warnings if warnings is not None else status_warnings(whole, self.workflow))

    def is_own_write(self) -> bool:
        """Whether the queue file is still the one this store wrote last (a file event it caused itself)."""
        current = stamps.identity(self._target())
        return self._written is not None and current is not None and current[:4] == self._written

    def _lock(self) -> SidecarLock:
        path = self._lock_file()
        if self._sidecar is None or self._sidecar.file != path:
            self._sidecar = SidecarLock(path, self.lock_timeout, poll=LOCK_POLL)
        return self._sidecar

    @contextlib.contextmanager
    def locked(self) -> Any:
        """Hold the queue lock (for multi-step protocols such as lease recovery)."""
        me = _thread.get_ident()
        holder = self._holder
        if holder is not None and holder[0] == me:  # (taken again by the thread that holds it: no path to resolve)
            lock = holder[1]
            lock.acquire()
            try:
                yield
            finally:
                lock.release()
            return
        lock = self._lock()
        self._read_ahead()
        try:
            lock.acquire()
        except LockTimedOut:
            raise LockTimeout(self.lock_path, self.lock_timeout) from None
        except OSError as exc:
            raise FileAccessError(self.lock_path, "cannot open the queue lock", exc.strerror or str(exc)) from None
        self._holder = (me, lock)
        try:
            yield
        finally:
            self._holder = None
            lock.release()

    def _read_ahead(self) -> None:
        """Before the lock is taken: read a big queue that changed since this store last read or wrote it, so
        that the read under the lock finds it read (by ``stat`` alone, or the bytes compared where that proves
        nothing) and the lock is held for the change and the write, not for parsing and checking megabytes (a
        process's first transaction on a 10,000-task queue: ~0.4 s, every daemon of the queue waiting on it). The
        read under the lock decides: what this one finds is only kept for it (a problem is left to it to report)."""
        if self._holder is not None:  # (another thread of this process holds the lock: it reads under it)
            return
        seen = stamps.identity(self.file)
        if seen is None or seen[2] < STAT_FROM or (seen == self._seen and self._last is not None):
            return
        with contextlib.suppress(QueueInvalid):
            self._load(retry=False)

    def _remove_stale_temps(self, target: str) -> None:
        """Temp files only exist inside a locked transaction; under the lock, any left are from a dead writer (or
        a big queue's replaced version that this process's thread is about to remove: see _Retirer)."""
        # (os.scandir and two string tests: Path.glob would compile a regex and make a Path of every name)
        prefix, folder = f".{os.path.basename(target)}.", os.path.dirname(target)
        shortest = len(prefix) + len(TMP_MARK)
        try:
            with os.scandir(folder or ".") as entries:
                leftovers = [
                    entry.path
                    for entry in entries
                    if len(entry.name) >= shortest and entry.name.startswith(prefix) and entry.name.endswith(TMP_MARK)
                ]
        except (FileNotFoundError, NotADirectoryError, PermissionError):  # (as Path.glob: nothing to remove)
            return
        for leftover in leftovers:
            if _RETIRER.pending(leftover):  # (this process's own: its thread removes it, off the lock's time)
                continue
            with contextlib.suppress(OSError):
                os.unlink(leftover)

    def transaction(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Apply ``change`` to the document under the lock and write the result, if anything changed.

        ``change`` mutates the parsed document in place and returns a value passed back to the caller. It may run
        more than once (when another writer edited the file meanwhile, the file is re-read and ``change`` re-applied),
        so it must decide from the document it is given.
        """

        def whole(loaded: _Loaded) -> tuple[dict[str, Any], T, Changed | None]:
            try:
                with _collection_paused(len(loaded.text)):
                    # (the change's own copy: the read shares its parts with other reads)
                    new = json.loads(utf8_text(loaded.text))
            except ValueError:  # an integer too long for int(): read as the read did
                new = schema.loads_huge(utf8_text(loaded.text))
            result = change(new)
            return new, result, _share_unchanged(loaded.data, new)

        with self.locked():
            return self._transaction_locked(whole)

    def edit(self, change: Callable[[Draft], T]) -> T:
        """:meth:`transaction` for changes to a few tasks of a large queue: ``change`` gets a :class:`Draft`, whose
        tasks are copied only when it asks for one to change (no full parse of a private copy of the file)."""

        def drafted(loaded: _Loaded) -> tuple[dict[str, Any], T, Changed | None]:
            draft = Draft(loaded.snapshot(self.file))
            result = change(draft)
            return (_Whole(draft.doc) if draft.whole else draft.doc), result, draft.changed()

        with self.locked():
            return self._transaction_locked(drafted)

    def archive_tasks(
        self, select: Callable[[dict[str, Any]], bool], now: datetime, *, dry_run: bool = False
    ) -> list[str]:
        """Move the top-level tasks ``select`` picks (with their subtasks; never a quarantined one) to the archive;
        returns their ids (``dry_run``: only says which would move).

        Under the queue lock: the tasks are appended to the archive and fsynced first, then the queue without them
        replaces the old one. A crash in between leaves them in both (readers prefer the queue); the next run finds
        their lines already there (the same content: not written again) and only removes them from the queue.
        """

        if dry_run:
            snapshot = self.read()
            return [snapshot.data["tasks"][n]["id"] for n in _movable(snapshot, select)]

        def change(draft: Draft) -> list[str]:
            tasks = draft.doc["tasks"]
            moving = _movable(draft.read, select)
            if not moving:
                return []
            self.archive.append([tasks[n] for n in moving], now)
            faults.point("archive.after-append")
            gone = set(moving)
            draft.doc["tasks"] = [task for n, task in enumerate(tasks) if n not in gone]
            return [tasks[n]["id"] for n in moving]

        return self.edit(change)

    def _transaction_locked(self, change: Callable[[_Loaded], tuple[dict[str, Any], T, Changed | None]]) -> T:
        target = self._target()
        self._remove_stale_temps(target)
        for tries in range(MAX_REAPPLY):
            if tries:
                target = self._target()  # (again on each try: a symlinked queue may have been pointed elsewhere)
            loaded = self._load(target)
            old = loaded.data
            new, result, hint = change(loaded)
            if hint is not None and (hint[0] is not old.get("tasks") or hint[1] is not new.get("tasks")):
                hint = None
            if (new == old) if hint is None else _same_top(old, new, hint):
                return result
            valid: list[Any] = []  # the changed tasks found valid (see _prepare)
            findings = self._check_new(loaded, new, hint, valid)
            try:
                edited: tuple[str, tuple[int, int]] | None = None
                made: tuple[int, list[tuple[int, int, str]]] | None = None  # (the first escape before, the edits)
                shared: int | None = None  # how many leading bytes the payload shares with the bytes read, at least
                if isinstance(new, _Whole):  # a new queue as a whole: written as a new file, in its own key order
                    payload = render(new)
                else:
                    from agentd.store.file import jsonedit  # (not at import: `queue list` and `status` only read)

                    memo = self._style
                    if memo is not None and memo[0] is loaded.text:
                        style, escape_at = memo[1], memo[2]
                    else:
                        escape_at = jsonedit.first_non_ascii_escape(loaded.text)
                        style = jsonedit.detect_style(loaded.text, escape=escape_at >= 0)
                    edits = jsonedit.edits(loaded.text, old, new, loaded.spans, style=style, changed=hint, latin1=True)
                    payload, shared = _splice(loaded, edits)
                    size = len(loaded.text)
                    edited = (loaded.text, (edits[0][0], size - edits[-1][1]) if edits else (size, size))
                    made = (escape_at, edits)
            except UnicodeEncodeError as exc:  # a lone surrogate outside any task (a task's own is refused above)
                reason = f"refusing to write: text agentd cannot encode ({exc.object[exc.start : exc.end]!r})"
                raise QueueInvalid(self.path, None, reason) from None
            # What we write was checked: our own next read of it need not check it again (unless tasks came or
            # went: the paths of the problems kept would be out of date). That read's state (and the new text's
            # layout) is made while the temporary file is synced (a big queue's), and kept only if the write stands.
            checked = findings if len(new["tasks"]) == len(old["tasks"]) else None
            ready: list[tuple[_Prepared | None, _Restyled | None]] = []
            ahead = functools.partial(self._ahead, ready, payload, checked, edited, made, valid)
            try:
                written = self._write(target, loaded, payload, meanwhile=ahead, shared=shared)
            except OSError as exc:  # no temporary file is left, and the queue is as it was
                raise FileAccessError(self.path, "cannot write (left unchanged)", _os_reason(exc, target)) from None
            if written:
                if not ready:
                    ahead()
                self._remember(payload, ready[0][0], self._written_mark)
                self._style = ready[0][1]  # (the new text's layout, for the next edit: no scan of all of it)
                return result
            log.info("%s changed while agentd was writing it; re-reading and re-applying", self.path)
        raise Conflict(None, f"{self.path}: the file kept changing under agentd; gave up after {MAX_REAPPLY} tries")

    def _loaded(
        self,
        raw: bytes,
        prefix: str,
        text: str,
        decoded: Decoded,
        findings: list[Finding],
        mark: stamps.Identity | None,
    ) -> _Loaded:
        """A read's (or our own write's) state, with the store's per-task caches."""
        return _Loaded(
            raw,
            prefix,
            text,
            decoded.data,
            decoded.pieces,
            decoded.spans,
            findings,
            self._archived,
            self._views,
            mark=mark,
            ids_cache=self._ids,
        )

    def _ahead(
        self,
        ready: list[tuple[_Prepared | None, _Restyled | None]],
        payload: bytes,
        checked: list[Finding] | None,
        edited: tuple[str, tuple[int, int]] | None,
        made: tuple[int, list[tuple[int, int, str]]] | None,
        valid: list[Any] | None = None,
    ) -> None:
        """:meth:`_prepare` into ``ready``, with ``checked``, the findings of ``payload`` (None: to be found), kept;
        and the layout of its text, when ``made`` by edits (the first non-ASCII escape of the text they edited, and
        the edits: see :func:`agentd.store.file.jsonedit.restyle`). ``valid``: the changed tasks the write found
        valid (see :meth:`_prepare`)."""
        if checked is not None:
            self._validated = (payload, checked)
        prepared = self._prepare(payload, edited, valid)
        restyled = None
        if prepared is not None and made is not None:
            from agentd.store.file import jsonedit

            new_text = prepared[1]
            restyled = (new_text, *jsonedit.restyle(made[0], made[1], new_text))
        ready.append((prepared, restyled))

    def _prepare(
        self,
        payload: bytes,
        edited: tuple[str, tuple[int, int]] | None,
        valid: list[Any] | None = None,
    ) -> _Prepared | None:
        """The state the next read is to start from once ``payload`` is written (see :meth:`_remember`): parsed
        from the text before (the tasks this write did not change are taken as they were), checked, and what the
        checks derive from brought up to date; None for bytes that do not read (never for a file this store checked
        and wrote). ``edited``: the text the write edited, and how much of it at the start and end the edit kept (not
        compared again). Only caches keyed on what they were made from change here: made for a write that then does not
        stand, they are still right."""
        try:
            prefix, text, decoded = self._parse(payload, edited)
            findings = self._validate(payload, decoded)
        except QueueInvalid:
            return None
        pieces = decoded.pieces
        if valid and pieces is not None and decoded.changed is not None:
            # The write's changed tasks, found valid before it (their own problems): so are their texts, which the
            # problems' cache is keyed by (not judged a second time: about 7 µs a task with the stdlib checker, and
            # as much spent toward loading jsonschema-rs, see schema.first_error).
            by_id = {task.get("id"): task for task in valid}
            for place in decoded.changed[1]:
                piece = pieces[place]
                value = piece.value
                if isinstance(value, dict) and schema.same_task(by_id.get(value.get("id"), _NOTHING), value):
                    schema.remember_valid(piece.key)
        if pieces is not None:  # (what the checks found is known: what they derive from is brought up to date)
            entries = self._walks.derive(pieces)[0]
            self._problems.derive(pieces)
            self._warnings.derive(pieces)
            self._views.follow(pieces)  # (only where views were asked for: a CLI write needs none)
            self._ids.follow(pieces)  # (kept in step where a transaction used them: the next compares two reads)
            self._structure.check(entries, pieces, self._archived)
        return prefix, text, decoded, findings

    def _remember(self, payload: bytes, prepared: _Prepared | None, mark: stamps.Identity | None) -> None:
        """Make what this store just wrote the state its next read starts from (``prepared`` by :meth:`_prepare`),
        so that the next read finds the same bytes, or a file someone else saved since, compared with what was
        written, not with the file before this write (an outside save in the middle of a large queue then costs the
        tasks it changed, not every task after them). ``mark``: the file's identity after the write, when it stands
        for ``payload``."""
        if prepared is None:  # (the next read decides)
            self._last = None
            return
        prefix, text, decoded, findings = prepared
        self._last = self._loaded(payload, prefix, text, decoded, findings, mark)

    def prepare_write(self) -> None:
        """Make the next write's temporary file now: unnamed (``O_TMPFILE``) in the queue's folder, given its
        temporary name by that write (``linkat``, which makes no inode) and written as ever. Making a file is the
        dear part of a small write (a new inode: on ext4 without a journal, found past every inode freed in the
        last minute or more), and a daemon calls this after its starts, so that its next transaction, which holds the
        queue lock, does not make it. Nothing where the file system makes no unnamed files (the write then makes its
        file by name), nor when one is ready."""
        if not self._unnamed:
            return
        with self._made_lock:
            made = self._made
            if made is not None and made[2] == os.getpid():
                return
            try:
                folder = os.path.dirname(self._target()) or os.curdir
                fd = unnamed.make(folder, os.O_WRONLY, 0o600)
            except OSError as exc:
                if unnamed.unsupported(exc):
                    self._unnamed = False
                return  # (else: no folder, no descriptor left; the write makes its file by name)
            self._made = (fd, folder, os.getpid())

    def close(self) -> None:
        """Close the file made ahead for a write that will not come (see :meth:`prepare_write`), and the lock's
        descriptor when the lock is not held (both are made again when needed); remove the version kept to be written
        again (see :mod:`agentd.store.file.spare`)."""
        self._drop_spare()
        with self._made_lock:
            made, self._made = self._made, None
        if made is not None and made[2] == os.getpid():
            with contextlib.suppress(OSError):
                os.close(made[0])
        if self._sidecar is not None:
            self._sidecar.close()

    def _name_made(self, temp: str) -> int | None:
        """The file made ahead for this write, given the name ``temp`` (its descriptor, open for writing); None when
        there is none for this folder, or naming it failed (no /proc, say: files are made by name from then on)."""
        with self._made_lock:
            made, self._made = self._made, None
        if made is None or made[2] != os.getpid():
            return None
        fd, folder = made[0], made[1]
        if folder != (os.path.dirname(temp) or os.curdir):  # (the queue's symlink points elsewhere now)
            os.close(fd)
            return None
        try:
            unnamed.name(fd, temp)
        except OSError as exc:
            os.close(fd)
            if not isinstance(exc, FileExistsError):
                self._unnamed = False
            return None
        return fd

    def _write(
        self,
        target: str,
        loaded: _Loaded,
        payload: bytes,
        meanwhile: Callable[[], None] | None = None,
        shared: int | None = None,
    ) -> bool:
        """Atomically replace ``target`` with ``payload`` unless its bytes are no longer those ``loaded`` read (its
        unchanged identity, where that proves it, or the bytes compared). ``meanwhile``: work to do while the
        temporary file of a big queue is synced (then by a thread of its own); done before the rename. ``shared``:
        how many leading bytes ``payload`` shares with ``loaded.raw`` at least, when known (from the edits)."""
        try:
            info = os.stat(target)
            mode = stat.S_IMODE(info.st_mode)
        except FileNotFoundError:
            info = None
            mode = 0o644
        over = self._spare_after  # (what the write that kept the version wrote over it: see _take_spare)
        fd, temp, longer, known = self._take_spare(info, len(loaded.raw), len(payload))  # (kept at the last write)
        again = fd is not None
        if fd is None:
            temp = _temp_beside(target)
            fd = self._name_made(temp)  # (the file made ahead, if any: see prepare_write)
        if fd is None:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                os.fchmod(fd, mode)
                if info is not None and hasattr(os, "fchown"):
                    with contextlib.suppress(PermissionError):
                        os.fchown(fd, info.st_uid, info.st_gid)
                # Over the kept version's blocks, from its start; a longer tail of it cut first: cut after the write,
                # its last page would be under write-out, which the cut waits for (0.7 ms of a 6 MB queue's pass).
                if longer:
                    os.ftruncate(fd, len(payload))
                # (a kept version whose bytes are known: from the first that differs, see spare; a big payload's
                # write-out begun as it is written)
                writeback.write_all(fd, payload, _first_change(known, loaded.raw, payload, over, shared))
                if meanwhile is None or not (self._wrote or len(payload) >= allocator.BIG):
                    os.fsync(fd)
                elif len(payload) < allocator.BIG and writeback.start(fd):
                    # A process that writes a small queue again and again (a daemon: once or more per task): its
                    # write-out started, the next read's state made while the disk works, then the sync, which finds
                    # the data on its way. No hand-over to the sync thread and back (two wake-ups across threads for
                    # 0.3-0.5 ms of Python: 0.3-0.4 ms a write on 2 cores).
                    meanwhile()
                    os.fsync(fd)
                else:
                    _SYNCER.fsync_meanwhile(fd, meanwhile)  # (see _Syncer)
                made = os.fstat(fd)  # (a look at its times: a change after it gets new ones, see stamps)
                if again:
                    faults.point("queue.spare-written")  # (its lease still held)
            finally:
                os.close(fd)  # (a kept version's lease given back: an open of it waiting for the write goes on)
            faults.point("queue.after-temp-write")
            if self._target() != target:  # the queue's link now points elsewhere: that file is the queue
                os.unlink(temp)
                return False
            proven = loaded.mark is not None and stamps.identity(target) == loaded.mark  # (its bytes: loaded.raw)
            if not proven:
                try:
                    with open(target, "rb") as handle:
                        current: bytes | None = handle.read()
                except FileNotFoundError:
                    current = None
                if current != loaded.raw:
                    os.unlink(temp)
                    return False
            faults.point("queue.before-rename")
            # A process that writes again keeps the version replaced, to write its next one into (see spare); else a
            # big file's blocks are freed after the rename, not by it (see _Retirer): its old version keeps a
            # temporary name until then.
            kept = self._keep_spare(target) if self._wrote and self.spares is not None else None
            retired = _RETIRER.keep(target) if kept is None and len(loaded.raw) >= allocator.BIG else None
            if kept is not None:
                faults.point("queue.spare-kept")
            # Known before the rename: its file event may be handled before os.replace returns (a rename keeps the
            # inode, size and mtime; only the ctime changes).
            self._written = (made.st_dev, made.st_ino, made.st_size, made.st_mtime_ns)
            folder = os.path.dirname(target)
            if self._unsynced is not None and self._unsynced != folder:  # (one left elsewhere: the link moved)
                self.sync_folder()
            try:
                os.replace(temp, target)
                with self._unsynced_lock:
                    self._unsynced = folder  # (from here on, whatever happens: see sync_folder)
            except BaseException:
                for second in (retired, kept):  # (a second name of the queue as it still is: dropped at once)
                    if second is not None:
                        with contextlib.suppress(OSError):
                            os.unlink(second)
                raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        faults.point("queue.after-rename")
        # The rename gives the file a new ctime, but keeps its inode, size and mtime: when those are still the
        # temporary file's, nobody wrote to it since, and its identity now stands for ``payload``.
        after = stamps.identity(target)
        same = after is not None and after[:4] == stamps.of(made)[:4]
        self._written_mark = after if same and self._stat_trusted(target, len(payload)) else None
        self._seen = after if same else None
        if not self.folder_sync_later:
            self.sync_folder()
        if retired is not None:
            _RETIRER.drop(retired, wake=not self.folder_sync_later)  # (else woken by sync_folder: see _Retirer)
        self._spare = kept
        self._spare_known = self._known(kept, loaded) if kept is not None and proven else None
        self._spare_after = (payload, shared) if self._spare_known is not None and shared is not None else None
        self._wrote = True
        return True

    @staticmethod
    def _known(kept: str, loaded: _Loaded) -> tuple[stamps.Identity, bytes] | None:
        """The kept version's identity now and its bytes (``loaded.raw``), when its identity proved them the queue's
        just before the link (``loaded.mark``) and no write changed them up to now, the rename that replaced it (its
        inode, size and mtime still those; the link and the rename gave it a new ctime): see spare."""
        mark = loaded.mark
        now = stamps.identity(kept)
        if mark is None or now is None or now[:4] != mark[:4]:
            return None
        return now, loaded.raw

    def keep_versions(self, folder: str) -> None:
        """From this store's second write on, keep the version each write replaces in ``folder`` (on the queue's file
        system) and write the next version into it (see :mod:`agentd.store.file.spare`): a daemon's store, which
        calls this before its first pass. The versions that processes no longer running kept there are removed now.
        Once per store; nothing where write leases are not to be had."""
        if self._versions_asked:
            return
        self._versions_asked = True
        if spare.AVAILABLE:
            self.spares = folder
            spare.sweep(folder, TMP_MARK)

    def _keep_spare(self, target: str) -> str | None:
        """Give the queue's current version a second name before it is replaced, to be written again (see
        :mod:`agentd.store.file.spare`); None when it has another name already, or none could be made."""
        folder = self.spares
        assert folder is not None
        name = spare.name_for(target, folder, TMP_MARK)
        if not spare.keep(target, name):
            return None
        global _exit_hook
        if not _exit_hook:
            import atexit

            atexit.register(_drop_spares_at_exit)
            _exit_hook = True
        _SPARES_AT_EXIT.add(name)
        return name

    def _take_spare(
        self, queue: os.stat_result | None, size: int, new: int
    ) -> tuple[int | None, str, bool, bytes | None]:
        """The version kept at the last write, open for writing and leased, its name, whether it is longer than the
        ``new`` bytes to write into it, and the bytes it holds when they are known (see :mod:`agentd.store.file.spare`:
        its identity under the lease the one taken after the rename that replaced it); (None, "", False, None) when
        there is none to write again (a kept one that may not be is removed). ``queue``: the queue file's ``stat``
        (the kept file must be on its file system: the queue's symlink may point elsewhere now); ``size``: its
        bytes, for how to remove the kept file (a big one in the thread, see _Retirer)."""
        name = self._spare
        known, self._spare_known, self._spare_after = self._spare_known, None, None
        if name is None:
            return None, "", False, None
        taken = None
        if queue is not None:
            try:
                taken = spare.take(name)
            except spare.Unsupported:
                self.spares = None
            if taken is not None and taken[1].st_dev != queue.st_dev:
                os.close(taken[0])
                taken = None
        if taken is None:
            self._drop_spare(size)
            return None, "", False, None
        self._spare = None
        _SPARES_AT_EXIT.discard(name)  # (a write that fails removes it; one that stands keeps the name)
        held = known[1] if known is not None and stamps.of(taken[1]) == known[0] else None
        return taken[0], name, taken[1].st_size > new, held

    def _drop_spare(self, size: int = 0) -> None:
        """Remove the kept version, if any (a big one in the thread, see _Retirer)."""
        name, self._spare = self._spare, None
        self._spare_known = self._spare_after = None
        if name is None:
            return
        _SPARES_AT_EXIT.discard(name)
        if size >= allocator.BIG:
            _RETIRER.drop(name)
            return
        with contextlib.suppress(OSError):
            os.unlink(name)

    def sync_folder(self) -> None:
        """fsync the folder of the last rename, unless done already: the rename then survives a power cut (a write
        with :attr:`folder_sync_later` set leaves it for this call; every other write calls it itself)."""
        try:
            with self._unsynced_lock:  # (held during the fsync: a write of another thread returns after it, not before)
                folder, self._unsynced = self._unsynced, None
                if folder is None:
                    return
                try:
                    _fsync_dir(folder)
                except OSError as exc:  # the new queue is in place: the write stands, only its durability is in doubt
                    log.warning("%s: written, but its folder could not be fsynced (%s)", self.path, exc.strerror or exc)
        finally:
            _RETIRER.wake()  # (a name its write left: see _Retirer)

    def create(self, data: dict[str, Any], *, indent: int = 2) -> bool:
        """Write a new queue file if there is none (False when one exists already)."""
        with self.locked():
            target = self._target()
            if os.path.exists(target):
                return False
            payload = render(data, indent=indent)
            temp = _temp_beside(target)
            try:
                with open(temp, "wb") as handle:
                    handle.write(payload)
                with open(temp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise FileAccessError(self.path, "cannot create it", _os_reason(exc, target)) from None
            _fsync_dir(os.path.dirname(target))
            return True
