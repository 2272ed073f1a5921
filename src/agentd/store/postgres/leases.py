"""Leases on PostgreSQL: rows in ``agentd_leases``, each held by its holder's own session.

A claim opens a connection for the lease and takes the session advisory lock ``pg_advisory_lock(token)`` on it
before the row is inserted: that lock stands in for the file store's ``flock``. The connection's socket is what
:meth:`PgHeld.inherit` gives the task's supervisor, so the session (and its lock) lives exactly as long as the work:
the server ends the session and frees the lock only once the last process holding the socket is gone. A lease whose
lock is free is therefore proven abandoned (``locked=False``), except right after a server restart, which frees every
lock: a lease not renewed since the server started is judged by its heartbeat alone (``locked=None``).

Heartbeats are the database's ``now()``; a lease's age is ``now() - heartbeat`` computed by the server
(``LeaseObservation.beat_age``), so no host's clock enters a lease decision.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any

from agentd.core.clock import format_timestamp
from agentd.core.scheduler import LeaseObservation
from agentd.store.base import LeaseRecord
from agentd.store.postgres.connect import one_line
from agentd.store.postgres.reach import Reach

log = logging.getLogger(__name__)

# Every lease with its age and whether its holder's advisory lock is held, on the server's clock.
OBSERVE = """
SELECT l.task_id, l.token, l.role, l.record, l.acquired, l.heartbeat, l.ttl,
       extract(epoch FROM now() - l.heartbeat)::float8 AS age,
       CASE WHEN k.key IS NOT NULL THEN true
            WHEN l.heartbeat < pg_postmaster_start_time() THEN NULL
            ELSE false END AS locked
FROM agentd_leases l
LEFT JOIN (
    SELECT DISTINCT (classid::bigint << 32) | objid::bigint AS key
    FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
) k ON k.key = l.token
"""


def record_of(text: str) -> LeaseRecord | None:
    """A lease row's record (None when it does not parse)."""
    try:
        data = json.loads(text)
        known = set(LeaseRecord._fields)
        return LeaseRecord(**{key: value for key, value in data.items() if key in known})
    except (ValueError, TypeError):
        return None


def observation(row: tuple[Any, ...]) -> LeaseObservation:
    task_id, token, role, text, acquired, heartbeat, ttl, age, locked = row
    record = record_of(text)
    return LeaseObservation(
        task_id,
        token=int(token),
        role=role,
        host=record.host if record else None,
        pid=record.pid if record else None,
        pgid=record.pgid if record else None,
        locked=locked,
        heartbeat_at=heartbeat.astimezone(UTC),
        acquired=acquired.astimezone(UTC),
        ttl=float(ttl),
        boot_id=record.boot_id if record else None,
        beat_age=max(0.0, float(age)),
        error=None if record else "its record does not parse",
    )


def observe_all(conn: Any) -> dict[str, LeaseObservation]:
    rows = conn.execute(OBSERVE + " ORDER BY l.task_id").fetchall()
    return {row[0]: observation(row) for row in rows}


def read_record(conn: Any, task_id: str) -> LeaseRecord | None:
    row = conn.execute("SELECT record FROM agentd_leases WHERE task_id = %s", (task_id,)).fetchone()
    return record_of(row[0]) if row else None


def issue_tokens(conn: Any, floors: list[int]) -> list[int]:
    """Tokens above each floor and above every token ever issued (the mark is one row, updated at once)."""
    tokens = []
    for floor in floors:
        row = conn.execute(
            "UPDATE agentd_tokens SET mark = greatest(mark, %s) + 1 RETURNING mark", (int(floor),)
        ).fetchone()
        tokens.append(int(row[0]))
    return tokens


def break_free(conn: Any, task_id: str) -> bool:
    """Remove the lease when its holder's lock is free (proven gone); False when it stays."""
    row = conn.execute(
        "DELETE FROM agentd_leases l WHERE task_id = %s AND NOT EXISTS ("
        " SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = l.token)"
        " AND heartbeat >= pg_postmaster_start_time() RETURNING 1",
        (task_id,),
    ).fetchone()
    if row is not None:
        return True
    return conn.execute("SELECT 1 FROM agentd_leases WHERE task_id = %s", (task_id,)).fetchone() is None


def break_held(conn: Any, task_id: str) -> None:
    conn.execute("DELETE FROM agentd_leases WHERE task_id = %s", (task_id,))


def claim(reach: Reach, uri: str, record: LeaseRecord) -> PgHeld | None:
    """Open the lease's session, lock its token and insert its row; None when the task has a lease already."""
    conn = reach.open(uri, purpose=f"lease {record.task_id}")
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (record.token,))
        row = conn.execute(
            "INSERT INTO agentd_leases (task_id, token, role, record, ttl) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (task_id) DO NOTHING RETURNING heartbeat",
            (record.task_id, record.token, record.role, _text(record), record.ttl),
        ).fetchone()
    except BaseException:
        conn.close()
        raise
    if row is None:
        conn.close()
        return None
    stamp = format_timestamp(row[0].astimezone(UTC))
    return PgHeld(reach, uri, conn, record.replace(acquired=stamp, heartbeat_at=stamp))


