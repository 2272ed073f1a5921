"""Daemons and the journal on PostgreSQL.

A daemon's registration is a row in ``agentd_daemons`` and a session of its own holding the advisory lock
``(DAEMONS, key of its name)`` for the daemon's whole life: the lock is the proof it runs (the PID file's ``flock``
on the file store), freed by the server when the daemon's process dies, on any host. The journal is
``agentd_events``: one row per event holding the very JSON line the file store would append.

The journal's retention (:func:`prune_journal`): events older than ``[log] journal_keep_days`` (0: no age limit)
go, and the oldest go until the rest fit in what the file journal's rotation keeps (``(backups + 1) x max_bytes``
of lines). Registered daemons do it: each looks every UPKEEP_LOOK s, from a thread of its own (never holding up a
beat), and the one that takes the advisory lock prunes when the last pruning (``agentd_upkeep``) is an hour old.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agentd.core.clock import Clock, format_timestamp
from agentd.hostinfo import hostname
from agentd.store.base import Event, Filter, PidInfo, Probe
from agentd.store.file.journal import escaped, parse_line
from agentd.store.file.pidfile import AlreadyRunning
from agentd.store.postgres.connect import one_line
from agentd.store.postgres.reach import Reach

log = logging.getLogger(__name__)

DAEMONS = 0x61676401  # advisory lock namespace of daemon registrations
UPKEEP = 0x61676403  # advisory lock namespace of the project's periodic chores (key 1: the journal's pruning)
PRUNE_EVERY = timedelta(hours=1)  # the journal is pruned at most this often per project
UPKEEP_LOOK = 600.0  # s between a daemon's looks at whether the pruning is due
LOCKED_DAEMONS = """
SELECT d.name, d.info, (k.objid IS NOT NULL) AS running, d.started, d.beat
FROM agentd_daemons d
LEFT JOIN pg_locks k ON k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 AND k.classid = %s
    AND k.objid::bigint = d.lock_key::bigint
    AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY d.name
"""


def lock_key(name: str) -> int:
    """A daemon name's advisory lock key (a positive int4)."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def parse_info(text: str) -> PidInfo | None:
    try:
        return PidInfo.from_mapping(json.loads(text))
    except (ValueError, TypeError, AttributeError):
        return None


def daemons(conn: Any, where: Path) -> list[Probe]:
    """Every registered daemon of every host; its start and last beat as the server's clock had them (a host's own
    clock may be off: what the daemon wrote is replaced, so ages are judged on one clock)."""
    rows = conn.execute(LOCKED_DAEMONS, (DAEMONS,)).fetchall()
    out = []
    for name, text, running, started, beat in rows:
        info = parse_info(text)
        if info is not None:
            info = info.replace(started_at=format_timestamp(started), beat_at=format_timestamp(beat))
        out.append(Probe(path=where / name, running=bool(running), info=info))
    return out


