"""The PostgreSQL store: one project's :class:`~agentd.store.base.Store` in a shared database.

Tasks are rows (``agentd_tasks``: one per top-level task, its JSON text as written, in ``position`` order); a
transaction writes only the rows it changed, adds or removes, never the whole queue. Each try of a transaction is
one ``REPEATABLE READ`` database transaction: the change decides from the snapshot it read, and a row someone else
changed meanwhile makes the write fail with a serialization error, after which the change runs again on a fresh read
(``Store.transaction`` allows it). So no update is lost, and what is written is what was decided.

Claims: :meth:`PgTxn.claim` takes the role's advisory transaction lock (held to the commit), so one role's claims
are serialised on every host, and then checks, on a fresh read, that no lease of the role appeared since the change
looked: if one did, the change runs again and counts it, so a WIP limit holds across hosts. The claimed task's row is
locked ``FOR UPDATE SKIP LOCKED``: a row another transaction is changing is skipped, never waited for, so daemons of
different roles never wait on each other. Leases themselves are rows held by sessions of their own
(:mod:`agentd.store.postgres.leases`), and time is the database's ``now()``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from agentd import faults, schema
from agentd.config import Config
from agentd.core.clock import Clock, SystemClock, format_timestamp
from agentd.core.model import Task, view_id, walk, walk_one
from agentd.core.record import set_field
from agentd.core.scheduler import LeaseObservation
from agentd.core.validate import STRUCTURAL, Finding, status_warnings, structural
from agentd.core.workflow import Workflow
from agentd.errors import Conflict, QueueInvalid, StateInvalid
from agentd.store.base import Event, Filter, LeaseRecord, Probe
from agentd.store.file.queuefile import Snapshot
from agentd.store.postgres import leases as lease_rows
from agentd.store.postgres import migrations
from agentd.store.postgres.connect import StoreUnreachable, address, connect, display, one_line
from agentd.store.postgres.notify import Listener
from agentd.store.postgres.reach import Reach
from agentd.store.postgres.registry import (
    EVENTS_CHANNEL,
    PgJournal,
    PgRegistration,
    daemons,
    events_after,
    prune_journal,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
CLAIMS = 0x61676402  # advisory lock namespace of the per-role claim lock
MAX_TRIES = 200
FOLLOW_SAFETY = 30.0  # s: following looks for new events at least this often (a notification is the fast path)
FOLLOW_RETRY = 0.25  # s between asks to reconnect while following (the store's Reach paces the real tries)
COMMIT_CHECK = 120.0  # s to find out whether a commit whose session was lost went through


class _Retry(Exception):
    """This try of a transaction saw something change under it: run the change again."""


def _has_id(task: Any) -> bool:
    return isinstance(task, dict) and isinstance(task.get("id"), str)


def _ids(task: Any) -> list[str]:
    return [raw["id"] for _, raw, _ in walk_one(task, "") if _has_id(raw)]


def _dumps(task: Any) -> str:
    return json.dumps(task, ensure_ascii=False)


def _shape(task: Any) -> list[tuple[Any, Any]]:
    """What structural checks depend on: each entry's id and dependencies."""
    return [
        (raw.get("id"), raw.get("dependencies")) if isinstance(raw, dict) else (None, None)
        for _, raw, _ in walk_one(task, "")
    ]


@dataclass
class _Row:
    position: int
    rev: int
    text: str
    obj: Any
    ids: list[str] = field(default_factory=list)  # of the task and its subtasks
    shape: str = ""  # what structural checks depend on (ids and dependencies), as one string
    # What reads derived from this version of the row (its problems, its typed views), each with the place it was
    # derived for: reused while the row keeps its place, so a read rebuilds only the rows that changed.
    derived: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.ids = _ids(self.obj)
        self.shape = json.dumps(_shape(self.obj))


class _View(Snapshot):
    """The file store's :class:`Snapshot`, with the typed views a read built from its rows."""

    # (__init__'s parameters, in order: no pieces or caches, which only the file store's reads carry)
    _fields = ("path", "raw", "data", "warnings", "errors", "archived", "views")
    _no_compare = ("archived", "views")
    _no_repr = ("archived", "views")

    views: list[Task]

    def __init__(
        self,
        path: Path,
        raw: bytes,
        data: dict[str, Any],
        warnings: list[Finding] | None = None,
        errors: list[Finding] | None = None,
        *,
        archived: Mapping[str, str] | None = None,
        views: list[Task] | None = None,
    ) -> None:
        super().__init__(path, raw, data, warnings, errors, archived=archived)
        set_field(self, "views", [] if views is None else views)

    @functools.cached_property
    def tasks(self) -> list[Task]:
        """Typed views of every task, nested ones included, in queue order (those of unchanged rows reused)."""
        return self.views