def _text(record: LeaseRecord) -> str:
    return json.dumps(record.asdict())


class PgHeld:
    """A lease this process holds: its own session (holding the token's advisory lock) and its record.

    Thread-safe: the heartbeat thread renews while the main loop may release.

    A lost session (a server restart, a cut network) is replaced at the next beat (the store's :class:`Reach` logs
    the loss once and paces the tries): the row is renewed only while it still holds this token, and the token's
    lock is taken again on the new session (:meth:`_lock_again`: a lost session the server still thinks alive is
    ended first; never a blocking wait). The new session is the daemon's alone (the
    supervisor inherited the first one): should the daemon die now, the supervisor ends the command as soon as its
    control pipe closes.
    """

    def __init__(self, reach: Reach, uri: str, conn: Any, record: LeaseRecord) -> None:
        self._reach = reach
        self._uri = uri
        self._conn: Any = conn
        self.record = record
        self._lock = threading.Lock()
        self._locked = True  # whether this token's advisory lock is held by the current session

    @property
    def task_id(self) -> str:
        return self.record.task_id

    @property
    def token(self) -> int:
        return self.record.token

    def update(self, now: datetime, boot: float | None = None, **changes: Any) -> bool | None:
        """A heartbeat on the database's clock (``now`` is the caller's, kept in the record for people only);
        False when the lease is no longer ours, None when it was released."""
        with self._lock:
            if self._conn is None:
                return None
            record = self.record.replace(heartbeat_at=format_timestamp(now), heartbeat_boot=boot, **changes)
            for again in (True, False):
                try:
                    if self._conn.closed or self._conn.broken:
                        self._reopen()
                    if not self._locked:  # before the beat: a beat newer than the server's start with the lock
                        self._locked = self._lock_again()  # free reads as proven abandoned to every peer
                    row = self._renew(record)
                    break
                except Exception as exc:  # the session is gone (a server restart, a network cut): a new one
                    self._reach.lost(exc, self._conn)
                    log.debug("lease %s: not renewed: %s", self.task_id, one_line(exc))
                    if not again or not (self._conn.closed or self._conn.broken):
                        return None  # not renewed, not known lost: tried again at the next beat; the ttl judges
            self._reach.ok(self._conn)
            if row is None:
                return False
            self.record = record.replace(heartbeat_at=format_timestamp(row[0].astimezone(UTC)))
            return True

    def _lock_again(self) -> bool:
        """Take the token's lock on the new session. A session of this process's for this lease that the server
        still thinks alive (a cut network: the server has not noticed) holds it: that session is ended first, waiting
        for it to go (up to 5 s), so the lock is free only for the instant between, not until the server would have
        noticed (when a peer could break the lease as abandoned while its run goes on here)."""
        name = f"agentd lease {self.task_id} {os.getpid()}"[:63]  # (as connect names it; NAMEDATALEN)
        ended = self._conn.execute(
            "SELECT count(pg_terminate_backend(a.pid, 5000)) FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid"
            " WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1"
            " AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((k.classid::bigint << 32) | k.objid::bigint) = %s"
            " AND a.application_name = %s AND a.pid <> pg_backend_pid()",
            (self.token, name),
        ).fetchone()[0]
        got = bool(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.token,)).fetchone()[0])
        log.debug("lease %s: lock %s (%d old session(s) ended)", self.task_id, "taken again" if got else "held", ended)
        return got

    def _reopen(self) -> None:
        old, self._conn = self._conn, self._reach.open(self._uri, purpose=f"lease {self.task_id}")
        self._locked = False
        with contextlib.suppress(Exception):  # (closing a broken connection)
            old.close()

    def _renew(self, record: LeaseRecord) -> Any:
        return self._conn.execute(
            "UPDATE agentd_leases SET heartbeat = now(), record = %s WHERE task_id = %s AND token = %s"
            " RETURNING heartbeat",
            (_text(record), record.task_id, record.token),
        ).fetchone()

    def renew(self, now: datetime, boot: float | None = None) -> bool | None:
        return self.update(now, boot)

    @property
    def active(self) -> bool:
        """Not released yet (its session may be lost meanwhile)."""
        return self._conn is not None

    def inherit(self) -> tuple[int, ...]:
        """The session's socket: the supervisor holds it, so the session and its lock live as long as the work."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                return ()
            return (int(self._conn.fileno()),)

    def release(self) -> None:
        """Remove the row (only while it is ours), unlock and close the session (idempotent)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.execute("DELETE FROM agentd_leases WHERE task_id = %s AND token = %s", (self.task_id, self.token))
                conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:  # the session is gone (a server restart, a network cut): remove the row on a new one,
                self._remove_anew()  # else a lease older than the server's start would hold its task until the ttl
            finally:
                conn.close()

    def _remove_anew(self) -> None:
        try:
            with self._reach.open(self._uri, purpose=f"lease {self.task_id} release") as conn:
                conn.execute("DELETE FROM agentd_leases WHERE task_id = %s AND token = %s", (self.task_id, self.token))
        except Exception as exc:
            self._reach.lost(exc)
            log.warning("lease %s: cannot remove it: %s (its lock went with the session)", self.task_id, one_line(exc))