class PgRegistration:
    """This process registered as a daemon: its own session holds the name's lock for the daemon's life."""

    def __init__(
        self,
        reach: Reach,
        uri: str,
        where: Path,
        role: str,
        instance: str | None,
        keep: tuple[float, int] | None = None,
    ) -> None:
        self._reach = reach
        self._keep = keep  # (journal_keep_days, journal_keep_bytes): this daemon looks after the journal's retention
        self._next_upkeep = 0.0  # monotonic
        self._upkeep: threading.Thread | None = None
        self.role = role
        self.instance = instance
        self.name = role + (f".{instance}" if instance else "")
        self.path = where / self.name
        self._uri = uri
        self._conn: Any = None
        self._lock = threading.Lock()
        self.info: PidInfo | None = None
        self.replaced: PidInfo | None = None

    def acquire(
        self,
        *,
        started: datetime,
        interval: float | None,
        log: str | None,
        boot: float | None,
        beat_every: float | None,
    ) -> PidInfo:
        conn = self._reach.open(self._uri, purpose=f"daemon {self.name}")
        key = lock_key(self.name)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (DAEMONS, key)).fetchone()[0]
            if not got:
                row = conn.execute("SELECT info FROM agentd_daemons WHERE name = %s", (self.name,)).fetchone()
                holder = parse_info(row[0]) if row else None
                raise AlreadyRunning(self.name, holder.pid if holder else None, self.path)
            row = conn.execute("SELECT info FROM agentd_daemons WHERE name = %s", (self.name,)).fetchone()
            self.replaced = parse_info(row[0]) if row else None
            info = PidInfo.of_this_process(self.role, self.instance, started, interval, log, boot, beat_every)
            conn.execute(
                "INSERT INTO agentd_daemons (name, lock_key, info) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET lock_key = excluded.lock_key, info = excluded.info,"
                " started = now(), beat = now()",
                (self.name, key, json.dumps(info.asdict())),
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.info = info
        return info

    def beat(self, now: datetime, boot: float) -> None:
        """The liveness beat: ``beat_at`` and ``beat_boot`` in the row, and the row's ``beat`` on the server's clock.
        A lost session (a server restart frees its lock) is opened again (paced and logged by the store's
        :class:`Reach`) and the name's lock taken again; OSError while that cannot be done."""
        with self._lock:
            if self._conn is None or self.info is None:
                return
            self.info = self.info.replace(beat_at=format_timestamp(now), beat_boot=round(boot, 3))
            for again in (True, False):
                try:
                    if self._conn.closed or self._conn.broken:
                        self._reopen()
                    self._write()
                    break
                except Exception as exc:
                    self._reach.lost(exc, self._conn)
                    if not again or not (self._conn.closed or self._conn.broken):
                        raise OSError(f"cannot record the beat of {self.name}: {one_line(exc)}") from None
            self._reach.ok(self._conn)
        self._look_after_the_journal()

    def _look_after_the_journal(self) -> None:
        """Every UPKEEP_LOOK s, in a thread of its own: prune the journal if no daemon did for an hour."""
        mono = time.monotonic()
        if self._keep is None or mono < self._next_upkeep or (self._upkeep is not None and self._upkeep.is_alive()):
            return
        self._next_upkeep = mono + UPKEEP_LOOK
        self._upkeep = threading.Thread(target=self._prune, name="agentd-pg-journal-upkeep", daemon=True)
        self._upkeep.start()

    def _prune(self) -> None:
        assert self._keep is not None
        try:
            with self._reach.open(self._uri, purpose=f"daemon {self.name} upkeep") as conn:
                prune_journal(conn, None, *self._keep)
        except Exception as exc:  # (tried again at the next look; a lost server is logged by the store once)
            self._reach.lost(exc)
            log.debug("journal upkeep: %s", one_line(exc))

    def _reopen(self) -> None:
        old, self._conn = self._conn, self._reach.open(self._uri, purpose=f"daemon {self.name}")
        with contextlib.suppress(Exception):  # (closing a broken connection)
            old.close()
        if not self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (DAEMONS, lock_key(self.name))).fetchone()[0]:
            log.warning("%s: another daemon of this name registered meanwhile", self.path)

    def _write(self) -> None:
        assert self.info is not None
        self._conn.execute(
            "UPDATE agentd_daemons SET info = %s, beat = now() WHERE name = %s",
            (json.dumps(self.info.asdict()), self.name),
        )

    def release(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.execute("DELETE FROM agentd_daemons WHERE name = %s", (self.name,))
            except Exception as exc:
                log.warning("%s: cannot remove the registration: %s", self.path, one_line(exc))
            finally:
                conn.close()


EVENTS_CHANNEL = "agentd_events"  # notified after each append (``agentd events -f`` listens)
PENDING_MAX = 10_000  # events kept while the server cannot be reached (the oldest dropped beyond)


class PgJournal:
    """Events of one writer as rows of ``agentd_events`` (each also a log line). Events emitted while the server
    cannot be reached are kept (up to PENDING_MAX) and appended, in order, with the next one that goes through."""

    def __init__(self, store: Any, clock: Clock, role: str | None, logger: logging.Logger) -> None:
        self._store = store
        self.clock = clock
        self.role = role
        self.log = logger
        self.max_bytes = 0  # (rotation is the file journal's; a table is pruned otherwise)
        self.backups = 0
        self.host = hostname()
        self._pending: list[tuple[str, str | None, str | None, str]] = []
        self._dropped = 0
        self._lock = threading.Lock()

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """(Each event is its own row, appended as it comes.)"""
        return contextlib.nullcontext()

    def emit(self, event: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
        self.log.log(level, escaped(message))
        record = {
            "time": format_timestamp(self.clock.now()),
            "event": event,
            "role": self.role,
            "host": self.host,
            "pid": os.getpid(),
            **fields,
            "message": message,
        }
        line = json.dumps(record, default=str)  # ASCII: a lone surrogate is escaped, never an encoding error
        task = fields.get("task")
        with self._lock:
            self._pending.append((event, self.role, task if isinstance(task, str) else None, line))
            try:
                self._store.auto_call(self._flush)
            except Exception as exc:
                if len(self._pending) > PENDING_MAX:
                    self._dropped += len(self._pending) - PENDING_MAX
                    del self._pending[: len(self._pending) - PENDING_MAX]
                if not self._store.reach.down:  # (an unreachable store is logged once, by the store)
                    self.log.warning("cannot append to the journal in %s: %s", self._store.where, one_line(exc))

    def _flush(self, conn: Any) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO agentd_events (at, event, role, task, line) VALUES (now(), %s, %s, %s, %s)", self._pending
            )
        conn.execute(f"NOTIFY {EVENTS_CHANNEL}")
        if len(self._pending) > 1:
            self.log.debug("appended %d journal events kept while the store was unreachable", len(self._pending) - 1)
        if self._dropped:
            self.log.warning("%d journal events were dropped while the store was unreachable", self._dropped)
            self._dropped = 0
        self._pending.clear()


def prune_journal(
    conn: Any, now: datetime | None, keep_days: float, keep_bytes: int, *, force: bool = False
) -> int | None:
    """Remove the journal's events older than ``keep_days`` (0: no age limit) and the oldest beyond ``keep_bytes`` of
    lines (0: no size limit), as of ``now`` (None: the server's clock); how many went, or None when another daemon
    is pruning or the journal was pruned less than PRUNE_EVERY ago (``force``: whatever the last time)."""
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(%s, 1)", (UPKEEP,)).fetchone()[0]:
            return None
        at = now if now is not None else conn.execute("SELECT now()").fetchone()[0]
        last = conn.execute("SELECT at FROM agentd_upkeep WHERE name = 'journal'").fetchone()
        if not force and last is not None and at - last[0] < PRUNE_EVERY:
            return None
        removed = 0
        if keep_days > 0:
            cut = at - timedelta(days=keep_days)
            removed += conn.execute("DELETE FROM agentd_events WHERE at < %s", (cut,)).rowcount
        if keep_bytes > 0:
            row = conn.execute(
                "SELECT max(seq) FROM (SELECT seq, sum(octet_length(line) + 1) OVER (ORDER BY seq DESC) AS kept"
                " FROM agentd_events) newest_first WHERE kept > %s",
                (keep_bytes,),
            ).fetchone()
            if row[0] is not None:
                removed += conn.execute("DELETE FROM agentd_events WHERE seq <= %s", (row[0],)).rowcount
        conn.execute(
            "INSERT INTO agentd_upkeep (name, at) VALUES ('journal', %s)"
            " ON CONFLICT (name) DO UPDATE SET at = excluded.at",
            (at,),
        )
    if removed:
        log.info("journal: %d event(s) pruned (older than %g days, or beyond %d bytes)", removed, keep_days, keep_bytes)
    return removed


def events_after(
    conn: Any, seq: int, where: Filter | None, limit: int = 2000, upto: int | None = None
) -> tuple[int, list[Event], bool]:
    """(the last sequence number looked at, the events after ``seq`` that pass ``where`` oldest first, whether more
    rows may follow)."""
    query = "SELECT seq, line FROM agentd_events WHERE seq > %s"
    args: list[Any] = [seq]
    if upto is not None:
        query += " AND seq <= %s"
        args.append(upto)
    if where is not None and where.task is not None:
        query += " AND task = %s"
        args.append(where.task)
    if where is not None and where.role is not None:
        query += " AND role = %s"
        args.append(where.role)
    if where is not None and where.types:
        query += " AND event = ANY(%s)"
        args.append(sorted(where.types))
    query += " ORDER BY seq LIMIT %s"
    args.append(limit)
    rows = conn.execute(query, args).fetchall()
    found = []
    for number, line in rows:
        seq = int(number)
        event = parse_line(line)
        if event is not None and (where is None or where.matches(event)):
            found.append(event)
    return seq, found, len(rows) == limit