@dataclass
class PgSnapshot:
    """One read: the rows it came from (for the transaction's writes) and the validated :class:`Snapshot`."""

    doc_rev: int
    rows: list[_Row]
    view: Snapshot
    top_of: dict[str, int] = field(default_factory=dict)  # task id (nested ones too) -> its top-level row's position
    by_position: dict[int, _Row] = field(default_factory=dict)
    shapes: tuple[Any, ...] = ()  # (position, shape) of every row, and the archive: what structural findings depend on
    structural: list[Finding] = field(default_factory=list)


@dataclass
class _Top:
    """A top-level task as the transaction has it: its row (None: added here) and its private copy."""

    position: int | None
    obj: Any
    ids: dict[str, dict[str, Any]]
    gone: bool = False


class PgTxn:
    """One try of a transaction's change over the rows of one read."""

    def __init__(self, store: PgStore, conn: Any, read: PgSnapshot, now: datetime) -> None:
        self._store = store
        self._conn = conn
        self._read = read
        self._now = now
        self._tops: dict[int, _Top] = {}  # key (a row's position, or -n for the n-th added) -> its copy
        self._added: list[int] = []
        self._where: dict[str, int | None] = {}  # id -> key, for ids added, moved or removed here
        self._state: dict[str, Any] | None = None
        self._state_read: dict[str, Any] | None = None
        self._fields: dict[str, Any] | None = None  # the queue's own fields, when replaced as a whole
        self._seen_leases: dict[str, set[int]] = {}  # role -> tokens of its leases the change saw
        self._locked_roles: set[str] = set()
        self.claimed: list[Any] = []

    @property
    def now(self) -> datetime:
        return self._now

    @property
    def snapshot(self) -> Snapshot:
        return self._read.view

    # -- tasks ---------------------------------------------------------------------------------------------------------

    def _key(self, task_id: str) -> int | None:
        if task_id in self._where:
            return self._where[task_id]
        return self._read.top_of.get(task_id)

    def _top(self, key: int) -> _Top:
        top = self._tops.get(key)
        if top is None:
            row = self._read.by_position[key]
            mine = json.loads(row.text)
            top = _Top(key, mine, {raw["id"]: raw for _, raw, _ in walk_one(mine, "") if _has_id(raw)})
            self._tops[key] = top
        return top

    def task(self, task_id: str) -> dict[str, Any] | None:
        key = self._key(task_id)
        if key is None:
            return None
        top = self._top(key)
        return None if top.gone else top.ids.get(task_id)

    def add(self, task: dict[str, Any], parent: str | None = None) -> None:
        if parent is None:
            key = -(len(self._added) + 1)
            self._added.append(key)
            self._tops[key] = _Top(None, task, {})
        else:
            holder = self.task(parent)
            if holder is None:
                raise KeyError(parent)
            holder.setdefault("subtasks", []).append(task)
            found = self._key(parent)
            assert found is not None
            key = found
        top = self._tops[key]
        for _, raw, _ in walk_one(task, ""):
            if _has_id(raw):
                top.ids[raw["id"]] = raw
                self._where[raw["id"]] = key

    def remove(self, task_id: str) -> dict[str, Any] | None:
        raw = self.task(task_id)
        if raw is None:
            return None
        key = self._key(task_id)
        assert key is not None
        top = self._tops[key]
        if top.obj is raw:
            top.gone = True
        else:
            _unlink(top.obj, raw)
        for gone in _ids(raw):
            top.ids.pop(gone, None)
            self._where[gone] = None
        return raw

    def ids(self) -> list[str]:
        out: list[str] = []
        for key in [row.position for row in self._read.rows] + self._added:
            top = self._tops.get(key)
            if top is None:
                out += self._read.by_position[key].ids
            elif not top.gone:
                out += _ids(top.obj)
        return out

    def replace(self, queue: dict[str, Any]) -> None:
        """The whole queue: its fields (``tasks`` keeps its place among them) and, as new rows, every task of it."""
        for row in self._read.rows:
            self._tops[row.position] = _Top(row.position, None, {}, gone=True)
            for task_id in _ids(row.obj):
                self._where[task_id] = None
        for key in self._added:
            self._tops[key].gone = True
        self._fields = {key: ([] if key == "tasks" else value) for key, value in queue.items()}
        for task in queue.get("tasks") or []:
            self.add(task)

    # -- state ---------------------------------------------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            self._state_read = self._store._state_in(self._conn)
            self._state = json.loads(json.dumps(self._state_read))
        return self._state

    # -- leases (at once, outside the transaction) ---------------------------------------------------------------------

    def leases(self) -> dict[str, LeaseObservation]:
        seen = self._store.leases()
        for lease in seen.values():
            if lease.role is not None and lease.token is not None:
                self._seen_leases.setdefault(lease.role, set()).add(lease.token)
        self._seen_leases.setdefault("", set())  # (the change looked)
        return seen

    def read_lease(self, task_id: str) -> LeaseRecord | None:
        return self._store.read_lease(task_id)

    def issue_tokens(self, floors: list[int]) -> list[int]:
        return self._store.auto_call(lambda conn: lease_rows.issue_tokens(conn, floors))

    def claim(self, record: LeaseRecord) -> lease_rows.PgHeld | None:
        """Serialise the role's claims (its advisory transaction lock), check no lease of the role appeared since the
        change looked, lock the task's row (skipping one another transaction holds), then create the lease."""
        role = record.role
        if role not in self._locked_roles:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (CLAIMS, _role_key(role)))
            self._locked_roles.add(role)
            if "" in self._seen_leases:  # the change counted leases: none of the role's may have come since
                now = self._store.auto_call(
                    lambda conn: {
                        int(r[0])
                        for r in conn.execute("SELECT token FROM agentd_leases WHERE role = %s", (role,)).fetchall()
                    }
                )
                known = self._seen_leases.get(role, set()) | {held.token for held in self._store._acquired()}
                if now - known:
                    raise _Retry(f"a lease of role {role} appeared meanwhile")
        key = self._key(record.task_id)
        if key is not None and key >= 0:
            row = self._conn.execute(
                "SELECT 1 FROM agentd_tasks WHERE position = %s FOR UPDATE SKIP LOCKED", (key,)
            ).fetchone()
            if row is None:
                return None  # another transaction is changing this task: not claimed in this pass
        held = lease_rows.claim(self._store.reach, self._store.uri, record)
        if held is not None:
            self._store._remember(held)
        return held

    def break_free(self, task_id: str) -> bool:
        return self._store.auto_call(lambda conn: lease_rows.break_free(conn, task_id))

    def break_held(self, task_id: str) -> None:
        self._store.auto_call(lambda conn: lease_rows.break_held(conn, task_id))

    def holders(self, task_id: str) -> list[int]:
        return self._store.holders(task_id)

    def report(self, task_id: str, problem: str) -> None:
        self._store.report(task_id, problem)

    # -- commit --------------------------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Check what changed (never write a task or queue worse than read), then write only that."""
        read = self._read
        changed: list[tuple[int, Any]] = []
        gone: list[int] = []
        added: list[Any] = []
        reshaped = False
        for top in self._tops.values():
            if top.position is None:
                if not top.gone:
                    added.append(top.obj)
                    reshaped = True
                continue
            row = read.by_position[top.position]
            if top.gone:
                gone.append(top.position)
                reshaped = True
            elif top.obj != row.obj:
                changed.append((top.position, top.obj))
                reshaped = reshaped or _shape(top.obj) != _shape(row.obj)
        changed.sort(key=lambda item: item[0])  # (rows locked in one order by every writer: no deadlock between two)

        if self._fields is not None:
            problem = schema.file_problem(self._fields)
            if problem is not None:
                raise QueueInvalid(self._store.where, problem[0], f"refusing to write: {problem[1]}")
        if changed or added or reshaped:
            self._check(changed, gone, added, reshaped)
        conn = self._conn
        if self._fields is not None:
            conn.execute("UPDATE agentd_queue SET doc = %s", (json.dumps(self._fields, ensure_ascii=False),))
            reshaped = True
        for position, obj in changed:
            conn.execute(
                "UPDATE agentd_tasks SET body = %s, ids = %s, id = %s, rev = nextval('agentd_rev') WHERE position = %s",
                (_dumps(obj), _ids(obj), obj.get("id") if _has_id(obj) else None, position),
            )
        if gone:
            conn.execute("DELETE FROM agentd_tasks WHERE position = ANY(%s)", (gone,))
        for obj in added:
            conn.execute(
                "INSERT INTO agentd_tasks (id, ids, body) VALUES (%s, %s, %s)",
                (obj.get("id") if _has_id(obj) else None, _ids(obj), _dumps(obj)),
            )
        if reshaped:  # ids or dependencies changed: such transactions conflict with each other
            conn.execute("UPDATE agentd_queue SET rev = rev + 1")
        if self._state is not None and self._state != self._state_read:
            conn.execute("UPDATE agentd_state SET doc = %s", (json.dumps(self._state, ensure_ascii=False),))
            faults.point("state.before-rename")  # (the state is written, not yet committed)

    def _check(self, changed: list[tuple[int, Any]], gone: list[int], added: list[Any], reshaped: bool) -> None:
        where = self._store.where
        read = self._read
        index = {row.position: n for n, row in enumerate(read.rows)}
        quarantined = read.view.quarantined
        for position, obj in changed:
            base = f"$.tasks[{index[position]}]"
            self._check_one(obj, base, where, quarantined, read.by_position[position].obj)
        for n, obj in enumerate(added):
            self._check_one(obj, f"$.tasks[{len(read.rows) + n}]", where, {}, None)
        if not reshaped:
            return
        tops: list[Any] = []
        for row in read.rows:
            top = self._tops.get(row.position)
            if top is None:
                tops.append(row.obj)
            elif not top.gone:
                tops.append(top.obj)
        tops += added
        old = [f for f in read.view.errors if f.code in STRUCTURAL]
        known = {f.key for f in old}
        touched = {view_id(raw, path) for _, obj in changed for path, raw, _ in walk_one(obj, "")}
        for finding in structural(walk(tops), known=read.view.archived.keys()):
            if finding.key not in known or finding.task in touched:
                raise QueueInvalid(where, finding.path, f"refusing to write: {finding.message}")

    @staticmethod
    def _check_one(obj: Any, base: str, where: Path, quarantined: Mapping[str, Finding], old: Any) -> None:
        old_entries = {view_id(raw, path): raw for path, raw, _ in walk_one(old, base)} if old is not None else {}
        for path, raw, _ in walk_one(obj, base):
            if old_entries.get(view_id(raw, path)) == raw and view_id(raw, path) not in quarantined:
                continue
            found = schema.entry_error(raw)
            if found is not None:
                raise QueueInvalid(where, path + found[0][1:], f"refusing to write: {found[1]}")


