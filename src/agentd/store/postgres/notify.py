"""Wake-ups on PostgreSQL: LISTEN agentd on a session of its own, in a thread.

Triggers notify ``queue`` on every change to the tasks or the queue's top-level fields and ``lease`` when a lease
row goes. A lease whose holder dies leaves its row (only its advisory lock goes, which nothing notifies), so the
thread also looks, once a second, for lease rows whose lock is free and wakes ``lease`` for each new one. Changes
made by this store's own sessions are not reported (the wake-up of one's own write, which the file store drops too).
A lost connection is re-established with exponential backoff (tenacity, paced by the store's shared
:class:`~agentd.store.postgres.reach.Reach`, which logs the loss once and the return once for all its sessions).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import tenacity

from agentd.store.postgres.connect import one_line
from agentd.store.postgres.reach import Reach

log = logging.getLogger(__name__)
_REFUSED: set[tuple[str, str]] = set()  # (where, reason) of each failed start said: said again once one worked

CHANNEL = "agentd"
LOOK_EVERY = 1.0  # s between looks at the leases' locks
GATE_LOOK = 2.0  # s, the longest wait between asks to reconnect (cheap: the store's Reach refuses until a try is due)

# The leases whose holder's session is gone: a row left, its lock free (a lease not renewed since a server restart
# is not counted: the restart freed its lock).
ABANDONED = """
SELECT l.token FROM agentd_leases l
WHERE l.heartbeat >= pg_postmaster_start_time() AND NOT EXISTS (
    SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
    AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((k.classid::bigint << 32) | k.objid::bigint) = l.token)
"""


class Listener:
    """A thread that calls ``wake(reason)`` on notifications of others' changes and on leases whose lock went."""

    def __init__(
        self, reach: Reach, uri: str, where: str, wake: Callable[[str], None], own: Callable[[], set[int]]
    ) -> None:
        self._reach = reach
        self._uri = uri
        self._where = where
        self._wake = wake
        self._own = own  # the backend pids of this store's sessions
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="agentd-pg-listen", daemon=True)
        self._abandoned: set[int] = set()  # tokens of leases seen abandoned (each woken for once)

    def start(self) -> bool:
        """Listen; False when the connection fails (said once per reason until a start works: a daemon tries again
        on its interval)."""
        try:
            self._connect()
        except Exception as exc:
            said = (self._where, one_line(exc))
            if said not in _REFUSED:
                _REFUSED.add(said)
                log.warning("%s: no wake-ups (polling instead): %s", *said)
            return False
        _REFUSED.difference_update({said for said in tuple(_REFUSED) if said[0] == self._where})
        self._thread.start()
        return True

    def _connect(self) -> None:
        conn = self._reach.open(self._uri, purpose="listen")
        conn.execute(f"LISTEN {CHANNEL}")
        self._conn = conn

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._conn is not None:
            with contextlib.suppress(Exception):  # (closing a broken connection)
                self._conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._reach.lost(exc, self._conn)
                log.debug("%s: lost the wake-up connection (%s); polling meanwhile", self._where, one_line(exc))
                if not self._reconnect():
                    return
                log.debug("%s: wake-up connection re-established", self._where)
                self._wake("queue")  # whatever changed meanwhile was not notified

    def _reconnect(self) -> bool:
        retrying = tenacity.Retrying(
            wait=tenacity.wait_exponential(multiplier=0.25, max=GATE_LOOK),  # (the gate paces real tries)
            retry=tenacity.retry_if_exception_type(Exception),
            stop=lambda state: self._stop.is_set(),
            sleep=self._pause,
            reraise=False,
        )
        try:
            old, self._conn = self._conn, None
            if old is not None:
                with contextlib.suppress(Exception):  # (closing a broken connection)
                    old.close()
            retrying(self._connect)
        except tenacity.RetryError:
            return False
        return not self._stop.is_set()

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _listen(self) -> None:
        conn = self._conn
        while not self._stop.is_set():
            own = self._own()
            # Each notification wakes at once (the generator yields it as it arrives): waiting for the end of the
            # look would add up to LOOK_EVERY to every pickup. A burst wakes many times; a wake-up only sets a flag.
            for note in conn.notifies(timeout=LOOK_EVERY, stop_after=64):
                if note.pid not in own:
                    self._wake(note.payload)
            abandoned = {int(row[0]) for row in conn.execute(ABANDONED).fetchall()}
            if abandoned - self._abandoned:
                self._wake("lease")
            self._abandoned = abandoned