def _unlink(tree: Any, target: dict[str, Any]) -> bool:
    """Remove ``target`` (by identity) from the subtasks under ``tree``."""
    children = tree.get("subtasks") if isinstance(tree, dict) else None
    if not isinstance(children, list):
        return False
    for n, child in enumerate(children):
        if child is target:
            del children[n]
            return True
        if _unlink(child, target):
            return True
    return False


def _closed(conn: Any) -> None:
    """Close a session quietly (it may be broken)."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _role_key(role: str) -> int:
    return zlib.crc32(role.encode("utf-8")) & 0x7FFFFFFF


class _Watching:
    def __init__(self, listener: Listener) -> None:
        self._listener = listener

    def stop(self, hand_off: Callable[[int], object] | None = None) -> None:  # (a connection's close: nothing to pass)
        self._listener.stop()


class PgStore:
    """The queue, leases, journal, daemons and project state of one project in a PostgreSQL database."""

    def __init__(self, config: Config, uri: str, *, clock: Clock | None = None, origin: str = "") -> None:
        self.config = config
        self.uri = uri
        self.clock: Clock = clock or SystemClock()
        self.workflow: Workflow | None = config.workflow
        self._where = address(uri)
        self._txn_lock = threading.RLock()
        self._auto_lock = threading.RLock()
        self._txn_conn: Any = None
        self._auto_conn: Any = None
        self._rows: dict[int, _Row] = {}  # position -> the last row read (parsed once per version)
        self._last: PgSnapshot | None = None
        self._last_key: tuple[Any, ...] | None = None
        self._held: list[lease_rows.PgHeld] = []
        self._reported: set[tuple[str, str]] = set()
        self._archived_cache: tuple[Any, Mapping[str, str]] | None = None
        self.reach = Reach(display(uri))  # every session's judgement of the server: one line lost, one back
        self._auto_conn = connect(uri, purpose="store", origin=origin)
        migrations.check(self._auto_conn, display(uri))

    # -- connections ---------------------------------------------------------------------------------------------------

    def _auto(self) -> Any:
        """The session for statements that take effect at once (autocommit), opened again when lost."""
        if self._auto_conn is None or self._auto_conn.closed or self._auto_conn.broken:
            self._auto_conn = self.reach.open(self.uri, purpose="store")
        return self._auto_conn

    def auto_call(self, work: Callable[[Any], T]) -> T:
        """``work(conn)`` on the autocommit session (once more on a fresh session when the old one was lost)."""
        with self._auto_lock:
            try:
                done = work(self._auto())
                self.reach.ok(self._auto_conn)
                return done
            except psycopg.OperationalError as exc:
                if isinstance(exc, pg_errors.TransactionRollback):
                    raise
                log.debug("%s: the store's session was lost (%s); opening a new one", self.where, one_line(exc))
                self.reach.lost(exc, self._auto_conn)
                self._drop("_auto_conn")
            try:
                done = work(self._auto())
                self.reach.ok(self._auto_conn)
                return done
            except psycopg.OperationalError as exc:
                self.reach.lost(exc, self._auto_conn)
                self._drop("_auto_conn")
                raise StoreUnreachable(display(self.uri), one_line(exc)) from None

    def _drop(self, name: str) -> None:
        """Forget a session that failed (closing it quietly)."""
        conn = getattr(self, name)
        setattr(self, name, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def auto(self, query: str, args: Any = None) -> None:
        self.auto_call(lambda conn: conn.execute(query, args))

    def _own_pids(self) -> set[int]:
        pids = set()
        for conn in (self._txn_conn, self._auto_conn):
            if conn is not None and not conn.closed:
                pids.add(conn.info.backend_pid)
        return pids

    def _remember(self, held: lease_rows.PgHeld) -> None:
        self._held = [h for h in self._held if h.active] + [held]

    def _acquired(self) -> list[lease_rows.PgHeld]:
        return [h for h in self._held if h.active]

    # -- the queue -----------------------------------------------------------------------------------------------------

    @property
    def where(self) -> Path:
        return self._where

    def create(self, queue: dict[str, Any]) -> bool:
        """Load ``queue`` as the project's queue when the database has none (the tasks in order, one row each)."""
        problem = schema.file_problem(queue)
        if problem is not None:
            raise QueueInvalid(self.where, problem[0], problem[1])
        top = {key: ([] if key == "tasks" else value) for key, value in queue.items()}
        with self._txn_lock:
            conn = self._txn()
            with conn.transaction():
                conn.execute("LOCK TABLE agentd_queue IN EXCLUSIVE MODE")
                if conn.execute("SELECT 1 FROM agentd_queue").fetchone() is not None:
                    return False
                conn.execute("INSERT INTO agentd_queue (doc) VALUES (%s)", (json.dumps(top, ensure_ascii=False),))
                for task in queue["tasks"]:
                    conn.execute(
                        "INSERT INTO agentd_tasks (id, ids, body) VALUES (%s, %s, %s)",
                        (task.get("id") if _has_id(task) else None, _ids(task), _dumps(task)),
                    )
        return True

    def _txn(self) -> Any:
        if self._txn_conn is None or self._txn_conn.closed or self._txn_conn.broken:
            conn = self.reach.open(self.uri, autocommit=False, purpose="transactions")
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self._txn_conn = conn
        return self._txn_conn

    def _load(self, conn: Any) -> PgSnapshot:
        """The queue as the transaction's snapshot has it (rows parsed once per version, the whole validated once
        per version of the queue)."""
        head = conn.execute("SELECT rev, doc FROM agentd_queue").fetchone()
        if head is None:
            raise QueueInvalid(self.where, None, "there is no queue in this database yet; run: agentd init")
        doc_rev, doc_text = head
        listing = conn.execute("SELECT position, rev FROM agentd_tasks ORDER BY position").fetchall()
        missing = [position for position, rev in listing if (row := self._rows.get(position)) is None or row.rev != rev]
        if missing:
            for position, rev, text in conn.execute(
                "SELECT position, rev, body FROM agentd_tasks WHERE position = ANY(%s)", (missing,)
            ).fetchall():
                try:
                    obj = json.loads(text)
                except ValueError:
                    obj = schema.loads_huge(text)
                self._rows[position] = _Row(position, rev, text, obj)
        if len(self._rows) > len(listing):
            present = {position for position, _ in listing}
            self._rows = {k: v for k, v in self._rows.items() if k in present}
        archived = self._archived_map(conn)
        key = (doc_rev, doc_text, tuple(listing), self._archive_head(), self.workflow)
        if self._last is not None and self._last_key == key:
            return self._last
        rows = [self._rows[position] for position, _ in listing]
        snapshot = self._validate(doc_rev, doc_text, rows, archived)
        self._last, self._last_key = snapshot, key
        return snapshot

    def _validate(self, doc_rev: int, doc_text: str, rows: list[_Row], archived: Mapping[str, str]) -> PgSnapshot:
        try:
            data = json.loads(doc_text)
        except ValueError as exc:
            raise QueueInvalid(self.where, None, f"the queue's fields are not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise QueueInvalid(self.where, "$", "expected a JSON object")
        data["tasks"] = [row.obj for row in rows]
        problem = schema.file_problem(data)
        if problem is not None:
            raise QueueInvalid(self.where, problem[0], problem[1])
        errors: list[Finding] = []
        tasks: list[Task] = []
        for n, row in enumerate(rows):
            problems = row.derived.get("problems")
            if problems is None or problems[0] != n:
                problems = row.derived["problems"] = (n, schema.task_problems(row.obj, f"$.tasks[{n}]", row.text))
            errors += problems[1]
            place = (n, len(tasks))
            views = row.derived.get("views")
            if views is None or views[0] != place:
                here = enumerate(walk_one(row.obj, f"$.tasks[{n}]"), start=len(tasks))
                made = [
                    Task.from_dict(task, index=index, path=path, parent=parent) for index, (path, task, parent) in here
                ]
                views = row.derived["views"] = (place, made)
            tasks += views[1]
        entries = walk(data["tasks"])
        # Duplicate ids, unknown dependencies and cycles depend only on ids and dependencies in their places: when none
        # of those changed since the last read (a claim, an outcome, a status), its findings and id index hold.
        shapes = (self._archive_head(), *((row.position, row.shape) for row in rows))
        last = self._last
        if last is not None and last.shapes == shapes:
            found, top_of = last.structural, last.top_of
        else:
            found = structural(entries, known=archived.keys())
            top_of = {task_id: row.position for row in rows for task_id in row.ids}
        warnings = status_warnings(entries, self.workflow)
        view = _View(self.where, b"", data, warnings, errors + found, archived=archived, views=tasks)
        by_position = {row.position: row for row in rows}
        return PgSnapshot(doc_rev, rows, view, top_of, by_position, shapes, found)

    def read(self, *, lenient: bool = False) -> Snapshot:
        del lenient
        with self._txn_lock:
            for tries_left in (1, 0):
                conn = self._txn()
                try:
                    with conn.transaction():
                        view = self._load(conn).view
                    self.reach.ok(conn)
                    return view
                except psycopg.OperationalError as exc:
                    self.reach.lost(exc, conn)
                    self._drop("_txn_conn")
                    if not tries_left:
                        raise StoreUnreachable(display(self.uri), one_line(exc)) from None
            raise AssertionError("unreachable")

    def prepare(self, claims: int) -> None:  # (rows: nothing to make ahead)
        return None

    def settle(self) -> None:  # (a commit is durable as it returns)
        return None

    def transaction(self, change: Callable[[PgTxn], T], *, settle_later: bool = False) -> T:

        retryable = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, _Retry)
        reconnected = False
        with self._txn_lock:
            for attempt in range(MAX_TRIES):
                conn = self._txn()
                committing = False
                xid: int | None = None
                try:
                    with conn.transaction():
                        now = conn.execute("SELECT now()").fetchone()[0].astimezone(UTC)
                        txn = PgTxn(self, conn, self._load(conn), now)
                        result = change(txn)
                        txn.commit()
                        xid = conn.execute("SELECT txid_current_if_assigned()").fetchone()[0]
                        committing = True
                    self.reach.ok(conn)
                    return result
                except retryable as exc:
                    log.debug("transaction try %d conflicted (%s); trying again", attempt + 1, one_line(exc))
                    time.sleep(random.uniform(0, min(0.2, 0.005 * (attempt + 1))))
                except psycopg.OperationalError as exc:
                    # The session was lost. Before the commit nothing was written, and the change runs again on a new
                    # session (once). At the commit, the server is asked what became of the transaction (its id's
                    # status): committed, the result stands; aborted, nothing was written and the change runs again.
                    self.reach.lost(exc, conn)
                    self._drop("_txn_conn")
                    if committing and xid is not None and self._committed(int(xid), one_line(exc)):
                        return result
                    if reconnected:
                        raise StoreUnreachable(display(self.uri), one_line(exc)) from None
                    log.debug("%s: the transaction's session was lost (%s); trying again", self.where, one_line(exc))
                    reconnected = True
            raise Conflict(None, f"{self.where}: the queue kept changing under agentd; gave up after {MAX_TRIES} tries")

    def _committed(self, xid: int, reason: str) -> bool:
        """Whether transaction ``xid``, whose session was lost at its commit, committed (False: it was aborted).
        Asked on a new session until the server answers (the backoff of :class:`Reach` paces the tries); a
        transaction the server still thinks in progress (its session not yet noticed gone: a cut network) is ended
        first. StoreUnreachable, saying it may or may not be written, when no answer comes within COMMIT_CHECK s."""
        deadline = time.monotonic() + COMMIT_CHECK
        while True:
            try:
                status = self.auto_call(lambda conn: conn.execute("SELECT txid_status(%s)", (xid,)).fetchone()[0])
                if status == "in progress":
                    self.auto_call(
                        lambda conn: conn.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE backend_xid::text::bigint = %s %% 4294967296",
                            (xid,),
                        )
                    )
                elif status in ("committed", "aborted"):
                    log.info("%s: a commit cut short by a lost session was %s", self.where, status)
                    return bool(status == "committed")
            except StoreUnreachable as exc:
                reason = exc.reason
            if time.monotonic() > deadline:
                raise StoreUnreachable(display(self.uri), f"{reason} while committing (it may or may not be written)")
            time.sleep(0.1)

    def archived(self, task_id: str) -> tuple[dict[str, Any], str | None] | None:
        row = self.auto_call(
            lambda conn: conn.execute(
                "SELECT body, archived_at FROM agentd_archive WHERE %s = ANY(ids) ORDER BY position DESC LIMIT 1",
                (task_id,),
            ).fetchone()
        )
        if row is None:
            return None
        for _, raw, _ in walk_one(json.loads(row[0]), ""):
            if isinstance(raw, dict) and raw.get("id") == task_id:
                return raw, row[1]
        return None

    def _archive_head(self) -> Any:
        """(count, last position) of the archive as last read: changes whenever the archive does."""
        return self._archived_cache[0] if self._archived_cache is not None else None

    def _archived_map(self, conn: Any) -> Mapping[str, str]:
        head = conn.execute("SELECT count(*), coalesce(max(position), 0) FROM agentd_archive").fetchone()
        if self._archived_cache is not None and self._archived_cache[0] == tuple(head):
            return self._archived_cache[1]
        found: dict[str, str] = {}
        for (text,) in conn.execute("SELECT body FROM agentd_archive ORDER BY position").fetchall():
            for _, raw, _ in walk_one(json.loads(text), ""):
                if _has_id(raw):
                    found[raw["id"]] = str(raw.get("status"))
        self._archived_cache = (tuple(head), found)
        return found

    def archive_tasks(
        self, select: Callable[[dict[str, Any]], bool], now: datetime, *, dry_run: bool = False
    ) -> list[str]:
        def change(txn: PgTxn) -> list[str]:
            read = txn._read
            quarantined = read.view.quarantined
            moving = [
                row
                for n, row in enumerate(read.rows)
                if _has_id(row.obj)
                and not any(view_id(raw, path) in quarantined for path, raw, _ in walk_one(row.obj, f"$.tasks[{n}]"))
                and select(row.obj)
            ]
            if dry_run or not moving:
                return [row.obj["id"] for row in moving]
            stamp = format_timestamp(now)
            for row in moving:
                txn._conn.execute(
                    "INSERT INTO agentd_archive (id, ids, body, archived_at) VALUES (%s, %s, %s, %s)",
                    (row.obj["id"], _ids(row.obj), row.text, stamp),
                )
                txn.remove(row.obj["id"])
            return [row.obj["id"] for row in moving]

        return self.transaction(change)

    @property
    def archive_where(self) -> Path:
        return address(self.uri, "agentd_archive")

    # -- leases --------------------------------------------------------------------------------------------------------

    def leases(self) -> dict[str, LeaseObservation]:
        return self.auto_call(lease_rows.observe_all)

    def lease_ids(self) -> list[str]:
        rows = self.auto_call(
            lambda conn: conn.execute("SELECT task_id FROM agentd_leases ORDER BY task_id").fetchall()
        )
        return [row[0] for row in rows]

    def read_lease(self, task_id: str) -> LeaseRecord | None:
        return self.auto_call(lambda conn: lease_rows.read_record(conn, task_id))

    def holders(self, task_id: str) -> list[int]:
        """[]: the database proves a lease's holder by its session, not by processes on this host."""
        del task_id
        return []

    def report(self, task_id: str, problem: str) -> None:
        if (task_id, problem) in self._reported:
            return
        self._reported.add((task_id, problem))
        log.warning("lease of %s in %s: %s; left alone", task_id, self.where, problem)

    # -- the journal ---------------------------------------------------------------------------------------------------

    def journal(self, role: str | None = None, logger: Any = None) -> PgJournal:
        return PgJournal(self, self.clock, role, logger or log)

    def prune_journal(self, now: datetime | None = None, *, force: bool = True) -> int | None:
        """Prune the journal now (``agentd events --prune``): what ``[log] journal_keep_days`` and the size bound
        keep; how many events went (None: another daemon is pruning it)."""
        keep = self.config.log
        return self.auto_call(
            lambda conn: prune_journal(conn, now, keep.journal_keep_days, keep.journal_keep_bytes, force=force)
        )

    def events(self, where: Filter | None = None) -> Iterator[Event]:
        seq, more = 0, True
        while more:
            seq, found, more = self.auto_call(functools.partial(events_after, seq=seq, where=where))
            yield from found

    def follow(
        self, where: Filter | None = None, *, last: int | None = None
    ) -> tuple[Iterator[Event], Iterator[Event]]:
        mark = [-1]

        def backlog() -> Iterator[Event]:
            top = self.auto_call(lambda c: c.execute("SELECT coalesce(max(seq), 0) FROM agentd_events").fetchone())
            end = int(top[0])
            seq, more = 0, True
            while more:
                seq, found, more = self.auto_call(functools.partial(events_after, seq=seq, where=where, upto=end))
                yield from found
            mark[0] = end

        def live() -> Iterator[Event]:
            """New events as they come: LISTEN on the journal's channel (its writers notify it), a look after each
            notification (and every FOLLOW_SAFETY s); a lost server is waited for, then looked at again."""
            seq = mark[0]
            listen: Any = None
            self.reach.announce = True  # (following rides outages out: it says so once, and once when back)
            try:
                while True:
                    try:
                        if listen is None:
                            listen = self.reach.open(self.uri, purpose="follow")
                            listen.execute(f"LISTEN {EVENTS_CHANNEL}")
                        seq, found, more = self.auto_call(functools.partial(events_after, seq=seq, where=where))
                    except (StoreUnreachable, psycopg.OperationalError) as exc:
                        self.reach.lost(exc, listen)
                        _closed(listen)
                        listen = None
                        time.sleep(FOLLOW_RETRY)
                        continue
                    yield from found
                    if more:
                        continue
                    try:
                        for _ in listen.notifies(timeout=FOLLOW_SAFETY, stop_after=1):
                            pass
                    except psycopg.OperationalError as exc:
                        self.reach.lost(exc, listen)
                        _closed(listen)
                        listen = None
            finally:
                _closed(listen)

        if last is not None:  # (the backlog's last ones: read in order, as without it)
            return iter(collections.deque(backlog(), maxlen=max(0, last))), live()
        return backlog(), live()

    # -- daemons -------------------------------------------------------------------------------------------------------

    def daemons(self) -> list[Probe]:
        return self.auto_call(lambda conn: daemons(conn, address(self.uri, "daemons")))

    def register(
        self,
        role: str,
        instance: str | None,
        *,
        started: datetime,
        interval: float | None,
        log: str | None,
        boot: float | None = None,
        beat_every: float | None = None,
    ) -> PgRegistration:
        self.reach.announce = True  # (a daemon rides outages out: it says so once, and once when back)
        keep = (self.config.log.journal_keep_days, self.config.log.journal_keep_bytes)
        held = PgRegistration(self.reach, self.uri, address(self.uri, "daemons"), role, instance, keep)
        held.acquire(started=started, interval=interval, log=log, boot=boot, beat_every=beat_every)
        return held

    # -- project state -------------------------------------------------------------------------------------------------

    def _state_in(self, conn: Any) -> dict[str, Any]:
        row = conn.execute("SELECT doc FROM agentd_state").fetchone()
        if row is None:
            return {}
        try:
            data = json.loads(row[0])
        except ValueError as exc:
            raise StateInvalid(address(self.uri, "agentd_state"), None, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise StateInvalid(address(self.uri, "agentd_state"), "$", "expected a JSON object")
        return data

    def state(self) -> dict[str, Any]:
        return self.auto_call(self._state_in)

    # -- clock, wake-ups -----------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The database's clock."""
        row = self.auto_call(lambda conn: conn.execute("SELECT now()").fetchone())
        return row[0].astimezone(UTC)  # type: ignore[no-any-return]

    def signature(self) -> tuple[object, ...]:
        row = self.auto_call(
            lambda conn: conn.execute(
                "SELECT (SELECT rev FROM agentd_queue), (SELECT max(rev) FROM agentd_tasks),"
                " (SELECT count(*) FROM agentd_tasks), (SELECT max(seq) FROM agentd_events),"
                " (SELECT coalesce(sum(token), 0) FROM agentd_leases), (SELECT count(*) FROM agentd_leases),"
                " (SELECT md5(doc) FROM agentd_state)"
            ).fetchone()
        )
        return tuple(row)

    def watch(self, wake: Callable[[str], None]) -> _Watching | None:
        listener = Listener(self.reach, self.uri, str(self.where), wake, self._own_pids)
        return _Watching(listener) if listener.start() else None

    def close(self) -> None:
        for conn in (self._txn_conn, self._auto_conn):
            if conn is not None:
                with contextlib.suppress(Exception):  # (closing a broken connection)
                    conn.close()
        self._txn_conn = self._auto_conn = None
